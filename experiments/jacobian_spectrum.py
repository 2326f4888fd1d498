r"""Singular-value spectra of deep networks' input-output Jacobians, against theory.

For every activation phi and weight distribution (Gaussian N(0, sigma_w^2/N)
or orthogonal with gain sigma_w), at the critical sigma_w^2 (chi_1 = 1), this
draws ``--seeds`` networks ``h_l = phi(W_l h_{l-1})`` of width N and measures
the squared singular values of ``J_L = dh_L/dx`` for every depth L asked for.
All depths come from one forward-mode pass (``jax.jacfwd`` of every layer's
output), all seeds from one ``vmap``: one compiled program per activation
(:mod:`jaxgrad.studies.jacobian_spectra`).

Mean-field / free-probability theory (jaxgrad.theory) predicts the mean and
variance of the eigenvalues of J J^T: linear Gaussian L, linear orthogonal 0,
ReLU Gaussian 2L, ReLU orthogonal L (Pennington et al. 2017, 2018). Those are
infinite-width results; at finite width N the fluctuations grow with
beta = L/N (Hanin & Nica 2019), which the third figure shows.

    python -m experiments.jacobian_spectrum            # width 256, 32 seeds, ~2 min on 2 cores
    python -m experiments.jacobian_spectrum --quick    # width 64, under a minute
    python -m experiments.jacobian_spectrum --float64 --depths 1,4,16,64

Writes ``config.json``, ``results.json`` (every plotted number),
``density.png``, ``moments.png`` and ``finite_width.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import activations, plotting, theory  # noqa: E402
from jaxgrad.studies import jacobian_spectra  # noqa: E402

DENSITY_DEPTHS = 3  # depths drawn in the density figure: first, middle, last


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Squared singular values of input-output Jacobians at the critical σ_w², per depth.

  ``seeds`` nets per (activation, weight distribution), against free probability.
  """

  width: int = _config.setting(256, "network width N", at_least=1)
  depths: tuple[int, ...] = _config.setting((1, 2, 4, 8, 16, 32, 64, 128), "depths L to measure",
                                            at_least=1, increasing=True)
  seeds: int = _config.setting(32, "networks per case", at_least=1)
  activations: tuple[str, ...] = _config.setting(
      ("linear", "relu", "tanh", "hard_tanh", "sigmoid"), choices=activations.names)
  weights: tuple[str, ...] = _config.setting(theory.WEIGHTS, choices=theory.WEIGHTS)
  input_q: float = _config.setting(1.0, "input x ~ N(0, input_q I)", above=0)
  float64: bool = _config.setting(False, "compute in float64")
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: width 64, depths up to 64, 8 seeds, about 25 s on 2 CPU cores."""
    return cls(width=64, depths=(1, 2, 4, 8, 16, 32, 64), seeds=8)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: linear, ReLU and sigmoid, width 8, depths 1 and 4, 2 seeds."""
    return cls(width=8, depths=(1, 4), seeds=2, activations=("linear", "relu", "sigmoid"))


def run(config: Config) -> dict:
  """Every (activation, weights) case at its critical sigma_w^2, against theory."""
  sigma_w2 = {a: jacobian_spectra.critical_sigma_w2(a) for a in config.activations}
  density_at = sorted({0, len(config.depths) // 2, len(config.depths) - 1})[:DENSITY_DEPTHS]
  jobs = [(a, w) for a in config.activations for w in config.weights]
  cases = {}
  with jax.enable_x64(config.float64):
    for activation, weights in _cli.progress(jobs, desc="jacobian spectra"):
      cases[f"{activation}/{weights}"] = jacobian_spectra.spectrum_case(
          activation, sigma_w2[activation], weights, width=config.width, depths=config.depths,
          seeds=config.seeds, key=jax.random.key(config.seed), density_at=density_at,
          input_q=config.input_q, dtype=jnp.float64 if config.float64 else jnp.float32)
  return {"config": config, "width": config.width, "sigma_w2": sigma_w2, "cases": cases,
          "agreement": jacobian_spectra.agreement(cases, config.width)}


def _panel_order(cases: dict) -> tuple[list[str], list[str]]:
  """The activations (columns) and weight distributions (rows) of the cases, in their order."""
  return (list(dict.fromkeys(c["activation"] for c in cases.values())),
          list(dict.fromkeys(c["weights"] for c in cases.values())))


def _density_figure(cases: dict, path: pathlib.Path) -> None:
  """Densities of log10 s² at the first, middle and last depth, one panel per case."""
  acts, weights = _panel_order(cases)
  fig, axes = plotting.figure(len(weights), len(acts), panel=(2.6, 2.1))
  for case in cases.values():
    ax = axes[weights.index(case["weights"]), acts.index(case["activation"])]
    for i, (depth, dens) in enumerate(case["density"].items()):
      edges = np.asarray(dens["log10_s2_bin_edges"])
      zero = dens["unresolved_fraction"]
      ax.stairs(dens["density"], edges, color=plotting.plt.cm.viridis(i / 2),
                label=f"L={depth}" + (f" ({zero:.0%} ≈0)" if zero > 0.005 else ""))
    ax.legend(loc="upper left")
    ax.set_title(f"{case['activation']}, {case['weights']} (σw²={case['sigma_w2']:.3g})")
    ax.set_xlabel("log10 s²")
  axes[0, 0].set_ylabel("density")
  fig.suptitle("density of squared singular values of J; '≈0': below the SVD's resolution "
               "n·eps·s_max (exact zeros of dead / saturated units, or a tail only --float64 "
               "resolves)", fontsize=9)
  plotting.save(fig, path)


def _moments_figure(cases: dict, path: pathlib.Path) -> None:
  """Variance (top) and mean (bottom) of s² against depth, measured and predicted."""
  acts, _ = _panel_order(cases)
  colors = {"gaussian": "C0", "orthogonal": "C3"}
  fig, axes = plotting.figure(2, len(acts), panel=(2.6, 2.2))
  for case in cases.values():
    col, color = acts.index(case["activation"]), colors.get(case["weights"])
    depths = case["depths"]
    for row, key in enumerate(("var_sq", "mean_sq")):
      ax = axes[row, col]
      plotting.median_band(ax, depths, case[key]["per_seed"], label=case["weights"],
                           color=color, marker="o")
      plotting.theory_line(ax, depths, case["theory"][key], color=color)
      ax.set_xscale("log", base=2)
      ax.set_yscale("symlog", linthresh=1e-2)
      ax.set_title(case["activation"])
      ax.set_xlabel("depth L")
  axes[0, 0].set_ylabel("var of s² (dashed: theory)")
  axes[1, 0].set_ylabel("mean of s²")
  axes[0, 0].legend()
  plotting.save(fig, path)


def _finite_width_figure(cases: dict, agreement: dict, width: int, path: pathlib.Path) -> None:
  """Measured / predicted variance of s² against beta = depth / width."""
  fig, axes = plotting.figure(1, 1, panel=(6.0, 3.6))
  ax = axes[0, 0]
  for name, ratio in agreement.items():
    case = cases[name]
    r = np.asarray(ratio["ratio"], dtype=float)
    if not np.any(np.asarray(case["theory"]["var_sq"]) > 0):
      continue
    beta = np.asarray(case["depths"]) / width
    ax.plot(beta, r, marker="o", markersize=3, label=name,
            linestyle="-" if case["weights"] == "gaussian" else ":")
  ax.axhline(1.0, color="k", linewidth=0.8)
  rtol = jacobian_spectra.AGREEMENT_RTOL
  ax.axhspan(1 - rtol, 1 + rtol, color="k", alpha=0.08)
  ax.axvline(1 / 16, color="k", linestyle="--", linewidth=0.8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("β = depth / width")
  ax.set_ylabel("measured / predicted var of s²")
  ax.set_title(f"finite-width departure from theory (N={width})")
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, path)


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``density.png``, ``moments.png`` and ``finite_width.png``.

  ``density.png``: densities of log10 s² at the first, middle and last depth, per case.
  ``moments.png``: the variance and mean of s² against depth, theory dashed.
  ``finite_width.png``: measured / predicted variance of s² against β = L/N.
  """
  cases = results["cases"]
  _density_figure(cases, out_dir / "density.png")
  _moments_figure(cases, out_dir / "moments.png")
  _finite_width_figure(cases, results["agreement"], results["width"], out_dir / "finite_width.png")


def summary(results: dict) -> str:
  """One row per (activation, weights) case, at the deepest L: var s² against theory.

  Columns: σ_w², L, the variance of s² (mean and sem over seeds), the prediction, their
  ratio, and the worst relative error over depths L <= N/16.
  """
  header = ["case", "σw²", "L", "var s² measured", "± sem", "predicted", "ratio", "max err L≤N/16"]
  rows = []
  for name, case in results["cases"].items():
    i = -1
    agree = results["agreement"][name]
    err = agree["max_rel_error_small_depth"]
    rows.append([name, float(case["sigma_w2"]), case["depths"][i],
                 float(case["var_sq"]["mean"][i]), float(case["var_sq"]["sem"][i]),
                 float(case["theory"]["var_sq"][i]),
                 float(agree["ratio"][i]), "-" if err is None else f"{err:.1%}"])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
