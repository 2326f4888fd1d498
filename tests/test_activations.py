"""jaxgrad.activations: registry, values and derivatives."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import activations
from tests import _tol

ISSUE_NAMES = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "swish",
               "hard_tanh", "erf", "linear")


def test_registry_has_every_activation_of_the_issue():
  assert set(ISSUE_NAMES) <= set(activations.names())


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match=r"unknown activation 'softplus2'.*sigmoid.*linear"):
    activations.get("softplus2")


def test_sigmoid_derivative_peaks_at_a_quarter_at_zero():
  x = jnp.linspace(-6.0, 6.0, 1201)  # step 0.01, includes 0
  d = activations.derivative("sigmoid")(x)
  assert float(d.max()) == pytest.approx(0.25, abs=1e-7)
  assert float(x[jnp.argmax(d)]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name, expected", [
    ("tanh", 1.0), ("relu", 0.0), ("linear", 1.0), ("erf", 2 / np.sqrt(np.pi)),
    ("gelu", 0.5), ("swish", 0.5), ("hard_tanh", 1.0),
])
def test_derivative_at_zero(name, expected):
  """relu'(0) = 0 is JAX's subgradient convention (PyTorch's too)."""
  assert float(activations.derivative(name)(jnp.float32(0.0))) == pytest.approx(expected, rel=1e-6)


def test_derivative_matches_closed_forms(x64):
  x = jnp.linspace(-3.0, 3.0, 61, dtype=jnp.float64) + 0.013  # avoid the kinks at 0 and +-1
  s = 1 / (1 + jnp.exp(-x))
  closed = {
      "sigmoid": s * (1 - s),
      "tanh": 1 - jnp.tanh(x) ** 2,
      "relu": (x > 0).astype(x.dtype),
      "leaky_relu": jnp.where(x > 0, 1.0, activations.LEAKY_RELU_SLOPE),
      "elu": jnp.where(x > 0, 1.0, jnp.exp(x)),
      "swish": s + x * s * (1 - s),
      "hard_tanh": (jnp.abs(x) < 1).astype(x.dtype),
      "erf": 2 / jnp.sqrt(jnp.pi) * jnp.exp(-x**2),
      "linear": jnp.ones_like(x),
  }
  for name, expected in closed.items():
    chex.assert_trees_all_close(activations.derivative(name)(x), expected, **_tol.F64)


def test_gelu_is_exact_not_tanh_approximation(x64):
  from jax.scipy.stats import norm
  x = jnp.linspace(-3, 3, 13, dtype=jnp.float64)
  chex.assert_trees_all_close(activations.get("gelu")(x), x * norm.cdf(x), **_tol.F64)


def test_resolve_accepts_callables():
  f = lambda x: 2 * x  # noqa: E731
  assert activations.resolve(f) is f
  assert activations.resolve("tanh") is jnp.tanh
