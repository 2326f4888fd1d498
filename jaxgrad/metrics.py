r"""What a training step measures, inside jit: gradient and update norms, update ratios.

The global norm of the raw gradient :math:`\|g\|_2` and every layer's
:math:`\|\partial L/\partial W_l\|_F` (:func:`grad_norms`, measured before
the Optax chain sees the gradient, so before any clipping), the norm of the
update the chain made :math:`\|\Delta\theta\|_2` (:func:`global_norm`), and
the update-to-weight ratios :math:`\|\Delta W_l\|_F / \|W_l\|_F`
(:func:`update_ratios`; about :math:`10^{-3}` is the classic healthy value,
:math:`\ll 10^{-3}`: the layer barely learns, seed 000 §3.1). Every function is
pure; :func:`recorder` bundles them (with dead and saturated units,
:mod:`jaxgrad.diagnostics.units`) into :func:`jaxgrad.training.train`'s
``record`` hook, and :class:`jaxgrad.logs.Monitor` into a hand-written loop.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgrad.diagnostics import layer_grad_norms
from jaxgrad.diagnostics.units import relative_derivative, unit_fractions
from jaxgrad.probe import SATURATION_THRESHOLD, Trace

def _at_least_float32(tree: Any) -> Any:
  """``tree`` in at least float32 (a float16 gradient's norm overflows at 256^2 entries of 1)."""
  dtype = jnp.result_type(jnp.float32, *[jnp.result_type(a) for a in jax.tree.leaves(tree)])
  return optax.tree.cast(tree, dtype)


def _layer_norms(tree: Any, weight_names: str | tuple[str, ...], layout: Trace | None
                 ) -> Mapping[str, jax.Array]:
  """:func:`jaxgrad.diagnostics.layer_grad_norms` of ``tree``; ``{}`` where it has no layers."""
  if not isinstance(tree, Mapping):
    return {}
  if layout is not None:
    return layer_grad_norms(tree, weight_names=weight_names, layout=layout)
  try:
    return layer_grad_norms(tree, weight_names=weight_names)
  except ValueError:  # no leaf called weight_names (or one that is not an array)
    return {}


def global_norm(tree: Any) -> jax.Array:
  r""":math:`\|t\|_2` over every leaf of ``tree`` (``optax.tree.norm``), in at least float32."""
  return optax.tree.norm(_at_least_float32(tree))


def grad_norms(grads: Any, *, weight_names: str | tuple[str, ...] = "kernel",
               layout: Trace | None = None) -> tuple[jax.Array, Mapping[str, jax.Array]]:
  r"""The global norm :math:`\|g\|_2` and every layer's :math:`\|\partial L/\partial W_l\|_F`.

  Measure the raw gradient, before the Optax chain sees it: then the norms are
  the pre-clip norms by construction, whatever the chain clips or rescales.
  Computed in at least float32. Per-layer norms come from
  :func:`jaxgrad.diagnostics.layer_grad_norms`: a scanned stack's norms stay
  one ``(L,)`` array (one vmapped reduction), so a step that records them
  compiles in the same time at any depth.

  Args:
    grads: the gradient pytree (Flax ``params``-shaped for per-layer norms).
    weight_names: the leaf name(s) that hold a layer's weight.
    layout: the model's probed structure (:func:`jaxgrad.probe.layout`), passed
      on to ``layer_grad_norms``: execution order, scanned stacks one entry per
      layer; ``None``: the tree's order.

  Returns:
    ``(global norm, {layer path: norm})``; the mapping is empty for a gradient
    that is not a nested dict.

  >>> import jax.numpy as jnp
  >>> g = {"dense": {"kernel": jnp.full((2, 2), 3.0), "bias": jnp.zeros(2)}}
  >>> norm, layers = grad_norms(g)
  >>> float(norm), float(layers["dense"])
  (6.0, 6.0)
  """
  grads = _at_least_float32(grads)
  return optax.tree.norm(grads), _layer_norms(grads, weight_names, layout)


def update_ratios(updates: Any, params: Any, weight_names: str | tuple[str, ...] = "kernel",
                  layout: Trace | None = None) -> Mapping[str, jax.Array]:
  r"""Per layer :math:`\|\Delta W_l\|_F / \|W_l\|_F` (``params``: before the update).

  A zero weight gives ``inf`` (or ``nan`` with a zero update). Norms in at
  least float32, with the same per-layer names and order as :func:`grad_norms`.
  """
  du = _layer_norms(_at_least_float32(updates), weight_names, layout)
  w = _layer_norms(_at_least_float32(params), weight_names, layout)
  return optax.tree.div(du, w)  # a LayerValues: one op per stack, any depth


def recorder(*, accuracy_fn: Callable[[Any, Any, Any], jax.Array] | None = None,
             outputs_fn: Callable[[Any, Any, Any], Mapping[str, jax.Array]] | None = None,
             activation: str | None = None,
             threshold: float = SATURATION_THRESHOLD,
             weight_names: str | tuple[str, ...] = "kernel",
             layout: Trace | None = None) -> Callable[[Any], dict[str, Any]]:
  """The ``record`` hook for :func:`jaxgrad.training.train`.

  ``train`` itself records the loss, :func:`grad_norms` and the update norm;
  this adds what :meth:`jaxgrad.logs.Monitor.measure` adds in a hand-written loop.

  Args:
    accuracy_fn: ``(params, model_state, batch) -> accuracy`` on the step's batch.
    outputs_fn: ``(params, model_state, batch) -> {layer: activations}`` (e.g.
      the model's ``sow``-n intermediates, or the probe's), measured before the
      step's update.
    activation: the name of the activation (needed with ``outputs_fn``).
    threshold: see :func:`jaxgrad.diagnostics.units.unit_fractions`.
    weight_names: the leaf name(s) that hold a layer's weight.
    layout: execution order of the layers (see :func:`grad_norms`).

  Returns:
    ``StepInfo -> {"update_ratio": {...}, ["accuracy"], ["dead": {...}, "saturated": {...}]}``.
  """
  if outputs_fn is not None:
    relative_derivative(activation, jnp.zeros(()))  # validates the name now

  def record(info) -> dict[str, Any]:
    out: dict[str, Any] = {"update_ratio": update_ratios(info.updates, info.params,
                                                         weight_names, layout)}
    if accuracy_fn is not None:
      out["accuracy"] = accuracy_fn(info.params, info.model_state, info.batch)
    if outputs_fn is not None:
      out.update(unit_fractions(outputs_fn(info.params, info.model_state, info.batch),
                                activation, threshold))
    return out

  return record
