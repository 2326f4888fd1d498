"""What :func:`jaxgrad.diagnose` returns: one :class:`LayerReport` per probed module, and the whole.

A :class:`Report` prints as a table (``str``), shows as an HTML table in a
notebook, serialises to strict JSON (:meth:`Report.to_dict`, in
:mod:`jaxgrad.files`' encoding: NaN and ±inf as the strings ``"nan"``, ``"inf"``,
``"-inf"``, which :meth:`Report.from_dict` turns back into floats) and draws a
gradient-flow figure (:meth:`Report.plot`).
"""

from collections.abc import Mapping, Sequence
import dataclasses
import html
import math
import pathlib
from typing import Any

from jaxgrad import files

VERDICTS = ("healthy", "vanishing", "exploding", "saturated", "dead", "blocked")
COLORS = {"healthy": "tab:green", "vanishing": "tab:blue", "exploding": "tab:red",
          "saturated": "tab:orange", "dead": "tab:gray", "blocked": "tab:purple"}


@dataclasses.dataclass(frozen=True)
class LayerReport:
  r"""The evidence and verdict for one probed module (one layer of a stack).

  Attributes:
    name: module path as in the params tree, ``'/'``-joined; a scanned stack's
      component numbered ``_000``, ``_001``, ….
    kind: the module's class (``Dense``, ``Conv``, ``BatchNorm``, …).
    verdict: one of :data:`VERDICTS`.
    signal: :math:`\mathbb{E}_b\|\partial L/\partial y[b]\|_2` at the module's
      output (NaN where ``signal_kind`` is ``'weight_grad'``).
    signal_kind: ``'output'``, or ``'weight_grad'`` where the signal cannot be
      measured (inside an ``nn.scan`` without ``'perturbations'`` in its
      ``variable_axes``): the verdict then rests on ``grad_norm`` alone.
    ratio: the row's ``signal`` (or ``grad_norm`` for ``'weight_grad'`` rows)
      over that of the last row of the same kind (the output end).
    grad_norm: :math:`\|\partial L/\partial W\|_F` over the module's weights
      (all its own parameters but biases).
    weight_norm: :math:`\|W\|_F`.
    dead_fraction: fraction of the units after this module (the next module's
      input, where the two form a chain) that are 0 on every example; NaN
      where not measured.
    saturated_fraction: fraction of those entries in a flat regime of a
      bounded activation (:math:`\phi'/\max\phi' < 0.05`).
    activation: the activation after this module as the data show it
      (``relu``, ``tanh``, ``sigmoid``) or as hinted; None where unknown.
    growth: :math:`(s_l / s_{l+1})^2`, the measured per-layer growth of the
      squared signal toward the input, where this row and the next form a
      chain of i.i.d. dense layers; else None.
    chi1: the mean-field :math:`\chi_1` of the next layer's measured weight
      variance :math:`\sigma_w^2 = \mathrm{fan\_in}\,\overline{W^2}` and bias
      variance (Poole et al. 2016; Schoenholz et al. 2017), beside ``growth``.
    cause: for ``blocked``, the zero-initialised module downstream that
      blocks the gradient.
    finite: whether the forward output and the signal are finite.
  """

  name: str
  kind: str
  verdict: str
  signal: float
  signal_kind: str
  ratio: float
  grad_norm: float
  weight_norm: float
  dead_fraction: float = math.nan
  saturated_fraction: float = math.nan
  activation: str | None = None
  growth: float | None = None
  chi1: float | None = None
  cause: str | None = None
  finite: bool = True

  @property
  def grad_to_weight(self) -> float:
    return self.grad_norm / self.weight_norm if self.weight_norm > 0 else math.nan

  def to_dict(self) -> dict[str, Any]:
    """Strict JSON values (:func:`jaxgrad.files.encode`), with ``grad_to_weight``."""
    return files.encode({**dataclasses.asdict(self), "grad_to_weight": self.grad_to_weight})


@dataclasses.dataclass(frozen=True)
class Report:
  """The diagnosis of one model on one batch.

  Attributes:
    layers: one :class:`LayerReport` per probed module, in execution order.
    verdict: the overall verdict: the most frequent non-healthy verdict other
      than ``blocked`` (``blocked`` when that is all there is), else healthy.
    remedies: what to try, in order of expected effect, without what the
      model already has.
    first_nonfinite: where NaN/Inf first appears, ``{"module", "direction"}``
      (direction ``input``, ``forward`` or ``backward``), or None.
    loss: the loss on the batch.
    notes: what the reader must know to read the table (weight-gradient-only
      rows, blocked layers and their cause).
  """

  layers: tuple[LayerReport, ...]
  verdict: str
  remedies: tuple[str, ...]
  first_nonfinite: dict[str, str] | None
  loss: float
  notes: tuple[str, ...] = ()
  thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def __getitem__(self, name: str) -> LayerReport:
    for layer in self.layers:
      if layer.name == name:
        return layer
    raise KeyError(f"no layer {name!r}; layers are {[l.name for l in self.layers[:6]]} ...")

  @property
  def counts(self) -> dict[str, int]:
    return {v: sum(l.verdict == v for l in self.layers) for v in VERDICTS}

  def to_dict(self) -> dict[str, Any]:
    """Strict JSON (``json.dumps(..., allow_nan=False)`` accepts it)."""
    return files.encode({
        "layers": [l.to_dict() for l in self.layers], "verdict": self.verdict,
        "counts": self.counts, "remedies": self.remedies, "first_nonfinite": self.first_nonfinite,
        "loss": self.loss, "notes": self.notes, "thresholds": self.thresholds})

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "Report":
    """Reads :meth:`to_dict`'s output back (strings for NaN/±inf become floats)."""
    fields = {f.name for f in dataclasses.fields(LayerReport)}
    texts = ("name", "kind", "verdict", "signal_kind", "activation", "cause")
    layers = tuple(LayerReport(**{k: v if k in texts else files.decode(v)
                                  for k, v in l.items() if k in fields})
                   for l in d["layers"])
    return cls(layers, d["verdict"], tuple(d["remedies"]), d["first_nonfinite"],
               files.decode(d["loss"]), tuple(d.get("notes", ())),
               files.decode(d.get("thresholds", {})))

  def _rows(self) -> tuple[list[str], list[list[str]]]:
    head = ["layer", "kind", "verdict", "signal", "ratio", "|dW|", "|dW|/|W|", "dead", "sat",
            "growth", "chi1"]
    pct = lambda v: "" if math.isnan(v) else f"{v:.0%}"  # noqa: E731
    opt = lambda v: "" if v is None else f"{v:.3g}"  # noqa: E731
    rows = []
    for l in self.layers:
      signal = f"{l.signal:.3g}" if l.signal_kind == "output" else "(w-grad)"
      verdict = l.verdict + (f" by {l.cause}" if l.cause else "")
      rows.append([l.name, l.kind, verdict, signal, f"{l.ratio:.3g}", f"{l.grad_norm:.3g}",
                   f"{l.grad_to_weight:.3g}", pct(l.dead_fraction), pct(l.saturated_fraction),
                   opt(l.growth), opt(l.chi1)])
    used = [i for i in range(len(head)) if i < 8 or any(r[i] for r in rows)]
    return [head[i] for i in used], [[r[i] for i in used] for r in rows]

  def __str__(self) -> str:
    head, rows = self._rows()
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    lines = [fmt(head), "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(fmt, rows), ""]
    counts = ", ".join(f"{v}: {n}" for v, n in self.counts.items() if n)
    lines.append(f"verdict: {self.verdict} ({counts}); loss {self.loss:.4g}")
    if self.first_nonfinite:
      lines.append(f"first non-finite: {self.first_nonfinite['module']} "
                   f"({self.first_nonfinite['direction']})")
    lines += [f"note: {n}" for n in self.notes]
    if self.remedies:
      lines.append("remedies, in order of expected effect:")
      lines += [f"  {i}. {r}" for i, r in enumerate(self.remedies, 1)]
    return "\n".join(lines)

  def _repr_html_(self) -> str:
    head, rows = self._rows()
    cell = lambda tag, c: f"<{tag}>{html.escape(c)}</{tag}>"  # noqa: E731
    body = "".join(
        f'<tr style="color:{COLORS[l.verdict].removeprefix("tab:")}">'
        + "".join(cell("td", c) for c in r) + "</tr>" for l, r in zip(self.layers, rows))
    extra = "".join(f"<p>{html.escape(line)}</p>" for line in str(self).split("\n")[len(rows) + 3:])
    return (f"<table><tr>{''.join(cell('th', h) for h in head)}</tr>{body}</table>{extra}")

  def plot(self, path: str | None = None, *, title: str | None = None):
    """Gradient flow: per-layer signal and weight-gradient norm on a log axis, by verdict.

    Args:
      path: where to save the figure (PNG); None returns it unsaved.
      title: the figure's title.

    Returns:
      The matplotlib figure.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel
    if path is not None:
      matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    n = len(self.layers)
    labels = [_short(l.name) for l in self.layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * n + 2),
                                    3.6 + 0.075 * max(len(t) for t in labels)))
    xs = range(n)
    floor = _positive_floor([l.signal for l in self.layers] + [l.grad_norm for l in self.layers])
    signal = [max(l.signal, floor) if l.signal_kind == "output" else math.nan for l in self.layers]
    grads = [max(l.grad_norm, floor) if math.isfinite(l.grad_norm) else math.nan
             for l in self.layers]
    ax.plot(xs, signal, "-", color="0.6", lw=1, zorder=1)
    ax.plot(xs, grads, "--", color="0.6", lw=1, zorder=1)
    for verdict in VERDICTS:
      idx = [i for i, l in enumerate(self.layers) if l.verdict == verdict]
      if not idx:
        continue
      ax.scatter(idx, [signal[i] for i in idx], color=COLORS[verdict], marker="o", zorder=2,
                 label=f"{verdict} ({len(idx)})")
      ax.scatter(idx, [grads[i] for i in idx], color=COLORS[verdict], marker="s", s=14, zorder=2)
    ax.axhline(floor, color="0.75", ls=":", lw=1)
    ax.text(n - 0.5, floor, "exact 0", fontsize=7, color="0.5", ha="right", va="bottom")
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=90, fontsize=6 if n > 30 else 7)
    ax.set_ylabel("● E‖dL/dy‖ at the output   ■ ‖dL/dW‖", fontsize=8)
    ax.set_xlabel("module, in execution order (input → output)")
    ax.set_title(title or f"gradient flow: {self.verdict}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    if path is not None:
      with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format=pathlib.Path(path).suffix.lstrip(".") or "png")
      plt.close(fig)
    return fig


def _short(name: str, width: int = 32) -> str:
  """A tick label: the last path components that fit in ``width`` characters."""
  parts = name.split("/")
  out = parts[-1]
  for part in reversed(parts[:-1]):
    if len(part) + 1 + len(out) > width:
      return "…/" + out
    out = f"{part}/{out}"
  return out


def _positive_floor(values: Sequence[float]) -> float:
  """A tenth of the smallest positive finite value: where exact zeros are drawn."""
  pos = [v for v in values if math.isfinite(v) and v > 0]
  return min(pos) / 10 if pos else 1e-30
