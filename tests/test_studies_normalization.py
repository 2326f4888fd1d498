"""jaxgrad.studies.normalization: the growth fit, the mean-field growth, exact-zero fractions."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad.studies import normalization


def test_growth_per_layer_recovers_a_geometric_signal():
  layers = np.arange(10)
  signal = np.stack([3.0 * 1.2 ** (-layers), 0.5 * 0.9 ** (-layers)])  # squared: 1.44, 0.81
  np.testing.assert_allclose(normalization.growth_per_layer(signal), [1.44, 0.81], rtol=1e-10)
  signal[1, 4] = 0.0  # an underflowed signal is NaN, not a number
  assert np.isnan(normalization.growth_per_layer(signal)[1])


def test_predicted_growth():
  assert normalization.predicted_growth("relu", "batch", "normal_small", 8) == pytest.approx(
      math.pi / (math.pi - 1))
  assert normalization.predicted_growth("sigmoid", "batch", "normal_small", 8) is None
  # LayerNorm + ReLU: E[relu'(z)^2] / E[relu(z)^2] = (1/2) / (1/2).
  assert normalization.predicted_growth("relu", "layer", "normal_small", 8) == pytest.approx(
      1.0, rel=1e-3)
  # N(0, 0.01^2) weights, ReLU: chi_1 = width * 1e-4 / 2; He init is critical.
  assert normalization.predicted_growth("relu", "none", "normal_small", 8) == pytest.approx(
      8 * 1e-4 / 2, rel=1e-3)
  assert normalization.predicted_growth("relu", "weight", "he_normal", 8) == pytest.approx(
      1.0, rel=1e-3)
  assert normalization.predicted_growth("relu", "none", "orthogonal", 8) is None


def test_zero_fraction_counts_kernel_and_direction_entries_only():
  grads = {"Dense_0": {"kernel": jnp.array([[0.0, 1.0], [0.0, 2.0]]), "bias": jnp.zeros(2)},
           "Dense_1": {"v": jnp.array([[0.0, 3.0]]), "g": jnp.zeros(2)}}
  assert float(normalization.zero_fraction(grads)) == pytest.approx(3 / 6)
