r"""Singular-value spectra of deep networks' input-output Jacobians, against theory.

For every activation phi and weight distribution (Gaussian N(0, sigma_w^2/N)
or orthogonal with gain sigma_w), at the critical sigma_w^2 (chi_1 = 1), this
draws ``--seeds`` networks ``h_l = phi(W_l h_{l-1})`` of width N and measures
the squared singular values of ``J_L = dh_L/dx`` for every depth L asked for.
All depths come from one forward-mode pass (``jax.jacfwd`` of every layer's
output), all seeds from one ``vmap``: one compiled program per activation.

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
import math
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import activations, diagnostics, initializers, plotting, theory  # noqa: E402
from jaxgrad.models import DenseStack  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

# Critical sigma_w^2 at sigma_b^2 = 0 where it is known in closed form; any
# other activation gets jaxgrad.theory.critical_sigma_w2 (sigmoid: ~103).
CRITICAL_SIGMA_W2 = {"linear": 1.0, "relu": 2.0, "tanh": 1.0, "hard_tanh": 1.0}
DENSITY_DEPTHS = 3  # depths drawn in the density figure: first, middle, last
AGREEMENT_RTOL = 0.15  # the bar for depth <= width / 16


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  width: int = _config.setting(256, "network width N", at_least=1)
  depths: tuple[int, ...] = _config.setting((1, 2, 4, 8, 16, 32, 64, 128), "depths L to measure",
                                            at_least=1, increasing=True)
  seeds: int = _config.setting(32, "networks per case", at_least=1)
  activations: tuple[str, ...] = _config.setting(
      ("linear", "relu", "tanh", "hard_tanh", "sigmoid"), choices=activations.names)
  weights: tuple[str, ...] = _config.setting(theory.WEIGHTS, choices=theory.WEIGHTS)
  input_q: float = _config.setting(1.0, "input x ~ N(0, input_q I)", above=0)
  float64: bool = _config.setting(False, "compute in float64")
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(width=64, depths=(1, 2, 4, 8, 16, 32, 64), seeds=8)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(width=8, depths=(1, 2, 4), seeds=2, activations=("linear", "relu", "sigmoid"))


def critical_sigma_w2(activation: str) -> float:
  if activation in CRITICAL_SIGMA_W2:
    return CRITICAL_SIGMA_W2[activation]
  return float(theory.critical_sigma_w2(activation, 0.0))


def kernel_init(weights: str, sigma_w2: float):
  if weights == "gaussian":
    return initializers.gaussian(sigma_w2)
  return initializers.orthogonal(gain=math.sqrt(sigma_w2))


def measure(config: Config, activation: str, sigma_w2: float, weights: str) -> np.ndarray:
  """Squared singular values, shape (seeds, len(depths), width)."""
  dtype = jnp.float64 if config.float64 else jnp.float32
  model = DenseStack(
      depth=max(config.depths), features=config.width, activation=activation,
      kernel_init=kernel_init(weights, sigma_w2), bias_init="zeros", param_dtype=dtype,
  )
  take = jnp.asarray(config.depths) - 1
  n, d = config.width, len(config.depths)

  def one_network(key):
    k_params, k_x = jax.random.split(key)
    x = math.sqrt(config.input_q) * jax.random.normal(k_x, (n,), dtype)
    params = model.init(k_params, x)
    every_depth = lambda v: model.apply(params, v)[1][take].reshape(-1)  # noqa: E731
    jac = diagnostics.jacobian(every_depth, x).reshape(d, n, n)
    return jnp.linalg.svd(jac, compute_uv=False) ** 2

  keys = jax.random.split(jax.random.key(config.seed), config.seeds)
  return np.asarray(sweep(one_network, keys))


def _summary_over_seeds(per_seed: np.ndarray) -> dict:
  """per_seed: (seeds, depths) -> mean (and its standard error), median, quartiles, raw values."""
  with np.errstate(all="ignore"):
    q25, q50, q75 = np.percentile(per_seed, [25, 50, 75], axis=0)
    sem = per_seed.std(0, ddof=1) / np.sqrt(len(per_seed)) if len(per_seed) > 1 else np.nan
    return {"mean": per_seed.mean(0), "sem": sem, "median": q50, "q25": q25, "q75": q75,
            "per_seed": per_seed}


def _density(s2: np.ndarray, depth_index: int, bins: np.ndarray) -> dict:
  values = s2[:, depth_index]
  keep = diagnostics.resolvable(values)
  counts, _ = np.histogram(np.log10(values[keep]), bins=bins)
  # Normalised so that the histogram integrates to the resolvable fraction.
  density = counts / max(values.size, 1) / np.diff(bins)
  return {"log10_s2_bin_edges": bins, "density": density,
          "unresolved_fraction": float(1 - keep.mean())}


def run(config: Config) -> dict:
  """Measures every case, writes results.json and the figures, returns the results."""
  context = jax.enable_x64(True) if config.float64 else jax.enable_x64(False)
  cases = {}
  sigma_w2 = {a: critical_sigma_w2(a) for a in config.activations}
  density_at = sorted({0, len(config.depths) // 2, len(config.depths) - 1})[:DENSITY_DEPTHS]
  jobs = [(a, w) for a in config.activations for w in config.weights]
  with context:
    for activation, weights in _cli.progress(jobs, desc="jacobian spectra"):
      s2 = measure(config, activation, sigma_w2[activation], weights)
      stats = diagnostics.spectrum_stats(np.sqrt(s2))
      predicted = theory.jacobian_spectrum_moments(
          activation, sigma_w2[activation], 0.0, sigma_w2[activation] * config.input_q,
          max(config.depths), weights)
      take = np.asarray(config.depths) - 1
      kept = s2[diagnostics.resolvable(s2)]
      lo, hi = np.log10(kept.min()), np.log10(kept.max())
      bins = np.linspace(min(lo, hi - 0.5), max(hi, lo + 0.5), 41)
      cases[f"{activation}/{weights}"] = {
          "activation": activation,
          "weights": weights,
          "sigma_w2": sigma_w2[activation],
          "depths": config.depths,
          **{k: _summary_over_seeds(np.asarray(v)) for k, v in stats.items()},
          "theory": {"mean_sq": np.asarray(predicted["mean_sq"])[take],
                     "var_sq": np.asarray(predicted["var_sq"])[take]},
          "density": {str(config.depths[i]): _density(s2, i, bins) for i in density_at},
      }
  results = {"config": config, "width": config.width, "sigma_w2": sigma_w2, "cases": cases,
             "agreement": agreement(config, cases)}
  return results


def agreement(config: Config, cases: dict) -> dict:
  """Measured / predicted var_sq (mean over seeds) per case and depth.

  ``within_rtol`` checks the cases whose theory is not 0 at depths <= width/16,
  where finite-width corrections (of order L/N) are small.
  """
  out = {}
  small = [i for i, L in enumerate(config.depths) if L <= config.width / 16]
  for name, case in cases.items():
    measured = np.asarray(case["var_sq"]["mean"], dtype=float)
    predicted = np.asarray(case["theory"]["var_sq"], dtype=float)
    with np.errstate(all="ignore"):
      ratio = measured / predicted
    checked = [i for i in small if predicted[i] > 0]
    out[name] = {
        "ratio": ratio,
        "max_rel_error_small_depth": (float(np.max(np.abs(ratio[checked] - 1)))
                                      if checked else None),
        "within_rtol": (bool(np.all(np.abs(ratio[checked] - 1) <= AGREEMENT_RTOL))
                        if checked else None),
    }
  return out


def plot(results: dict, out_dir: pathlib.Path) -> None:
  cases = results["cases"]
  acts = list(dict.fromkeys(c["activation"] for c in cases.values()))
  weights = list(dict.fromkeys(c["weights"] for c in cases.values()))
  colors = {"gaussian": "C0", "orthogonal": "C3"}

  fig, axes = plotting.figure(len(weights), len(acts), panel=(2.6, 2.1))
  for (name, case) in cases.items():
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
  plotting.save(fig, out_dir / "density.png")

  fig, axes = plotting.figure(2, len(acts), panel=(2.6, 2.2))
  for name, case in cases.items():
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
  plotting.save(fig, out_dir / "moments.png")

  width = results["width"]
  fig, axes = plotting.figure(1, 1, panel=(6.0, 3.6))
  ax = axes[0, 0]
  for name, ratio in results["agreement"].items():
    case = cases[name]
    r = np.asarray(ratio["ratio"], dtype=float)
    if not np.any(np.asarray(case["theory"]["var_sq"]) > 0):
      continue
    beta = np.asarray(case["depths"]) / width
    ax.plot(beta, r, marker="o", markersize=3, label=name,
            linestyle="-" if case["weights"] == "gaussian" else ":")
  ax.axhline(1.0, color="k", linewidth=0.8)
  ax.axhspan(1 - AGREEMENT_RTOL, 1 + AGREEMENT_RTOL, color="k", alpha=0.08)
  ax.axvline(1 / 16, color="k", linestyle="--", linewidth=0.8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("β = depth / width")
  ax.set_ylabel("measured / predicted var of s²")
  ax.set_title(f"finite-width departure from theory (N={width})")
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, out_dir / "finite_width.png")


def summary(results: dict) -> str:
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
