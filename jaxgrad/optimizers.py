r"""Optax chains from a config: one factory for every experiment's optimizer.

:func:`make_optimizer` builds::

    [apply_if_finite(] [clip] -> [clip_by_global_norm] -> optimizer [)]

from a frozen :class:`OptimizerConfig` (validated when it is built), with an
optional warmup-cosine schedule (:func:`learning_rate_schedule`). Any Optax
``GradientTransformation`` works with :func:`jaxgrad.training.train`; this
factory is only the experiments' shorthand.
"""

from collections.abc import Callable
import dataclasses

import jax
import optax

from jaxgrad import _checks

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
