r"""Residual MLP: blocks :math:`x + F(x)` stacked with ``nn.scan`` (seed 004's ``ResNetBlock``).

A block adds a two-layer branch to the residual stream:

.. math::

   F(x) = W_2\, \phi(\mathrm{norm}(W_1 x + b_1)) + b_2, \qquad
   x_{l+1} = x_l + F_l(x_l), \qquad
   \frac{\partial x_{l+1}}{\partial x_l} = I + \frac{\partial F_l}{\partial x_l}.

Seed 002's argument: :math:`\partial L/\partial x_l = \partial L/\partial x_L
\prod_k (I + \partial F_k/\partial x_k)` always contains the identity path, so
the signal cannot vanish. The same product is why it can *explode*: with
:math:`W_1, W_2 \sim \mathcal N(0, \sigma^2/N)` and no normalisation, the
squared backprop signal grows by

.. math::

   1 + \chi_F(q_l), \qquad \chi_F(q) = \sigma_1^2 \sigma_2^2\,
   \mathbb E[\phi'(\sqrt{\sigma_1^2 q}\, z)^2]

per block (the cross term has mean zero), i.e. by 3 per block for He-init
ReLU branches, while the stream's second moment
:math:`q_{l+1} = q_l + \sigma_2^2 \mathbb E[\phi(\sqrt{\sigma_1^2 q_l}\, z)^2]`
grows by the same factor. With LayerNorm inside ``F`` the branch output no
longer scales with :math:`q_l`, so :math:`q_l` grows linearly and
:math:`\chi_F \propto 1/q_l`: polynomial instead of exponential growth.
:func:`jaxgrad.theory.residual_signal` evaluates these recursions.

Unlike seed 004's block there is no activation after the addition (the
"pre-activation" ResNet of He et al. 2016b), so the identity path is exact.

Every block exposes its *input* (the residual stream :math:`x_l`) as
``Module.perturb('preact', x_l)``, so
:func:`jaxgrad.diagnostics.backprop_signal` gives one entry per block,
:math:`\|\partial L / \partial x_l\|`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgrad import _checks
from jaxgrad import activations
from jaxgrad import initializers
from jaxgrad.models.mlp import ActivationLike
from jaxgrad.models.mlp import DenseBlock
from jaxgrad.models.mlp import InitializerLike
from jaxgrad.models.norms import NormLike
from jaxgrad.models.norms import check_norm
from jaxgrad.models.norms import norm_layer
from jaxgrad.models.stack import Stack


class ResidualBranch(nn.Module):
  r"""The branch :math:`F(x) = W_2 \phi(\mathrm{norm}(W_1 x + b_1)) + b_2`, width preserved.

  Attributes:
    activation, kernel_init, bias_init, norm, param_dtype: as in
      :class:`jaxgrad.models.DenseBlock`; both Dense layers use ``kernel_init``.
  """

  activation: ActivationLike = "relu"
  kernel_init: InitializerLike = "he_normal"
  bias_init: InitializerLike = "zeros"
  norm: NormLike = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    dense = lambda name: nn.Dense(  # noqa: E731
        x.shape[-1], kernel_init=initializers.resolve(self.kernel_init),
        bias_init=initializers.resolve(self.bias_init), param_dtype=self.param_dtype,
        name=name)
    z = dense("dense1")(x)
    norm = norm_layer(self.norm, train=train, param_dtype=self.param_dtype)
    if norm is not None:
      z = norm(name="norm")(z)
    return dense("dense2")(activations.resolve(self.activation)(z))


class ResidualBlock(nn.Module):
  """``x -> x + F(x)``; the input ``x`` is exposed as ``perturb('preact', x)``.

  Attributes: those of :class:`ResidualBranch`, whose instance is the submodule
  ``branch``.
  """

  activation: ActivationLike = "relu"
  kernel_init: InitializerLike = "he_normal"
  bias_init: InitializerLike = "zeros"
  norm: NormLike = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = self.perturb("preact", x)
    branch = ResidualBranch(self.activation, self.kernel_init, self.bias_init, self.norm,
                            self.param_dtype, name="branch")
    return x + branch(x, train)


class ResidualMLP(nn.Module):
  r"""Input layer, ``num_blocks`` residual blocks, linear head.

  .. math::

     x_0 = \phi(\mathrm{norm}(W_0 x + b_0)), \quad
     x_{l+1} = x_l + F_l(x_l), \quad y = W_{\mathrm{out}} x_B + b_{\mathrm{out}}.

  It has ``2 * num_blocks + 2`` Dense layers, like
  ``DeepMLP(depth=2 * num_blocks + 2)``, its plain twin: the input layer
  (``first``) and the head (``last``) are :class:`jaxgrad.models.DenseBlock` s
  as in :class:`jaxgrad.models.DeepMLP`; the blocks form the scanned
  :class:`jaxgrad.models.Stack` ``hidden``, so the parameter tree and the compile
  time do not grow with depth.

  Attributes:
    num_blocks: number of residual blocks, >= 1.
    width: width of the residual stream, >= 1.
    out_features: output width, >= 1.
    activation, kernel_init, bias_init, norm, param_dtype: as in
      :class:`jaxgrad.models.DenseBlock` (the head has no activation, no norm).

  >>> import jax, jax.numpy as jnp
  >>> model = ResidualMLP(num_blocks=3, width=8, out_features=2)
  >>> variables = model.init(jax.random.key(0), jnp.ones((4, 5)))
  >>> model.apply(variables, jnp.ones((4, 5))).shape
  (4, 2)
  """

  num_blocks: int
  width: int
  out_features: int
  activation: ActivationLike = "relu"
  kernel_init: InitializerLike = "he_normal"
  bias_init: InitializerLike = "zeros"
  norm: NormLike = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _checks.require_int("num_blocks", self.num_blocks, 1)
    _checks.require_int("width", self.width, 1)
    _checks.require_int("out_features", self.out_features, 1)
    check_norm(self.norm)
    activations.resolve(self.activation)
    common = dict(kernel_init=self.kernel_init, bias_init=self.bias_init,
                  param_dtype=self.param_dtype)
    h = DenseBlock(self.width, activation=self.activation, norm=self.norm, **common,
                   name="first")(x, train)
    block = functools.partial(ResidualBlock, self.activation, norm=self.norm, **common)
    h, _ = Stack(block, self.num_blocks, name="hidden")(h, train)
    return DenseBlock(self.out_features, activation="linear", **common, name="last")(h)


__all__ = ["ResidualBlock", "ResidualBranch", "ResidualMLP"]
