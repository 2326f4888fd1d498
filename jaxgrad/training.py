r"""Optax chains from a config, and whole training runs with any Optax chain.

One factory, :func:`make_optimizer`, builds the experiments' chains::

    [apply_if_finite(] [clip] -> [clip_by_global_norm] -> optimizer [)]

:func:`train` takes any Optax ``GradientTransformation``: those chains, a
plain ``optax.adamw(1e-3)``, or your own chain with ``optax.clip_by_global_norm``
anywhere in it. It measures the gradient itself, before ``optimizer.update``:
the global norm :math:`\|g\|_2` and every layer's :math:`\|\partial L/\partial
W_l\|_F` of the raw (loss-unscaled) gradient, so they are the norms *before*
any clipping by construction, whatever the chain does (optax#326), and, under
its own name, the norm :math:`\|\Delta\theta\|_2` of the update the chain
returned (:func:`jaxgrad.monitoring.grad_norms`, the same functions a
:class:`jaxgrad.monitoring.Monitor` uses in a hand-written loop). A NaN step is
recorded as NaN, never hidden by ``apply_if_finite``.

Data come as a pure sampler ``key -> batch`` (the whole run is one
``lax.scan``, a pure function of the key: ``jax.vmap`` over keys trains many
seeds, and over hyperparameters of one shape many arms, in one program) or as
any Python iterable of batches (a jitted step in a Python loop; the same
:class:`TrainResult`). A run never raises on divergence: the first step whose
loss is NaN/Inf is recorded in :attr:`TrainResult.diverged_at`, and the run
carries on. With a dynamic loss scale in the chain (:mod:`jaxgrad.mixed_precision`),
:func:`train` differentiates ``scale * loss`` and the chain unscales.
"""

from collections.abc import Callable, Iterable, Mapping
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgrad import _checks, mixed_precision
from jaxgrad import monitoring
from jaxgrad.probe import Trace

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES = ("constant", "warmup_cosine")


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
    for field in ("weight_decay", "end_lr_fraction", *(
        () if callable(self.learning_rate) else ("learning_rate",))):
      _checks.require_real(field, getattr(self, field))
    if not callable(self.learning_rate) and not 0 < self.learning_rate < float("inf"):
      raise ValueError(f"learning_rate must be finite and > 0, got {self.learning_rate!r}")
    if not 0 <= self.weight_decay < float("inf"):
      raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay!r}")
    if not 0 <= self.end_lr_fraction <= 1:
      raise ValueError(f"end_lr_fraction must be in [0, 1], got {self.end_lr_fraction!r}")
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


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
  """``[apply_if_finite(] [clip] -> [clip_by_global_norm] -> optimizer [)]``.

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
  return tx


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
  """What :func:`train` returns; per-step arrays have a leading ``(steps,)`` axis."""

  params: Any
  model_state: Any
  loss: jax.Array  # (steps,) training loss at each step, before its update
  grad_norm: jax.Array  # (steps,) ||g||_2 of the raw gradient, before any clipping
  diverged_at: jax.Array  # first step with a non-finite loss, -1 if none
  layer_grad_norms: Mapping[str, jax.Array] | None = None  # layer -> (steps,) raw-gradient norms
  metrics: dict[str, Any] | None = None  # what ``record`` returned, stacked over steps
  opt_state: Any = None  # final optimizer state (resume with train(..., opt_state=))
  update_norm: jax.Array | None = None  # (steps,) ||updates||_2, what the chain applied


# loss_fn(params, model_state, batch) -> (loss, new_model_state); model_state
# holds e.g. BatchNorm's batch_stats ({} for a stateless model).
LossFn = Callable[[Any, Any, Any], tuple[jax.Array, Any]]
Sampler = Callable[[jax.Array], Any]


def _check_steps(steps: Any) -> int:
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
  return int(steps)


def _check_optimizer(optimizer: Any) -> None:
  init, update = getattr(optimizer, "init", None), getattr(optimizer, "update", None)
  if not (callable(init) and callable(update)):
    raise TypeError("optimizer must be an Optax GradientTransformation (an init/update pair, "
                    f"e.g. optax.adamw(1e-3)), got {type(optimizer).__name__}")


def _batches(data: Any) -> Any:
  """An iterator over ``data``'s batches, or a clear error for what cannot be one."""
  if isinstance(data, Mapping):
    raise TypeError("data is a mapping (one batch?); pass a sampler key -> batch or an "
                    "iterable of batches")
  try:
    return iter(data)
  except TypeError:
    raise TypeError("data must be a sampler key -> batch or an iterable of batches, got "
                    f"{type(data).__name__}") from None


def _step_fn(loss_fn: LossFn, optimizer: optax.GradientTransformation,
             record: Callable[[StepInfo], dict[str, Any]] | None, scaled: bool,
             weight_names: str | tuple[str, ...], layout: Trace | None) -> Callable[..., Any]:
  """``(carry, step, batch) -> (carry, per-step outputs)``, shared by the scan and the loop."""

  def scaled_loss(params, model_state, batch, scale):
    loss, model_state = loss_fn(params, model_state, batch)
    return loss * scale, (loss, model_state)

  grad_fn = jax.value_and_grad(scaled_loss, has_aux=True)
  # Chains (and transforms such as reduce_on_plateau) take the loss as `value`.
  takes_value = isinstance(optimizer, optax.GradientTransformationExtraArgs)

  def step(carry, i, batch):
    params, model_state, opt_state = carry
    scale = mixed_precision.loss_scale(opt_state) if scaled else jnp.ones((), jnp.float32)
    (_, (loss, new_model_state)), grads = grad_fn(params, model_state, batch, scale)
    raw = jax.tree.map(lambda g: g / scale.astype(g.dtype), grads) if scaled else grads
    grad_norm, layers = monitoring.grad_norms(raw, weight_names=weight_names, layout=layout)
    extra = {"value": loss} if takes_value else {}
    updates, new_opt_state = optimizer.update(grads, opt_state, params, **extra)
    new_params = optax.apply_updates(params, updates)
    out = {"loss": loss, "grad_norm": grad_norm, "layers": layers,
           "update_norm": monitoring.global_norm(updates)}
    if record is not None:
      out["metrics"] = record(StepInfo(i, params, new_params, raw, updates, loss, batch,
                                       new_model_state, new_opt_state))
    return (new_params, new_model_state, new_opt_state), out

  return step


def train(
    loss_fn: LossFn,
    params: Any,
    optimizer: optax.GradientTransformation,
    data: Sampler | Iterable[Any],
    steps: int,
    *,
    key: jax.Array | None = None,
    model_state: Any = None,
    record: Callable[[StepInfo], dict[str, Any]] | None = None,
    opt_state: Any = None,
    first_step: int = 0,
    weight_names: str | tuple[str, ...] = "kernel",
    layout: Trace | None = None,
) -> TrainResult:
  r"""Runs ``steps`` optimizer steps of any Optax chain; records the raw gradient's norms.

  Each step: :math:`(L, g) = (L, \nabla_\theta L)` on the step's batch;
  :math:`\|g\|_2` and :math:`\|g_{W_l}\|_F` of that raw gradient; then
  :math:`(\Delta\theta, s) = \mathrm{optimizer.update}(g, s, \theta)`,
  :math:`\|\Delta\theta\|_2`, :math:`\theta \leftarrow \theta + \Delta\theta`.

  Args:
    loss_fn: ``(params, model_state, batch) -> (loss, model_state)``.
    params: initial parameters.
    optimizer: any Optax ``GradientTransformation`` (e.g. ``optax.adamw(1e-3)``,
      your own chain, or :func:`make_optimizer`'s); a chain gets the loss as
      ``value`` (for e.g. ``optax.contrib.reduce_on_plateau``).
    data: a sampler ``key -> batch``, pure, called with ``fold_in(key, step)``
      inside one ``lax.scan`` (then ``train`` is jit- and vmap-able); or any
      other iterable of batches (a list, a generator, an array whose leading
      axis indexes batches), run as a jitted step in a Python loop (then
      ``train`` itself is not for ``jit``/``vmap``). Either gives the same
      :class:`TrainResult` on the same batches.
    steps: number of steps, an integer >= 1 (static).
    key: PRNG key for a sampler's batches (unused with an iterable).
    model_state: initial non-trainable state (default ``{}``).
    record: optional ``StepInfo -> dict of arrays``, evaluated every step
      (e.g. :func:`jaxgrad.monitoring.recorder`); stacked into
      :attr:`TrainResult.metrics`.
    opt_state: resume from this optimizer state (default: ``optimizer.init``).
    first_step: index of the first step (batch keys are ``fold_in(key, step)``),
      so that chunks of one run draw the batches of the whole run.
    weight_names: the leaf name(s) that hold a layer's weight, for the per-layer norms.
    layout: the model's probed structure (:func:`jaxgrad.probe.layout`), passed
      on to :func:`jaxgrad.diagnostics.layer_grad_norms`: execution order,
      scanned stacks one entry per layer; ``None``: the tree's order.

  Raises:
    ValueError: ``steps`` not an integer >= 1; a sampler without ``key``; an
      iterable that runs out before ``steps`` batches.
    TypeError: ``optimizer`` not an init/update pair; ``data`` neither callable nor iterable.
  """
  steps = _check_steps(steps)
  _check_optimizer(optimizer)
  model_state = {} if model_state is None else model_state
  opt_state = optimizer.init(params) if opt_state is None else opt_state
  step = _step_fn(loss_fn, optimizer, record, mixed_precision.has_loss_scale(opt_state),
                  weight_names, layout)
  carry = (params, model_state, opt_state)
  if callable(data):
    if key is None:
      raise ValueError("data is a sampler key -> batch: pass key= (a PRNG key for the batches)")
    sample = lambda c, i: step(c, i, data(jax.random.fold_in(key, i)))  # noqa: E731
    carry, out = jax.lax.scan(sample, carry, first_step + jnp.arange(steps))
  else:
    batches, jitted, outs = _batches(data), jax.jit(step), []
    for n in range(steps):
      try:
        batch = next(batches)
      except StopIteration:
        raise ValueError(f"data ran out after {n} batches; steps={steps} needs {steps}") from None
      carry, o = jitted(carry, jnp.asarray(first_step + n), batch)
      outs.append(o)
    out = jax.tree.map(lambda *a: jnp.stack(a), *outs)
  params, model_state, opt_state = carry
  losses = out["loss"]
  bad = ~jnp.isfinite(losses)
  diverged_at = jnp.where(bad.any(), first_step + jnp.argmax(bad), -1)
  return TrainResult(params, model_state, losses, out["grad_norm"], diverged_at,
                     out["layers"], out.get("metrics"), opt_state, out["update_norm"])
