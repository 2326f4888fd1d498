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
import math
import pathlib

from experiments import _cli, _config
from experiments.mean_field import unit_inits
from experiments.trainability import train_many

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import activations, data, diagnostics, optimizers, plotting, theory  # noqa: E402
from jaxgrad.models import DeepMLP  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

HISTOGRAM_BINS = 40
SMOOTHING = 25  # steps in the running mean of the training loss


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
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
  seed: int = 0

  def relations(self) -> dict[str, str]:
    if self.q_small >= self.q_large:
      return {"q_small": f"must be < q_large={self.q_large:g}"}
    return {}

  @classmethod
  def quick(cls) -> "Config":
    return cls(width=32, depths=(10, 100), seeds=2, train_depths=(16, 32), train_steps=150,
               train_seeds=2, learning_rates=(0.004, 0.016))

  @classmethod
  def smoke(cls) -> "Config":
    return cls(width=6, depths=(5,), seeds=2, train_depths=(4,), train_width=8, train_steps=3,
               train_seeds=1, batch=4, learning_rates=(0.01,))

  def cases(self) -> dict[str, tuple[str, str, float, float, float]]:
    """name -> (activation, weights, sigma_w2, sigma_b2, q1), q1 the first pre-activation variance.

    The input h_0 ~ N(0, (q1 - sigma_b^2) / sigma_w^2) puts the tanh nets at
    their fixed point q* from the first layer on; ReLU gets q1 = 2 (unit input).
    """
    out = {}
    for q in (self.q_small, self.q_large):
      sw2, sb2 = (float(v) for v in theory.critical_line("tanh", q))
      for weights in ("orthogonal", "gaussian"):
        out[f"tanh/{weights}/q*={q:g}"] = ("tanh", weights, sw2, max(sb2, 0.0), q)
    out["relu/gaussian/He"] = ("relu", "gaussian", 2.0, 0.0, 2.0)
    return out


def _weights(key, n: int, weights: str, sigma_w2: float, dtype) -> jax.Array:
  if weights == "orthogonal":
    return math.sqrt(sigma_w2) * jax.nn.initializers.orthogonal()(key, (n, n), dtype)
  return math.sqrt(sigma_w2 / n) * jax.random.normal(key, (n, n), dtype)


def measure(config: Config, activation: str, weights: str, sigma_w2: float, sigma_b2: float,
            q1: float, depth: int) -> np.ndarray:
  """log singular values, (seeds, width); each layer draws its weights from its own key."""
  dtype = jnp.float64 if config.float64 else jnp.float32
  n, phi = config.width, activations.get(activation)

  def layer(key, h):
    k_w, k_b = jax.random.split(key)
    b = math.sqrt(sigma_b2) * jax.random.normal(k_b, (n,), dtype)
    return phi(_weights(k_w, n, weights, sigma_w2, dtype) @ h + b)

  def one_network(key):
    k_x, k_layers = jax.random.split(key)
    h0 = math.sqrt((q1 - sigma_b2) / sigma_w2) * jax.random.normal(k_x, (n,), dtype)
    return diagnostics.log_singular_values(layer, jax.random.split(k_layers, depth), h0)

  keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), depth), config.seeds)
  return np.asarray(sweep(one_network, keys))


def spectra(config: Config) -> dict:
  out = {}
  context = jax.enable_x64(True) if config.float64 else jax.enable_x64(False)
  jobs = [(name, case, d) for name, case in config.cases().items() for d in config.depths]
  with context:
    for name, (act, weights, sw2, sb2, q1), depth in _cli.progress(jobs, desc="spectra"):
      log_s = measure(config, act, weights, sw2, sb2, q1, depth)
      entry = out.setdefault(name, {"activation": act, "weights": weights, "sigma_w2": sw2,
                                    "sigma_b2": sb2, "depths": config.depths, "log_s": {},
                                    "var_sq_per_seed": [], "mean_sq_per_seed": []})
      s2 = np.exp(2.0 * log_s.astype(np.float64))
      entry["log_s"][str(depth)] = log_s
      entry["var_sq_per_seed"].append(s2.var(axis=-1))
      entry["mean_sq_per_seed"].append(s2.mean(axis=-1))
  with jax.enable_x64(True):
    for name, entry in out.items():
      act, weights, sw2, sb2, q1 = config.cases()[name]
      moments = theory.jacobian_spectrum_moments(act, sw2, sb2, q1, max(config.depths), weights)
      take = np.asarray(config.depths) - 1
      entry["theory"] = {"mean_sq": np.asarray(moments["mean_sq"])[take],
                         "var_sq": np.asarray(moments["var_sq"])[take]}
      entry["var_sq_per_seed"] = np.asarray(entry["var_sq_per_seed"]).T  # (seeds, depths)
      entry["mean_sq_per_seed"] = np.asarray(entry["mean_sq_per_seed"]).T
  return out


def steps_to_target(loss: np.ndarray, target: float, window: int = SMOOTHING) -> np.ndarray:
  """Per seed, the first step at which the loss's running mean over ``window`` steps is <= ``target``.

  Args:
    loss: ``(seeds, steps)`` training losses.
    target: the loss that counts as learned.
    window: steps in the running mean (the first ``window - 1`` steps have none).

  Returns:
    ``(seeds,)`` step counts, NaN for a seed that never gets there.
  """
  smooth = running_mean(loss, window)
  reached = np.nan_to_num(smooth, nan=np.inf) <= target
  return np.where(reached.any(-1), reached.argmax(-1) + loss.shape[-1] - smooth.shape[-1] + 1,
                  np.nan)


def running_mean(loss: np.ndarray, window: int = SMOOTHING) -> np.ndarray:
  """``(seeds, steps - w + 1)``: the mean of every ``w`` consecutive steps, ``w = min(window, steps)``."""
  loss = np.asarray(loss, float)
  window = min(window, loss.shape[-1])
  kernel = np.ones(window) / window
  return np.stack([np.convolve(row, kernel, mode="valid") for row in loss])


def never_as_inf(steps) -> np.ndarray:
  """Steps to the target with an unreached seed (NaN) as ``inf``: a median then counts it as never."""
  steps = np.asarray(steps, dtype=float)
  return np.where(np.isnan(steps), np.inf, steps)


def best_learning_rate(steps: np.ndarray, final_loss: np.ndarray) -> int:
  """Index of the learning rate with the fewest median steps to the target.

  Args:
    steps: ``(rates, seeds)`` steps to the target, NaN where a seed never got there.
    final_loss: ``(rates, seeds)`` last training losses, NaN or inf where a run diverged.

  Returns:
    The rate whose median steps (an unreached seed counting as never) is
    smallest; where no rate brings half its seeds to the target, the one with the
    lowest median final loss.
  """
  median_steps = np.median(never_as_inf(steps), axis=1)
  if np.isfinite(median_steps).any():
    return int(np.argmin(median_steps))
  return int(np.argmin(np.median(np.nan_to_num(final_loss, nan=np.inf), axis=1)))


def learning_speed(config: Config) -> dict:
  """Per train depth and arm: every learning rate's steps to the target, and the best rate's losses.

  The seeds of one rate train in one vmapped program, the rate a traced
  ``step_scale``, so every rate of a depth and arm runs the same compiled program
  (from the compilation cache after the first); seed s draws the same
  initialisation and batches at every rate. One program per rate, not one for
  all rates: on jaxlib 0.10.2 the 20-run program (5 rates x 4 seeds, tanh
  orthogonal, depth 32, 1000 steps) never returns (every XLA thread waits,
  0 % CPU), while 4- and 8-run programs of the same net finish; jaxlib 0.12
  runs the 20-run one.
  """
  dataset = data.standardize(data.mnist1d())
  sw2_small, sb2_small = (float(v) for v in theory.critical_line("tanh", config.q_small))
  arms = {"tanh critical orthogonal": ("tanh", "orthogonal", sw2_small, max(sb2_small, 0.0)),
          "tanh critical Gaussian": ("tanh", "gaussian", sw2_small, max(sb2_small, 0.0)),
          "ReLU He (Gaussian)": ("relu", "gaussian", 2.0, 0.0)}
  jobs = [(depth, name) for depth in config.train_depths for name in arms]
  out = {f"L={depth}": {} for depth in config.train_depths}
  rates, seeds = len(config.learning_rates), config.train_seeds
  keys = jax.random.split(jax.random.key(config.seed), seeds)
  sgd = optimizers.OptimizerConfig("sgd", 1.0, momentum=0.9)  # times each run's step_scale
  for depth, name in _cli.progress(jobs, desc="learning speed"):
    act, weights, sw2, sb2 = arms[name]
    model = DeepMLP(depth=depth, width=config.train_width,
                    out_features=dataset.num_classes, activation=act, **unit_inits(weights))
    grid = np.full((seeds,), sw2, np.float32)
    per_rate = [train_many(model, dataset, sgd, grid, np.full_like(grid, sb2), keys,
                           budgets=(config.train_steps,), batch=config.batch,
                           eval_examples=1000, weights=weights,
                           step_scale=np.full((seeds,), rate, np.float32))
                for rate in config.learning_rates]
    res = {k: np.stack([r[k] for r in per_rate]) for k in per_rate[0]}  # (rates, seeds, ...)
    loss = res["loss"]
    steps = np.stack([steps_to_target(rate_loss, config.target_loss) for rate_loss in loss])
    best = best_learning_rate(steps, loss[..., -1])
    out[f"L={depth}"][name] = {
        "depth": depth, "sigma_w2": sw2, "sigma_b2": sb2,
        "learning_rates": list(config.learning_rates),
        "steps_to_target_per_rate": steps, "final_loss_per_rate": loss[..., -1],
        "best_learning_rate": config.learning_rates[best],
        "best_at_grid_edge": best in (0, rates - 1),
        "loss_per_seed": loss[best],
        "train_accuracy_per_seed": res["train_accuracy"][best, :, -1],
        "diverged_at_per_seed": res["diverged_at"][best],
        "steps_to_target_per_seed": steps[best]}
  return out


def run(config: Config, out_dir: pathlib.Path) -> dict:
  results = {"config": config, "spectra": spectra(config)}
  if config.train_steps > 0:
    results["learning"] = learning_speed(config)
  _cli.write_json(out_dir / "results.json", results)
  plot(results, out_dir)
  return results


def plot(results: dict, out_dir: pathlib.Path) -> None:
  cases = results["spectra"]
  fig, axes = plotting.figure(1, len(cases), panel=(2.5, 2.3))
  for col, (name, case) in enumerate(cases.items()):
    ax = axes[0, col]
    all_logs = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in case["log_s"].values()])
    finite = all_logs[np.isfinite(all_logs)] * 2 / np.log(10)
    ax.set_title(f"{name}\nσw²={case['sigma_w2']:.4g}, σb²={case['sigma_b2']:.2g}", fontsize=7)
    ax.set_xlabel("log10 s²")
    if finite.size == 0:  # e.g. a 10,000-layer ReLU net whose signal underflowed to 0
      ax.text(0.5, 0.5, "J = 0 exactly:\nno finite log s", ha="center", va="center",
              transform=ax.transAxes, fontsize=8)
      continue
    bins = np.linspace(finite.min() - 0.05, finite.max() + 0.05, HISTOGRAM_BINS + 1)
    for i, (depth, log_s) in enumerate(case["log_s"].items()):
      values = np.ravel(np.asarray(log_s, dtype=float)) * 2 / np.log(10)
      ax.hist(values[np.isfinite(values)], bins=bins, histtype="step", density=True,
              color=plotting.plt.cm.viridis(i / max(len(case["log_s"]) - 1, 1)), label=f"L={depth}")
  axes[0, 0].set_ylabel("density")
  drawn = [ax for ax in axes[0] if ax.get_legend_handles_labels()[0]]
  if drawn:
    drawn[0].legend()
  plotting.save(fig, out_dir / "spectra.png")

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
  ax.set_title(f"N={results['config'].width}: var of s², median over seeds (dashed: theory)")
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, out_dir / "variance.png")

  if "learning" in results:
    plot_learning(results["learning"], results["config"], out_dir)


def plot_learning(learning: dict, config: Config, out_dir: pathlib.Path) -> None:
  """``learning.png``: loss at each arm's best rate, steps against the rate and against the depth."""
  fig, axes = plotting.figure(1, len(learning) + 2, panel=(3.4, 2.8))
  for ax, (depth_name, arms) in zip(axes[0], learning.items()):
    for i, (name, arm) in enumerate(arms.items()):
      smooth = running_mean(arm["loss_per_seed"])
      steps = np.arange(smooth.shape[-1]) + np.shape(arm["loss_per_seed"])[-1] - smooth.shape[-1] + 1
      plotting.median_band(ax, steps, smooth, color=f"C{i}",
                           label=f"{name}, lr {arm['best_learning_rate']:.2g}")
    ax.axhline(config.target_loss, color="k", linestyle="--", linewidth=0.8)
    ax.set(xlabel="SGD step", ylabel=f"training loss, mean of {SMOOTHING} steps",
           title=f"{depth_name}, width {config.train_width}, best lr each")
    ax.legend(fontsize=6)
  names = list(next(iter(learning.values())))
  ax = axes[0, -2]
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
  ax = axes[0, -1]
  for i, name in enumerate(names):
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
  plotting.save(fig, out_dir / "learning.png")


def summary(results: dict) -> str:
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


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__)


if __name__ == "__main__":
  main()
