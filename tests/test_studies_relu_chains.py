"""jaxgrad.studies.relu_chains: path products, the dead-unit Markov chain, measured survival."""

import jax
import numpy as np
import pytest
from scipy import integrate, special

from jaxgrad.studies import relu_chains as chains


def test_path_product_of_a_hand_built_chain():
  """w = (2, -1, 3), b = 0, x = 1: z = (2, -2, 0): unit 2 dead, every gradient 0 before it."""
  kernel = np.array([[2.0, -1.0, 3.0], [2.0, 0.5, 3.0]])
  bias = np.zeros_like(kernel)
  np.testing.assert_array_equal(chains.path_product(kernel, bias, 1.0),
                                [[0.0, 0.0, 0.0], [1.5, 3.0, 1.0]])


def test_markov_chain_gives_two_to_the_minus_depth_at_zero_bias():
  p = chains.chain_probabilities(6, 1.0, 0.0, 2.0)
  np.testing.assert_allclose(p["survival"], 0.5 ** np.arange(1, 7), rtol=1e-12)
  np.testing.assert_allclose(p["reach"], np.full(6, 0.5**6), rtol=1e-12)


def test_markov_chain_matches_closed_forms_with_bias():
  """First layer: P(w x + b > 0) = Phi(b / (sigma x)); last layer of 2: P(z_2 > 0) exactly."""
  b, var = 0.3, 2.0
  p = chains.chain_probabilities(2, 1.0, b, var)
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
  depths, seeds = (1, 2, 4), 2048
  th = chains.predictions(max(depths), 1.0)
  for init, theory in (("right", th["survival_right"]), ("he_zero_bias", th["survival_zero_bias"])):
    key = jax.random.fold_in(jax.random.key(0), list(chains.INITS).index(init))
    m = chains.chain_gradients(init, depths, seeds, 1.0, key=key)
    for i, d in enumerate(depths):
      measured = np.mean(m["grad"][i, :, -d] != 0)
      p = theory[d - 1]
      assert abs(measured - p) <= 4 * np.sqrt(p * (1 - p) / seeds), (init, d, measured, p)


def test_chain_gradients_equal_the_path_products():
  """Depths 2 and 5 from one padded program: the last L layers are the depth-L chain."""
  depths = (2, 5)
  m = chains.chain_gradients("wrong", depths, 8, 0.5, key=jax.random.key(4))
  assert m["grad"].shape == (2, 8, 5)
  for i, d in enumerate(depths):
    one = {k: v[i, :, -d:] for k, v in m.items()}
    np.testing.assert_array_equal(m["kernel"][i, :, :-d], 1.0)  # identity padding
    c = chains.compare_chains(one, 0.5)
    assert c["depth"] == d and c["zero_mismatches"] == 0 and c["reaches_input"] == 8
    assert c["max_rel_error_over_bound"] <= 1.0


def test_predictions_of_the_wrong_init():
  th = chains.predictions(4, 1.0)
  np.testing.assert_allclose(th["wrong_mean_product"], 1.5 ** np.arange(4), rtol=1e-12)
  # E[log w] < log E[w] (Jensen): the median product lies below the mean product.
  assert np.all(th["wrong_median_product"][1:] < th["wrong_mean_product"][1:])
