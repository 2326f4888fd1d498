r"""Per-layer gradient measurements: weight-gradient norms and backprop signal.

Both return :class:`LayerValues`, one entry per layer: with a ``layout`` from
:func:`jaxgrad.probe.layout`, in execution order with every scanned stack
expanded into its layers; without one, in the tree's order, unexpanded (see
:func:`jaxgrad.diagnostics.per_layer`).
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxgrad.diagnostics._tree import LayerValues, per_layer
from jaxgrad.probe import Trace

Variables = Mapping[str, Any]
PERTURBATIONS = "perturbations"


def safe_norm(g: jax.Array, dtype: Any = None) -> jax.Array:
  r"""Euclidean norm that does not underflow: :math:`s \|g / s\|_2`, :math:`s = \max_i |g_i|`.

  Squaring entries below ~1e-19 underflows float32 (and XLA on CPU flushes the
  subnormals to zero), so ``jnp.linalg.norm`` returns exactly 0 for gradients
  that are tiny but not zero (e.g. a depth-20 tanh net under N(0, 0.01^2)
  weights); scaling by the largest entry first keeps them. Inf stays inf.

  Args:
    g: the array.
    dtype: reduce in this dtype (e.g. float64 for a float32 ``g``, under
      ``jax.enable_x64``); default ``g``'s. :math:`s` is taken in ``g``'s own
      dtype (exact), and ``g`` is converted inside the one reduction that
      reads it: converting it first, for both the max and the sum, made XLA
      hold a converted copy of it.
  """
  s = jnp.max(jnp.abs(g))
  if dtype is not None:
    g, s = g.astype(dtype), s.astype(dtype)
  scaled = s * jnp.linalg.norm(g / jnp.where(s > 0, s, 1))
  return jnp.where(jnp.isinf(s), s, scaled)


def layer_grad_norms(
    grads: Mapping[str, Any], *, weight_names: str | tuple[str, ...] = "kernel",
    layout: Trace | None = None,
) -> LayerValues:
  r"""L2 (Frobenius) norm :math:`\|\partial L / \partial W_l\|_F` of each layer's weight gradient.

  Args:
    grads: gradient pytree shaped like Flax ``params``.
    weight_names: the leaf name(s) that hold a layer's weight (biases and
      normalisation scales are not weights, as in the seeds'
      ``layer.weight.grad.norm()``).
    layout: the model's probed structure (:func:`jaxgrad.probe.layout`):
      execution order and scanned stacks expanded; else the tree's order.

  Returns:
    Ordered ``{layer path: norm}``.
  """
  return per_layer(grads, weight_names, safe_norm, layout=layout)


def perturbation_grads(
    loss_fn: Callable[[Variables], jax.Array], variables: Variables
) -> Any:
  r"""dL/dh for every intermediate ``h`` marked with ``Module.perturb``.

  Args:
    loss_fn: maps a Flax variables dict to a scalar loss; it must pass the
      ``'perturbations'`` collection on to ``apply``.
    variables: holds ``'perturbations'``, made by ``init`` on a batch of the
      same shape as the one ``loss_fn`` uses.

  Returns:
    A pytree shaped like ``variables['perturbations']``.
  """
  if PERTURBATIONS not in variables:
    raise ValueError(
        "variables has no 'perturbations' collection; got "
        f"{sorted(variables)}. Initialise the model with a batch of the shape "
        "used by loss_fn (Module.perturb creates it at init)."
    )
  rest = {k: v for k, v in variables.items() if k != PERTURBATIONS}
  return jax.grad(lambda p: loss_fn({**rest, PERTURBATIONS: p}))(
      variables[PERTURBATIONS]
  )


def example_norm(g: Any, batch: int | None = None) -> jax.Array:
  r""":math:`\mathbb{E}_b \|g[b]\|_2` over the leading batch axis (underflow-safe, :func:`safe_norm`).

  Args:
    g: an array or a pytree of arrays (then one example's norm spans every
      leaf); computed in at least float32.
    batch: the batch size; a leaf whose leading axis is not ``batch`` makes the
      whole :math:`\|g\|_2` the answer (an output without a batch axis).
  """
  leaves = jax.tree.leaves(g)
  batch = leaves[0].shape[0] if batch is None else batch
  dtype = jnp.result_type(jnp.float32, *leaves)
  if all(a.ndim >= 1 and a.shape[0] == batch for a in leaves):
    flat = jnp.concatenate([a.reshape(batch, -1).astype(dtype) for a in leaves], axis=1)
    return jnp.mean(jax.vmap(safe_norm)(flat))
  return safe_norm(jnp.concatenate([jnp.ravel(a).astype(dtype) for a in leaves]))


def backprop_signal(
    loss_fn: Callable[[Variables], jax.Array], variables: Variables, *, name: str = "preact",
    layout: Trace | None = None,
) -> LayerValues:
  r"""Backprop signal of each layer: :math:`\mathbb{E}_b \|\partial L / \partial h_l[b]\|_2`.

  ``h_l`` are the intermediates marked with ``Module.perturb(name, ...)`` (for
  jaxgrad's MLPs, ``'preact'``, every layer's pre-activation; the Transformer
  perturbs its ``'residual'`` stream); the norm is taken per example and
  averaged over the batch. ``layout`` as in :func:`layer_grad_norms`. For a
  model that does not call ``perturb``, :func:`jaxgrad.diagnose` measures the
  signal at every module's output without an edit.

  >>> import jax, jax.numpy as jnp
  >>> from jaxgrad import probe
  >>> from jaxgrad.models import DeepMLP
  >>> model = DeepMLP(depth=4, width=8, out_features=1)
  >>> x = jnp.ones((3, 5))
  >>> variables = model.init(jax.random.key(0), x)
  >>> loss = lambda v: jnp.mean(model.apply(v, x) ** 2)
  >>> list(backprop_signal(loss, variables, layout=probe.layout(model, x)))
  ['first', 'hidden/layers_000', 'hidden/layers_001', 'last']
  """
  return signal_norms(perturbation_grads(loss_fn, variables), name=name, layout=layout)


def signal_norms(perturbation_grads: Any, *, name: str = "preact",
                 layout: Trace | None = None) -> LayerValues:
  r""":math:`\mathbb{E}_b \|g_l[b]\|_2` per layer, for gradients already taken w.r.t. ``'perturbations'``.

  The reduction of :func:`backprop_signal`, for callers that differentiate
  once with respect to ``params`` and ``perturbations`` together (one
  backward pass gives the weight gradients and the backprop signal).

  Args:
    perturbation_grads: shaped like ``variables['perturbations']``.
    name: the perturbation name, as in :func:`backprop_signal`.
    layout: as in :func:`layer_grad_norms`.
  """
  return per_layer(perturbation_grads, name, example_norm, layout=layout)
