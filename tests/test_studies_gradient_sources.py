"""jaxgrad.studies.gradient_sources: the signal factors at a width where theory applies."""

import jax
import pytest

from jaxgrad.studies import gradient_sources as study


def test_wider_nets_measure_the_signal_factors():
  """At N = 128 the factors sit near chi_1: ReLU 1, linear 1.2, tanh (finite width) below 1.342."""
  paths = study.relu_paths(jax.random.key(0), width=128, depths=(16,), paths=10, seeds=8)
  assert paths["signal_factor"] == pytest.approx(1.0, abs=0.05)
  exploding = study.exploding_from_weights(jax.random.key(1), width=128, depth=16, seeds=8)
  assert exploding["linear sigma_w2=1.2"]["growth"] == pytest.approx(1.2, rel=0.02)
  tanh = exploding["tanh sigma_w2=4"]
  assert 1.15 < tanh["growth"] <= tanh["chi1"] * 1.01


def test_backprop_signal_shapes_and_a_linear_net_has_slopes_of_one():
  slopes, signal = study.backprop_signal(jax.random.key(0), "linear", 1.0, 0.0, width=8, depth=5)
  assert slopes.shape == (5, 8) and signal.shape == (5,)
  assert (slopes == 1.0).all()
