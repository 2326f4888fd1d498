"""jaxgrad.plotting: log-axis tick labels in plain text, the same ticks as matplotlib's own."""

import matplotlib.pyplot as plt
from matplotlib import ticker
import numpy as np
import pytest

from jaxgrad import plotting


@pytest.mark.parametrize("mathtext, plain", [
    (r"$\mathdefault{10^{-5}}$", "10⁻⁵"),
    (r"$\mathdefault{10^{12}}$", "10¹²"),
    (r"$\mathdefault{-10^{3}}$", "−10³"),
    (r"$\mathdefault{2\times10^{-2}}$", "2×10⁻²"),
    (r"$\mathdefault{2^{-10}}$", "2⁻¹⁰"),
    (r"$\mathdefault{0}$", "0"),
    ("", ""),
])
def test_plain_power_writes_the_power_matplotlib_wrote(mathtext, plain):
  assert plotting.plain_power(mathtext) == plain


@pytest.mark.parametrize("other", [r"$\mathdefault{10^{0.50}}$", r"$\alpha$", "1e-5", "10"])
def test_a_label_of_any_other_form_is_left_as_it_is(other):
  assert plotting.plain_power(other) == other


def _labels(axis) -> list[str]:
  return [t.get_text() for t in axis.get_majorticklabels() + axis.get_minorticklabels()
          if t.get_text()]


@pytest.mark.parametrize("scale, limits", [
    ({"value": "log"}, (1e-12, 1e3)),  # decades only
    ({"value": "log"}, (0.015, 0.09)),  # under one decade: labelled minor ticks
    ({"value": "log", "base": 2}, (2.0**-12, 2.0**3)),
    ({"value": "symlog", "linthresh": 1e-2}, (-10.0, 10.0)),
])
def test_save_labels_the_ticks_matplotlib_labels_without_mathtext(tmp_path, scale, limits):
  def draw():
    fig, axes = plotting.figure(1, 1)
    ax = axes[0, 0]
    ax.plot(np.linspace(0, 1, 5), np.linspace(*limits, 5))
    ax.set_yscale(**scale)
    ax.set_ylim(*limits)
    return fig, ax

  fig, ax = draw()
  fig.canvas.draw()
  mathtext = _labels(ax.yaxis)
  plt.close(fig)
  fig, ax = draw()
  plotting.save(fig, tmp_path / "fig.png")
  plain = _labels(ax.yaxis)
  assert mathtext and all(label.startswith("$") for label in mathtext)
  assert plain == [plotting.plain_power(label) for label in mathtext]
  assert not any("$" in label for label in plain)


def test_save_leaves_a_formatter_the_caller_chose(tmp_path):
  fig, axes = plotting.figure(1, 1)
  ax = axes[0, 0]
  ax.plot([1, 2], [1e-3, 1e3])
  ax.set_yscale("log")
  chosen = ticker.LogFormatterMathtext()
  ax.yaxis.set_major_formatter(chosen)
  plotting.save(fig, tmp_path / "fig.png")
  assert ax.yaxis.get_major_formatter() is chosen
