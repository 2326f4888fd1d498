"""experiments.normalization: smoke run, structure, weight norm = plain at init, growth fit."""

import math

import numpy as np
import pytest

from experiments import normalization as nm
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(nm)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(nm)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = nm.Config.smoke()
  assert set(results["cases"]) == {f"relu/{n}" for n in nm.NORMS}
  for name, case in results["cases"].items():
    for key in ("grad_init", "grad_final", "signal_init", "signal_final"):
      assert np.shape(case[key]["per_seed"]) == (config.seeds, config.depth), (name, key)
      assert np.all(np.isfinite(case[key]["per_seed"])), (name, key)
    assert np.shape(case["loss"]["per_seed"]) == (config.seeds, config.steps)
    assert 0.0 <= case["test_accuracy"]["median"] <= 1.0
  for name in ("grad_norms.png", "signal.png", "training.png"):
    assert (out / name).stat().st_size > 10_000


def test_weight_norm_is_the_plain_net_at_initialization(smoke):
  """g starts at ||v||: same forward pass, same dL/dz; dL/dv = (I - w w^T/|w|^2) dL/dw is a
  projection of the plain net's dL/dW, so never larger."""
  cases = smoke[1]["cases"]
  plain, weight = cases["relu/none"], cases["relu/weight"]
  np.testing.assert_allclose(weight["signal_init"]["per_seed"], plain["signal_init"]["per_seed"],
                             **_tol.F32_REDUCED)
  g_plain = np.asarray(plain["grad_init"]["per_seed"])
  assert np.all(np.asarray(weight["grad_init"]["per_seed"]) <= g_plain * (1 + 1e-5))


def test_theory_values(smoke):
  cases = smoke[1]["cases"]
  width = nm.Config.smoke().width
  assert cases["relu/batch"]["theory_signal_growth_init"] == pytest.approx(
      math.pi / (math.pi - 1))
  # LayerNorm + ReLU: E[relu'(z)^2] / E[relu(z)^2] = (1/2) / (1/2).
  assert cases["relu/layer"]["theory_signal_growth_init"] == pytest.approx(1.0, rel=1e-3)
  # N(0, 0.01^2) weights, ReLU: chi_1 = width * 1e-4 / 2, for none and weight norm alike.
  for norm in ("none", "weight"):
    assert cases[f"relu/{norm}"]["theory_signal_growth_init"] == pytest.approx(
        width * 1e-4 / 2, rel=1e-3)


def test_unnormalized_signal_shrinks_by_chi1_per_layer(smoke):
  """Measured at width 8 over 2 seeds: the same order of magnitude as chi_1 = 4e-4."""
  case = smoke[1]["cases"]["relu/none"]
  assert case["signal_growth_init"]["median"] == pytest.approx(
      case["theory_signal_growth_init"], rel=0.5)


@pytest.mark.parametrize("argv, message", [
    (["--norms", "group"], "argument --norms: 'group' is not allowed: must be one of"),
    (["--kernel-init", "bogus"], "argument --kernel-init: 'bogus' is not allowed: must be one of"),
    (["--depth", "2"], "argument --depth: 2 is not allowed: must be >= 3"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    nm.main(argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err
