r"""Convolution variants, an invertible coupling layer and the delta-orthogonal init.

* :class:`DepthwiseSeparableConv` (seed 000 §5.2): a ``k x k`` depthwise
  convolution (one filter per channel, ``feature_group_count = C_in``) then a
  ``1 x 1`` pointwise one, each followed by BatchNorm and ReLU. Parameters:
  ``k^2 C_in + C_in C_out`` instead of ``k^2 C_in C_out``.
* :class:`DilatedConvBlock` (seed 000 §5.2): ``3 x 3`` convolution with dilation
  ``d`` (receptive field ``2d + 1`` per layer, so ``L`` layers with dilations
  ``1, 2, 4, ...`` see ``2^{L+1} - 1`` pixels), BatchNorm, ReLU.
* :class:`ReversibleCoupling` (seed 000 §6.2; Dinh et al. 2015 NICE, Gomez et
  al. 2017 RevNet): the additive coupling

  .. math::

     y_1 = x_1, \qquad y_2 = x_2 + F(x_1), \qquad
     x_1 = y_1, \qquad x_2 = y_2 - F(y_1),

  which is invertible for *any* ``F``; its Jacobian is unit lower-triangular
  (``det = 1``), so no direction of the signal is lost going forward.
* :func:`delta_orthogonal` (Xiao et al. 2018, theory.md §1.3): a conv kernel
  that is zero except at the spatial centre, where it is ``gain`` times a
  matrix with orthonormal rows. With circular padding the layer is then an
  exact isometry (times ``gain``) of its input.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgrad import initializers

InitializerLike = initializers.Initializer | str | tuple[str, dict[str, Any]]


def delta_orthogonal(gain: float = 1.0) -> initializers.Initializer:
  r"""Xiao et al. (2018): ``W[centre] = gain * Q``, zero off the centre tap.

  ``Q`` has shape ``(C_in, C_out)`` with orthonormal rows,
  :math:`Q Q^\top = I_{C_in}`, drawn Haar-uniformly. Kernels are in Flax's
  layout ``(*spatial, C_in, C_out)`` with 1 to 3 spatial dimensions; the centre
  of an even-sized axis ``k`` is ``(k - 1) // 2``, as in
  ``jax.nn.initializers.delta_orthogonal``.

  Raises:
    ValueError: at call time, for a kernel that is not 3-, 4- or 5-dimensional
      or whose ``C_in > C_out`` (an isometry needs ``C_in <= C_out``).

  >>> import jax
  >>> w = delta_orthogonal()(jax.random.key(0), (3, 3, 4, 8))
  >>> w.shape
  (3, 3, 4, 8)
  """
  orthogonal = jax.nn.initializers.orthogonal(scale=gain)

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    shape = tuple(shape)
    if len(shape) not in (3, 4, 5):
      raise ValueError(
          f"delta_orthogonal needs a conv kernel (*spatial, C_in, C_out) with 1 to 3 "
          f"spatial dims, got shape {shape}")
    c_in, c_out = shape[-2:]
    if c_in > c_out:
      raise ValueError(
          f"delta_orthogonal needs C_in <= C_out for an isometry, got C_in={c_in} > "
          f"C_out={c_out} (shape {shape})")
    centre = tuple((k - 1) // 2 for k in shape[:-2])
    w = jnp.zeros(shape, dtype)
    return w.at[centre].set(orthogonal(key, (c_in, c_out), dtype))

  return init


def _norm_act(x: jax.Array, train: bool, param_dtype: Any, name: str) -> jax.Array:
  x = nn.BatchNorm(use_running_average=not train, param_dtype=param_dtype, name=name)(x)
  return nn.relu(x)


class DepthwiseSeparableConv(nn.Module):
  """Depthwise ``k x k`` conv -> BN -> ReLU -> pointwise ``1 x 1`` conv -> BN -> ReLU.

  Input ``(batch, *spatial, C_in)``; the seed's ``groups=in_channels``.

  Attributes:
    features: output channels ``C_out``.
    kernel_size: depthwise kernel size per spatial axis.
    strides: stride of the depthwise convolution.
    kernel_init: conv initializer (name, ``(name, kwargs)`` or callable).
    param_dtype: dtype of the parameters.
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  kernel_init: InitializerLike = "he_normal"
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    spatial = x.ndim - 2
    channels = x.shape[-1]
    init = initializers.resolve(self.kernel_init)
    x = nn.Conv(channels, (self.kernel_size,) * spatial, strides=self.strides,
                feature_group_count=channels, padding="SAME", kernel_init=init,
                param_dtype=self.param_dtype, name="depthwise")(x)
    x = _norm_act(x, train, self.param_dtype, "depthwise_bn")
    x = nn.Conv(self.features, (1,) * spatial, kernel_init=init,
                param_dtype=self.param_dtype, name="pointwise")(x)
    return _norm_act(x, train, self.param_dtype, "pointwise_bn")


class DilatedConvBlock(nn.Module):
  """``3 x 3`` conv with dilation ``d`` ('SAME' padding = the seed's ``padding=d``) -> BN -> ReLU.

  Attributes:
    features: output channels.
    dilation: kernel dilation ``d >= 1``; the receptive field is ``2d + 1``.
    kernel_init, param_dtype: as in :class:`DepthwiseSeparableConv`.
  """

  features: int
  dilation: int = 2
  kernel_init: InitializerLike = "he_normal"
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if not isinstance(self.dilation, int) or self.dilation < 1:
      raise ValueError(f"dilation must be an integer >= 1, got {self.dilation!r}")
    spatial = x.ndim - 2
    x = nn.Conv(self.features, (3,) * spatial, kernel_dilation=self.dilation,
                padding="SAME", kernel_init=initializers.resolve(self.kernel_init),
                param_dtype=self.param_dtype, name="conv")(x)
    return _norm_act(x, train, self.param_dtype, "bn")


class _CouplingFunction(nn.Module):
  """The seed's ``F``: conv -> BN -> ReLU -> conv, channels preserved."""

  kernel_size: int
  kernel_init: InitializerLike
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    spatial = x.ndim - 2
    init = initializers.resolve(self.kernel_init)
    conv = lambda name: nn.Conv(  # noqa: E731
        x.shape[-1], (self.kernel_size,) * spatial, padding="SAME", kernel_init=init,
        param_dtype=self.param_dtype, name=name)
    h = conv("conv1")(x)
    h = _norm_act(h, train, self.param_dtype, "bn")
    return conv("conv2")(h)


class ReversibleCoupling(nn.Module):
  r"""Additive coupling on channel halves: :math:`y = (x_1,\ x_2 + F(x_1))`.

  ``inverse`` recovers ``x`` from ``y`` exactly (up to the rounding of one
  addition), whatever ``F``'s parameters: call it with
  ``model.apply(variables, y, method=ReversibleCoupling.inverse)``. In
  train mode ``F``'s BatchNorm uses the statistics of ``x_1 = y_1``, which are
  the same going forward and backward, so the inverse is exact there too.

  Attributes:
    kernel_size: ``F``'s conv kernel size per spatial axis.
    kernel_init, param_dtype: as in :class:`DepthwiseSeparableConv`.

  Input ``(batch, *spatial, C)`` with ``C`` even.
  """

  kernel_size: int = 3
  kernel_init: InitializerLike = "he_normal"
  param_dtype: Any = jnp.float32

  def _split(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    c = x.shape[-1]
    if c % 2:
      raise ValueError(f"ReversibleCoupling needs an even number of channels, got {c}")
    return x[..., : c // 2], x[..., c // 2 :]

  def setup(self):
    self.F = _CouplingFunction(self.kernel_size, self.kernel_init, self.param_dtype)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x1, x2 = self._split(x)
    return jnp.concatenate([x1, x2 + self.F(x1, train)], axis=-1)

  def inverse(self, y: jax.Array, train: bool = False) -> jax.Array:
    """The input from the output: :math:`x_1 = y_1` and :math:`x_2 = y_2 - F(y_1)` (nothing stored)."""
    y1, y2 = self._split(y)
    return jnp.concatenate([y1, y2 - self.F(y1, train)], axis=-1)


def receptive_field(dilations: Sequence[int], kernel_size: int = 3) -> int:
  """Receptive field of stacked dilated convs: ``1 + sum_l (k - 1) d_l``.

  >>> receptive_field([1, 2, 4])
  15
  """
  return 1 + sum((kernel_size - 1) * d for d in dilations)


__all__ = [
    "DepthwiseSeparableConv",
    "DilatedConvBlock",
    "ReversibleCoupling",
    "delta_orthogonal",
    "receptive_field",
]
