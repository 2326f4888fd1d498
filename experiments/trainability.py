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
from experiments.mean_field import scaled_init, unit_inits

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgrad import activations, data, optimizers, plotting, theory, training  # noqa: E402
from jaxgrad.models import DeepMLP  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

CHANCE = 0.1  # ten classes
THEORY_POINTS = 61  # sigma_w^2 values on the 6 xi_c curve


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
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
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(width=64, depths=(10, 40), sigma_w2=(1.0, 1.75, 2.5, 4.0), budgets=(50, 150))

  @classmethod
  def smoke(cls) -> "Config":
    return cls(width=8, depths=(4,), sigma_w2=(1.0, 1.75, 4.0), budgets=(2, 3), batch=4,
               eval_examples=16, theory_points=9)

  def optimizer_config(self, depth: int = 1) -> optimizers.OptimizerConfig:
    """The optimizer at depth ``depth``: ``learning_rate / depth`` with ``scale_by_depth``."""
    momentum = self.momentum if self.optimizer == "sgd" else None
    rate = self.learning_rate / depth if self.scale_by_depth else self.learning_rate
    return optimizers.OptimizerConfig(self.optimizer, rate, momentum=momentum)


def train_many(model, dataset: data.Dataset, optimizer_config: optimizers.OptimizerConfig,
               sigma_w2: jax.Array, sigma_b2: jax.Array, keys: jax.Array, *,
               budgets: tuple[int, ...], batch: int, eval_examples: int,
               weights: str = "gaussian", step_scale: jax.Array | None = None
               ) -> dict[str, np.ndarray]:
  """Trains one network per (sigma_w2[i], sigma_b2[i], keys[i]) in one vmapped program.

  Each run trains for ``budgets[-1]`` steps, in chunks that end at each budget
  (the chunks draw the batches of one uninterrupted run), and its accuracy is
  read at every budget. The model must use
  :func:`experiments.mean_field.unit_inits`. ``step_scale[i]``, if given,
  multiplies run i's every update (``optax.scale`` after the optimizer): for SGD
  with momentum, exactly a learning rate ``step_scale[i]`` times the config's,
  so runs at several learning rates share the program.

  Returns:
    numpy arrays with a leading run axis: ``loss`` (runs, budgets[-1]);
    ``train_accuracy`` and ``test_accuracy`` (runs, budgets), on the first
    ``eval_examples`` training and test examples; ``diverged_at`` (runs,).
  """
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  evals = {"train": (x[:eval_examples], y[:eval_examples]),
           "test": (jnp.asarray(dataset.x_test)[:eval_examples],
                    jnp.asarray(dataset.y_test)[:eval_examples])}
  optimizer = optimizers.make_optimizer(optimizer_config)
  if step_scale is None:
    step_scale = np.ones(np.shape(sigma_w2), np.float32)

  def loss_fn(params, state, b):
    logits = model.apply({"params": params}, b[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, b[1]).mean(), state

  def accuracy(params, split):
    x_eval, y_eval = evals[split]
    return jnp.mean(jnp.argmax(model.apply({"params": params}, x_eval), -1) == y_eval)

  def one_run(s_w, s_b, key, scale):
    k_init, k_data = jax.random.split(key)
    scaled = optax.chain(optimizer, optax.scale(scale))
    params = scaled_init(model, k_init, x[:1], s_w, s_b, weights)["params"]
    opt_state, losses, scores, diverged_at, done = None, [], [], jnp.asarray(-1), 0
    for budget in budgets:
      result = training.train(loss_fn, params, scaled,
                              lambda k: data.sample_batch(k, x, y, batch), budget - done,
                              key=k_data, opt_state=opt_state, first_step=done)
      diverged_at = jnp.where(diverged_at < 0, result.diverged_at, diverged_at)
      params, opt_state, done = result.params, result.opt_state, budget
      losses.append(result.loss)
      scores.append(jnp.stack([accuracy(params, "train"), accuracy(params, "test")]))
    return jnp.concatenate(losses), jnp.stack(scores), diverged_at

  loss, scores, diverged = (np.asarray(a) for a in sweep(one_run, sigma_w2, sigma_b2, keys,
                                                          step_scale))
  return {"loss": loss, "train_accuracy": scores[..., 0], "test_accuracy": scores[..., 1],
          "diverged_at": diverged}


def six_xi_c(activation: str, sigma_w2: np.ndarray, sigma_b2: float) -> np.ndarray:
  """6 xi_c on a grid of sigma_w^2 (float64)."""
  with jax.enable_x64(True):
    # lax.map, not vmap: each point's fixed-point iteration stops when it converges.
    xi = jax.lax.map(lambda s: theory.depth_scales(activation, s, sigma_b2)["xi_c"],
                     jnp.asarray(sigma_w2, jnp.float64))
    return 6.0 * np.asarray(xi)


def separation(accuracy: np.ndarray, depths, sigma_w2, activation: str, sigma_b2: float, *,
               chance: float = CHANCE) -> dict:
  """How well "trainable iff L < 6 xi_c" predicts one measured map (depths, grid).

  A cell counts as trainable when its accuracy is above halfway between
  chance and the best accuracy on the map.
  """
  best = float(np.nanmax(accuracy))
  threshold = chance + 0.5 * (best - chance)
  measured = np.nan_to_num(accuracy, nan=0.0) > threshold
  predicted = np.asarray(depths)[:, None] < six_xi_c(activation, np.asarray(sigma_w2),
                                                    sigma_b2)[None, :]
  return {"threshold": threshold, "measured_trainable": measured, "predicted_trainable": predicted,
          "agreement": float(np.mean(measured == predicted)),
          "fraction_trainable": float(np.mean(measured)),
          "false_trainable": int(np.sum(predicted & ~measured)),
          "false_untrainable": int(np.sum(~predicted & measured))}


def depth_name(depth: int) -> str:
  return f"L={depth}"


def train_depth(config: Config, dataset: data.Dataset, depth: int) -> dict:
  """Every sigma_w^2 and seed of one depth, in one program: accuracies (budgets, grid, seeds)."""
  model = DeepMLP(depth=depth, width=config.width, out_features=dataset.num_classes,
                  activation=config.activation, **unit_inits())
  grid = np.repeat(np.asarray(config.sigma_w2, np.float32), config.seeds)
  keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), depth), len(grid))
  out = train_many(model, dataset, config.optimizer_config(depth), grid,
                   np.full_like(grid, config.sigma_b2), keys, budgets=config.budgets,
                   batch=config.batch, eval_examples=config.eval_examples)
  cells = (len(config.sigma_w2), config.seeds)
  by_budget = lambda a: np.moveaxis(a.reshape(*cells, -1), -1, 0)  # noqa: E731
  return {"train_accuracy": by_budget(out["train_accuracy"]),
          "test_accuracy": by_budget(out["test_accuracy"]),
          "final_loss": out["loss"][:, -1].reshape(cells),
          "diverged_at": out["diverged_at"].reshape(cells)}


def run(config: Config, out_dir: pathlib.Path) -> dict:
  """Trains every depth; ``results.json`` is rewritten after each (``results["settings"]``).

  A stopped run keeps the depths it finished, and a rerun of the same config
  into the same folder (through :func:`main`) trains only the others.
  """
  dataset = data.standardize(data.load(config.dataset))
  done = _cli.finished_settings(out_dir, config)
  settings = {}
  fine = np.linspace(min(config.sigma_w2), max(config.sigma_w2), config.theory_points)
  results = {
      "config": config, "depths": config.depths, "sigma_w2": config.sigma_w2,
      "budgets": config.budgets, "chance": 1.0 / dataset.num_classes,
      "theory": {"sigma_w2": fine, "six_xi_c": six_xi_c(config.activation, fine, config.sigma_b2),
                 "six_xi_c_on_grid": six_xi_c(config.activation, np.asarray(config.sigma_w2),
                                              config.sigma_b2),
                 "critical_sigma_w2": float(theory.critical_sigma_w2(config.activation,
                                                                     config.sigma_b2))},
      "settings": settings}
  for depth in _cli.progress(config.depths, desc="trainability"):
    name = depth_name(depth)
    settings[name] = done[name] if name in done else train_depth(config, dataset, depth)
    _cli.write_json(out_dir / "results.json", results)
  results.update(maps(results))
  _cli.write_json(out_dir / "results.json", results)
  plot(results, out_dir)
  return results


def maps(results: dict) -> dict:
  """The per-depth settings as maps (budgets, depths, grid): medians over seeds, and each budget's separation."""
  per_depth = [results["settings"][depth_name(d)] for d in results["depths"]]
  stack = {k: np.stack([np.asarray(s[k], dtype=float) for s in per_depth], axis=1)
           for k in ("train_accuracy", "test_accuracy")}
  train, test = (np.median(stack[k], axis=-1) for k in ("train_accuracy", "test_accuracy"))
  config = results["config"]
  return {"train_accuracy_median": train, "test_accuracy_median": test,
          "separation": [separation(m, results["depths"], results["sigma_w2"], config.activation,
                                    config.sigma_b2, chance=results["chance"]) for m in train]}


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


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__,
                   settings=lambda config: [depth_name(d) for d in config.depths])


if __name__ == "__main__":
  main()
