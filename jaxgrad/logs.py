r"""Training metrics written out: rows, alarms, JSON lines, TensorBoard, and a loop's Monitor.

What seed 000 §3 asks a practitioner to watch is measured inside jit
(:mod:`jaxgrad.metrics`, :mod:`jaxgrad.diagnostics.units`); this module turns
the measurements into files, for :func:`jaxgrad.training.train` and for the
user's own loop alike:

* :func:`rows`: one flat ``{"step", "loss", "grad_norm", "grad_norm/<layer>",
  "update_norm", "update_ratio/<layer>", ...}`` dict per step of a
  :class:`jaxgrad.training.TrainResult`;
* :func:`alarms`: a NaN/Inf loss or norm, a gradient norm over a threshold, an
  update ratio outside a range (vanishing or exploding updates);
* :func:`write_run`: ``metrics.jsonl`` (one row per logged step) and
  ``alarms.jsonl``, strict JSON with NaN/Inf written as the strings ``"nan"``,
  ``"inf"``, ``"-inf"`` (:mod:`jaxgrad.files`; :func:`read_jsonl` reads them
  back as floats);
* :class:`TensorBoardLogger`: scalars and per-layer histograms of weights and
  gradients (seed §3.2's ``add_histogram``) through the optional
  ``tensorboardX`` (``pip install 'jaxgrad[tensorboard]'``); :func:`read_events`
  reads event files back with nothing but tensorboardX's protobufs.

With ``train``, :func:`jaxgrad.metrics.recorder` is the ``record`` hook and
:func:`write_run` writes the files. In your own loop (your jitted step, your
Optax chain), a :class:`Monitor` does the same: :meth:`Monitor.measure` inside
the step (pure, a few reductions per layer), :meth:`Monitor.log` outside it.
Both paths share the measurements, the row layout, the alarms and the writers.

Example (a plain Flax MLP, ``optax.adamw``, your own loop)::

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from jaxgrad import logs

    class MLP(nn.Module):
      @nn.compact
      def __call__(self, x):
        for width in (32, 32):
          x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(1)(x)

    model, tx = MLP(), optax.adamw(1e-3)
    x = jax.random.normal(jax.random.key(0), (64, 8))
    y = jnp.sum(x, axis=-1, keepdims=True)
    params = model.init(jax.random.key(1), x)["params"]
    opt_state = tx.init(params)
    monitor = logs.Monitor("runs/my_mlp", every=10)

    @jax.jit
    def step(params, opt_state):
      def loss_fn(p):
        return jnp.mean((model.apply({"params": p}, x) - y) ** 2)
      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      metrics = monitor.measure(grads, params, updates)
      return optax.apply_updates(params, updates), opt_state, loss, metrics

    for i in range(100):
      params, opt_state, loss, metrics = step(params, opt_state)
      alarms = monitor.log(i, metrics, loss=loss)  # the alarms this step raised
    monitor.close()
    # runs/my_mlp/metrics.jsonl: step, loss, grad_norm, grad_norm/Dense_0, ...,
    # update_norm, update_ratio/Dense_0, ...; runs/my_mlp/alarms.jsonl
"""

from collections.abc import Iterable, Mapping
import functools
import math
import pathlib
import struct
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import files
from jaxgrad import probe
from jaxgrad.diagnostics import per_layer
from jaxgrad.diagnostics.units import relative_derivative, unit_fractions
from jaxgrad.metrics import global_norm, grad_norms, update_ratios
from jaxgrad.probe import Trace

# The key under which per-layer gradient norms travel; in rows they are grad_norm/<layer>.
LAYER_GRAD_NORMS = "layer_grad_norms"


def _flat(prefix: str, value: Any, into: dict[str, Any]) -> None:
  if isinstance(value, Mapping):
    for k, v in value.items():
      _flat(f"{prefix}/{k}" if prefix else str(k), v, into)
  else:
    into[prefix] = value


def _host(value: Any) -> Any:
  """``value`` on the host, plain dicts kept in their order (``jax.device_get`` sorts keys)."""
  if type(value) is dict:  # pylint: disable=unidiomatic-typecheck
    return {k: _host(v) for k, v in value.items()}
  return jax.device_get(value)  # one transfer per array or per LayerValues


def _columns(values: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Metric name -> float64 array, nested mappings flattened with ``/``, in their order.

  ``values[LAYER_GRAD_NORMS]`` becomes ``grad_norm/<layer>``; ``None`` values are left out.
  """
  flat: dict[str, Any] = {}
  for key, value in values.items():
    if value is not None:
      _flat("grad_norm" if key == LAYER_GRAD_NORMS else key, _host(value), flat)
  return {k: np.asarray(v, dtype=np.float64) for k, v in flat.items()}


def rows(result: Any, every: int = 1) -> list[dict[str, float]]:
  """One flat dict per step of one run (a :class:`jaxgrad.training.TrainResult`).

  Keys: ``step``, ``loss``, ``grad_norm``, ``grad_norm/<layer>``,
  ``update_norm`` and every recorded metric flattened with ``/``
  (``update_ratio/<layer>``, ...), as :meth:`Monitor.log` writes them.
  For a vmapped result, pick one run first: ``jax.tree.map(lambda a: a[0], result)``.
  """
  series = _columns({"loss": result.loss, "grad_norm": result.grad_norm,
                     LAYER_GRAD_NORMS: result.layer_grad_norms,
                     "update_norm": getattr(result, "update_norm", None),
                     **(result.metrics or {})})
  steps = len(series["loss"])
  for k, v in series.items():
    if v.shape != (steps,):
      raise ValueError(f"metric {k!r} has shape {v.shape}, expected ({steps},): pass one run")
  return [{"step": i, **{k: float(v[i]) for k, v in series.items()}}
          for i in range(0, steps, every)]


def _event(step: int, metric: str, value: float, event: str, **extra: float) -> dict[str, Any]:
  return {"step": step, "event": event, "metric": metric, "value": value, **extra}


def alarms(records: Iterable[Mapping[str, float]], *, norm_threshold: float = 1e3,
           update_ratio_range: tuple[float, float] | None = None) -> list[dict[str, Any]]:
  r"""Explosion and vanishing events in rows of metrics (:func:`rows`, :meth:`Monitor.log`).

  Args:
    records: one flat dict per step, with ``step``.
    norm_threshold: a gradient norm (``grad_norm``, ``grad_norm/<layer>``) above it is an event.
    update_ratio_range: ``(low, high)``: a finite ``update_ratio/<layer>`` below
      ``low`` (the layer barely learns) or above ``high`` (the update outweighs
      the weight) is an event; ``None``: not checked. A zero weight (ratio
      ``inf``) is not.

  Returns:
    One ``{"step", "event", "metric", "value", ...}`` per offending entry, ``event``
    one of ``"nonfinite"`` (loss, a gradient norm or the update norm is NaN/Inf),
    ``"norm_over_threshold"``, ``"vanishing_update_ratio"``, ``"exploding_update_ratio"``.
  """
  events = []
  for row in records:
    for key, value in row.items():
      event = functools.partial(_event, row["step"], key, value)
      if key == "loss" or key == "update_norm" or key.startswith("grad_norm"):
        if not math.isfinite(value):
          events.append(event("nonfinite"))
        elif key.startswith("grad_norm") and value > norm_threshold:
          events.append(event("norm_over_threshold", threshold=norm_threshold))
      elif (update_ratio_range is not None and key.startswith("update_ratio/")
            and math.isfinite(value)):
        low, high = update_ratio_range
        if value < low:
          events.append(event("vanishing_update_ratio", threshold=low))
        elif value > high:
          events.append(event("exploding_update_ratio", threshold=high))
  return events


def write_jsonl(path: str | pathlib.Path, records: Iterable[Mapping[str, Any]]) -> pathlib.Path:
  """One strict-JSON object per line (:mod:`jaxgrad.files`' encoding of NaN/Inf), atomically.

  The lines go to a temporary file beside ``path``, which then replaces it in one rename
  (:func:`jaxgrad.files.atomic_path`).
  """
  path = pathlib.Path(path)
  with files.atomic_path(path) as tmp:
    files.append_jsonl(tmp, *records)
  return path


# The rows write_jsonl and Monitor wrote, "nan"/"inf"/"-inf" read back as floats.
read_jsonl = files.read_jsonl


def write_run(out_dir: str | pathlib.Path, result: Any, *, every: int = 1,
              norm_threshold: float = 1e3,
              update_ratio_range: tuple[float, float] | None = None) -> dict[str, Any]:
  """Writes ``metrics.jsonl`` and ``alarms.jsonl`` for one run; returns a summary."""
  out_dir = pathlib.Path(out_dir)
  records = rows(result, every)
  events = alarms(rows(result), norm_threshold=norm_threshold,
                  update_ratio_range=update_ratio_range)
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
    """One scalar per tag at ``step`` (a ``"step"`` entry is not a tag)."""
    for tag, value in values.items():
      if tag != "step":
        self._writer.add_scalar(tag, float(value), step)

  def histograms(self, step: int, params: Any, grads: Any | None = None,
                 weight_names: str | tuple[str, ...] = "kernel", *,
                 layout: Trace | None = None) -> None:
    """``weights/<layer>`` and ``gradients/<layer>``, as seed 000 §3.2 logs them.

    ``layout`` (see :func:`jaxgrad.metrics.grad_norms`) names the layers of a scanned stack
    one by one.
    """
    by_layout = {} if layout is None else {"layout": layout}
    for prefix, tree in (("weights", params), ("gradients", grads)):
      if tree is None:
        continue
      for layer, value in per_layer(tree, weight_names, lambda a: a, **by_layout).items():
        value = np.asarray(value, dtype=np.float64).ravel()
        if np.all(np.isfinite(value)):
          self._writer.add_histogram(f"{prefix}/{layer}", value, step, bins=self.bins)

  def log_rows(self, records: Iterable[Mapping[str, float]]) -> None:
    """Every row's scalars at its own ``"step"`` (rows as :func:`write_run` writes them)."""
    for row in records:
      self.scalars(int(row["step"]), row)

  def close(self) -> None:
    """Flushes and closes the event file."""
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


class Monitor:
  r"""Per-layer norms, update ratios, dead units and alarms for your own training loop.

  :meth:`measure` goes inside your jitted step (pure, a few reductions per
  layer), :meth:`log` outside it; see the module docstring for a complete loop.
  The measurements are those :func:`jaxgrad.training.train` records, under the
  same names: ``grad_norm`` (:math:`\|g\|_2` of the raw gradient, so before any
  clipping in your chain), ``grad_norm/<layer>``, ``update_norm`` (the chain's
  output), ``update_ratio/<layer>`` and, given activations, ``dead/<layer>`` and
  ``saturated/<layer>``.

  Args:
    log_dir: where ``metrics.jsonl``, ``alarms.jsonl`` and (``tensorboard=True``)
      the event files go; created if missing; both ``.jsonl`` files start empty.
    every: :meth:`log` writes steps with ``step % every == 0``; on other steps it
      returns at once, without waiting for the device.
    tensorboard: also write every logged row as TensorBoard scalars and, when
      :meth:`log` is given ``params`` or ``grads``, per-layer histograms (needs
      ``tensorboardX``).
    layout: the model's probed structure (:func:`jaxgrad.probe.layout`), for
      execution-ordered per-layer names (see :func:`jaxgrad.metrics.grad_norms`).
    weight_names: the leaf name(s) that hold a layer's weight.
    activation: the activation's name, to turn ``outputs`` given to
      :meth:`measure` into dead and saturated fractions
      (:func:`jaxgrad.diagnostics.units.unit_fractions`).
    norm_threshold: a gradient norm above it raises an alarm.
    update_ratio_range: ``(low, high)`` for :math:`\|\Delta W_l\|_F/\|W_l\|_F`;
      outside it an alarm (vanishing or exploding update); ``None``: not checked.
      The default brackets the healthy :math:`10^{-3}` by three decades below
      and an update as large as the weight above.
    bins: histogram bins.

  Raises:
    ValueError: for ``every < 1``, a bad range, or an unknown ``activation``.
    ImportError: ``tensorboard=True`` without ``tensorboardX``.
  """

  def __init__(self, log_dir: str | pathlib.Path, *, every: int = 1, tensorboard: bool = False,
               layout: Trace | None = None, weight_names: str | tuple[str, ...] = "kernel",
               activation: str | None = None, norm_threshold: float = 1e3,
               update_ratio_range: tuple[float, float] | None = (1e-6, 1.0), bins: int = 64):
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
      raise ValueError(f"every must be an integer >= 1, got {every!r}")
    if update_ratio_range is not None and not 0 <= update_ratio_range[0] < update_ratio_range[1]:
      raise ValueError(f"update_ratio_range must be (low, high) with 0 <= low < high, "
                       f"got {update_ratio_range!r}")
    if activation is not None:
      relative_derivative(activation, jnp.zeros(()))  # validates the name now
    self.log_dir = pathlib.Path(log_dir)
    self.every = every
    self.layout = layout
    self.weight_names = weight_names
    self.activation = activation
    self.norm_threshold = norm_threshold
    self.update_ratio_range = update_ratio_range
    self.log_dir.mkdir(parents=True, exist_ok=True)
    self.metrics_path = self.log_dir / "metrics.jsonl"
    self.alarms_path = self.log_dir / "alarms.jsonl"
    for path in (self.metrics_path, self.alarms_path):
      write_jsonl(path, [])
    self._tensorboard = TensorBoardLogger(self.log_dir, bins=bins) if tensorboard else None

  def measure(self, grads: Any, params: Any, updates: Any, *,
              outputs: Mapping[str, jax.Array] | None = None,
              stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
    r"""This step's metrics; pure and jit-able, call it inside your step.

    Args:
      grads: the raw gradient, as it goes into ``optimizer.update`` (unscale
        it first if you scale the loss).
      params: the parameters the updates apply to (before ``apply_updates``).
      updates: what ``optimizer.update`` returned.
      outputs: optionally ``{layer: activations (batch, ..., units)}``, for the
        dead and saturated fractions (needs ``activation``).
      stats: or, without naming the activation, the probe's input statistics
        (``Probe.value_and_grad(...)[1]["stats"]``, the probe's own backward
        pass in place of ``jax.value_and_grad``) for the dead fraction after
        each layer (:func:`jaxgrad.probe.units_after`); needs
        ``Monitor(layout=probe.trace(...).trace)``.

    Returns:
      ``{"grad_norm": (), "layer_grad_norms": {layer: ()}, "update_norm": (),
      "update_ratio": {layer: ()}[, "dead": {...}, "saturated": {...}]}``; hand it to :meth:`log`.
    """
    norm, layers = grad_norms(grads, weight_names=self.weight_names, layout=self.layout)
    out: dict[str, Any] = {
        "grad_norm": norm, LAYER_GRAD_NORMS: layers,
        "update_norm": global_norm(updates),
        "update_ratio": update_ratios(updates, params, self.weight_names, self.layout)}
    if outputs is not None:
      if self.activation is None:
        raise ValueError("measure(outputs=...) needs Monitor(activation=...) to tell dead units")
      out.update(unit_fractions(outputs, self.activation))
    if stats is not None:
      if self.layout is None or not self.layout.rows:
        raise ValueError("measure(stats=...) needs Monitor(layout=probe.trace(...).trace), "
                         "the probe that produced the statistics")
      out["dead"] = probe.units_after(self.layout, stats)
    return out

  def log(self, step: int, metrics: Mapping[str, Any], *, loss: Any = None, params: Any = None,
          grads: Any = None, **scalars: Any) -> list[dict[str, Any]]:
    """Writes one row (every ``every`` steps) and its alarms; call it outside jit.

    Args:
      step: the step's index.
      metrics: what :meth:`measure` returned (any extra entries of your own are
        written too, nested mappings flattened with ``/``).
      loss: the step's loss.
      params, grads: with ``tensorboard=True``, logged as per-layer histograms.
      **scalars: more scalars for the row (e.g. ``accuracy=acc``).

    Returns:
      The alarms this row raised (see :func:`alarms`), also appended to ``alarms.jsonl``.
    """
    step = int(step)
    if step % self.every:
      return []
    columns = _columns({"loss": loss, **metrics, **scalars})
    for k, v in columns.items():
      if v.shape != ():
        raise ValueError(f"metric {k!r} has shape {v.shape}, expected (): log one step of one "
                         f"run (pick one out of a vmapped step first)")
    row = {"step": step, **{k: float(v) for k, v in columns.items()}}
    events = alarms([row], norm_threshold=self.norm_threshold,
                    update_ratio_range=self.update_ratio_range)
    files.append_jsonl(self.metrics_path, row)
    files.append_jsonl(self.alarms_path, *events)
    if self._tensorboard is not None:
      self._tensorboard.scalars(step, row)
      if params is not None or grads is not None:
        self._tensorboard.histograms(step, params, grads, self.weight_names, layout=self.layout)
    return events

  def close(self) -> None:
    """Flushes and closes the TensorBoard writer (the ``.jsonl`` files are always complete)."""
    if self._tensorboard is not None:
      self._tensorboard.close()

  def __enter__(self) -> "Monitor":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
