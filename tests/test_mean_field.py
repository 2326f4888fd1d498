"""mean_field experiment: smoke run, measured chi_1 and q^l against theory, bad flags."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import mean_field as mf
from jaxgrad.models import DenseStack
from jaxgrad.studies import mean_field
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(mf)

# Agreement bar at small width (N = 64): finite-width corrections to q^l and chi_1 are O(1/N).
SMALL_WIDTH_RTOL = 0.1


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
  np.testing.assert_allclose(mean_field.fit_slope(log_g2, burn_in=2), np.log(chi), rtol=1e-12)


def test_measured_chi1_and_q_match_theory_at_width_64():
  """Mean-field predictions hold to a few percent already at N = 64 (8 seeds x 4 inputs)."""
  grid, depth, burn_in = (1.0, 2.5), 12, 4
  measured = mean_field.measure("tanh", grid, 0.05, width=64, depth=depth, batch=4, seeds=8,
                                key=jax.random.key(0))
  predicted = mean_field.predict("tanh", grid, 0.05, depth)
  chi = mean_field.compare(measured, predicted, burn_in)["chi1_measured_median"]
  np.testing.assert_allclose(chi, predicted["chi1"], rtol=SMALL_WIDTH_RTOL)
  settled = slice(burn_in, None)  # q^l at its fixed point, averaged over layers
  np.testing.assert_allclose(np.median(measured["q"], axis=1)[:, settled].mean(-1),
                             predicted["q"][:, settled].mean(-1), rtol=SMALL_WIDTH_RTOL)


def test_scaled_init_scales_unit_draws_by_sigma():
  """Kernels are sigma_w times, biases sigma_b times the unit draws of the same key."""
  model = DenseStack(depth=3, features=4, activation="tanh", **mean_field.unit_inits())
  x = jnp.ones((1, 4))
  unit = mean_field.scaled_init(model, jax.random.key(0), x, 1.0, 1.0)["params"]
  scaled = mean_field.scaled_init(model, jax.random.key(0), x, 4.0, 0.25)["params"]
  dense, unit_dense = scaled["layers"]["dense"], unit["layers"]["dense"]
  np.testing.assert_allclose(dense["kernel"], 2.0 * unit_dense["kernel"], rtol=1e-6)
  np.testing.assert_allclose(dense["bias"], 0.5 * unit_dense["bias"], rtol=1e-6)
  with pytest.raises(ValueError, match="valid choices"):
    mean_field.scaled_init(model, jax.random.key(0), x, 1.0, 1.0, weights="uniform")


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
