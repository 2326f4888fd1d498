r"""Optax chains from a config, and whole training runs as one ``lax.scan``.

One factory, :func:`make_optimizer`, builds every chain::

    record_grad_norms -> [apply_if_finite(] [clip] -> [clip_by_global_norm] -> optimizer [)]

:func:`record_grad_norms` is an Optax transformation of ours (init/update pair,
NamedTuple state) that leaves the gradient unchanged and keeps, in the
optimizer state, its global norm :math:`\|g\|_2` and every layer's weight
gradient norm :math:`\|\partial L/\partial W_l\|_F` *before* any clipping, so
a run shows how often and how hard clipping acted (optax#326). It sits outside
``apply_if_finite``, so a NaN step is recorded as NaN, never hidden.

A run never raises on divergence: the first step whose loss is NaN/Inf is
recorded in :attr:`TrainResult.diverged_at`, and the run carries on. Runs are
pure functions of a PRNG key, so ``jax.vmap`` over keys trains many seeds (and,
with ``jax.vmap`` over hyperparameters of one shape, many arms) in one program.
With a dynamic loss scale in the chain (:mod:`jaxgrad.mixed_precision`),
:func:`train` differentiates ``scale * loss`` and the chain unscales.
"""

from collections.abc import Callable, Mapping
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgrad import mixed_precision
from jaxgrad.diagnostics.gradients import layer_grad_norms

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES = ("constant", "warmup_cosine")
PRE_CLIP_NORM = "pre_clip_norm"


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """What :func:`make_optimizer` builds.

  Attributes:
    name: one of :data:`OPTIMIZERS`.
    learning_rate: a float (the peak rate under a schedule), or an Optax
      schedule ``step -> lr`` (then ``schedule`` must be ``"constant"``).
    momentum: SGD momentum (``None``: plain SGD).
    nesterov: Nesterov momentum for SGD.
    weight_decay: AdamW's decoupled weight decay.
    clip_value: clip every gradient entry to ``[-c, c]`` (``optax.clip``).
    clip_norm: rescale the gradient to global norm at most ``c``
      (``optax.clip_by_global_norm``); applied after ``clip_value``. May be
      an array traced under ``vmap``, so that arms with different thresholds
      share one program (``inf``: never clipped).
    skip_nonfinite: wrap the chain in ``optax.apply_if_finite``: a step with a
      NaN/Inf gradient leaves the parameters unchanged.
    schedule: one of :data:`SCHEDULES`. ``"warmup_cosine"``: linear warmup
      from 0 to ``learning_rate`` over ``warmup_steps``, then cosine decay to
      ``end_lr_fraction * learning_rate`` at step ``decay_steps``.
    warmup_steps: length of the linear warmup.
    decay_steps: total length of warmup plus decay (required for
      ``"warmup_cosine"``).
    end_lr_fraction: final rate as a fraction of the peak.
  """

  name: str = "adam"
  learning_rate: float | Callable[[jax.Array], jax.Array] = 1e-3
  momentum: float | None = None
  nesterov: bool = False
  weight_decay: float = 1e-4
  clip_value: float | None = None
  clip_norm: float | jax.Array | None = None
  skip_nonfinite: bool = False
  schedule: str = "constant"
  warmup_steps: int = 0
  decay_steps: int | None = None
  end_lr_fraction: float = 0.0

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.name!r}; valid choices: {OPTIMIZERS}")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"unknown schedule {self.schedule!r}; valid choices: {SCHEDULES}")
    for field in ("clip_value", "clip_norm"):
      value = getattr(self, field)
      if value is not None and not isinstance(value, jax.core.Tracer) and not value > 0:
        raise ValueError(f"{field} must be > 0 or None, got {value!r}")
    if not callable(self.learning_rate) and not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
    if self.momentum is not None and not 0 <= self.momentum < 1:
      raise ValueError(f"momentum must be in [0, 1) or None, got {self.momentum!r}")
    if self.nesterov and self.name != "sgd":
      raise ValueError(f"nesterov applies to 'sgd' only, got optimizer {self.name!r}")
    if self.schedule == "warmup_cosine":
      if callable(self.learning_rate):
        raise ValueError("schedule='warmup_cosine' needs a float learning_rate (the peak)")
      if self.decay_steps is None or not self.decay_steps > self.warmup_steps >= 0:
        raise ValueError("warmup_cosine needs decay_steps > warmup_steps >= 0, got "
                         f"warmup_steps={self.warmup_steps!r}, decay_steps={self.decay_steps!r}")


def learning_rate_schedule(config: OptimizerConfig) -> float | optax.Schedule:
  r"""The learning rate (or schedule) that ``config`` asks for.

  ``"warmup_cosine"``: :math:`\eta_t = \eta\, t / T_w` for :math:`t < T_w`, then
  :math:`\eta_t = \eta_{end} + (\eta - \eta_{end})\,\tfrac12 (1 + \cos(\pi
  (t - T_w)/(T - T_w)))` (``optax.warmup_cosine_decay_schedule``).
  """
  if config.schedule == "constant":
    return config.learning_rate
  peak = float(config.learning_rate)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak, warmup_steps=config.warmup_steps,
      decay_steps=config.decay_steps, end_value=config.end_lr_fraction * peak)


def _base(config: OptimizerConfig) -> optax.GradientTransformation:
  lr = learning_rate_schedule(config)
  if config.name == "sgd":
    return optax.sgd(lr, momentum=config.momentum, nesterov=config.nesterov)
  if config.name == "adamw":
    return optax.adamw(lr, weight_decay=config.weight_decay)
  return getattr(optax, config.name)(lr)


class GradNormState(NamedTuple):
  """What :func:`record_grad_norms` keeps: the last gradient's norms."""

  global_norm: jax.Array  # () ||g||_2 over every leaf
  layer_norms: Mapping[str, jax.Array]  # layer path -> () ||dL/dW_l||_F (a LayerValues)


def _norm_dtype(tree: Any) -> Any:
  """At least float32 (a float16 gradient's norm overflows at 256^2 entries of 1)."""
  return jnp.result_type(jnp.float32, *[jnp.result_type(a) for a in jax.tree.leaves(tree)])


def record_grad_norms(weight_names: str | tuple[str, ...] = "kernel") -> optax.GradientTransformation:
  r"""Records :math:`\|g\|_2` and per-layer :math:`\|g_{W_l}\|_F` in the state; updates pass through.

  Per-layer norms come from :func:`jaxgrad.diagnostics.layer_grad_norms`: a
  scanned stack's norms stay one ``(L,)`` array in the state (one vmapped
  reduction), so the step compiles in the same time at any depth. Norms are computed in at least
  float32. Read them back with :func:`pre_clip_norm` and :func:`layer_norms`.

  Args:
    weight_names: the leaf name(s) that hold a layer's weight.

  >>> import jax.numpy as jnp, optax
  >>> tx = optax.chain(record_grad_norms(), optax.clip_by_global_norm(1.0), optax.sgd(0.1))
  >>> g = {"dense": {"kernel": jnp.full((2, 2), 3.0), "bias": jnp.zeros(2)}}
  >>> _, state = tx.update(g, tx.init(g), g)
  >>> float(pre_clip_norm(state)), float(layer_norms(state)["dense"])
  (6.0, 6.0)
  """

  def norms(tree):
    dtype = _norm_dtype(tree)
    cast = jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)
    try:
      per_layer = layer_grad_norms(cast, weight_names=weight_names) if isinstance(tree, Mapping) else {}
    except ValueError:  # a layout per_layer cannot split (nested scans): global norm only
      per_layer = {}
    return GradNormState(optax.tree.norm(cast), per_layer)

  def init_fn(params):
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(norms, params))

  def update_fn(updates, state, params=None):
    del state, params
    return updates, norms(updates)

  return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
  """``record_grad_norms -> [apply_if_finite(] [clip] -> [clip_by_global_norm] -> optimizer [)]``.

  >>> tx = make_optimizer(OptimizerConfig("adam", 1e-2, clip_norm=1.0))
  """
  inner = []
  if config.clip_value is not None:
    inner.append(optax.clip(config.clip_value))
  if config.clip_norm is not None:
    inner.append(optax.clip_by_global_norm(config.clip_norm))
  inner.append(_base(config))
  tx = optax.chain(*inner)
  if config.skip_nonfinite:
    tx = optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1)
  return optax.chain(record_grad_norms(), tx)


def _grad_norm_state(opt_state: Any) -> GradNormState:
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, GradNormState))
           if isinstance(s, GradNormState)]
  if not found:
    raise ValueError("optimizer state has no record_grad_norms() state; build the chain "
                     "with make_optimizer or put record_grad_norms() into it")
  return found[0]


def pre_clip_norm(opt_state: Any) -> jax.Array:
  """The global gradient norm that the last update saw before any clipping."""
  return _grad_norm_state(opt_state).global_norm


def layer_norms(opt_state: Any) -> Mapping[str, jax.Array]:
  """Per-layer weight-gradient norms of the last update, before any clipping."""
  return _grad_norm_state(opt_state).layer_norms


class StepInfo(NamedTuple):
  """Everything one step saw, handed to :func:`train`'s ``record`` hook (inside jit)."""

  step: jax.Array
  params: Any  # before the update
  new_params: Any
  grads: Any  # unscaled gradient of the loss
  updates: Any
  loss: jax.Array
  batch: Any
  model_state: Any  # after the forward pass
  opt_state: Any  # after the update


class TrainResult(NamedTuple):
  params: Any
  model_state: Any
  loss: jax.Array  # (steps,) training loss at each step, before its update
  grad_norm: jax.Array  # (steps,) global gradient norm before clipping
  diverged_at: jax.Array  # first step with a non-finite loss, -1 if none
  layer_grad_norms: Mapping[str, jax.Array] | None = None  # layer -> (steps,) pre-clip norms
  metrics: dict[str, Any] | None = None  # what ``record`` returned, stacked over steps
  opt_state: Any = None  # final optimizer state (resume with train(..., opt_state=))


# loss_fn(params, model_state, batch) -> (loss, new_model_state); model_state
# holds e.g. BatchNorm's batch_stats ({} for a stateless model).
LossFn = Callable[[Any, Any, Any], tuple[jax.Array, Any]]


def train(
    loss_fn: LossFn,
    params: Any,
    optimizer: optax.GradientTransformation,
    sample_batch: Callable[[jax.Array], Any],
    steps: int,
    *,
    key: jax.Array,
    model_state: Any = None,
    record: Callable[[StepInfo], dict[str, Any]] | None = None,
    opt_state: Any = None,
    first_step: int = 0,
) -> TrainResult:
  """Runs ``steps`` optimizer steps in one ``lax.scan``; jit- and vmap-able.

  Args:
    loss_fn: ``(params, model_state, batch) -> (loss, model_state)``.
    params: initial parameters.
    optimizer: e.g. from :func:`make_optimizer`; must contain
      :func:`record_grad_norms` (every :func:`make_optimizer` chain does).
    sample_batch: ``key -> batch``; called with ``fold_in(key, step)``.
    steps: number of steps (static).
    key: PRNG key for the batches.
    model_state: initial non-trainable state (default ``{}``).
    record: optional ``StepInfo -> dict of arrays``, evaluated every step
      (e.g. :func:`jaxgrad.monitoring.recorder`); stacked into
      :attr:`TrainResult.metrics`.
    opt_state: resume from this optimizer state (default: ``optimizer.init``).
    first_step: index of the first step (batch keys are ``fold_in(key, step)``),
      so that chunks of one run draw the batches of the whole run.
  """
  model_state = {} if model_state is None else model_state
  opt_state = optimizer.init(params) if opt_state is None else opt_state
  scaled = mixed_precision.has_loss_scale(opt_state)

  def scaled_loss(params, model_state, batch, scale):
    loss, model_state = loss_fn(params, model_state, batch)
    return loss * scale, (loss, model_state)

  grad_fn = jax.value_and_grad(scaled_loss, has_aux=True)

  def step(carry, i):
    params, model_state, opt_state = carry
    batch = sample_batch(jax.random.fold_in(key, i))
    scale = mixed_precision.loss_scale(opt_state) if scaled else jnp.ones((), jnp.float32)
    (_, (loss, new_model_state)), grads = grad_fn(params, model_state, batch, scale)
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    out = {"loss": loss, "grad_norm": pre_clip_norm(new_opt_state),
           "layers": layer_norms(new_opt_state)}
    if record is not None:
      true_grads = (jax.tree.map(lambda g: g / scale.astype(g.dtype), grads) if scaled
                    else grads)
      out["metrics"] = record(StepInfo(i, params, new_params, true_grads, updates, loss, batch,
                                       new_model_state, new_opt_state))
    return (new_params, new_model_state, new_opt_state), out

  init = (params, model_state, opt_state)
  (params, model_state, opt_state), out = jax.lax.scan(
      step, init, first_step + jnp.arange(steps))
  losses = out["loss"]
  bad = ~jnp.isfinite(losses)
  diverged_at = jnp.where(bad.any(), first_step + jnp.argmax(bad), -1)
  return TrainResult(params, model_state, losses, out["grad_norm"], diverged_at,
                     out["layers"], out.get("metrics"), opt_state)
