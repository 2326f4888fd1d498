r"""CIFAR-style ResNet (He et al. 2016; seed 000 §4.4) and its plain twin.

A basic block (``residual=True``) computes

.. math::

   z = \mathrm{BN}_2(W_2 * \mathrm{relu}(\mathrm{BN}_1(W_1 * x))) + S(x),
   \qquad y = \mathrm{relu}(z),

with ``S`` the identity, or a ``1 x 1`` strided convolution plus BatchNorm
(the seed's projection shortcut) when the stride or the channel count changes.
The plain block is the same without ``S(x)``. The block's pre-activation ``z``
is exposed as ``Module.perturb('preact', z)``, so
:func:`jaxgrad.diagnostics.backprop_signal` gives one backprop signal
:math:`\|\partial L/\partial z\|` per block.

Through the shortcut, :math:`\partial z_{l}/\partial x_{l} = I + \partial F/\partial x_l`
(seed 002's "gradient highway"); the ReLU after the addition masks part of
that identity, which the ``resnet_vs_plain`` experiment measures.

Layout: ``stage0_stem`` (3x3 conv, BN, ReLU), ``stage1`` .. ``stageN`` (each a
first block ``block0``, which may downsample, followed by the remaining blocks
stacked with ``nn.scan`` as the submodule ``layers``), global average pooling
and ``stage{N+1}_head`` (Dense). Names sort input to output in natural order,
as :mod:`jaxgrad.diagnostics` expects. BatchNorm follows Flax: ``train=True``
uses batch statistics and needs ``mutable=['batch_stats']``; ``train=False``
uses the running averages.
"""

from collections.abc import Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgrad import _checks
from jaxgrad import initializers
from jaxgrad.models.stack import scan_layers

InitializerLike = initializers.Initializer | str | tuple[str, dict[str, Any]]
RESNET18 = (2, 2, 2, 2)
RESNET34 = (3, 4, 6, 3)


def _check_stage_sizes(stage_sizes: Sequence[int]) -> None:
  if (not isinstance(stage_sizes, (tuple, list)) or not stage_sizes
      or any(not isinstance(n, int) or n < 1 for n in stage_sizes)):
    raise ValueError(
        f"stage_sizes must be a non-empty sequence of integers >= 1 (e.g. {RESNET18} "
        f"for ResNet-18, {RESNET34} for ResNet-34), got {stage_sizes!r}")


def num_layers(stage_sizes: Sequence[int]) -> int:
  """Weight layers counted the usual way: stem + 2 per block + head (18 for ResNet-18)."""
  return 2 + 2 * sum(stage_sizes)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with (optional) BatchNorm and an (optional) shortcut.

  Attributes:
    features: output channels.
    strides: stride of the first convolution (2 halves the resolution).
    residual: add the shortcut ``S(x)`` (``False``: the plain block).
    norm: use BatchNorm; without it the convolutions get biases.
    kernel_init: conv initializer (default He normal, Var = 2 / fan_in).
    param_dtype: dtype of the parameters.
  """

  features: int
  strides: int = 1
  residual: bool = True
  norm: bool = True
  kernel_init: InitializerLike = "he_normal"
  param_dtype: Any = jnp.float32

  def _norm(self, x: jax.Array, train: bool, name: str) -> jax.Array:
    if not self.norm:
      return x
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        param_dtype=self.param_dtype, name=name)(x)

  def _conv(self, features: int, size: int, strides: int, name: str) -> nn.Conv:
    return nn.Conv(features, (size, size), strides=strides, padding="SAME",
                   use_bias=not self.norm, kernel_init=initializers.resolve(self.kernel_init),
                   param_dtype=self.param_dtype, name=name)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = self._conv(self.features, 3, self.strides, "conv1")(x)
    h = nn.relu(self._norm(h, train, "bn1"))
    z = self._norm(self._conv(self.features, 3, 1, "conv2")(h), train, "bn2")
    if self.residual:
      shortcut = x
      if self.strides != 1 or x.shape[-1] != self.features:
        shortcut = self._conv(self.features, 1, self.strides, "shortcut_conv")(x)
        shortcut = self._norm(shortcut, train, "shortcut_bn")
      z = z + shortcut
    z = self.perturb("preact", z)
    return nn.relu(z)


class ResNetStage(nn.Module):
  """``num_blocks`` blocks: ``block0`` (stride ``strides``), then ``num_blocks - 1`` scanned.

  Attributes:
    features, residual, norm, kernel_init, param_dtype: as in :class:`BasicBlock`.
    num_blocks: blocks in the stage, >= 1.
    strides: stride of the first block.
  """

  features: int
  num_blocks: int
  strides: int = 1
  residual: bool = True
  norm: bool = True
  kernel_init: InitializerLike = "he_normal"
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    block = dict(features=self.features, residual=self.residual, norm=self.norm,
                 kernel_init=self.kernel_init, param_dtype=self.param_dtype)
    x = BasicBlock(strides=self.strides, **block, name="block0")(x, train)
    if self.num_blocks > 1:
      x, _ = scan_layers(functools.partial(BasicBlock, **block), self.num_blocks - 1, x, train)
    return x


class ResNet(nn.Module):
  """CIFAR-style ResNet; ``stage_sizes=(2, 2, 2, 2)`` is ResNet-18, ``(3, 4, 6, 3)`` ResNet-34.

  Stage ``i`` (from 1) has ``width * 2**(i-1)`` channels and halves the
  resolution for ``i > 1``. Input ``(batch, H, W, C)``, output logits
  ``(batch, num_classes)``.

  Attributes:
    stage_sizes: blocks per stage.
    width: channels of the stem and the first stage (64 in the seed).
    num_classes: output width.
    residual: shortcuts on (``ResNet``) or off (:class:`PlainNet`).
    norm: BatchNorm on or off.
    kernel_init: conv initializer; the head is Dense with Flax's default init.
    param_dtype: dtype of the parameters.

  >>> import jax, jax.numpy as jnp
  >>> model = ResNet(width=4)
  >>> x = jnp.ones((2, 8, 8, 3))
  >>> variables = model.init(jax.random.key(0), x)
  >>> logits, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
  >>> logits.shape
  (2, 10)
  """

  stage_sizes: Sequence[int] = RESNET18
  width: int = 64
  num_classes: int = 10
  residual: bool = True
  norm: bool = True
  kernel_init: InitializerLike = "he_normal"
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_stage_sizes(self.stage_sizes)
    _checks.require_int("width", self.width, 1)
    if x.ndim != 4:
      raise ValueError(f"ResNet expects (batch, H, W, C) inputs, got shape {x.shape}")
    h = nn.Conv(self.width, (3, 3), padding="SAME", use_bias=not self.norm,
                kernel_init=initializers.resolve(self.kernel_init),
                param_dtype=self.param_dtype, name="stage0_stem")(x)
    if self.norm:
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       param_dtype=self.param_dtype, name="stage0_stem_bn")(h)
    h = nn.relu(h)
    for i, blocks in enumerate(self.stage_sizes):
      h = ResNetStage(
          self.width * 2**i, blocks, strides=1 if i == 0 else 2, residual=self.residual,
          norm=self.norm, kernel_init=self.kernel_init, param_dtype=self.param_dtype,
          name=f"stage{i + 1}",
      )(h, train)
    h = jnp.mean(h, axis=(1, 2))
    return nn.Dense(self.num_classes, param_dtype=self.param_dtype,
                    name=f"stage{len(self.stage_sizes) + 1}_head")(h)


class PlainNet(ResNet):
  """:class:`ResNet` without shortcuts: same convolutions, same BatchNorms, no ``S(x)``."""

  residual: bool = False


__all__ = ["BasicBlock", "PlainNet", "RESNET18", "RESNET34", "ResNet", "ResNetStage",
           "num_layers"]
