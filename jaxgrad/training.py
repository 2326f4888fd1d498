r"""Whole training runs with any Optax chain, recording the raw gradient's norms.

:func:`train` takes any Optax ``GradientTransformation``: a plain
``optax.adamw(1e-3)``, :func:`jaxgrad.optimizers.make_optimizer`'s chains, or
your own chain with ``optax.clip_by_global_norm`` anywhere in it. It measures
the gradient itself, before ``optimizer.update``: the global norm
:math:`\|g\|_2` and every layer's :math:`\|\partial L/\partial W_l\|_F` of the
raw (loss-unscaled) gradient, so they are the norms *before* any clipping by
construction, whatever the chain does (optax#326), and, under its own name, the
norm :math:`\|\Delta\theta\|_2` of the update the chain returned
(:func:`jaxgrad.metrics.grad_norms`, the same functions a
:class:`jaxgrad.logs.Monitor` uses in a hand-written loop). A NaN step is
recorded as NaN, never hidden by ``apply_if_finite``.

Data come as a pure sampler ``key -> batch`` (the whole run is one
``lax.scan``, a pure function of the key: ``jax.vmap`` over keys trains many
seeds, and over hyperparameters of one shape many arms, in one program) or as
any Python iterable of batches (a jitted step in a Python loop; the same
:class:`TrainResult`). A batch is whatever ``loss_fn`` reads; jaxgrad's own
samplers give a :class:`jaxgrad.data.Batch`. A run never raises on divergence:
the first step whose loss is NaN/Inf is recorded in
:attr:`TrainResult.diverged_at`, and the run carries on. With a dynamic loss
scale in the chain (:mod:`jaxgrad.mixed_precision`), :func:`train`
differentiates ``scale * loss`` and the chain unscales.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgrad import _checks
from jaxgrad import metrics
from jaxgrad import mixed_precision
from jaxgrad.probe import Trace


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
    grad_norm, layers = metrics.grad_norms(raw, weight_names=weight_names, layout=layout)
    extra = {"value": loss} if takes_value else {}
    updates, new_opt_state = optimizer.update(grads, opt_state, params, **extra)
    new_params = optax.apply_updates(params, updates)
    out = {"loss": loss, "grad_norm": grad_norm, "layers": layers,
           "update_norm": metrics.global_norm(updates)}
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
      your own chain, or :func:`jaxgrad.optimizers.make_optimizer`'s); a chain
      gets the loss as ``value`` (for e.g. ``optax.contrib.reduce_on_plateau``).
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
      (e.g. :func:`jaxgrad.metrics.recorder`); stacked into
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
  _checks.require_positive_int(steps=steps)
  steps = int(steps)
  _check_optimizer(optimizer)
  model_state = {} if model_state is None else model_state
  opt_state = optimizer.init(params) if opt_state is None else opt_state
  step = _step_fn(loss_fn, optimizer, record, mixed_precision.has_loss_scale(opt_state),
                  weight_names, layout)
  carry = (params, model_state, opt_state)
  if callable(data):
    if key is None:
      raise ValueError("data is a sampler key -> batch: pass key= (a PRNG key for the batches)")
    carry, out = _scan_steps(step, carry, data, key, first_step, steps)
  else:
    carry, out = _loop_steps(step, carry, _batches(data), first_step, steps)
  return _result(carry, out, first_step)


def _scan_steps(step: Callable[..., Any], carry: Any, sample: Sampler, key: jax.Array,
                first_step: int, steps: int) -> tuple[Any, dict[str, Any]]:
  """``steps`` steps in one ``lax.scan``, step ``i`` on ``sample(fold_in(key, i))``."""
  body = lambda c, i: step(c, i, sample(jax.random.fold_in(key, i)))  # noqa: E731
  return jax.lax.scan(body, carry, first_step + jnp.arange(steps))


def _loop_steps(step: Callable[..., Any], carry: Any, batches: Any, first_step: int,
                steps: int) -> tuple[Any, dict[str, Any]]:
  """``steps`` calls of the jitted step in a Python loop; outputs stacked as a scan stacks them.

  Raises:
    ValueError: ``batches`` runs out before ``steps`` batches.
  """
  jitted, outs = jax.jit(step), []
  for n in range(steps):
    try:
      batch = next(batches)
    except StopIteration:
      raise ValueError(f"data ran out after {n} batches; steps={steps} needs {steps}") from None
    carry, out = jitted(carry, jnp.asarray(first_step + n), batch)
    outs.append(out)
  return carry, jax.tree.map(lambda *a: jnp.stack(a), *outs)


def _result(carry: Any, out: Mapping[str, Any], first_step: int) -> TrainResult:
  """The :class:`TrainResult` of the final carry and the stacked per-step outputs.

  ``diverged_at`` is ``first_step`` plus the index of the first non-finite loss, or -1.
  """
  params, model_state, opt_state = carry
  bad = ~jnp.isfinite(out["loss"])
  diverged_at = jnp.where(bad.any(), first_step + jnp.argmax(bad), -1)
  return TrainResult(params, model_state, out["loss"], out["grad_norm"], diverged_at,
                     out["layers"], out.get("metrics"), opt_state, out["update_norm"])
