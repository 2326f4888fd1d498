r"""Weight normalization (Salimans & Kingma 2016; seed 000 §6.4).

Every output unit ``j`` of a Dense layer gets its weight vector as a direction
times a length,

.. math::

   w_{:,j} = g_j \frac{v_{:,j}}{\|v_{:,j}\|_2}, \qquad \|w_{:,j}\| = g_j,
   \qquad
   \frac{\partial L}{\partial v_{:,j}} = \frac{g_j}{\|v_{:,j}\|}
   \Big(I - \frac{w_{:,j} w_{:,j}^\top}{g_j^2}\Big) \frac{\partial L}{\partial w_{:,j}},
   \qquad
   \frac{\partial L}{\partial g_j} = \frac{w_{:,j}^\top}{g_j} \frac{\partial L}{\partial w_{:,j}}.

``g`` starts at :math:`\|v_{:,j}\|`, so at initialization the layer computes
exactly what the plain layer with kernel ``v`` computes (the seed's
``self.g = weight.norm(2, dim)``); the seed's ``+ 1e-8`` in the denominator is
left out so that :math:`\|w_{:,j}\| = g_j` holds exactly.

Two ways to use it:

* :class:`WeightNormDense`, a drop-in for ``nn.Dense`` with parameters
  ``v`` (same shape and initializer as ``nn.Dense``'s ``kernel``), ``g`` and
  ``bias``;
* :func:`to_weight_norm` / :func:`from_weight_norm`, which reparameterize
  *every* kernel of any Flax model (scanned stacks included: the norm is over
  the fan-in axis ``-2``, leading layer axes are kept), so that e.g.
  :class:`jaxgrad.models.DeepMLP` trains with weight normalization through
  ``model.apply({'params': from_weight_norm(wn_params)}, x)``. The two agree
  exactly (tested).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgrad import initializers
from jaxgrad.models.mlp import InitializerLike

FAN_IN_AXIS = -2


def weight_norm(v: jax.Array, g: jax.Array) -> jax.Array:
  r""":math:`w = g\, v / \|v\|`, the norm over the fan-in axis ``-2`` (per output unit).

  Args:
    v: direction, shape ``(..., fan_in, fan_out)``.
    g: length per output unit, shape ``(..., fan_out)``.
  """
  norm = jnp.linalg.norm(v, axis=FAN_IN_AXIS, keepdims=True)
  return jnp.expand_dims(g, FAN_IN_AXIS) * v / norm


def _column_norm(_: jax.Array, v: jax.Array) -> jax.Array:
  return jnp.linalg.norm(v, axis=FAN_IN_AXIS)


class WeightNormDense(nn.Module):
  """``y = x w + b`` with ``w = weight_norm(v, g)``; a drop-in for ``nn.Dense``.

  Attributes:
    features: output width.
    use_bias: add a bias.
    kernel_init: initializer of ``v`` (name, ``(name, kwargs)`` or callable).
    bias_init: initializer of the bias.
    param_dtype: dtype of the parameters.

  >>> import jax, jax.numpy as jnp
  >>> layer = WeightNormDense(3)
  >>> params = layer.init(jax.random.key(0), jnp.ones((2, 4)))["params"]
  >>> sorted(params), params["v"].shape, params["g"].shape
  (['bias', 'g', 'v'], (4, 3), (3,))
  """

  features: int
  use_bias: bool = True
  kernel_init: InitializerLike = "lecun_normal"
  bias_init: InitializerLike = "zeros"
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    v = self.param("v", initializers.resolve(self.kernel_init),
                   (jnp.shape(x)[-1], self.features), self.param_dtype)
    g = self.param("g", _column_norm, v)
    y = x @ weight_norm(v, g)
    if self.use_bias:
      bias = self.param("bias", initializers.resolve(self.bias_init), (self.features,),
                        self.param_dtype)
      y = y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    return y


def _map_kernels(params: Any, fn) -> Any:
  if not isinstance(params, dict):
    return params
  if "kernel" in params or "v" in params:
    return fn(params)
  return {k: _map_kernels(v, fn) for k, v in params.items()}


def to_weight_norm(params: Any) -> Any:
  """Replaces every ``kernel`` leaf by ``v = kernel`` and ``g = ||kernel||`` per output unit.

  ``from_weight_norm(to_weight_norm(p))`` equals ``p`` up to rounding.
  """
  def split(layer):
    rest = {k: v for k, v in layer.items() if k != "kernel"}
    if "kernel" not in layer:
      return layer
    kernel = layer["kernel"]
    return {**rest, "v": kernel, "g": jnp.linalg.norm(kernel, axis=FAN_IN_AXIS)}

  return _map_kernels(params, split)


def from_weight_norm(params: Any) -> Any:
  """Replaces every ``(v, g)`` pair by ``kernel = weight_norm(v, g)``: plain Flax params."""
  def merge(layer):
    if "v" not in layer:
      return layer
    rest = {k: v for k, v in layer.items() if k not in ("v", "g")}
    return {**rest, "kernel": weight_norm(layer["v"], layer["g"])}

  return _map_kernels(params, merge)


__all__ = ["WeightNormDense", "from_weight_norm", "to_weight_norm", "weight_norm"]
