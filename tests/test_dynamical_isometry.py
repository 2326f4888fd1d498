"""dynamical_isometry experiment: smoke run, spectra against exact ground truths and theory."""

import copy

import jax
import numpy as np
import pytest

from experiments import dynamical_isometry as di
from jaxgrad.studies import dynamical_isometry
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(di)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(di)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = di.Config.smoke()
  assert set(results["spectra"]) == set(config.cases())
  for case in results["spectra"].values():
    assert np.shape(case["var_sq_per_seed"]) == (config.seeds, len(config.depths))
    for depth in config.depths:
      log_s = np.asarray(case["log_s"][str(depth)], dtype=float)
      assert log_s.shape == (config.seeds, config.width)
      for row in log_s:  # descending; dead ReLU units give -inf, sorted last
        finite = row[np.isfinite(row)]
        assert np.all(np.diff(finite) <= 1e-6) and np.all(np.isfinite(row[:len(finite)]))
  assert list(results["learning"]) == [f"L={d}" for d in config.train_depths]
  for arms in results["learning"].values():
    assert len(arms) == 3
    for arm in arms.values():
      assert np.shape(arm["loss_per_seed"]) == (config.train_seeds, config.train_steps)
      assert np.shape(arm["steps_to_target_per_seed"]) == (config.train_seeds,)
      rates = len(config.learning_rates)
      assert np.shape(arm["steps_to_target_per_rate"]) == (rates, config.train_seeds)
      np.testing.assert_allclose(arm["learning_rates"], config.learning_rates)
      best = dynamical_isometry.best_learning_rate(np.asarray(arm["steps_to_target_per_rate"], float),
                                   np.asarray(arm["final_loss_per_rate"], float))
      assert arm["best_learning_rate"] == pytest.approx(arm["learning_rates"][best])
      np.testing.assert_array_equal(np.asarray(arm["loss_per_seed"])[:, -1],
                                    np.asarray(arm["final_loss_per_rate"])[best])
  for name in ("spectra.png", "variance.png", "learning.png"):
    assert (out / name).stat().st_size > 10_000


def test_theory_is_on_the_critical_line(smoke):
  """Every case has chi_1 = 1, so the predicted mean of s^2 is 1 at every depth; ReLU's var is 2L."""
  config = di.Config.smoke()
  for case in smoke[1]["spectra"].values():
    np.testing.assert_allclose(case["theory"]["mean_sq"], 1.0, rtol=1e-6)
  relu = smoke[1]["spectra"]["relu/gaussian/He"]
  np.testing.assert_allclose(relu["theory"]["var_sq"], 2 * np.asarray(config.depths), rtol=1e-4)


def test_linear_orthogonal_spectrum_is_exactly_flat():
  """A linear net with orthogonal weights of gain 1: every log s = 0 at any depth."""
  log_s = dynamical_isometry.log_singular_values("linear", "orthogonal", 1.0, 0.0, 1.0, width=6,
                                                 depth=50, seeds=2, key=jax.random.key(0))
  np.testing.assert_allclose(log_s, 0.0, atol=1e-4)


def test_orthogonal_beats_gaussian_at_small_q_star(smoke):
  """Pennington et al.: critical orthogonal tanh at small q* is near-isometric, Gaussian is not."""
  q = di.Config.smoke().q_small
  spectra = smoke[1]["spectra"]
  var = {w: np.median(spectra[f"tanh/{w}/q*={q:g}"]["var_sq_per_seed"])
         for w in ("orthogonal", "gaussian")}
  assert var["orthogonal"] < 1e-2 < var["gaussian"]


def test_figures_survive_a_case_whose_jacobian_is_exactly_zero(smoke, tmp_path):
  # At depth 10,000 a float32 ReLU net's forward signal underflows to 0, so
  # every log s is -inf (seen in `--depths 10000`); the figure says so.
  results = copy.deepcopy(smoke[1])
  name = next(iter(results["spectra"]))
  case = results["spectra"][name]
  case["log_s"] = {d: np.full_like(np.asarray(v, dtype=float), -np.inf)
                   for d, v in case["log_s"].items()}
  results["config"] = di.Config.smoke()
  di.plot(results, tmp_path)
  assert (tmp_path / "spectra.png").stat().st_size > 0


def test_steps_to_target_reads_the_running_mean():
  loss = np.array([[3.0, 3.0, 1.0, 1.0, 1.0, 1.0],    # running mean of 2 <= 1.0 first at steps 3..4
                   [3.0, 3.0, 3.0, 3.0, 3.0, 3.0],    # never
                   [0.5, 0.5, np.nan, 0.5, 0.5, 0.5]])  # reached before it diverged
  np.testing.assert_array_equal(dynamical_isometry.steps_to_target(loss, 1.0, window=2), [4.0, np.nan, 2.0])


def test_best_learning_rate_takes_the_fewest_median_steps_else_the_lowest_loss():
  nan = np.nan
  steps = np.array([[50.0, nan, nan],     # median: never (2 of 3 seeds unreached)
                    [80.0, 90.0, 70.0],   # median 80
                    [40.0, 60.0, nan]])   # median 60: fewest
  loss = np.ones((3, 3))
  assert dynamical_isometry.best_learning_rate(steps, loss) == 2
  never = np.full((3, 2), nan)
  loss = np.array([[2.0, 2.1], [np.inf, 1.5], [1.9, 1.95]])  # a diverged seed counts as inf
  assert dynamical_isometry.best_learning_rate(never, loss) == 2
