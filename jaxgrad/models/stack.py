r"""One scanned stack of identical layers, shared by every deep model in :mod:`jaxgrad.models`.

``depth`` copies of a block :math:`f` with their own parameters :math:`\theta_l`,

.. math::

   h_{l+1} = f(h_l; \theta_l), \qquad l = 0, \dots, L - 1,

run as one ``nn.scan``: every variable of the block gets a leading layer axis
(``layers/dense/kernel`` has shape ``(L, ...)``), so the traced program, and
the compile time, do not grow with depth. Every collection is stacked
(``variable_axes={True: 0}``): parameters, ``batch_stats``, the
``'perturbations'`` that give the backprop signal :math:`\partial L/\partial h_l`,
and whatever a block sows (``'intermediates'``, a Transformer's ``'stream'``);
a collection left out of ``variable_axes`` would be dropped by Flax without a
word. Every PRNG stream is split per layer, so layers draw different weights.

Naming convention relied upon by :mod:`jaxgrad.diagnostics` and the
experiments: the scanned layers are the submodule :data:`STACK_NAME`
(``'layers'``) of the module that calls :func:`scan_layers`, and the block's
own submodules sit directly below it (``layers/dense``, not
``layers/<block>/dense``): Flax derives initial parameters from these paths.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import _checks

STACK_NAME = "layers"

ModuleDef = Callable[..., nn.Module]


class _Layer(nn.Module):
  """One scan step ``(h, runs) -> (h', h')``, ``h' = block()(h, *args[, runs=runs])`` in this module's scope."""

  block: ModuleDef
  args: tuple[Any, ...] = ()

  def setup(self) -> None:
    self.layer = self.block()
    nn.share_scope(self, self.layer)  # the block's variables sit at this (scanned) module's path

  def __call__(self, h: jax.Array, runs: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    h = self.layer(h, *self.args) if runs is None else self.layer(h, *self.args, runs=runs)
    return h, h


def scan_layers(block: ModuleDef, depth: int, h: jax.Array, *args: Any, remat: bool = False,
                active: int | jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  r"""Applies ``depth`` scanned copies of ``block``: :math:`h_L = f_{L-1} \circ \dots \circ f_0(h)`.

  Call it inside a compact method: the layers become that module's submodule
  :data:`STACK_NAME`.

  Args:
    block: a constructor of one layer (a Module class or a
      ``functools.partial`` of one, as Flax's examples pass ``norm: ModuleDef``),
      called with no arguments; its instance maps ``h`` to an array of the
      same shape and dtype.
    depth: number of layers :math:`L`, >= 1.
    h: the input :math:`h_0`.
    *args: passed to every layer after ``h`` (e.g. ``train``); not scanned.
    remat: rematerialise each layer in the backward pass (``nn.remat``):
      reverse-mode memory holds one :math:`h_l` per layer instead of every
      intermediate of every layer, for one more forward pass; same gradients.
    active: ``None``, every layer runs; or how many of the ``depth`` layers
      run, :math:`A \le L`, possibly a traced integer: layer :math:`l` is then
      called with the keyword ``runs`` :math:`= (l < A)`, a traced boolean
      (its slice of a scanned input), and must be the identity where it is
      false (:class:`jaxgrad.models.DenseBlock` is, and draws no parameters
      there). One compiled program then holds the stacks of every depth up
      to ``depth``: under ``jax.lax.map`` or ``vmap`` over :math:`A`, a depth
      sweep is one program.

  Returns:
    ``(h_L, hs)``: the last layer's output and every layer's output stacked,
    ``hs.shape == (depth, *h.shape)`` (unused ``hs`` costs nothing under
    ``jit``: dead-code elimination).

  Raises:
    ValueError: if ``depth`` is not an integer >= 1, or ``active`` a concrete
      integer outside ``[0, depth]``.
  """
  _checks.require_int("depth", depth, 1)
  if isinstance(active, (int, np.integer)) and not 0 <= active <= depth:
    raise ValueError(f"active must be in [0, depth={depth}], got {active!r}")
  scan = nn.scan(nn.remat(_Layer) if remat else _Layer, variable_axes={True: 0},
                 split_rngs={True: True}, length=depth)
  runs = None if active is None else jnp.arange(depth) < active
  return scan(block, args, name=STACK_NAME)(h, runs)


class Stack(nn.Module):
  """``depth`` scanned copies of ``block`` (see :func:`scan_layers`), as a module.

  Its variables sit under ``<this module>/layers``, e.g. ``hidden/layers`` in
  :class:`jaxgrad.models.ResidualMLP`. Called as ``stack(h, *args)``, it returns
  ``(h_L, hs)``.

  Attributes:
    block: constructor of one layer, e.g. ``functools.partial(ResidualBlock, norm="layer")``.
    depth: number of layers, >= 1.
    remat: rematerialise each layer in the backward pass.
    active: how many layers run (possibly traced), ``None`` for all; see
      :func:`scan_layers`.

  >>> import functools, jax, jax.numpy as jnp
  >>> from jaxgrad.models import DenseBlock
  >>> stack = Stack(functools.partial(DenseBlock, 4, activation="tanh"), depth=3)
  >>> variables = stack.init(jax.random.key(0), jnp.ones((2, 4)))
  >>> variables["params"]["layers"]["dense"]["kernel"].shape
  (3, 4, 4)
  >>> h, hs = stack.apply(variables, jnp.ones((2, 4)))
  >>> hs.shape
  (3, 2, 4)
  """

  block: ModuleDef
  depth: int
  remat: bool = False
  active: int | jax.Array | None = None

  @nn.compact
  def __call__(self, h: jax.Array, *args: Any) -> tuple[jax.Array, jax.Array]:
    return scan_layers(self.block, self.depth, h, *args, remat=self.remat, active=self.active)


__all__ = ["ModuleDef", "STACK_NAME", "Stack", "scan_layers"]
