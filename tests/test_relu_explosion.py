"""experiments.relu_explosion: gradients equal weight products; dead-unit probabilities."""

import dataclasses

import numpy as np
import pytest
from scipy import integrate, special

from jaxgrad import files
from experiments import relu_explosion as exp
from tests.conftest import experiment_group

pytestmark = experiment_group("relu_explosion")


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(exp)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = exp.Config.smoke()
  assert set(results["cases"]) == set(config.inits)
  for per_depth in results["cases"].values():
    assert list(per_depth) == [str(d) for d in config.depths]
    for d, c in per_depth.items():
      assert len(c["nonzero_fraction_per_layer"]) == int(d)
  for name in ("gradients.png", "exactness.png", "survival.png"):
    assert (out / name).stat().st_size > 10_000


def test_perturb_gradients_equal_the_weight_products_to_float32_precision(smoke):
  for init, per_depth in smoke[1]["cases"].items():
    for d, c in per_depth.items():
      assert c["zero_mismatches"] == 0 and c["nonfinite"] == 0, (init, d)
      # One float32 rounding per layer on the path: |error| <= (L - l) 2^-24.
      assert c["max_rel_error_over_bound"] <= 1.0, (init, d)


def test_wrong_init_never_dies_and_grows_like_the_weight_product(smoke):
  c = smoke[1]["cases"]["wrong"]["6"]
  assert c["reaches_input"] == exp.Config.smoke().seeds
  measured = np.asarray(c["scatter"]["measured"])
  exact = np.asarray(c["scatter"]["exact"])
  np.testing.assert_allclose(measured, exact, rtol=6 * 2.0**-24, atol=0)


def test_path_product_of_a_hand_built_chain():
  """w = (2, -1, 3), b = 0, x = 1: z = (2, -2, 0): unit 2 dead, every gradient 0 before it."""
  kernel = np.array([[2.0, -1.0, 3.0], [2.0, 0.5, 3.0]])
  bias = np.zeros_like(kernel)
  np.testing.assert_array_equal(exp.path_product(kernel, bias, 1.0),
                                [[0.0, 0.0, 0.0], [1.5, 3.0, 1.0]])


def test_markov_chain_gives_two_to_the_minus_depth_at_zero_bias():
  p = exp.chain_probabilities(6, 1.0, 0.0, 2.0)
  np.testing.assert_allclose(p["survival"], 0.5 ** np.arange(1, 7), rtol=1e-12)
  np.testing.assert_allclose(p["reach"], np.full(6, 0.5**6), rtol=1e-12)


def test_markov_chain_matches_closed_forms_with_bias():
  """First layer: P(w x + b > 0) = Phi(b / (sigma x)); last layer of 2: P(z_2 > 0) exactly."""
  b, var = 0.3, 2.0
  p = exp.chain_probabilities(2, 1.0, b, var)
  sigma = np.sqrt(var)
  assert p["survival"][0] == pytest.approx(special.ndtr(b / sigma), rel=1e-12)
  # P(z_2 > 0) = P(z_1 <= 0) + E[Phi(b / (sigma z_1)); z_1 > 0], z_1 ~ N(b, var).
  dens = lambda z: np.exp(-0.5 * ((z - b) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))  # noqa: E731
  active, _ = integrate.quad(lambda z: dens(z) * special.ndtr(b / (sigma * z)), 0, np.inf)
  assert p["reach"][1] == pytest.approx(special.ndtr(-b / sigma) + active, rel=2e-3)
  # Both units active: the second term alone.
  assert p["survival"][1] == pytest.approx(active, rel=2e-3)


def test_dead_unit_frequency_matches_theory():
  """Many seeds, depth 1..4, both He inits: measured survival within 4 binomial SE of theory."""
  config = dataclasses.replace(exp.Config.smoke(), depths=(1, 2, 4), seeds=2048,
                               inits=("right", "he_zero_bias"))
  th = exp.theory(config)
  for init, theory in (("right", th["survival_right"]), ("he_zero_bias", th["survival_zero_bias"])):
    m = exp.measure(config, init)
    for i, d in enumerate(config.depths):
      measured = np.mean(m["grad"][i, :, -d] != 0)
      p = theory[d - 1]
      assert abs(measured - p) <= 4 * np.sqrt(p * (1 - p) / config.seeds), (init, d, measured, p)


def test_bad_config_is_a_clear_error():
  with pytest.raises(ValueError, match=r"inits=\('xavier',\): must be one of"):
    exp.Config(inits=("xavier",))
  with pytest.raises(ValueError, match="input=-1.0: must be > 0"):
    exp.Config(input=-1.0)
