r"""Mean-field theory beside measurement: chi_1 and the length map in wide random nets.

For weights N(0, sigma_w^2/N) and biases N(0, sigma_b^2), mean-field theory
(Poole et al. 2016; Schoenholz et al. 2017; jaxgrad.theory) predicts

* the pre-activation variance q^l of every layer: the iterates of the length
  map q^l = sigma_w^2 E[phi(sqrt(q^{l-1}) z)^2] + sigma_b^2;
* the per-layer factor of the squared backprop signal,
  ||dL/dz_{l-1}||^2 / ||dL/dz_l||^2 -> chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2].

This draws ``--seeds`` networks of width N and depth L for every sigma_w^2 on a
grid (all sigma_w^2 and seeds of one activation in one compiled program),
sends a random output gradient dL/dh_L = r ~ N(0, I) back through them, and
fits the slope of ln ||dL/dz_l||^2 against l over the layers past
``burn_in`` (where q^l has settled at q*). exp(slope) is the measured chi_1.

    python -m experiments.mean_field            # width 512, depth 50, 6 seeds, ~2-4 min on 2 cores
    python -m experiments.mean_field --quick    # width 256, depth 30, under a minute

Writes ``config.json``, ``results.json`` (every plotted number), ``chi1.png``
(measured against predicted ln chi_1, identity line) and ``length_map.png``
(measured q^l against the length map's iterates) under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import activations, plotting  # noqa: E402
from jaxgrad.studies import mean_field  # noqa: E402

LENGTH_MAP_PANELS = 3  # sigma_w^2 values drawn in the length-map figure: lowest, middle, highest


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Measured χ₁ and q^l of wide random nets beside mean field, per activation and σ_w²."""

  width: int = _config.setting(512, "network width N", at_least=1)
  depth: int = _config.setting(50, "number of layers L", at_least=3)
  seeds: int = _config.setting(6, "networks per sigma_w^2", at_least=1)
  batch: int = _config.setting(8, "inputs per network", at_least=1)
  activations: tuple[str, ...] = _config.setting(("tanh", "relu", "erf"), choices=activations.names)
  sigma_w2: tuple[float, ...] = _config.setting((1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0),
                                                "grid of sigma_w^2", above=0)
  sigma_b2: float = _config.setting(0.05, "bias variance", at_least=0)
  burn_in: int = _config.setting(10, "layers skipped before fitting the slope", at_least=0)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  def relations(self) -> dict[str, str]:
    """The slope is fitted over layers ``burn_in .. depth - 2``: at least two of them."""
    if self.burn_in > self.depth - 3:
      return {"burn_in": f"must be <= depth - 3 = {self.depth - 3}"}
    return {}

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: width 256, depth 30, 3 seeds, 6 σ_w², about 9 s on 2 CPU cores."""
    return cls(width=256, depth=30, seeds=3, burn_in=8, sigma_w2=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0))

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: tanh at σ_w² = 1 and 3, width 16, depth 8, 2 seeds."""
    return cls(width=16, depth=8, seeds=2, batch=2, burn_in=2, activations=("tanh",),
               sigma_w2=(1.0, 3.0))


def run(config: Config) -> dict:
  """Measures and predicts chi_1 and q^l for every activation (:mod:`jaxgrad.studies.mean_field`)."""
  cases = {}
  for activation in _cli.progress(config.activations, desc="mean field"):
    measured = mean_field.measure(
        activation, config.sigma_w2, config.sigma_b2, width=config.width, depth=config.depth,
        batch=config.batch, seeds=config.seeds, key=jax.random.key(config.seed))
    predicted = mean_field.predict(activation, config.sigma_w2, config.sigma_b2, config.depth)
    cases[activation] = {"sigma_w2": config.sigma_w2,
                         **mean_field.compare(measured, predicted, config.burn_in)}
  worst = {a: float(np.nanmax(c["chi1_rel_error"])) for a, c in cases.items()}
  return {"config": config, "sigma_b2": config.sigma_b2, "width": config.width,
          "cases": cases, "worst_chi1_rel_error": worst}


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """``chi1.png`` (measured against predicted ln chi_1) and ``length_map.png`` (q^l against theory)."""
  _plot_chi1(results, out_dir / "chi1.png")
  _plot_length_map(results["cases"], out_dir / "length_map.png")


def _plot_chi1(results: dict, path: pathlib.Path) -> None:
  cases = results["cases"]
  fig, axes = plotting.figure(1, len(cases), panel=(3.0, 2.8))
  for col, (activation, case) in enumerate(cases.items()):
    ax = axes[0, col]
    predicted = np.log(np.asarray(case["chi1_theory"], dtype=float))
    slopes = np.asarray(case["log_chi1_measured_per_seed"], dtype=float).T  # (seeds, grid)
    order = np.argsort(predicted)
    plotting.median_band(ax, predicted[order], slopes[:, order], marker="o", label="measured")
    lo, hi = predicted.min(), predicted.max()
    plotting.theory_line(ax, [lo, hi], [lo, hi], color="k", label="identity (theory)")
    for s, p, m in zip(case["sigma_w2"], predicted, np.median(slopes, axis=0)):
      ax.annotate(f"{s:g}", (p, m), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_title(f"{activation}: worst |Δχ₁|/χ₁ = {results['worst_chi1_rel_error'][activation]:.1%}")
    ax.set_xlabel("ln χ₁ predicted")
  axes[0, 0].set_ylabel("measured slope of ln‖dL/dz_l‖² per layer")
  axes[0, 0].legend(loc="upper left")
  fig.suptitle(f"per-layer growth of the backprop signal, σb²={results['sigma_b2']:g}, "
               f"N={results['width']} (point labels: σw²)", fontsize=9)
  plotting.save(fig, path)


def _plot_length_map(cases: dict, path: pathlib.Path) -> None:
  fig, axes = plotting.figure(1, len(cases), panel=(3.0, 2.6))
  for col, (activation, case) in enumerate(cases.items()):
    ax = axes[0, col]
    grid = list(case["sigma_w2"])
    picks = sorted({0, len(grid) // 2, len(grid) - 1})[:LENGTH_MAP_PANELS]
    q_meas = np.asarray(case["q_measured_per_seed"], dtype=float)
    q_theory = np.asarray(case["q_theory"], dtype=float)
    layers = np.arange(1, q_theory.shape[-1] + 1)
    for i, pick in enumerate(picks):
      color = f"C{i}"
      plotting.median_band(ax, layers, q_meas[pick], color=color, label=f"σw²={grid[pick]:g}")
      plotting.theory_line(ax, layers, q_theory[pick], color=color)
    ax.set_yscale("log")
    ax.set_title(f"{activation}: q^l (dashed: theory)")
    ax.set_xlabel("layer l")
  axes[0, 0].set_ylabel("mean pre-activation² q^l")
  axes[0, -1].legend(loc="lower right")
  plotting.save(fig, path)


def summary(results: dict) -> str:
  """One row per (activation, σ_w²): χ₁ predicted, measured and their relative error.

  χ₁ measured is the median over seeds; a last line gives each activation's worst error.
  """
  header = ["activation", "σw²", "χ₁ theory", "χ₁ measured", "rel. error"]
  rows = []
  for activation, case in results["cases"].items():
    for i, s in enumerate(case["sigma_w2"]):
      rows.append([activation, float(s), float(case["chi1_theory"][i]),
                   float(case["chi1_measured_median"][i]), float(case["chi1_rel_error"][i])])
  worst = ", ".join(f"{a} {e:.2%}" for a, e in results["worst_chi1_rel_error"].items())
  return _cli.format_table(header, rows) + f"\n\nworst relative error of χ₁: {worst}"


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
