r"""Trainability phase diagram (Schoenholz et al. 2017) on MNIST-1D, with the 6 xi_c line.

Deep tanh MLPs (``DeepMLP``: width 128, weights N(0, sigma_w^2/fan_in), biases
N(0, sigma_b^2 = 0.05)) are trained on MNIST-1D (generated locally by
``mnist1d``; ``--dataset digits`` for scikit-learn's digits), for every
sigma_w^2 on a grid in [1, 4] and every depth L, and their training and test
accuracy is read after each of several budgets of optimizer steps (one run,
read at each budget). Mean-field theory says information about the input
survives about xi_c layers (jaxgrad.theory.depth_scales), and Schoenholz et al.
found networks trainable iff L < 6 xi_c, the trainable region growing toward
that line with training time; xi_c diverges at the critical point
sigma_w^2 = 1.761 (chi_1 = 1). The heatmaps show the accuracies with the
6 xi_c curve; the summary reports, per budget, how often the rule "trainable
iff L < 6 xi_c" is right, with both kinds of error, a cell counting as
trainable above halfway between chance and the best accuracy on the map. All
sigma_w^2 and seeds of one depth train in one vmapped, jitted program
(jaxgrad.training.train); ``results.json`` is rewritten after every depth and a
rerun resumes.

    python -m experiments.trainability            # 7 sigma_w^2 x 5 depths (10..200), ~17 min
    python -m experiments.trainability --quick    # width 64, 4 sigma_w^2 x 2 depths, under a minute
    python -m experiments.trainability --optimizer adam --learning-rate 1e-3

Writes ``config.json``, ``results.json`` (every plotted number) and
``phase_diagram.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import activations, data, optimizers, plotting  # noqa: E402
from jaxgrad.studies import trainability  # noqa: E402

THEORY_POINTS = 61  # sigma_w^2 values on the 6 xi_c curve


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Training and test accuracy per (depth, σ_w²) at each budget, against 6 ξ_c."""

  width: int = _config.setting(128, "hidden width", at_least=1)
  depths: tuple[int, ...] = _config.setting((10, 25, 50, 100, 200), "depths L (Dense layers)",
                                            at_least=2, increasing=True)
  sigma_w2: tuple[float, ...] = _config.setting((1.0, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0),
                                                "grid of sigma_w^2", above=0, increasing=True)
  sigma_b2: float = _config.setting(0.05, "bias variance", at_least=0)
  activation: str = _config.setting("tanh", choices=activations.names)
  seeds: int = _config.setting(1, "networks per cell", at_least=1)
  budgets: tuple[int, ...] = _config.setting(
      (300, 1000, 3000), "optimizer steps at which the accuracies are read (the run is as long "
      "as the last)", at_least=1, increasing=True)
  dataset: str = _config.setting("mnist1d", choices=data.DATASETS[:2])
  batch: int = _config.setting(32, "batch size", at_least=1)
  optimizer: str = _config.setting("sgd", "optimizer", choices=optimizers.OPTIMIZERS)
  learning_rate: float = _config.setting(
      0.03, "step size; divided by the depth L with --scale-by-depth", above=0)
  scale_by_depth: bool = _config.setting(
      True, "use learning_rate / L at depth L (the squared gradient norm sums over L layers)")
  momentum: float = _config.setting(0.9, "SGD momentum", at_least=0, below=1)
  eval_examples: int = _config.setting(1000, "training examples the accuracy is measured on",
                                       at_least=1)
  theory_points: int = _config.setting(THEORY_POINTS, "sigma_w^2 values on the 6 xi_c curve",
                                       at_least=2)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: width 64, depths 10, 40, 4 σ_w², about 27 s on 2 CPU cores."""
    return cls(width=64, depths=(10, 40), sigma_w2=(1.0, 1.75, 2.5, 4.0), budgets=(50, 150))

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: width 8, depth 4, 3 σ_w², budgets 2 and 3 steps."""
    return cls(width=8, depths=(4,), sigma_w2=(1.0, 1.75, 4.0), budgets=(2, 3), batch=4,
               eval_examples=16, theory_points=9)

  def optimizer_config(self, depth: int = 1) -> optimizers.OptimizerConfig:
    """The optimizer at depth ``depth``: ``learning_rate / depth`` with ``scale_by_depth``."""
    momentum = self.momentum if self.optimizer == "sgd" else None
    rate = self.learning_rate / depth if self.scale_by_depth else self.learning_rate
    return optimizers.OptimizerConfig(self.optimizer, rate, momentum=momentum)


def depth_name(depth: int) -> str:
  """The key of one depth in ``results["settings"]``, e.g. ``"L=50"``."""
  return f"L={depth}"


def run(config: Config, checkpoint: _cli.Checkpoint = _cli.Checkpoint()) -> dict:
  """Trains every depth; ``results.json`` is rewritten after each (``results["settings"]``).

  A stopped run keeps the depths it finished, and a rerun of the same config
  into the same folder (through :func:`main`) trains only the others.
  """
  dataset = data.standardize(data.load(config.dataset))
  settings = {}
  results = {
      "config": config, "depths": config.depths, "sigma_w2": config.sigma_w2,
      "budgets": config.budgets, "chance": 1.0 / dataset.num_classes,
      "theory": trainability.overlay(config.activation, config.sigma_w2, config.sigma_b2,
                                     config.theory_points),
      "settings": settings}
  for depth in _cli.progress(config.depths, desc="trainability"):
    name = depth_name(depth)
    if name in checkpoint.done:
      settings[name] = checkpoint.done[name]
    else:
      settings[name] = trainability.train_depth(
          depth, config.sigma_w2, config.sigma_b2, width=config.width,
          activation=config.activation, seeds=config.seeds, dataset=dataset,
          optimizer_config=config.optimizer_config(depth), budgets=config.budgets,
          batch=config.batch, eval_examples=config.eval_examples,
          key=jax.random.fold_in(jax.random.key(config.seed), depth))
    checkpoint.save(results)
  results.update(trainability.phase_maps(
      [settings[depth_name(d)] for d in config.depths], config.depths, config.sigma_w2,
      config.activation, config.sigma_b2, chance=results["chance"]))
  return results


def _edges(values) -> np.ndarray:
  v = np.asarray(values, dtype=float)
  mid = 0.5 * (v[1:] + v[:-1])
  return np.concatenate([[v[0] - (mid[0] - v[0]) if len(v) > 1 else v[0] - 0.5], mid,
                         [v[-1] + (v[-1] - mid[-1]) if len(v) > 1 else v[-1] + 0.5]])


def _heatmap(ax, fig, acc: np.ndarray, results: dict, chance: float, measured=None) -> None:
  depths, grid = results["depths"], results["sigma_w2"]
  y_edges = np.exp(_edges(np.log(depths)))  # cells spaced by index in depth, on a log axis
  mesh = ax.pcolormesh(_edges(grid), y_edges, acc, cmap="viridis", vmin=chance, vmax=1.0)
  fig.colorbar(mesh, ax=ax)
  th = results["theory"]
  plotting.theory_line(ax, th["sigma_w2"], th["six_xi_c"], color="C3", label="6 ξ_c (theory)")
  ax.axvline(th["critical_sigma_w2"], color="C3", linestyle=":", linewidth=1,
             label=f"χ₁=1 at σw²={th['critical_sigma_w2']:.3f}")
  for i, d in enumerate(depths):
    for j, s in enumerate(grid):
      light = measured[i, j] if measured is not None else acc[i, j] > 0.5 * (1 + chance)
      ax.text(s, d, f"{acc[i, j]:.2f}", ha="center", va="center", fontsize=5,
              color="k" if light else "w")
  ax.set(yscale="log", ylim=(y_edges[0], y_edges[-1]), xlabel="σw²", ylabel="depth L")


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """``phase_diagram.png``: training (top) and test (bottom) accuracy at every budget."""
  budgets = results["budgets"]
  fig, axes = plotting.figure(2, len(budgets), panel=(4.2, 3.2))
  config = results["config"]
  for b, budget in enumerate(budgets):
    sep = results["separation"][b]
    _heatmap(axes[0, b], fig, np.asarray(results["train_accuracy_median"][b], float), results,
             results["chance"], np.asarray(sep["measured_trainable"], bool))
    axes[0, b].set_title(f"training accuracy, {budget} steps: L < 6ξ_c right on "
                         f"{sep['agreement']:.0%}", fontsize=8)
    _heatmap(axes[1, b], fig, np.asarray(results["test_accuracy_median"][b], float), results,
             results["chance"])
    axes[1, b].set_title(f"test accuracy, {budget} steps", fontsize=8)
  axes[1, 0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, frameon=False)
  rate = f"{config.learning_rate:g}/L" if config.scale_by_depth else f"{config.learning_rate:g}"
  fig.suptitle(f"{config.activation}, N={config.width}, σb²={config.sigma_b2:g}, "
               f"{config.optimizer} lr {rate}, batch {config.batch}, "
               f"{config.dataset}, median of {config.seeds} seed(s)")
  plotting.save(fig, out_dir / "phase_diagram.png")


def summary(results: dict) -> str:
  """Accuracies after the last budget, a row per depth; then the 6 ξ_c rule per budget.

  The table: median training/test accuracy per σ_w² column, 6 ξ_c on the grid as the last
  row. Then, per budget, how often 'trainable iff L < 6 ξ_c' is right and its two kinds of
  error.
  """
  header = ["depth"] + [f"σw²={s:g}" for s in results["sigma_w2"]]
  rows = [[d] + [f"{a:.2f}/{t:.2f}" for a, t in zip(row, test)]
          for d, row, test in zip(results["depths"], results["train_accuracy_median"][-1],
                                  results["test_accuracy_median"][-1])]
  rows.append(["6ξ_c"] + [float(v) for v in results["theory"]["six_xi_c_on_grid"]])
  lines = [f"training/test accuracy after {results['budgets'][-1]} steps:",
           _cli.format_table(header, rows), ""]
  for budget, sep in zip(results["budgets"], results["separation"]):
    lines.append(f"{budget} steps: trainable := accuracy > {sep['threshold']:.3f} "
                 f"({sep['fraction_trainable']:.0%} of cells); 'trainable iff L < 6ξ_c' right on "
                 f"{sep['agreement']:.1%} (predicted trainable but not: {sep['false_trainable']}, "
                 f"the reverse: {sep['false_untrainable']})")
  return "\n".join(lines)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary,
                             settings=lambda config: [depth_name(d) for d in config.depths])
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
