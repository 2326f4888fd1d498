r"""The seeds' MNIST classifiers on data we can ship, and optimizers x inits x activations.

Seed 001 trains ``784-512-256-10`` (ReLU) with SGD, lr 0.01, momentum 0.9;
seed 004 trains ``784-256-BatchNorm-ReLU-10`` with Adam, lr 1e-3, and claims
that adaptive optimizers (Adam, RMSProp, AdaGrad) and BatchNorm ease vanishing
gradients. Both nets are rebuilt here with their input layer shaped to the
dataset (MNIST-1D: 40 features, scikit-learn digits: 64) and trained on both
datasets; then, on one dataset, the seed MLP is trained for every combination
of optimizer x initialisation x activation. Reported per arm, median over
seeds: test accuracy and the steps until the training loss (running mean over
10 steps) first reaches ``--target-loss``. One run of seed 001's net is
re-trained with the full monitor (:mod:`jaxgrad.logs`): ``metrics.jsonl``
(loss, accuracy, per-layer gradient norms, update-to-weight ratios, dead units),
``alarms.jsonl``, and with ``--tensorboard`` event files with per-layer weight
and gradient histograms (needs ``pip install 'jaxgrad[tensorboard]'``).

    python -m experiments.mnist_classifier            # ~8 min on 2 cores
    python -m experiments.mnist_classifier --quick    # under a minute
    python -m experiments.mnist_classifier --tensorboard --out runs/mc && tensorboard --logdir runs/mc/tb

Writes ``config.json``, ``results.json``, ``metrics.jsonl``, ``alarms.jsonl``,
``grid.png`` and ``seed_nets.png`` under ``--out``.
"""

import dataclasses
import itertools
import pathlib

from experiments import _cli, _config

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgrad import activations, data, initializers, logs, metrics, optimizers, plotting, training  # noqa: E402
from jaxgrad.models import DenseBlock  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

MODELS = ("mlp", "bn")  # seed 001's MLP, seed 004's BatchNorm net
# name -> (optimizer, learning rate, momentum): the seeds' settings and Optax defaults.
OPTIMIZERS = {
    "sgd_momentum": ("sgd", 1e-2, 0.9),  # seed 001
    "adam": ("adam", 1e-3, None),  # seed 004
    "rmsprop": ("rmsprop", 1e-3, None),
    "adagrad": ("adagrad", 1e-2, None),
}
SEED_SETUPS = {"mlp": "sgd_momentum", "bn": "adam"}
SMOOTH = 10  # running-mean window for steps-to-target


class SeedNet(nn.Module):
  """``in -> widths[0] -> ... -> out``, each hidden layer a :class:`jaxgrad.models.DenseBlock`.

  ``widths=(512, 256)``: seed 001's ``Net``; ``widths=(256,), norm="batch"``:
  seed 004's ``SimpleNet`` (Linear, BatchNorm1d, ReLU, Linear).
  """

  widths: tuple[int, ...]
  out_features: int
  activation: str = "relu"
  kernel_init: str = "he_normal"
  norm: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i, w in enumerate(self.widths):
      x = DenseBlock(w, activation=self.activation, kernel_init=self.kernel_init,
                     norm=self.norm, name=f"layer_{i}")(x, train)
    return DenseBlock(self.out_features, activation="linear", kernel_init=self.kernel_init,
                      name=f"layer_{len(self.widths)}")(x)


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  datasets: tuple[str, ...] = _config.setting(("mnist1d", "digits"), choices=data.DATASETS[:2])
  grid_dataset: str = _config.setting("digits", "dataset of the grid", choices=data.DATASETS[:2])
  optimizers: tuple[str, ...] = _config.setting(tuple(OPTIMIZERS), choices=tuple(OPTIMIZERS))
  inits: tuple[str, ...] = _config.setting(("he_normal", "xavier_normal", "normal_small"),
                                           choices=initializers.names)
  activations: tuple[str, ...] = _config.setting(("relu", "tanh", "sigmoid"),
                                                 choices=activations.names)
  mlp_widths: tuple[int, ...] = _config.setting((512, 256), "seed 001 hidden widths", at_least=1,
                                                allow_repeats=True)
  bn_width: int = _config.setting(256, "seed 004 hidden width", at_least=1)
  steps: int = _config.setting(400, at_least=4)  # the monitored run logs 4 chunks
  batch: int = _config.setting(128, at_least=2)  # seed 004's BatchNorm needs 2 to normalize
  seeds: int = _config.setting(3, at_least=1)
  target_loss: float = _config.setting(0.5, "for steps-to-target", above=0)
  tensorboard: bool = _config.setting(False, "write TensorBoard events")
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(datasets=("digits",), optimizers=("sgd_momentum", "adam"),
               inits=("he_normal", "normal_small"), activations=("relu", "sigmoid"),
               mlp_widths=(128, 64), bn_width=64, steps=200, seeds=2)

  @classmethod
  def smoke(cls) -> "Config":
    # The grid's one arm is seed 001's net, trained once: 2 compiled programs + the monitor.
    return cls(datasets=("digits",), optimizers=("sgd_momentum",), inits=("he_normal",),
               activations=("relu",), mlp_widths=(8, 8), bn_width=8, steps=8, batch=8,
               seeds=2, target_loss=2.5)


def _model(config: Config, kind: str, classes: int, init: str, activation: str) -> SeedNet:
  if kind == "bn":
    return SeedNet((config.bn_width,), classes, activation, init, norm="batch")
  return SeedNet(config.mlp_widths, classes, activation, init)


def _optimizer(name: str) -> optimizers.OptimizerConfig:
  opt, lr, momentum = OPTIMIZERS[name]
  return optimizers.OptimizerConfig(opt, lr, momentum=momentum)


def _functions(model: SeedNet, ds: data.Dataset, batch: int):
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)

  def loss_fn(params, state, b):
    logits, new = model.apply({"params": params, **state}, b[0], True, mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, b[1]).mean(), new

  def accuracy(params, state, xs, ys):
    return jnp.mean(jnp.argmax(model.apply({"params": params, **state}, xs), -1) == ys)

  return loss_fn, accuracy, lambda k: data.sample_batch(k, x, y, batch)


def train_arm(config: Config, ds: data.Dataset, kind: str, opt: str, init: str,
              activation: str) -> dict:
  """All seeds of one arm in one vmapped, jitted program."""
  model = _model(config, kind, ds.num_classes, init, activation)
  loss_fn, accuracy, sample = _functions(model, ds, config.batch)
  tx = optimizers.make_optimizer(_optimizer(opt))
  xt, yt = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)

  def one_seed(key):
    k_init, k_train = jax.random.split(key)
    variables = model.init(k_init, xt[:2])
    state = {k: v for k, v in variables.items() if k == "batch_stats"}
    res = training.train(loss_fn, variables["params"], tx, sample, config.steps, key=k_train,
                         model_state=state)
    return res.loss, accuracy(res.params, res.model_state, xt, yt), res.diverged_at

  keys = jax.random.split(jax.random.key(config.seed), config.seeds)
  loss, acc, diverged = sweep(one_seed, keys)
  loss = np.asarray(loss)
  return {"dataset": ds_name(ds, config), "model": kind, "optimizer": opt, "init": init,
          "activation": activation, "loss": loss, "test_accuracy": np.asarray(acc),
          "steps_to_target": steps_to_target(loss, config.target_loss),
          "diverged_at": np.asarray(diverged)}


def ds_name(ds: data.Dataset, config: Config) -> str:
  return "mnist1d" if ds.x_train.shape[1] == 40 else "digits"


def steps_to_target(loss: np.ndarray, target: float) -> np.ndarray:
  """Per seed, the first step whose running mean (window 10) of the loss is <= target; NaN if none."""
  loss = np.asarray(loss, dtype=float)
  w = min(SMOOTH, loss.shape[1])
  kernel = np.ones(w) / w
  out = []
  for row in loss:
    smooth = np.convolve(np.nan_to_num(row, nan=np.inf), kernel, mode="valid")
    hit = np.nonzero(smooth <= target)[0]
    out.append(float(hit[0] + w - 1) if hit.size else float("nan"))
  return np.asarray(out)


def monitored_run(config: Config, ds: data.Dataset, out_dir: pathlib.Path) -> dict:
  """Seed 001's net, seed 0, with the full per-step monitor, in 4 chunks (histograms between)."""
  model = _model(config, "mlp", ds.num_classes, "he_normal", "relu")
  loss_fn, accuracy, sample = _functions(model, ds, config.batch)
  tx = optimizers.make_optimizer(_optimizer(SEED_SETUPS["mlp"]))
  record = metrics.recorder(
      accuracy_fn=lambda p, s, b: accuracy(p, s, b.x, b.y),
      outputs_fn=lambda p, s, b: _hidden_outputs(model, p, b[0]), activation="relu")
  k_init, k_train = jax.random.split(jax.random.key(config.seed))
  params = model.init(k_init, jnp.asarray(ds.x_test[:2]))["params"]
  chunk = config.steps // 4
  run_chunk = jax.jit(lambda p, o, first: training.train(
      loss_fn, p, tx, sample, chunk, key=k_train, record=record, opt_state=o, first_step=first))
  logger = logs.TensorBoardLogger(out_dir / "tb") if config.tensorboard else None
  opt_state, results = tx.init(params), []
  for c in range(4):
    res = run_chunk(params, opt_state, c * chunk)
    if logger is not None:
      grads = jax.grad(lambda p: loss_fn(p, {}, sample(jax.random.fold_in(k_train, c * chunk)))[0])(params)
      logger.histograms(c * chunk, params, grads)
    params, opt_state = res.params, res.opt_state
    results.append(res)
  cat = lambda *a: np.concatenate(a)  # noqa: E731
  loss = cat(*[r.loss for r in results])
  bad = ~np.isfinite(loss)
  whole = training.TrainResult(
      params, None, loss, cat(*[r.grad_norm for r in results]),
      int(np.argmax(bad)) if bad.any() else -1,
      jax.tree.map(cat, *[r.layer_grad_norms for r in results]),
      jax.tree.map(cat, *[r.metrics for r in results]))
  summary = logs.write_run(out_dir, whole, norm_threshold=10.0)
  if logger is not None:
    logger.log_rows(logs.rows(whole))
    logger.close()
  return {**summary, "dataset": ds_name(ds, config), "tensorboard": config.tensorboard}


def _hidden_outputs(model: SeedNet, params, x) -> dict:
  """Hidden-layer activations of a SeedNet without norm, keyed like layer_grad_norms."""
  out, h = {}, x
  for i in range(len(model.widths)):
    p = params[f"layer_{i}"]["dense"]
    h = activations.get(model.activation)(h @ p["kernel"] + p["bias"][None])
    out[f"layer_{i}/dense"] = h
  return out


def run(config: Config, out_dir: pathlib.Path) -> dict:
  names = sorted(set(config.datasets) | {config.grid_dataset})
  sets = {n: data.load(n) for n in names}
  jobs = [("seed_nets", d, m, SEED_SETUPS[m], "he_normal", "relu")
          for d in config.datasets for m in MODELS]
  jobs += [("grid", config.grid_dataset, "mlp", o, i, a)
           for o, i, a in itertools.product(config.optimizers, config.inits, config.activations)]
  arms, done = {"seed_nets": {}, "grid": {}}, {}
  for group, d, m, o, i, a in _cli.progress(jobs, desc="classifiers"):
    name = f"{d}/{m}/{o}/{i}/{a}"
    if name not in done:  # a seed net that is also a grid arm is trained once
      done[name] = train_arm(config, sets[d], m, o, i, a)
    arms[group][name] = done[name]
  monitor = monitored_run(config, sets[config.datasets[0]], out_dir)
  results = {"config": config, "arms": arms, "monitored_run": monitor}
  _cli.write_json(out_dir / "results.json", results)
  plot(results, out_dir)
  return results


def plot(results: dict, out_dir: pathlib.Path) -> None:
  config = results["config"]
  grid = results["arms"]["grid"]
  acts, opts, inits = config.activations, config.optimizers, config.inits
  fig, axes = plotting.figure(1, len(acts), panel=(3.0, 0.45 * len(opts) + 1.4))
  for col, act in enumerate(acts):
    ax = axes[0, col]
    acc = np.array([[np.median(grid[f"{config.grid_dataset}/mlp/{o}/{i}/{act}"]["test_accuracy"])
                     for i in inits] for o in opts])
    ax.imshow(acc, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for (r, c), v in np.ndenumerate(acc):
      ax.text(c, r, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
    ax.set_xticks(range(len(inits)), inits, rotation=20)
    ax.set_yticks(range(len(opts)), opts if col == 0 else [""] * len(opts))
    ax.grid(False)
    ax.set_title(act)
  fig.suptitle(f"test accuracy (median over {config.seeds} seeds): seed 001 MLP "
               f"{config.mlp_widths} on {config.grid_dataset}, {config.steps} steps", fontsize=9)
  plotting.save(fig, out_dir / "grid.png")

  seed_nets = results["arms"]["seed_nets"]
  fig, axes = plotting.figure(1, len(config.datasets), panel=(3.4, 2.6))
  for name, arm in seed_nets.items():
    ax = axes[0, list(config.datasets).index(arm["dataset"])]
    loss = np.asarray(arm["loss"], dtype=float)
    label = (f"{'001 MLP' if arm['model'] == 'mlp' else '004 BN net'}, {arm['optimizer']} "
             f"(acc {np.median(arm['test_accuracy']):.2f})")
    plotting.median_band(ax, np.arange(loss.shape[1]), loss, label=label)
    ax.set_title(arm["dataset"])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(loc="lower left")
  axes[0, 0].set_ylabel("training loss")
  plotting.save(fig, out_dir / "seed_nets.png")


def summary(results: dict) -> str:
  header = ["arm", "test acc", "IQR", "steps to target", "final loss"]
  rows = []
  for group in ("seed_nets", "grid"):
    for name, arm in results["arms"][group].items():
      acc = np.asarray(arm["test_accuracy"], dtype=float)
      q1, q3 = np.percentile(acc, [25, 75])
      steps = np.asarray(arm["steps_to_target"], dtype=float)
      reached = f"{np.median(steps):.0f}" if np.all(np.isfinite(steps)) else (
          f"{np.isfinite(steps).sum()}/{steps.size} reach" if np.isfinite(steps).any() else "never")
      final = float(np.nanmedian(np.asarray(arm["loss"], dtype=float)[:, -SMOOTH:]))
      rows.append([f"{group}:{name}", float(np.median(acc)), f"{q1:.2f}-{q3:.2f}", reached, final])
  return _cli.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__)


if __name__ == "__main__":
  main()
