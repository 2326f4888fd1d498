"""Activation functions by name, and their derivatives.

Every activation is an elementwise function ``phi: Array -> Array``. The
registry is the single source of truth for names used by models, theory and
experiments; derivatives come from ``jax.grad`` so that they can never drift
from the function they differentiate.

>>> from jaxgrad import activations
>>> float(activations.derivative("sigmoid")(0.0))
0.25
"""

from collections.abc import Callable
import functools

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]

LEAKY_RELU_SLOPE = 0.01  # PyTorch's default negative slope, used by the seeds.


def linear(x: jax.Array) -> jax.Array:
  """Identity, phi(x) = x."""
  return x


def hard_tanh(x: jax.Array) -> jax.Array:
  """phi(x) = clip(x, -1, 1); phi'(x) = 1 on (-1, 1), 0 outside."""
  return jnp.clip(x, -1.0, 1.0)


def leaky_relu(x: jax.Array) -> jax.Array:
  """phi(x) = max(a x, x) with a = 0.01."""
  return jax.nn.leaky_relu(x, negative_slope=LEAKY_RELU_SLOPE)


def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU, phi(x) = x Phi(x) with Phi the standard normal CDF."""
  return jax.nn.gelu(x, approximate=False)


def erf(x: jax.Array) -> jax.Array:
  """phi(x) = erf(x); phi'(0) = 2/sqrt(pi)."""
  return jax.scipy.special.erf(x)


_REGISTRY: dict[str, Activation] = {
    "sigmoid": jax.nn.sigmoid,    # 1/(1+e^-x); max phi' = 1/4 at 0
    "tanh": jnp.tanh,             # max phi' = 1 at 0
    "relu": jax.nn.relu,          # max(0, x)
    "leaky_relu": leaky_relu,
    "elu": jax.nn.elu,            # x if x > 0 else e^x - 1
    "selu": jax.nn.selu,          # lambda * elu_alpha(x), self-normalising
    "gelu": gelu,
    "swish": jax.nn.silu,         # x sigmoid(x), a.k.a. SiLU
    "hard_tanh": hard_tanh,
    "erf": erf,
    "linear": linear,
}


def names() -> tuple[str, ...]:
  """The registered activation names, in registry order."""
  return tuple(_REGISTRY)


def get(name: str) -> Activation:
  """Returns the activation registered under ``name``.

  Raises:
    ValueError: if ``name`` is not registered; the message lists the valid names.
  """
  try:
    return _REGISTRY[name]
  except (KeyError, TypeError):
    raise ValueError(
        f"unknown activation {name!r}; valid names: {', '.join(_REGISTRY)}"
    ) from None


def resolve(activation: str | Activation) -> Activation:
  """A name is looked up with :func:`get`; a callable is returned as is."""
  return activation if callable(activation) else get(activation)


@functools.cache
def _derivative_of_name(name: str) -> Activation:
  return jnp.vectorize(jax.grad(get(name)))


def derivative(activation: str | Activation) -> Activation:
  """Elementwise derivative phi'(x), computed with ``jax.grad``."""
  if callable(activation):
    return jnp.vectorize(jax.grad(activation))
  return _derivative_of_name(activation)
