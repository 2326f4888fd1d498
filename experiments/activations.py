r"""Every registered activation and its derivative; the best case of a product of derivatives.

Seed 000 section 1.3 and seed 003 draw sigmoid and tanh with their derivatives
and state: sigmoid's derivative is at most 1/4 (at 0), tanh's at most 1 (at
0). Backpropagation through L layers multiplies L such derivatives (times the
weights), so even in the best case, every unit sitting exactly at the maximum,
the activation alone contributes a factor

.. math::

   \prod_{l=1}^{L} \phi'(z_l) \;\le\; \big(\max_z |\phi'(z)|\big)^L,
   \qquad \text{sigmoid: } 0.25^L .

Here every activation in :mod:`jaxgrad.activations` is drawn with its
derivative (from ``jax.grad``), the maximum of :math:`|\phi'|` and the
interval where it is attained are found numerically on a fine grid in float64,
and the bound :math:`(\max|\phi'|)^L` is drawn against depth, with the depth at
which it falls below the smallest normal float32 (1.2e-38). Beside it, the
typical factor :math:`\sqrt{\mu_1} = \sqrt{\mathbb E_{z\sim N(0,1)}[\phi'(z)^2]}`
(mean-field theory's per-layer factor of the backprop signal at unit
pre-activation variance, :func:`jaxgrad.theory.derivative_moment`). The
measurements are :mod:`jaxgrad.studies.activations`.

    python -m experiments.activations            # every activation, a few seconds
    python -m experiments.activations --quick    # the same, coarser grid

Writes ``config.json``, ``results.json`` (every plotted number),
``functions.png`` and ``product.png`` under ``--out``.
"""

import dataclasses
import math
import pathlib

from experiments import _cli, _config

import numpy as np  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)

from jaxgrad import activations, plotting  # noqa: E402
from jaxgrad.studies import activations as study  # noqa: E402

PLOT_RANGE = 6.0  # the function figure shows x in [-6, 6]
PLOT_POINTS = 1200  # about this many points per drawn curve


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Each activation and φ′ on a float64 grid, and products of L derivatives against depth."""

  activations: tuple[str, ...] = _config.setting(activations.names(), "activations to draw",
                                                 choices=activations.names)
  x_max: float = _config.setting(10.0, "the grid covers [-x_max, x_max]", above=0)
  step: float = _config.setting(1e-4, "grid spacing (the grid contains x = 0)", above=0)
  max_depth: int = _config.setting(100, "largest depth L in the product figure", at_least=1)

  def relations(self) -> dict[str, str]:
    """``step`` may not exceed ``x_max``."""
    return {"step": f"must be <= x_max={self.x_max:g}"} if self.step > self.x_max else {}

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: a 10x coarser grid (step 1e-3), about 12 s on 2 CPU cores."""
    return cls(step=1e-3)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: sigmoid, tanh, ReLU, GELU on [-4, 4], step 1e-3, L <= 8."""
    return cls(activations=("sigmoid", "tanh", "relu", "gelu"), x_max=4.0, step=1e-3,
               max_depth=8)


def run(config: Config) -> dict:
  """Each activation's :func:`jaxgrad.studies.activations.profile` on the config's grid."""
  x = study.grid(config.x_max, config.step)
  shown = np.abs(x) <= PLOT_RANGE
  stride = max(1, int(shown.sum() // PLOT_POINTS))
  x_plot = x[shown][::stride]
  depths = np.arange(1, config.max_depth + 1)
  per_activation = {name: study.profile(name, x, x_plot, depths)
                    for name in _cli.progress(config.activations, desc="activations")}
  return {"config": config, "x": x_plot, "depths": depths,
          "float32_tiny": study.FLOAT32_TINY, "activations": per_activation}


def plot_functions(results: dict, out_dir: pathlib.Path) -> None:
  """``functions.png``: each activation and its derivative, the maximum of |φ′| marked."""
  acts = results["activations"]
  x = np.asarray(results["x"])
  ncols = min(4, len(acts))
  nrows = math.ceil(len(acts) / ncols)
  fig, axes = plotting.figure(nrows, ncols, panel=(2.4, 1.9))
  for ax in axes.flat[len(acts):]:
    ax.set_visible(False)
  for ax, (name, a) in zip(axes.flat, acts.items()):
    ax.plot(x, a["phi"], color="C0", label="φ")
    ax.plot(x, a["derivative"], color="C3", label="φ′")
    lo, hi = a["attained_on"]
    ax.plot(min(max(0.0, lo), hi), a["max_abs_derivative"], "k.", markersize=5)
    where = f"x={lo:.3g}" if lo == hi else f"x∈[{lo:.2g},{hi:.2g}]"
    ax.set_title(f"{name}: max|φ′|={a['max_abs_derivative']:.4g} at {where}", fontsize=7)
    ax.set_ylim(-2.2, 2.2)
  axes[0, 0].legend(loc="upper left")
  for ax in axes[-1]:
    ax.set_xlabel("x")
  plotting.save(fig, out_dir / "functions.png")


def plot_products(results: dict, out_dir: pathlib.Path) -> None:
  """``product.png``: the best-case and the typical product of L derivatives against depth."""
  depths = np.asarray(results["depths"])
  fig, axes = plotting.figure(1, 2, panel=(3.6, 3.0))
  for i, (name, a) in enumerate(results["activations"].items()):
    color = f"C{i % 10}"
    axes[0, 0].plot(depths, a["max_product"], color=color,
                    linestyle="-" if i < 10 else ":", label=f"{name} ({a['max_abs_derivative']:.3g})")
    axes[0, 1].plot(depths, a["rms_product"], color=color, linestyle="-" if i < 10 else ":")
  for ax in axes[0]:
    ax.axhline(results["float32_tiny"], color="k", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("depth L")
  axes[0, 0].set_title("best case (max |φ′|)^L\n(dashed: smallest normal float32)")
  axes[0, 1].set_title("typical E[φ′(z)²]^(L/2)\nz ~ N(0, 1)")
  axes[0, 0].set_ylabel("product of L derivatives")
  axes[0, 1].legend(*axes[0, 0].get_legend_handles_labels(), loc="center left",
                    bbox_to_anchor=(1.0, 0.5), title="(max |φ′|)")
  plotting.save(fig, out_dir / "product.png")


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``functions.png`` and ``product.png``.

  ``functions.png``: each activation and its derivative, max |φ′| marked. ``product.png``:
  the best case (max |φ′|)^L and the typical E[φ′(z)²]^(L/2) against depth L, beside the
  smallest normal float32.
  """
  plot_functions(results, out_dir)
  plot_products(results, out_dir)


def summary(results: dict) -> str:
  """One row per activation: max |φ′|, where, φ′(0), rms φ′ at q = 1, underflow depth.

  The last column is the smallest L with (max |φ′|)^L below 1.2e-38, ``-`` where
  max |φ′| >= 1.
  """
  header = ["activation", "max|φ′|", "attained on", "φ′(0)", "rms φ′ (q=1)", "max^L < 1.2e-38 at L"]
  rows = []
  for name, a in results["activations"].items():
    lo, hi = a["attained_on"]
    rows.append([name, a["max_abs_derivative"], f"{lo:.4g}" if lo == hi else f"[{lo:.4g}, {hi:.4g}]",
                 a["derivative_at_0"], a["rms_derivative_q1"],
                 "-" if a["underflow_depth"] is None else a["underflow_depth"]])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
