r"""Deep fully connected networks, hidden layers stacked with ``nn.scan``.

A layer is :class:`DenseBlock`:

.. math::

   z = W h + b, \qquad y = \phi(\mathrm{norm}(z)), \qquad
   h' = y \;\text{or}\; h' = h + y \;(\text{residual}).

The pre-activation ``z`` of every layer is exposed through
``Module.perturb('preact', z)``, so ``jax.grad`` with respect to the
``'perturbations'`` collection gives the backprop signal dL/dz of each layer
(see :func:`jaxgrad.diagnostics.backprop_signal`).

The hidden layers are one :func:`jaxgrad.models.stack.scan_layers` stack: a
submodule named ``layers`` whose variables carry a leading layer axis;
diagnostics expand it into one entry per layer.
"""

from collections.abc import Callable
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import _checks
from jaxgrad import activations
from jaxgrad import initializers
from jaxgrad.models.norms import NormLike
from jaxgrad.models.norms import check_norm
from jaxgrad.models.norms import norm_layer
from jaxgrad.models.stack import scan_layers

ActivationLike = str | Callable[[jax.Array], jax.Array]
InitializerLike = str | Callable[..., jax.Array] | tuple[str, dict[str, Any]]


class DenseBlock(nn.Module):
  """One layer: ``h -> phi(norm(W h + b))``, plus ``h`` if ``residual``.

  Attributes:
    features: output width.
    activation: name in :mod:`jaxgrad.activations` or a callable.
    kernel_init: name, ``(name, kwargs)`` or Flax initializer for ``W``.
    bias_init: the same for ``b``.
    norm: ``None``, ``"batch"`` (BatchNorm over the batch axis), ``"layer"``, or a
      module constructor (see :mod:`jaxgrad.models.norms`); the submodule ``norm``.
    residual: add the identity shortcut ``h + y`` (needs ``h.shape[-1] == features``).
    param_dtype: dtype of the parameters (``jnp.float64`` for float64 analyses).
  """

  features: int
  activation: ActivationLike = "relu"
  kernel_init: InitializerLike = "he_normal"
  bias_init: InitializerLike = "zeros"
  norm: NormLike = None
  residual: bool = False
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h: jax.Array, train: bool = False,
               runs: jax.Array | None = None) -> jax.Array:
    """The layer's output; with ``runs`` given (a boolean, possibly traced), ``h`` where it is false.

    A layer that does not run draws no parameters: its kernel and bias
    initializers run under ``jax.lax.cond`` and give zeros instead
    (:func:`jaxgrad.models.stack.scan_layers` passes ``runs`` to mask layers).
    """
    if self.residual and h.shape[-1] != self.features:
      raise ValueError(f"residual=True adds the input to the output, so the input width "
                       f"{h.shape[-1]} must equal features={self.features}")
    kernel_init = initializers.resolve(self.kernel_init)
    bias_init = initializers.resolve(self.bias_init)
    if runs is not None:
      kernel_init, bias_init = _drawn_if(runs, kernel_init), _drawn_if(runs, bias_init)
    z = nn.Dense(
        self.features,
        kernel_init=kernel_init,
        bias_init=bias_init,
        param_dtype=self.param_dtype,
        name="dense",
    )(h)
    z = self.perturb("preact", z)
    norm = norm_layer(self.norm, train=train, param_dtype=self.param_dtype)
    if norm is not None:
      z = norm(name="norm")(z)
    y = activations.resolve(self.activation)(z)
    y = h + y if self.residual else y
    return y if runs is None else jnp.where(runs, y, h)


def _drawn_if(runs: jax.Array, init: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
  """``init`` where ``runs``, zeros (nothing drawn) where not: a ``jax.lax.cond``, not a select."""
  def drawn(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.lax.cond(runs, lambda k: init(k, shape, dtype), lambda k: jnp.zeros(shape, dtype),
                        key)

  return drawn


class DenseStack(nn.Module):
  """``depth`` identical :class:`DenseBlock` layers of width ``features``, scanned.

  One :func:`jaxgrad.models.stack.scan_layers` stack: parameters carry a
  leading layer axis (``layers/dense/kernel`` has shape
  ``(depth, features, features)``), so the traced program, and the compile
  time, do not grow with depth. With ``remat=True`` each layer is
  rematerialised (``nn.remat``) in the backward pass: reverse-mode memory
  holds one activation per layer instead of every intermediate of every layer.

  With ``active`` (an integer, possibly traced) only the first ``active``
  layers run; the others are the identity, their parameters zero and never
  drawn (see :func:`jaxgrad.models.stack.scan_layers`).

  Returns:
    ``(h, hs)``: the last layer's output and every layer's output stacked on a
    leading axis, ``hs.shape == (depth, *h.shape)``. Unused ``hs`` costs
    nothing under ``jit`` (dead-code elimination).
  """

  depth: int
  features: int
  activation: ActivationLike = "relu"
  kernel_init: InitializerLike = "he_normal"
  bias_init: InitializerLike = "zeros"
  norm: NormLike = None
  residual: bool = False
  param_dtype: Any = jnp.float32
  remat: bool = False
  active: int | jax.Array | None = None

  @nn.compact
  def __call__(self, h: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    _checks.require_int("features", self.features, 1)
    check_norm(self.norm)
    activations.resolve(self.activation)
    if h.shape[-1] != self.features:
      raise ValueError(f"each layer maps width features={self.features} to itself, so the "
                       f"input width {h.shape[-1]} must equal it (put a Dense before the stack)")
    block = functools.partial(
        DenseBlock, self.features, activation=self.activation, kernel_init=self.kernel_init,
        bias_init=self.bias_init, norm=self.norm, residual=self.residual,
        param_dtype=self.param_dtype)
    return scan_layers(block, self.depth, h, train, remat=self.remat, active=self.active)


class DeepMLP(nn.Module):
  r"""The seeds' ``DeepNet``: ``depth`` Dense layers, input and output included.

  .. math::

     h_1 = \phi(\mathrm{norm}(W_1 x + b_1)),\quad
     h_{l} = [h_{l-1} +]\, \phi(\mathrm{norm}(W_l h_{l-1} + b_l)),\ l = 2..L-1,\quad
     y = W_L h_{L-1} + b_L.

  The ``depth - 2`` hidden layers form one :class:`DenseStack` (``nn.scan``);
  residual shortcuts, when asked for, are on those hidden layers. Submodules
  are named ``first``, ``hidden`` and ``last``, which sort input to output.

  Attributes:
    depth: number of Dense layers, >= 2.
    width: hidden width, >= 1.
    out_features: output width, >= 1.
    activation, kernel_init, bias_init, norm, residual, param_dtype: as in
      :class:`DenseBlock`; the output layer has no activation and no norm.
    remat: rematerialise the hidden layers in the backward pass (see
      :class:`DenseStack`): memory for very deep nets.
    active_depth: ``None``, or the depth :math:`D \le` ``depth`` that runs,
      possibly a traced integer (>= 2): the network is then
      ``DeepMLP(depth=D)``, the same draws from the same key and the same
      function, its hidden layers past :math:`D - 2` the identity with zero
      parameters that are never drawn. Networks of several depths then share
      one compiled program (``jax.lax.map`` over :math:`D`), at the cost of
      the padded layers' matmuls.

  >>> import jax, jax.numpy as jnp
  >>> model = DeepMLP(depth=20, width=100, out_features=1, activation="tanh")
  >>> variables = model.init(jax.random.key(0), jnp.ones((32, 10)))
  >>> model.apply(variables, jnp.ones((32, 10))).shape
  (32, 1)
  """

  depth: int
  width: int
  out_features: int
  activation: ActivationLike = "relu"
  kernel_init: InitializerLike = "he_normal"
  bias_init: InitializerLike = "zeros"
  norm: NormLike = None
  residual: bool = False
  param_dtype: Any = jnp.float32
  remat: bool = False
  active_depth: int | jax.Array | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _checks.require_int("depth", self.depth, 2)
    if (isinstance(self.active_depth, (int, np.integer))
        and not 2 <= self.active_depth <= self.depth):
      raise ValueError(f"active_depth must be in [2, depth={self.depth}], "
                       f"got {self.active_depth!r}")
    _checks.require_int("width", self.width, 1)
    _checks.require_int("out_features", self.out_features, 1)
    check_norm(self.norm)
    block = dict(
        activation=self.activation,
        kernel_init=self.kernel_init,
        bias_init=self.bias_init,
        norm=self.norm,
        param_dtype=self.param_dtype,
    )
    h = DenseBlock(self.width, **block, name="first")(x, train)
    if self.depth > 2:
      h, _ = DenseStack(
          self.depth - 2, self.width, residual=self.residual, remat=self.remat,
          active=None if self.active_depth is None else self.active_depth - 2, **block,
          name="hidden",
      )(h, train)
    return DenseBlock(
        self.out_features,
        activation="linear",
        kernel_init=self.kernel_init,
        bias_init=self.bias_init,
        param_dtype=self.param_dtype,
        name="last",
    )(h)


__all__ = ["DeepMLP", "DenseBlock", "DenseStack"]
