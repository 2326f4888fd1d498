r"""Mixed precision: half-precision compute and dynamic loss scaling, in pure JAX.

float16 has 5 exponent bits: its smallest subnormal is :math:`2^{-24} \approx
6\times10^{-8}`, so backpropagated signals below that round to exactly 0
(gradient *underflow*); bfloat16 keeps float32's 8 exponent bits and does not
underflow there, at the price of 8 mantissa bits. PyTorch's ``GradScaler``
(seed 000 §4.2) cures float16 underflow by differentiating :math:`s\,L`
instead of :math:`L`, so every backpropagated signal is :math:`s` times larger,
and dividing the gradient by :math:`s` in float32 before the update. The scale
is *dynamic*: a step whose scaled gradient overflows (NaN/Inf) is skipped and
:math:`s \leftarrow s \cdot \text{backoff}`; after ``growth_interval`` finite
steps in a row, :math:`s \leftarrow s \cdot \text{growth}`.

:func:`dynamic_loss_scaling` is that scaler as an Optax transformation wrapping
the optimizer (NamedTuple state, init/update pair), so it composes with
:func:`jaxgrad.optimizers.make_optimizer`; :func:`jaxgrad.training.train` finds
it in the optimizer state and differentiates the scaled loss.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgrad.diagnostics import per_layer
from jaxgrad.probe import Trace

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class LossScaleState(NamedTuple):
  """State of :func:`dynamic_loss_scaling`."""

  scale: jax.Array  # () float32, the current loss scale s
  good_steps: jax.Array  # () int32, finite steps since the last change of s
  skipped: jax.Array  # () int32, total steps skipped for a non-finite gradient
  inner_state: Any


def dynamic_loss_scaling(
    inner: optax.GradientTransformation,
    *,
    init_scale: float = 2.0**15,
    growth_interval: int = 2000,
    growth_factor: float = 2.0,
    backoff_factor: float = 0.5,
    min_scale: float = 1.0,
) -> optax.GradientTransformation:
  r"""Wraps ``inner`` so that it sees :math:`g / s` and skips non-finite steps.

  The gradient handed to ``update`` must be that of :math:`s L` with the
  current :math:`s` (:func:`loss_scale`); :func:`jaxgrad.training.train` does
  this. PyTorch's ``GradScaler`` defaults: :math:`s_0 = 2^{16}`, growth 2,
  backoff 0.5, interval 2000; we start at :math:`2^{15}` so that
  :math:`s \cdot 2` stays below float16's maximum 65504.

  Args:
    inner: the optimizer chain (e.g. :func:`jaxgrad.optimizers.make_optimizer`).
    init_scale: :math:`s_0 > 0`.
    growth_interval: finite steps in a row before :math:`s` grows.
    growth_factor: :math:`> 1`.
    backoff_factor: in :math:`(0, 1)`.
    min_scale: :math:`s` never falls below this.

  >>> import jax.numpy as jnp, optax
  >>> tx = dynamic_loss_scaling(optax.sgd(1.0), init_scale=4.0)
  >>> p = jnp.ones(2)
  >>> u, state = tx.update(4.0 * jnp.ones(2), tx.init(p), p)   # gradient of 4 L
  >>> u.tolist(), float(state.scale)
  ([-1.0, -1.0], 4.0)
  >>> u, state = tx.update(jnp.array([jnp.inf, 1.0]), state, p)
  >>> u.tolist(), float(state.scale), int(state.skipped)
  ([0.0, 0.0], 2.0, 1)
  """
  if not init_scale > 0 or not growth_factor > 1 or not 0 < backoff_factor < 1:
    raise ValueError("need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1; got "
                     f"{init_scale!r}, {growth_factor!r}, {backoff_factor!r}")
  if not isinstance(growth_interval, int) or growth_interval < 1:
    raise ValueError(f"growth_interval must be an integer >= 1, got {growth_interval!r}")

  def init_fn(params):
    return LossScaleState(jnp.asarray(init_scale, jnp.float32), jnp.zeros((), jnp.int32),
                          jnp.zeros((), jnp.int32), inner.init(params))

  def update_fn(updates, state, params=None):
    grads = jax.tree.map(lambda g: (g.astype(jnp.float32) / state.scale).astype(g.dtype), updates)
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    new_updates, new_inner = inner.update(grads, state.inner_state, params)
    # A skipped step: zero update, inner state unchanged.
    new_updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), new_updates)
    new_inner = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_inner, state.inner_state)
    grow = finite & (state.good_steps + 1 >= growth_interval)
    scale = jnp.where(finite, jnp.where(grow, state.scale * growth_factor, state.scale),
                      jnp.maximum(state.scale * backoff_factor, min_scale))
    good = jnp.where(finite & ~grow, state.good_steps + 1, 0)
    skipped = state.skipped + (~finite).astype(jnp.int32)
    return new_updates, LossScaleState(scale.astype(jnp.float32), good.astype(jnp.int32),
                                       skipped, new_inner)

  return optax.GradientTransformation(init_fn, update_fn)


def _scale_state(opt_state: Any) -> LossScaleState | None:
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, LossScaleState))
           if isinstance(s, LossScaleState)]
  return found[0] if found else None


def has_loss_scale(opt_state: Any) -> bool:
  """Whether the optimizer state holds a :func:`dynamic_loss_scaling` state."""
  return _scale_state(opt_state) is not None


def loss_scale(opt_state: Any) -> jax.Array:
  """The current loss scale :math:`s` (1.0 without a scaler)."""
  state = _scale_state(opt_state)
  return jnp.ones((), jnp.float32) if state is None else state.scale


def cast(tree: Any, dtype: Any) -> Any:
  """Every floating-point leaf of ``tree`` cast to ``dtype`` (the compute copy)."""
  return jax.tree.map(
      lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree)


def zero_fraction(grads: Any, weight_names: str | tuple[str, ...] = "kernel", *,
                  layout: Trace | None = None) -> dict[str, jax.Array]:
  """Per layer, the fraction of weight-gradient entries that are exactly 0 (underflow).

  ``layout`` (:func:`jaxgrad.probe.layout`) orders the layers by execution and
  expands scanned stacks; without it the tree's order is kept.
  """
  return per_layer(grads, weight_names, lambda g: jnp.mean((g == 0).astype(jnp.float32)),
                   layout=layout)
