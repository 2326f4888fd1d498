r"""Dynamical isometry (Pennington, Schoenholz & Ganguli 2017; Saxe et al. 2013).

Part 1, spectra. For tanh nets on the critical line (chi_1 = 1) at a small and a
large fixed point q*, with Gaussian and with orthogonal weights, and for ReLU
with He init (sigma_w^2 = 2), the squared singular values s^2 of the
input-output Jacobian J = prod_l D_l W_l are measured at every depth asked for
(up to 1000 by default, ``--depths 10,100,10000`` works too) by
:func:`jaxgrad.diagnostics.log_singular_values`: repeated QR in a scan over
layers, never forming J, whose singular values span hundreds of orders of
magnitude at such depths. Free probability predicts the mean of s^2 (1 on the
critical line) and its variance L (mu_2/mu_1^2 - 1 - s_1): s_1 = -1 Gaussian,
0 orthogonal, so orthogonal tanh at small q* is nearly isometric (var ~ 8 L
q*^2) while Gaussian weights and ReLU never are (var >= L).

Part 2, learning speed. Training loss against steps on MNIST-1D for
critical-orthogonal tanh (small q*), critical-Gaussian tanh and He-ReLU MLPs
at two or more depths (default 32 and 128; SGD, momentum 0.9, every rate of
``--learning-rates`` tried at every depth and arm, the best counting), median
and band over seeds, and the steps each takes to a target training loss:
Pennington et al. find it depth-independent for orthogonal tanh at small q* and
growing with depth for the others.

    python -m experiments.dynamical_isometry            # width 64, depths 10..1000, ~24 min on 2 cores
    python -m experiments.dynamical_isometry --quick    # width 32, depths 10,100, under a minute
    python -m experiments.dynamical_isometry --depths 10000 --width 128 --seeds 1 --train-steps 0

Writes ``config.json``, ``results.json``, ``spectra.png`` (densities of
log10 s^2), ``variance.png`` (measured against predicted var s^2) and, unless
``--train-steps 0``, ``learning.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import data, plotting  # noqa: E402
from jaxgrad.studies import dynamical_isometry  # noqa: E402
from jaxgrad.studies.dynamical_isometry import SMOOTHING, never_as_inf, running_mean  # noqa: E402

HISTOGRAM_BINS = 40


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Jacobian spectra of critical tanh and He-ReLU nets, then their learning speed.

  Spectra: tanh on the critical line at ``q_small`` and ``q_large``, Gaussian and orthogonal
  weights, and He-ReLU, against free probability. Learning: three of those arms trained on
  MNIST-1D at ``train_depths``, steps to ``target_loss`` at each arm's best rate.
  """

  width: int = _config.setting(64, "network width N", at_least=1)
  depths: tuple[int, ...] = _config.setting((10, 100, 1000), "depths for the spectra",
                                            at_least=1, increasing=True)
  seeds: int = _config.setting(4, "networks per case", at_least=1)
  q_small: float = _config.setting(1e-3, "small fixed point q*", above=0)
  q_large: float = _config.setting(1.0, "large fixed point q*", above=0)
  float64: bool = _config.setting(False, "spectra in float64")
  train_depths: tuple[int, ...] = _config.setting((32, 128), "depths of the trained nets",
                                                  at_least=3, increasing=True)
  train_width: int = _config.setting(128, at_least=1)
  train_steps: int = _config.setting(1000, "0: skip training", at_least=0)
  train_seeds: int = _config.setting(4, at_least=1)
  target_loss: float = _config.setting(
      1.8, f"training loss (mean over {SMOOTHING} steps) that counts as learned", above=0)
  batch: int = _config.setting(32, at_least=1)
  learning_rates: tuple[float, ...] = _config.setting(
      (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008),
      "SGD (momentum 0.9) learning rates, each tried at every depth and arm; the one that "
      "reaches the target loss in the fewest steps counts", above=0, increasing=True)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  def relations(self) -> dict[str, str]:
    """``q_small`` must be below ``q_large``."""
    if self.q_small >= self.q_large:
      return {"q_small": f"must be < q_large={self.q_large:g}"}
    return {}

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: width 32, depths 10, 100, 150 steps, about 52 s on 2 CPU cores."""
    return cls(width=32, depths=(10, 100), seeds=2, train_depths=(16, 32), train_steps=150,
               train_seeds=2, learning_rates=(0.004, 0.016))

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: width 6, depth 5, 2 seeds; depth-4 nets trained 3 steps."""
    return cls(width=6, depths=(5,), seeds=2, train_depths=(4,), train_width=8, train_steps=3,
               train_seeds=1, batch=4, learning_rates=(0.01,))

  def cases(self) -> dict[str, tuple[str, str, float, float, float]]:
    """name -> (activation, weights, sigma_w2, sigma_b2, q1), from ``q_small`` and ``q_large``.

    See :func:`jaxgrad.studies.dynamical_isometry.spectrum_cases`.
    """
    return dynamical_isometry.spectrum_cases(self.q_small, self.q_large)


def run(config: Config) -> dict:
  """Every case's spectra and, unless ``train_steps`` is 0, every arm's learning speed."""
  key = jax.random.key(config.seed)
  spectra = {name: dynamical_isometry.spectrum(*case, config.depths, width=config.width,
                                               seeds=config.seeds, key=key,
                                               float64=config.float64)
             for name, case in _cli.progress(config.cases().items(), desc="spectra")}
  results = {"config": config, "spectra": spectra}
  if config.train_steps > 0:
    results["learning"] = _learning(config)
  return results


def _learning(config: Config) -> dict:
  """Per train depth (``"L=32"``) and arm, its learning speed on MNIST-1D.

  See :func:`jaxgrad.studies.dynamical_isometry.learning_speed`.
  """
  dataset = data.standardize(data.mnist1d())
  arms = dynamical_isometry.learning_arms(config.q_small)
  out = {f"L={depth}": {} for depth in config.train_depths}
  jobs = [(depth, name) for depth in config.train_depths for name in arms]
  for depth, name in _cli.progress(jobs, desc="learning speed"):
    out[f"L={depth}"][name] = dynamical_isometry.learning_speed(
        *arms[name], depth=depth, width=config.train_width, dataset=dataset,
        learning_rates=config.learning_rates, steps=config.train_steps, batch=config.batch,
        target_loss=config.target_loss, seeds=config.train_seeds,
        key=jax.random.key(config.seed))
  return out


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """``spectra.png``, ``variance.png`` and, if the nets were trained, ``learning.png``."""
  config = results["config"]
  _plot_spectra(results["spectra"], out_dir / "spectra.png")
  _plot_variance(results["spectra"], config.width, out_dir / "variance.png")
  if "learning" in results:
    _plot_learning(results["learning"], config, out_dir / "learning.png")


def _plot_spectra(cases: dict, path: pathlib.Path) -> None:
  """Per case, the density of log10 s^2 at every depth."""
  fig, axes = plotting.figure(1, len(cases), panel=(2.5, 2.3))
  for ax, (name, case) in zip(axes[0], cases.items()):
    ax.set_title(f"{name}\nσw²={case['sigma_w2']:.4g}, σb²={case['sigma_b2']:.2g}", fontsize=7)
    ax.set_xlabel("log10 s²")
    _spectrum_histograms(ax, case["log_s"])
  axes[0, 0].set_ylabel("density")
  drawn = [ax for ax in axes[0] if ax.get_legend_handles_labels()[0]]
  if drawn:
    drawn[0].legend()
  plotting.save(fig, path)


def _spectrum_histograms(ax, log_s: dict) -> None:
  """One step histogram per depth on shared bins; a note instead where no log s is finite."""
  log10_s2 = {depth: np.ravel(np.asarray(v, dtype=float)) * 2 / np.log(10)
              for depth, v in log_s.items()}
  finite = np.concatenate(list(log10_s2.values()))
  finite = finite[np.isfinite(finite)]
  if finite.size == 0:  # e.g. a 10,000-layer ReLU net whose signal underflowed to 0
    ax.text(0.5, 0.5, "J = 0 exactly:\nno finite log s", ha="center", va="center",
            transform=ax.transAxes, fontsize=8)
    return
  bins = np.linspace(finite.min() - 0.05, finite.max() + 0.05, HISTOGRAM_BINS + 1)
  for i, (depth, values) in enumerate(log10_s2.items()):
    ax.hist(values[np.isfinite(values)], bins=bins, histtype="step", density=True,
            color=plotting.plt.cm.viridis(i / max(len(log_s) - 1, 1)), label=f"L={depth}")


def _plot_variance(cases: dict, width: int, path: pathlib.Path) -> None:
  """The variance of s^2 against depth, median over seeds, beside free probability's."""
  fig, axes = plotting.figure(1, 1, panel=(6.4, 3.2))
  ax = axes[0, 0]
  for i, (name, case) in enumerate(cases.items()):
    depths = case["depths"]
    plotting.median_band(ax, depths, case["var_sq_per_seed"], color=f"C{i}", marker="o",
                         label=name)
    plotting.theory_line(ax, depths, case["theory"]["var_sq"], color=f"C{i}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("depth L")
  ax.set_ylabel("var of s² (dashed: theory)")
  ax.set_title(f"N={width}: var of s², median over seeds (dashed: theory)")
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, path)


def _plot_learning(learning: dict, config: Config, path: pathlib.Path) -> None:
  """Loss at each arm's best rate per depth, steps against the rate and against the depth."""
  fig, axes = plotting.figure(1, len(learning) + 2, panel=(3.4, 2.8))
  for ax, (depth_name, arms) in zip(axes[0], learning.items()):
    _loss_panel(ax, depth_name, arms, config)
  _rate_panel(axes[0, -2], learning, config)
  _depth_panel(axes[0, -1], learning, config)
  plotting.save(fig, path)


def _loss_panel(ax, depth_name: str, arms: dict, config: Config) -> None:
  for i, (name, arm) in enumerate(arms.items()):
    smooth = running_mean(arm["loss_per_seed"])
    steps = np.arange(smooth.shape[-1]) + np.shape(arm["loss_per_seed"])[-1] - smooth.shape[-1] + 1
    plotting.median_band(ax, steps, smooth, color=f"C{i}",
                         label=f"{name}, lr {arm['best_learning_rate']:.2g}")
  ax.axhline(config.target_loss, color="k", linestyle="--", linewidth=0.8)
  ax.set(xlabel="SGD step", ylabel=f"training loss, mean of {SMOOTHING} steps",
         title=f"{depth_name}, width {config.train_width}, best lr each")
  ax.legend(fontsize=6)


def _rate_panel(ax, learning: dict, config: Config) -> None:
  """Median steps to the target against the learning rate, a line per arm and depth."""
  names = list(next(iter(learning.values())))
  styles = ["-", "--", ":", "-."]
  for j, arms in enumerate(learning.values()):
    for i, name in enumerate(names):
      arm = arms[name]
      median = np.median(never_as_inf(arm["steps_to_target_per_rate"]), axis=1)
      ax.plot(arm["learning_rates"], np.where(np.isfinite(median), median, np.nan), marker="o",
              markersize=3, color=f"C{i}", linestyle=styles[j % len(styles)],
              label=f"L={arm['depth']}" if i == 0 else None)
  ax.set(xscale="log", xlabel="SGD learning rate",
         ylabel=f"median steps to loss {config.target_loss:g}", ylim=(0, config.train_steps))
  ax.set_xticks(config.learning_rates, [f"{r:g}" for r in config.learning_rates], fontsize=6,
                rotation=30)
  ax.minorticks_off()
  ax.set_title("every rate tried (gaps: not reached)", fontsize=8)
  ax.legend(fontsize=7)


def _depth_panel(ax, learning: dict, config: Config) -> None:
  """Steps to the target against the depth at each arm's best rate: median and IQR."""
  for i, name in enumerate(next(iter(learning.values()))):
    depths = np.asarray([arms[name]["depth"] for arms in learning.values()])
    steps = np.stack([np.asarray(arms[name]["steps_to_target_per_seed"], float)
                      for arms in learning.values()], axis=1)  # (seeds, depths)
    # An unreached seed counts as never (as in best_learning_rate): a median
    # over the seeds that got there would hide the ones that did not.
    with np.errstate(invalid="ignore"):  # inf - inf between two unreached seeds
      lo, med, hi = never_as_inf(np.percentile(never_as_inf(steps), [25, 50, 75], axis=0))
    reached = np.isfinite(med)
    ax.plot(depths[reached], med[reached], color=f"C{i}", marker="o", markersize=3, label=name)
    ax.fill_between(depths, np.where(np.isfinite(lo), lo, np.nan),
                    np.minimum(hi, config.train_steps), color=f"C{i}", alpha=0.2, linewidth=0)
    for depth, column in zip(depths[~reached], steps[:, ~reached].T):
      ax.annotate(f"{int(np.isfinite(column).sum())}/{len(column)} reached",
                  (depth, 0.93 - 0.07 * i), xycoords=("data", "axes fraction"), color=f"C{i}",
                  fontsize=7, ha="right")
  ax.set(xlabel="depth L", ylabel=f"steps to loss {config.target_loss:g}",
         xticks=list(config.train_depths), xlim=(0, 1.1 * max(config.train_depths)),
         ylim=(0, config.train_steps))
  ax.set_title("at each arm's best rate: median, IQR\n(an unreached seed counts as never)",
               fontsize=8)
  ax.legend(fontsize=7)


def summary(results: dict) -> str:
  """Two tables: the spectra against theory, and the learning speed if trained.

  Spectra: a row per (case, depth), the median over seeds of the mean and the variance of s²,
  the predicted variance and measured / predicted. Learning: a row per (arm, depth), its best
  rate, final loss, train accuracy and steps to the target loss.
  """
  header = ["case", "L", "mean s² (theory 1)", "var s² measured", "predicted", "ratio"]
  rows = []
  for name, case in results["spectra"].items():
    for j, depth in enumerate(case["depths"]):
      measured = float(np.median(np.asarray(case["var_sq_per_seed"])[:, j]))
      predicted = float(case["theory"]["var_sq"][j])
      rows.append([name, depth, float(np.median(np.asarray(case["mean_sq_per_seed"])[:, j])),
                   measured, predicted, measured / predicted if predicted else float("nan")])
  text = _cli.format_table(header, rows)
  if "learning" in results:
    rows = [[name, arm["depth"], _rate(arm),
             float(np.median(np.asarray(arm["loss_per_seed"])[:, -1])),
             float(np.median(arm["train_accuracy_per_seed"])),
             _reached(arm["steps_to_target_per_seed"])]
            for arms in results["learning"].values() for name, arm in arms.items()]
    target = results["config"].target_loss
    text += "\n\n" + _cli.format_table(
        ["arm", "L", "best lr", "final loss", "train accuracy",
         f"steps to {target:g} (median, seeds)"], rows)
  return text


def _rate(arm: dict) -> str:
  edge = " (grid edge)" if arm["best_at_grid_edge"] else ""
  return f"{arm['best_learning_rate']:.3g}{edge}"


def _reached(steps) -> str:
  """Median steps, an unreached seed counting as never ("-" if half or more never got there)."""
  median = np.median(never_as_inf(steps))
  shown = f"{median:.0f}" if np.isfinite(median) else "-"
  return f"{shown} ({int(np.isfinite(np.asarray(steps, float)).sum())}/{len(steps)} reached)"


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
