"""One figure style for every experiment: medians with interquartile bands, theory dashed."""

from collections.abc import Sequence
import pathlib
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import files, stats  # noqa: E402

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
THEORY = {"linestyle": "--", "linewidth": 1.2, "alpha": 0.9}
# A log-axis tick label as matplotlib's LogFormatterSciNotation writes it:
# "$\mathdefault{10^{-5}}$", "$\mathdefault{-2\times10^{3}}$", "$\mathdefault{0}$".
_MATHTEXT_POWER = re.compile(
    r"\$\\mathdefault\{(?P<mantissa>-?(?:[0-9.]+\\times)?[0-9.]+)(?:\^\{(?P<exponent>-?[0-9]+)\})?\}\$")
_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def plain_power(label: str) -> str:
  r"""``label`` of a log axis in plain text: ``"$\mathdefault{2\times10^{-5}}$"`` -> ``"2×10⁻⁵"``.

  Matplotlib writes a log axis's tick labels as mathtext; each distinct label
  is parsed once per process, about 20 ms apiece here, so a figure's log axes
  cost a second of a short run. Unicode superscripts draw the same power
  without the parser. A label of any other form is returned unchanged.
  """
  match = _MATHTEXT_POWER.fullmatch(label)
  if match is None:
    return label
  mantissa = match["mantissa"].replace("\\times", "×").replace("-", "−")
  exponent = match["exponent"]
  return mantissa if exponent is None else mantissa + exponent.translate(_SUPERSCRIPTS)


class PlainPowerFormatter(ticker.Formatter):
  """Wraps a log axis's formatter (which ticks it labels stays its choice), labels in plain text."""

  def __init__(self, inner: ticker.Formatter):
    self.inner = inner

  def set_axis(self, axis) -> None:
    super().set_axis(axis)
    self.inner.set_axis(axis)

  def set_locs(self, locs) -> None:
    self.inner.set_locs(locs)

  def __call__(self, x: float, pos: int | None = None) -> str:
    return plain_power(self.inner(x, pos))

  def format_data(self, value: float) -> str:
    return self.inner.format_data(value)


def _plain_log_labels(fig) -> None:
  """Every tick label matplotlib's own log formatter writes in ``fig``, in plain text (:func:`plain_power`)."""
  for ax in fig.axes:
    for axis in (ax.xaxis, ax.yaxis):
      for get, set_ in ((axis.get_major_formatter, axis.set_major_formatter),
                        (axis.get_minor_formatter, axis.set_minor_formatter)):
        if type(get()) is ticker.LogFormatterSciNotation:
          set_(PlainPowerFormatter(get()))


def figure(nrows: int = 1, ncols: int = 1, *, panel: tuple[float, float] = (3.2, 2.6)):
  """A figure of ``nrows x ncols`` panels, each ``panel`` inches; returns ``(fig, axes)``."""
  with plt.rc_context(STYLE):
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows), squeeze=False,
        layout="constrained",
    )
  return fig, axes


def median_band(ax, x: Sequence[float], samples: np.ndarray, *, label: str | None = None,
                color=None, marker: str | None = None):
  """Median over axis 0 of ``samples`` (seeds, len(x)) with its interquartile band.

  Non-finite samples are ignored (a diverged seed does not hide the others);
  a point where every seed is non-finite is left out of the line.
  """
  lo, med, hi = stats.finite_percentiles(samples, (25, 50, 75))
  (line,) = ax.plot(x, med, label=label, color=color, marker=marker, markersize=3)
  ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
  return line


def theory_line(ax, x: Sequence[float], y: Sequence[float], *, color=None, label=None):
  """A theory prediction, dashed, in the colour of the measurement it belongs to."""
  return ax.plot(x, y, color=color, label=label, **THEORY)[0]


def save(fig, path: str | pathlib.Path) -> pathlib.Path:
  """Writes ``fig`` atomically (:func:`jaxgrad.files.atomic_path`) in the format of ``path``'s suffix, and closes it.

  Log-axis tick labels are drawn as plain text (:class:`PlainPowerFormatter`).
  """
  path = pathlib.Path(path)
  _plain_log_labels(fig)
  with plt.rc_context(STYLE), files.atomic_path(path) as tmp:
    fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
  plt.close(fig)
  return path

