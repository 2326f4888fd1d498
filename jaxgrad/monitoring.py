r"""Per-step training records, explosion alarms, metrics.jsonl and TensorBoard.

What seed 000 §3 asks a practitioner to watch, measured inside the jitted
training scan (:func:`recorder` is :func:`jaxgrad.training.train`'s ``record``
hook) and written out afterwards:

* loss and accuracy; the global gradient norm :math:`\|g\|_2` and every
  layer's :math:`\|\partial L/\partial W_l\|_F`, before clipping (kept in the
  optimizer state by :func:`jaxgrad.training.record_grad_norms`);
* update-to-weight ratios :math:`\|\Delta W_l\|_F / \|W_l\|_F` (about
  :math:`10^{-3}` is the classic healthy value; :math:`\ll 10^{-3}`: the
  layer barely learns, seed §3.1 "前几层权重几乎不更新");
* the fraction of *dead* units (:math:`\phi'(a) = 0` on every example of the
  batch) and of *saturated* activations (entries with
  :math:`\phi'(a)/\max\phi'` below :data:`SATURATION_THRESHOLD`, for the
  activations that saturate: tanh, sigmoid, hard-tanh, elu; seed §3.1's
  "激活值分布过于集中于饱和区域"), from each layer's activations;
* alarms: a NaN/Inf loss or norm, or a norm over a threshold, as events.

:func:`write_jsonl` writes one ``{"step": ..., **metrics}`` row per step;
:class:`TensorBoardLogger` writes scalars and per-layer histograms of weights
and gradients (seed §3.2's ``add_histogram``) through the optional
``tensorboardX`` (``pip install 'jaxgrad[tensorboard]'``); :func:`read_events`
reads event files back with nothing but tensorboardX's protobufs.
"""

from collections.abc import Callable, Iterable, Mapping
import json
import math
import pathlib
import struct
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad.diagnostics._tree import per_layer

SATURATION_THRESHOLD = 0.05

# phi'(a) / max phi', written as a function of the output h = phi(a), for the
# activations where that is possible (so it holds behind a norm layer too).
_DERIVATIVE_FROM_OUTPUT: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": lambda h: (h > 0).astype(h.dtype),
    "leaky_relu": lambda h: jnp.where(h > 0, 1.0, 0.01).astype(h.dtype),
    "elu": lambda h: jnp.where(h > 0, 1.0, h + 1.0).astype(h.dtype),
    "tanh": lambda h: 1.0 - h**2,
    "sigmoid": lambda h: 4.0 * h * (1.0 - h),
    "hard_tanh": lambda h: (jnp.abs(h) < 1).astype(h.dtype),
    "linear": jnp.ones_like,
}
UNIT_STAT_ACTIVATIONS = tuple(_DERIVATIVE_FROM_OUTPUT)
# Activations with a flat, saturating regime; relu's zero side is "dead", not saturated.
SATURATING = ("tanh", "sigmoid", "hard_tanh", "elu")


def relative_derivative(activation: str, h: jax.Array) -> jax.Array:
  r""":math:`\phi'(a)/\max\phi'` from the activation's output :math:`h = \phi(a)`.

  Raises:
    ValueError: for an activation not in :data:`UNIT_STAT_ACTIVATIONS`.
  """
  if activation not in _DERIVATIVE_FROM_OUTPUT:
    raise ValueError(f"unit statistics need an activation whose derivative is a function of "
                     f"its output; got {activation!r}, valid choices: {UNIT_STAT_ACTIVATIONS}")
  return _DERIVATIVE_FROM_OUTPUT[activation](h)


def unit_fractions(outputs: Mapping[str, jax.Array], activation: str,
                   threshold: float = SATURATION_THRESHOLD) -> dict[str, dict[str, jax.Array]]:
  r"""Per layer, the fraction of dead units and of saturated activations.

  Args:
    outputs: layer -> activations ``(batch, units)``.
    activation: name of :math:`\phi`.
    threshold: an activation entry is saturated when :math:`\phi'(a)/\max\phi'`
      is below it (units already dead are not counted again); only for
      :data:`SATURATING` activations, 0 for the others.

  Returns:
    ``{"dead": {layer: fraction of units}, "saturated": {layer: fraction of entries}}``.
  """
  dead, saturated = {}, {}
  for name, h in outputs.items():
    d = relative_derivative(activation, h.reshape(-1, h.shape[-1]).astype(jnp.float32))
    is_dead = jnp.all(d == 0, axis=0)
    dead[name] = jnp.mean(is_dead.astype(jnp.float32))
    flat = (d < threshold) & ~is_dead[None] if activation in SATURATING else jnp.zeros_like(d, bool)
    saturated[name] = jnp.mean(flat.astype(jnp.float32))
  return {"dead": dead, "saturated": saturated}


def mlp_outputs(model: Any, variables: Mapping[str, Any], x: jax.Array, *,
                train: bool = False) -> dict[str, jax.Array]:
  """Every hidden layer's activations of a :class:`jaxgrad.models.DeepMLP`.

  Keys match :func:`jaxgrad.diagnostics.layer_grad_norms` (``first/dense``,
  ``hidden/layers_000/dense``, ...); the linear output layer is left out.
  ``train=True`` uses BatchNorm's batch statistics (and discards their update).
  """
  from jaxgrad.models import DenseBlock, DenseStack  # pylint: disable=import-outside-toplevel

  block = dict(activation=model.activation, kernel_init=model.kernel_init,
               bias_init=model.bias_init, norm=model.norm, param_dtype=model.param_dtype)
  sub = lambda name: {k: v[name] for k, v in variables.items()  # noqa: E731
                      if k in ("params", "batch_stats") and name in v}
  apply = lambda m, v, h: m.apply(v, h, train, mutable=["batch_stats"])[0] if train else m.apply(v, h, train)  # noqa: E731
  h = apply(DenseBlock(model.width, **block), sub("first"), x)
  out = {"first/dense": h}
  if model.depth > 2:
    _, hs = apply(DenseStack(model.depth - 2, model.width, residual=model.residual, **block),
                  sub("hidden"), h)
    out.update({f"hidden/layers_{i:03d}/dense": hs[i] for i in range(model.depth - 2)})
  return out


def update_ratios(updates: Any, params: Any, weight_names: str | tuple[str, ...] = "kernel"
                  ) -> Mapping[str, jax.Array]:
  r"""Per layer :math:`\|\Delta W_l\|_F / \|W_l\|_F`."""
  du = per_layer(updates, weight_names, lambda a: jnp.linalg.norm(a.astype(jnp.float32)))
  w = per_layer(params, weight_names, lambda a: jnp.linalg.norm(a.astype(jnp.float32)))
  return jax.tree.map(jnp.divide, du, w)  # a LayerValues: one op per stack, any depth


def recorder(*, accuracy_fn: Callable[[Any, Any, Any], jax.Array] | None = None,
             outputs_fn: Callable[[Any, Any, Any], Mapping[str, jax.Array]] | None = None,
             activation: str | None = None,
             threshold: float = SATURATION_THRESHOLD) -> Callable[[Any], dict[str, Any]]:
  """The ``record`` hook for :func:`jaxgrad.training.train`.

  Args:
    accuracy_fn: ``(params, model_state, batch) -> accuracy`` on the step's batch.
    outputs_fn: ``(params, model_state, batch) -> {layer: activations}`` (e.g.
      :func:`mlp_outputs`), measured before the step's update.
    activation: the name of the activation (needed with ``outputs_fn``).
    threshold: see :func:`unit_fractions`.

  Returns:
    ``StepInfo -> {"update_ratio": {...}, ["accuracy"], ["dead": {...}, "saturated": {...}]}``.
  """
  if outputs_fn is not None:
    relative_derivative(activation, jnp.zeros(()))  # validates the name now

  def record(info) -> dict[str, Any]:
    out: dict[str, Any] = {"update_ratio": update_ratios(info.updates, info.params)}
    if accuracy_fn is not None:
      out["accuracy"] = accuracy_fn(info.params, info.model_state, info.batch)
    if outputs_fn is not None:
      out.update(unit_fractions(outputs_fn(info.params, info.model_state, info.batch),
                                activation, threshold))
    return out

  return record


def _flat(prefix: str, value: Any, into: dict[str, Any]) -> None:
  if isinstance(value, Mapping):
    for k, v in value.items():
      _flat(f"{prefix}/{k}" if prefix else str(k), v, into)
  else:
    into[prefix] = value


def rows(result: Any, every: int = 1) -> list[dict[str, float]]:
  """One flat dict per step of one run (a :class:`jaxgrad.training.TrainResult`).

  Keys: ``step``, ``loss``, ``grad_norm``, ``grad_norm/<layer>`` and every
  recorded metric flattened with ``/`` (``update_ratio/<layer>``, ...).
  For a vmapped result, pick one run first: ``jax.tree.map(lambda a: a[0], result)``.
  """
  series: dict[str, Any] = {"loss": result.loss, "grad_norm": result.grad_norm}
  _flat("grad_norm", result.layer_grad_norms or {}, series)
  _flat("", result.metrics or {}, series)
  series = {k: np.asarray(v, dtype=np.float64) for k, v in series.items()}
  steps = len(series["loss"])
  for k, v in series.items():
    if v.shape != (steps,):
      raise ValueError(f"metric {k!r} has shape {v.shape}, expected ({steps},): pass one run")
  return [{"step": i, **{k: float(v[i]) for k, v in series.items()}}
          for i in range(0, steps, every)]


def alarms(records: Iterable[Mapping[str, float]], *, norm_threshold: float = 1e3
           ) -> list[dict[str, Any]]:
  """Explosion events: a non-finite loss or norm, or a gradient norm over a threshold.

  Returns one ``{"step", "event", "metric", "value"}`` per offending entry,
  ``event`` being ``"nonfinite"`` or ``"norm_over_threshold"``.
  """
  events = []
  for row in records:
    for key, value in row.items():
      watched = key == "loss" or key.startswith("grad_norm")
      if not watched:
        continue
      if not math.isfinite(value):
        events.append({"step": row["step"], "event": "nonfinite", "metric": key, "value": value})
      elif key.startswith("grad_norm") and value > norm_threshold:
        events.append({"step": row["step"], "event": "norm_over_threshold", "metric": key,
                       "value": value, "threshold": norm_threshold})
  return events


def write_jsonl(path: str | pathlib.Path, records: Iterable[Mapping[str, Any]]) -> pathlib.Path:
  """One JSON object per line; NaN/Inf are written as JSON's ``NaN``/``Infinity``."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w") as f:
    for row in records:
      f.write(json.dumps(row) + "\n")
  return path


def read_jsonl(path: str | pathlib.Path) -> list[dict[str, Any]]:
  return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line]


def write_run(out_dir: str | pathlib.Path, result: Any, *, every: int = 1,
              norm_threshold: float = 1e3) -> dict[str, Any]:
  """Writes ``metrics.jsonl`` and ``alarms.jsonl`` for one run; returns a summary."""
  out_dir = pathlib.Path(out_dir)
  records = rows(result, every)
  events = alarms(rows(result), norm_threshold=norm_threshold)
  write_jsonl(out_dir / "metrics.jsonl", records)
  write_jsonl(out_dir / "alarms.jsonl", events)
  return {"steps": len(result.loss), "alarms": len(events),
          "first_alarm": events[0] if events else None}


class TensorBoardLogger:
  """Scalars and per-layer weight/gradient histograms as TensorBoard event files.

  >>> logger = TensorBoardLogger("runs/tb")          # doctest: +SKIP
  >>> logger.histograms(step, params, grads)          # doctest: +SKIP

  Raises:
    ImportError: naming the extra when ``tensorboardX`` is not installed.
  """

  def __init__(self, logdir: str | pathlib.Path, *, bins: int = 64):
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ImportError("TensorBoard logging needs tensorboardX: "
                        "pip install 'jaxgrad[tensorboard]'") from e
    self.logdir = pathlib.Path(logdir)
    self.bins = bins
    self._writer = SummaryWriter(str(self.logdir))

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    for tag, value in values.items():
      if tag != "step":
        self._writer.add_scalar(tag, float(value), step)

  def histograms(self, step: int, params: Any, grads: Any | None = None,
                 weight_names: str | tuple[str, ...] = "kernel") -> None:
    """``weights/<layer>`` and ``gradients/<layer>``, as seed 000 §3.2 logs them."""
    for prefix, tree in (("weights", params), ("gradients", grads)):
      if tree is None:
        continue
      for layer, value in per_layer(tree, weight_names, lambda a: a).items():
        value = np.asarray(value, dtype=np.float64).ravel()
        if np.all(np.isfinite(value)):
          self._writer.add_histogram(f"{prefix}/{layer}", value, step, bins=self.bins)

  def log_rows(self, records: Iterable[Mapping[str, float]]) -> None:
    for row in records:
      self.scalars(int(row["step"]), row)

  def close(self) -> None:
    self._writer.close()


def read_events(logdir: str | pathlib.Path) -> dict[str, dict[str, list]]:
  """Every scalar and histogram in the event files under ``logdir``.

  Returns:
    ``{"scalars": {tag: [(step, value)]}, "histograms": {tag: [(step, {"min",
    "max", "num", "sum", "bucket_limit", "bucket"})]}}``.
  """
  try:
    from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("reading TensorBoard events needs tensorboardX: "
                      "pip install 'jaxgrad[tensorboard]'") from e
  out: dict[str, dict[str, list]] = {"scalars": {}, "histograms": {}}
  for path in sorted(pathlib.Path(logdir).rglob("events.out.tfevents.*")):
    raw = path.read_bytes()
    pos = 0
    while pos + 12 <= len(raw):  # record: u64 length, u32 crc, data, u32 crc
      (length,) = struct.unpack("<Q", raw[pos:pos + 8])
      data = raw[pos + 12:pos + 12 + length]
      pos += 12 + length + 4
      event = event_pb2.Event()
      event.ParseFromString(data)
      for v in event.summary.value:
        if v.HasField("histo"):
          h = v.histo
          out["histograms"].setdefault(v.tag, []).append((event.step, {
              "min": h.min, "max": h.max, "num": h.num, "sum": h.sum,
              "bucket_limit": list(h.bucket_limit), "bucket": list(h.bucket)}))
        else:
          out["scalars"].setdefault(v.tag, []).append((event.step, v.simple_value))
  return out
