r"""Weight and bias initializers by name, each with its exact formula.

Every entry is a factory: ``get(name, **kwargs)`` returns a Flax initializer
``init(key, shape, dtype) -> Array``. For a kernel of shape
``(*receptive_field, fan_in_channels, fan_out_channels)`` (Flax's layout),
``fan_in = prod(receptive_field) * shape[-2]`` and
``fan_out = prod(receptive_field) * shape[-1]``.

| name            | distribution                                   | variance                  |
|-----------------|------------------------------------------------|---------------------------|
| xavier_uniform  | U(-a, a), a = gain sqrt(6 / (fan_in + fan_out))| gain^2 2/(fan_in+fan_out) |
| xavier_normal   | N(0, gain^2 2/(fan_in + fan_out))              | gain^2 2/(fan_in+fan_out) |
| he_uniform      | U(-a, a), a = sqrt(6 / fan_in)                 | 2/fan_in                  |
| he_normal       | N(0, 2/fan_in)                                 | 2/fan_in                  |
| lecun_normal    | N(0, 1/fan_in)                                 | 1/fan_in                  |
| gaussian        | N(0, sigma_w2/fan_in) (mean-field convention)  | sigma_w2/fan_in           |
| orthogonal      | gain * Q, Q Haar-orthogonal                    | gain^2/max(fan_in,fan_out)|
| uniform_small   | U(-0.01, 0.01)                                 | 1e-4/3                    |
| normal_small    | N(0, 0.01^2)                                   | 1e-4                      |
| normal          | N(mean, stddev^2) (any shape; biases)          | stddev^2                  |
| constant        | every entry = value                            | 0                         |
| zeros           | every entry = 0                                | 0                         |

The normal distributions are *not* truncated, as in PyTorch's ``nn.init``:
He-normal has variance exactly 2/fan_in. Seed 000 writes He as
"N(0, sqrt(2/n_in))": sqrt(2/n_in) is the standard deviation, the variance is
2/n_in.
"""

from collections.abc import Callable
import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxgrad import _checks

Initializer = Callable[..., jax.Array]


def _variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
  return jax.nn.initializers.variance_scaling(scale, mode, distribution)


def xavier_uniform(gain: float = 1.0) -> Initializer:
  """Glorot & Bengio (2010): U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
  return _variance_scaling(gain**2, "fan_avg", "uniform")


def xavier_normal(gain: float = 1.0) -> Initializer:
  """Glorot & Bengio (2010): N(0, gain^2 * 2 / (fan_in + fan_out))."""
  return _variance_scaling(gain**2, "fan_avg", "normal")


def he_uniform() -> Initializer:
  """He et al. (2015): U(-a, a), a = sqrt(6 / fan_in), so Var = 2 / fan_in."""
  return _variance_scaling(2.0, "fan_in", "uniform")


def he_normal() -> Initializer:
  """He et al. (2015): N(0, 2 / fan_in), untruncated, Var = 2 / fan_in exactly."""
  return _variance_scaling(2.0, "fan_in", "normal")


def lecun_normal() -> Initializer:
  """LeCun (1998): N(0, 1 / fan_in)."""
  return _variance_scaling(1.0, "fan_in", "normal")


def gaussian(sigma_w2: float) -> Initializer:
  """Mean-field parameterisation: W_ij ~ N(0, sigma_w2 / fan_in).

  Args:
    sigma_w2: the weight variance times fan-in, sigma_w^2 (> 0).
  """
  if not sigma_w2 > 0:
    raise ValueError(f"gaussian: sigma_w2 must be > 0, got {sigma_w2!r}")
  return _variance_scaling(float(sigma_w2), "fan_in", "normal")


def orthogonal(gain: float = 1.0) -> Initializer:
  """Saxe et al. (2013): gain * Q with Q uniformly (Haar) distributed orthogonal.

  For a square kernel every singular value equals ``gain``; for a rectangular
  one the rows or the columns are orthonormal (times ``gain``).
  """
  return jax.nn.initializers.orthogonal(scale=gain)


def uniform_small() -> Initializer:
  """The seed's 'small' uniform init: U(-0.01, 0.01)."""
  return uniform(-0.01, 0.01)


def normal_small() -> Initializer:
  """The seed's 'small' normal init: N(0, 0.01^2)."""
  return normal(stddev=0.01)


def uniform(low: float, high: float) -> Initializer:
  """U(low, high), any shape."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, minval=low, maxval=high)

  return init


def normal(stddev: float, mean: float = 0.0) -> Initializer:
  """N(mean, stddev^2), any shape (e.g. mean-field biases, stddev = sigma_b)."""

  def init(key, shape, dtype=jnp.float32):
    return mean + stddev * jax.random.normal(key, shape, dtype)

  return init


def constant(value: float) -> Initializer:
  """Every entry equals ``value`` (e.g. the seed's bias 0.01)."""
  return jax.nn.initializers.constant(value)


def zeros() -> Initializer:
  """Every entry equals 0."""
  return jax.nn.initializers.zeros


_REGISTRY: dict[str, Callable[..., Initializer]] = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "lecun_normal": lecun_normal,
    "gaussian": gaussian,
    "orthogonal": orthogonal,
    "uniform_small": uniform_small,
    "normal_small": normal_small,
    "uniform": uniform,
    "normal": normal,
    "constant": constant,
    "zeros": zeros,
}


def names() -> tuple[str, ...]:
  """The registered initializer names."""
  return tuple(_REGISTRY)


def get(name: str, **kwargs: Any) -> Initializer:
  """Builds the initializer registered under ``name`` with ``kwargs``.

  >>> init = get("orthogonal", gain=2.0 ** 0.5)

  Raises:
    ValueError: for an unknown name (the message lists the valid names) or for
      keyword arguments the factory does not take (the message lists those).
  """
  try:
    factory = _REGISTRY[name]
  except (KeyError, TypeError):
    raise ValueError(
        f"unknown initializer {name!r}; valid names: {', '.join(_REGISTRY)}"
    ) from None
  signature = inspect.signature(factory)
  try:
    signature.bind(**kwargs)
  except TypeError as e:
    raise ValueError(
        f"initializer {name!r} takes arguments ({', '.join(signature.parameters)})"
        f", got {sorted(kwargs)}: {e}"
    ) from None
  for key, value in kwargs.items():
    _checks.require_real(f"initializer {name!r}: {key}", value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
      raise ValueError(f"initializer {name!r}: {key} must be finite, got {value!r}")
  return factory(**kwargs)


def resolve(init: str | Initializer | tuple[str, dict[str, Any]]) -> Initializer:
  """A name, or ``(name, kwargs)``, goes through :func:`get`; a callable is kept."""
  if callable(init):
    return init
  if isinstance(init, tuple):
    name, kwargs = init
    return get(name, **kwargs)
  return get(init)
