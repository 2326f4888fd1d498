"""One figure style for every experiment: medians with interquartile bands, theory dashed."""

from collections.abc import Sequence
import pathlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
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
  """Writes ``fig`` atomically (:func:`jaxgrad.files.atomic_path`) in the format of ``path``'s suffix, and closes it."""
  path = pathlib.Path(path)
  with plt.rc_context(STYLE), files.atomic_path(path) as tmp:
    fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
  plt.close(fig)
  return path

