r"""Optax chains from a config, and whole training runs as one ``lax.scan``.

Every chain records the gradient's global norm *before* clipping in its state
(``optax.snapshot``, read back with :func:`pre_clip_norm`), so a run can show
how often and how hard clipping acted (optax#326). A run never raises on
divergence: the first step whose loss is NaN/Inf is recorded in
:attr:`TrainResult.diverged_at`, and the run carries on. Runs are pure
functions of a PRNG key, so ``jax.vmap`` over keys trains many seeds (and, with
``jax.vmap`` over hyperparameters of one shape, many arms) in one program.
"""

from collections.abc import Callable
import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
PRE_CLIP_NORM = "pre_clip_norm"


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """What :func:`make_optimizer` builds.

  Attributes:
    name: one of :data:`OPTIMIZERS`.
    learning_rate: a float, or an Optax schedule ``step -> lr``.
    momentum: SGD momentum (``None``: plain SGD).
    nesterov: Nesterov momentum for SGD.
    weight_decay: AdamW's decoupled weight decay.
    clip_value: clip every gradient entry to ``[-c, c]`` (``optax.clip``).
    clip_norm: rescale the gradient to global norm at most ``c``
      (``optax.clip_by_global_norm``); applied after ``clip_value``.
    skip_nonfinite: wrap the chain in ``optax.apply_if_finite``: a step with a
      NaN/Inf gradient leaves the parameters unchanged.
  """

  name: str = "adam"
  learning_rate: float | Callable[[jax.Array], jax.Array] = 1e-3
  momentum: float | None = None
  nesterov: bool = False
  weight_decay: float = 1e-4
  clip_value: float | None = None
  clip_norm: float | None = None
  skip_nonfinite: bool = False

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.name!r}; valid choices: {OPTIMIZERS}")
    for field in ("clip_value", "clip_norm"):
      value = getattr(self, field)
      if value is not None and not value > 0:
        raise ValueError(f"{field} must be > 0 or None, got {value!r}")


def _base(config: OptimizerConfig) -> optax.GradientTransformation:
  lr = config.learning_rate
  if config.name == "sgd":
    return optax.sgd(lr, momentum=config.momentum, nesterov=config.nesterov)
  if config.name == "adamw":
    return optax.adamw(lr, weight_decay=config.weight_decay)
  return getattr(optax, config.name)(lr)


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
  """``snapshot(pre-clip norm) -> [clip] -> [clip_by_global_norm] -> optimizer``.

  >>> tx = make_optimizer(OptimizerConfig("adam", 1e-2, clip_norm=1.0))
  """
  chain = [optax.snapshot(PRE_CLIP_NORM, optax.tree.norm)]
  if config.clip_value is not None:
    chain.append(optax.clip(config.clip_value))
  if config.clip_norm is not None:
    chain.append(optax.clip_by_global_norm(config.clip_norm))
  chain.append(_base(config))
  tx = optax.chain(*chain)
  if config.skip_nonfinite:
    tx = optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1)
  return tx


def pre_clip_norm(opt_state: Any) -> jax.Array:
  """The global gradient norm that the last update saw before any clipping."""
  return optax.tree.get(opt_state, PRE_CLIP_NORM)


class TrainResult(NamedTuple):
  params: Any
  model_state: Any
  loss: jax.Array  # (steps,) training loss at each step, before its update
  grad_norm: jax.Array  # (steps,) global gradient norm before clipping
  diverged_at: jax.Array  # first step with a non-finite loss, -1 if none


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
) -> TrainResult:
  """Runs ``steps`` optimizer steps in one ``lax.scan``; jit- and vmap-able.

  Args:
    loss_fn: ``(params, model_state, batch) -> (loss, model_state)``.
    params: initial parameters.
    optimizer: e.g. from :func:`make_optimizer`.
    sample_batch: ``key -> batch``; called with ``fold_in(key, step)``.
    steps: number of steps (static).
    key: PRNG key for the batches.
    model_state: initial non-trainable state (default ``{}``).
  """
  model_state = {} if model_state is None else model_state
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(carry, i):
    params, model_state, opt_state = carry
    batch = sample_batch(jax.random.fold_in(key, i))
    (loss, model_state), grads = grad_fn(params, model_state, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, model_state, opt_state), (loss, pre_clip_norm(opt_state))

  init = (params, model_state, optimizer.init(params))
  (params, model_state, _), (losses, norms) = jax.lax.scan(
      step, init, jnp.arange(steps))
  bad = ~jnp.isfinite(losses)
  diverged_at = jnp.where(bad.any(), jnp.argmax(bad), -1)
  return TrainResult(params, model_state, losses, norms, diverged_at)
