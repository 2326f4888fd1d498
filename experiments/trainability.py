r"""Trainability phase diagram (Schoenholz et al. 2017) on MNIST-1D, with the 6 xi_c line.

Deep tanh MLPs (``DeepMLP``: width 128, weights N(0, sigma_w^2/fan_in), biases
N(0, sigma_b^2 = 0.05)) are trained for a fixed number of optimizer steps on
MNIST-1D (generated locally by ``mnist1d``), for every sigma_w^2 on a grid in
[1, 4] and every depth L. Mean-field theory says information about the input
survives about xi_c layers (jaxgrad.theory.depth_scales), and Schoenholz et al.
found networks trainable iff L < 6 xi_c; xi_c diverges at the critical point
sigma_w^2 = 1.761 (chi_1 = 1). The heatmap shows the final training accuracy
with the 6 xi_c curve; the summary reports how well the rule "trainable iff
L < 6 xi_c" predicts the measured map, thresholded halfway between chance
(10%) and the best accuracy on the map. All sigma_w^2 and seeds of one depth
train in one vmapped, jitted program (jaxgrad.training.train).

    python -m experiments.trainability            # 7 sigma_w^2 x 6 depths (10..300), ~8 min on 2 cores
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

from jaxgrad import activations, data, plotting, theory, training  # noqa: E402
from jaxgrad.models import DeepMLP  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

CHANCE = 0.1  # ten classes
THEORY_POINTS = 61  # sigma_w^2 values on the 6 xi_c curve


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  width: int = _config.setting(128, "hidden width", at_least=1)
  depths: tuple[int, ...] = _config.setting((10, 25, 50, 100, 200, 300), "depths L (Dense layers)",
                                            at_least=2, increasing=True)
  sigma_w2: tuple[float, ...] = _config.setting((1.0, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0),
                                                "grid of sigma_w^2", above=0, increasing=True)
  sigma_b2: float = _config.setting(0.05, "bias variance", at_least=0)
  activation: str = _config.setting("tanh", choices=activations.names)
  seeds: int = _config.setting(1, "networks per cell", at_least=1)
  steps: int = _config.setting(300, "optimizer steps", at_least=1)
  batch: int = _config.setting(32, "batch size", at_least=1)
  optimizer: str = _config.setting("sgd", "optimizer", choices=training.OPTIMIZERS)
  learning_rate: float = _config.setting(0.01, above=0)
  momentum: float = _config.setting(0.9, "SGD momentum", at_least=0, below=1)
  eval_examples: int = _config.setting(1000, "training examples the accuracy is measured on",
                                       at_least=1)
  theory_points: int = _config.setting(THEORY_POINTS, "sigma_w^2 values on the 6 xi_c curve",
                                       at_least=2)
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(width=64, depths=(10, 40), sigma_w2=(1.0, 1.75, 2.5, 4.0), steps=150)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(width=8, depths=(4,), sigma_w2=(1.0, 1.75, 4.0), steps=3, batch=4,
               eval_examples=16, theory_points=9)

  def optimizer_config(self) -> training.OptimizerConfig:
    momentum = self.momentum if self.optimizer == "sgd" else None
    return training.OptimizerConfig(self.optimizer, self.learning_rate, momentum=momentum)


def train_many(model, dataset: data.Dataset, optimizer_config: training.OptimizerConfig,
               sigma_w2: jax.Array, sigma_b2: jax.Array, keys: jax.Array, *, steps: int,
               batch: int, eval_examples: int, weights: str = "gaussian") -> dict[str, np.ndarray]:
  """Trains one network per (sigma_w2[i], sigma_b2[i], keys[i]) in one vmapped program.

  The model must use :func:`experiments.mean_field.unit_inits`. Returns numpy
  arrays with a leading run axis: ``loss`` (runs, steps), ``train_accuracy``
  (runs,) on the first ``eval_examples`` training examples, ``diverged_at``.
  """
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  x_eval, y_eval = x[:eval_examples], y[:eval_examples]
  optimizer = training.make_optimizer(optimizer_config)

  def loss_fn(params, state, b):
    logits = model.apply({"params": params}, b[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, b[1]).mean(), state

  def one_run(s_w, s_b, key):
    k_init, k_data = jax.random.split(key)
    params = scaled_init(model, k_init, x[:1], s_w, s_b, weights)["params"]
    result = training.train(loss_fn, params, optimizer,
                            lambda k: data.sample_batch(k, x, y, batch), steps, key=k_data)
    logits = model.apply({"params": result.params}, x_eval)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y_eval)
    return result.loss, accuracy, result.diverged_at

  loss, accuracy, diverged = sweep(one_run, sigma_w2, sigma_b2, keys)
  return {"loss": np.asarray(loss), "train_accuracy": np.asarray(accuracy),
          "diverged_at": np.asarray(diverged)}


def six_xi_c(activation: str, sigma_w2: np.ndarray, sigma_b2: float) -> np.ndarray:
  """6 xi_c on a grid of sigma_w^2 (float64)."""
  with jax.enable_x64(True):
    # lax.map, not vmap: each point's fixed-point iteration stops when it converges.
    xi = jax.lax.map(lambda s: theory.depth_scales(activation, s, sigma_b2)["xi_c"],
                     jnp.asarray(sigma_w2, jnp.float64))
    return 6.0 * np.asarray(xi)


def separation(accuracy: np.ndarray, depths, sigma_w2, activation: str, sigma_b2: float) -> dict:
  """How well "trainable iff L < 6 xi_c" predicts the measured map (depths, grid)."""
  best = float(np.nanmax(accuracy))
  threshold = CHANCE + 0.5 * (best - CHANCE)
  measured = np.nan_to_num(accuracy, nan=0.0) > threshold
  predicted = np.asarray(depths)[:, None] < six_xi_c(activation, np.asarray(sigma_w2),
                                                    sigma_b2)[None, :]
  return {"threshold": threshold, "measured_trainable": measured, "predicted_trainable": predicted,
          "agreement": float(np.mean(measured == predicted)),
          "false_trainable": int(np.sum(predicted & ~measured)),
          "false_untrainable": int(np.sum(~predicted & measured))}


def run(config: Config, out_dir: pathlib.Path) -> dict:
  dataset = data.standardize(data.mnist1d())
  grid = np.repeat(np.asarray(config.sigma_w2, np.float32), config.seeds)
  sb2 = np.full_like(grid, config.sigma_b2)
  accuracy = np.zeros((len(config.depths), len(config.sigma_w2), config.seeds))
  final_loss = np.zeros_like(accuracy)
  diverged = np.zeros_like(accuracy, dtype=int)
  for i, depth in enumerate(_cli.progress(config.depths, desc="trainability")):
    model = DeepMLP(depth=depth, width=config.width, out_features=dataset.num_classes,
                    activation=config.activation, **unit_inits())
    keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), depth), len(grid))
    out = train_many(model, dataset, config.optimizer_config(), grid, sb2, keys,
                     steps=config.steps, batch=config.batch, eval_examples=config.eval_examples)
    shape = (len(config.sigma_w2), config.seeds)
    accuracy[i] = out["train_accuracy"].reshape(shape)
    final_loss[i] = out["loss"][:, -1].reshape(shape)
    diverged[i] = out["diverged_at"].reshape(shape)
  median = np.median(accuracy, axis=-1)
  fine = np.linspace(min(config.sigma_w2), max(config.sigma_w2), config.theory_points)
  results = {
      "config": config, "depths": config.depths, "sigma_w2": config.sigma_w2,
      "train_accuracy_per_seed": accuracy, "train_accuracy_median": median,
      "final_loss_per_seed": final_loss, "diverged_at_per_seed": diverged,
      "theory": {"sigma_w2": fine, "six_xi_c": six_xi_c(config.activation, fine, config.sigma_b2),
                 "six_xi_c_on_grid": six_xi_c(config.activation, np.asarray(config.sigma_w2),
                                              config.sigma_b2),
                 "critical_sigma_w2": float(theory.critical_sigma_w2(config.activation,
                                                                     config.sigma_b2))},
      "separation": separation(median, config.depths, config.sigma_w2, config.activation,
                               config.sigma_b2),
  }
  _cli.write_json(out_dir / "results.json", results)
  plot(results, out_dir)
  return results


def _edges(values) -> np.ndarray:
  v = np.asarray(values, dtype=float)
  mid = 0.5 * (v[1:] + v[:-1])
  return np.concatenate([[v[0] - (mid[0] - v[0]) if len(v) > 1 else v[0] - 0.5], mid,
                         [v[-1] + (v[-1] - mid[-1]) if len(v) > 1 else v[-1] + 0.5]])


def plot(results: dict, out_dir: pathlib.Path) -> None:
  fig, axes = plotting.figure(1, 1, panel=(5.2, 3.6))
  ax = axes[0, 0]
  acc = np.asarray(results["train_accuracy_median"], dtype=float)
  depths, grid = results["depths"], results["sigma_w2"]
  # Cells spaced by index in depth (log-like), drawn on a log depth axis.
  y_edges = np.exp(_edges(np.log(depths)))
  mesh = ax.pcolormesh(_edges(grid), y_edges, acc, cmap="viridis", vmin=CHANCE,
                       vmax=max(float(np.nanmax(acc)), CHANCE + 1e-3))
  fig.colorbar(mesh, ax=ax, label="training accuracy")
  th = results["theory"]
  plotting.theory_line(ax, th["sigma_w2"], th["six_xi_c"], color="C3", label="6 ξ_c (theory)")
  ax.axvline(th["critical_sigma_w2"], color="C3", linestyle=":", linewidth=1,
             label=f"χ₁=1 at σw²={th['critical_sigma_w2']:.3f}")
  sep = results["separation"]
  measured = np.asarray(sep["measured_trainable"], dtype=bool)
  for i, d in enumerate(depths):
    for j, s in enumerate(grid):
      ax.text(s, d, f"{acc[i, j]:.2f}", ha="center", va="center", fontsize=6,
              color="k" if measured[i, j] else "w")
  ax.set_yscale("log")
  ax.set_ylim(y_edges[0], y_edges[-1])
  ax.set_xlabel("σw²")
  ax.set_ylabel("depth L")
  config = results["config"]
  ax.set_title(f"{config.activation}, N={config.width}, σb²={config.sigma_b2:g}, "
               f"{config.optimizer} {config.steps} steps: rule L<6ξ_c agrees on "
               f"{sep['agreement']:.0%} of cells", fontsize=8)
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, frameon=False)
  plotting.save(fig, out_dir / "phase_diagram.png")


def summary(results: dict) -> str:
  header = ["depth"] + [f"σw²={s:g}" for s in results["sigma_w2"]]
  rows = [[d] + [float(a) for a in row]
          for d, row in zip(results["depths"], results["train_accuracy_median"])]
  rows.append(["6ξ_c"] + [float(v) for v in results["theory"]["six_xi_c_on_grid"]])
  sep = results["separation"]
  return (_cli.format_table(header, rows) +
          f"\n\ntrainable := accuracy > {sep['threshold']:.3f}; rule 'trainable iff L < 6ξ_c' "
          f"agrees on {sep['agreement']:.1%} of cells (predicted trainable but not: "
          f"{sep['false_trainable']}, the reverse: {sep['false_untrainable']})")


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__)


if __name__ == "__main__":
  main()
