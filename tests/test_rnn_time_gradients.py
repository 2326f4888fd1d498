"""rnn_time_gradients: smoke run; Pascanu's rates against rho exactly (linear) and as a bound (tanh)."""


import numpy as np
import pytest

from experiments import rnn_time_gradients as tg
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(tg)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(tg)


def test_smoke_structure_and_figures(smoke):
  out, results = smoke
  config = tg.Config.smoke()
  assert set(results["pascanu"]) == set(tg.PASCANU_CELLS)
  for r in results["pascanu"].values():
    assert np.shape(r["log10_signal"]) == (len(config.rhos), config.seeds, config.length)
    np.testing.assert_allclose(np.asarray(r["log10_signal"])[..., -1], 0.0, atol=1e-12)
  for r in results["trained"].values():
    assert np.shape(r["init"]) == np.shape(r["trained"]) == (config.seeds, config.train_length)
    assert np.shape(r["train_loss"]) == (config.seeds, config.train_steps)
    assert np.all(np.isfinite(r["trained"]))
  for name in ("pascanu.png", "rate.png", "cells.png"):
    assert (out / name).stat().st_size > 10_000


def test_linear_rate_is_exactly_rho(smoke):
  r = smoke[1]["pascanu"]["linear"]
  rhos = np.asarray(tg.Config.smoke().rhos)[:, None]
  np.testing.assert_allclose(r["rate"], np.broadcast_to(rhos, np.shape(r["rate"])), **_tol.F64)
  for key in ("max_step_ratio", "min_step_ratio"):  # (rhos, seeds)
    np.testing.assert_allclose(r[key], np.broadcast_to(rhos, np.shape(r[key])), **_tol.F64)
  steps_back = np.arange(tg.Config.smoke().length - 1, -1, -1)
  np.testing.assert_allclose(np.asarray(r["log10_signal"])[:, 0],
                             steps_back[None] * np.log10(rhos), rtol=1e-9, atol=1e-9)


def test_tanh_rate_is_bounded_by_rho_gamma(smoke):
  r = smoke[1]["pascanu"]["simple"]
  rhos = np.asarray(tg.Config.smoke().rhos)
  assert np.all(np.asarray(r["max_step_ratio"]) <= rhos[:, None] * r["gamma"] * (1 + 1e-12))
  assert np.all(np.asarray(r["rate"]) < rhos[:, None])


@pytest.mark.parametrize("argv, message", [
    (["--rhos", "0.5,-1"], "argument --rhos: '0.5,-1.0' is not allowed: every item must be > 0"),
    (["--cells", "simple,rnn"],
     "argument --cells: 'simple,rnn' is not allowed: every item must be one of"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
  with pytest.raises(SystemExit):
    tg.main(argv)
  assert message in capsys.readouterr().err
