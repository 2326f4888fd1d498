"""mean_field experiment: smoke run, measured chi_1 and q^l against theory, bad flags."""

import dataclasses

import numpy as np
import pytest

from jaxgrad import files
from experiments import mean_field as mf
from tests.conftest import experiment_group

pytestmark = experiment_group("mean_field")


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(mf)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = mf.Config.smoke()
  assert set(results["cases"]) == set(config.activations)
  grid, seeds, depth = len(config.sigma_w2), config.seeds, config.depth
  for case in results["cases"].values():
    assert np.shape(case["log_chi1_measured_per_seed"]) == (grid, seeds)
    assert np.shape(case["q_measured_per_seed"]) == (grid, seeds, depth)
    assert np.shape(case["q_theory"]) == (grid, depth)
  for name in ("chi1.png", "length_map.png"):
    assert (out / name).stat().st_size > 10_000


def test_theory_columns_match_the_notes_table(smoke):
  """theory.md §1.1, tanh at sigma_b^2 = 0.05: chi_1 = 0.759 at sigma_w^2 = 1, 1.209 at 3."""
  case = smoke[1]["cases"]["tanh"]
  np.testing.assert_allclose(case["chi1_theory"], [0.759, 1.209], atol=5e-4)
  assert np.all(np.isfinite(case["log_chi1_measured_per_seed"]))


def test_fit_slope_recovers_a_known_geometric_decay():
  depth, chi = 12, 0.8
  log_g2 = np.log(chi) * (depth - np.arange(depth))[None, :] + np.zeros((3, 1))
  np.testing.assert_allclose(mf.fit_slope(log_g2, burn_in=2), np.log(chi), rtol=1e-12)


def test_measured_chi1_and_q_match_theory_at_width_64():
  """Mean-field predictions hold to a few percent already at N = 64 (8 seeds x 4 inputs)."""
  config = dataclasses.replace(mf.Config.smoke(), width=64, seeds=8, batch=4, depth=12,
                               burn_in=4, activations=("tanh",), sigma_w2=(1.0, 2.5))
  measured = mf.measure(config, "tanh")
  predicted = mf.predict(config, "tanh")
  chi = np.exp(np.median(mf.fit_slope(measured["log_grad_sq"], config.burn_in), axis=1))
  np.testing.assert_allclose(chi, predicted["chi1"], rtol=mf.SMALL_WIDTH_RTOL)
  settled = slice(config.burn_in, None)  # q^l at its fixed point, averaged over layers
  np.testing.assert_allclose(np.median(measured["q"], axis=1)[:, settled].mean(-1),
                             predicted["q"][:, settled].mean(-1), rtol=mf.SMALL_WIDTH_RTOL)


@pytest.mark.parametrize("argv, message", [
    (["--burn-in", "60"], "argument --burn-in: 60 is not allowed: must be <= depth - 3 = 47"),
    (["--activations", "softmax"], "argument --activations: 'softmax' is not allowed: must be one of"),
    (["--sigma-w2", "0,1"], "argument --sigma-w2: '0.0,1.0' is not allowed: every item must be > 0"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    mf.main(argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err
