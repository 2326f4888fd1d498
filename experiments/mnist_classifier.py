r"""The seeds' MNIST classifiers on data we can ship, and optimizers x inits x activations.

Seed 001 trains ``784-512-256-10`` (ReLU) with SGD, lr 0.01, momentum 0.9;
seed 004 trains ``784-256-BatchNorm-ReLU-10`` with Adam, lr 1e-3, and claims
that adaptive optimizers (Adam, RMSProp, AdaGrad) and BatchNorm ease vanishing
gradients. Both nets are rebuilt here with their input layer shaped to the
dataset (MNIST-1D: 40 features, scikit-learn digits: 64) and trained on both
datasets; then, on one dataset, the seed MLP is trained for every combination
of optimizer x initialisation x activation (the studies:
:mod:`jaxgrad.studies.classifiers`). Reported per arm, median over
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

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import activations, data, initializers, logs, plotting, stats  # noqa: E402
from jaxgrad.studies import classifiers as study  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """The seed nets on each dataset, the optimizer x init x activation grid, a monitored run.

  Each arm reports test accuracy and the steps to ``target_loss``, median over seeds.
  """

  datasets: tuple[str, ...] = _config.setting(("mnist1d", "digits"), choices=data.DATASETS[:2])
  grid_dataset: str = _config.setting("digits", "dataset of the grid", choices=data.DATASETS[:2])
  optimizers: tuple[str, ...] = _config.setting(tuple(study.OPTIMIZERS), choices=tuple(study.OPTIMIZERS))
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
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: digits, a 2 x 2 x 2 grid, 200 steps, about 49 s on 2 CPU cores."""
    return cls(datasets=("digits",), optimizers=("sgd_momentum", "adam"),
               inits=("he_normal", "normal_small"), activations=("relu", "sigmoid"),
               mlp_widths=(128, 64), bn_width=64, steps=200, seeds=2)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: width-8 seed nets on digits, one grid arm, 8 steps."""
    # The grid's one arm is seed 001's net, trained once: 2 compiled programs + the monitor.
    return cls(datasets=("digits",), optimizers=("sgd_momentum",), inits=("he_normal",),
               activations=("relu",), mlp_widths=(8, 8), bn_width=8, steps=8, batch=8,
               seeds=2, target_loss=2.5)


def _model(config: Config, kind: str, classes: int, init: str, activation: str) -> study.SeedNet:
  return study.seed_net(kind, classes, init=init, activation=activation,
                        mlp_widths=config.mlp_widths, bn_width=config.bn_width)


def _arm(config: Config, ds: data.Dataset, dataset: str, kind: str, opt: str, init: str,
         activation: str) -> dict:
  """One arm's labels and :func:`jaxgrad.studies.classifiers.train_arm`'s numbers."""
  arm = study.train_arm(_model(config, kind, ds.num_classes, init, activation), ds,
                        study.optimizer(opt), key=jax.random.key(config.seed),
                        seeds=config.seeds, steps=config.steps, batch=config.batch,
                        target_loss=config.target_loss)
  return {"dataset": dataset, "model": kind, "optimizer": opt, "init": init,
          "activation": activation, **arm}


def monitored_run(config: Config, out_dir: pathlib.Path) -> dict:
  """Seed 001's net, seed 0, with the full per-step monitor, in 4 chunks (histograms between).

  Trains on the first of ``config.datasets``
  (:func:`jaxgrad.studies.classifiers.monitored_training`) and writes
  ``metrics.jsonl``, ``alarms.jsonl`` and (with ``config.tensorboard``)
  TensorBoard events into ``out_dir``.
  """
  dataset = config.datasets[0]
  ds = data.load(dataset)
  logger = logs.TensorBoardLogger(out_dir / "tb") if config.tensorboard else None
  whole = study.monitored_training(
      _model(config, "mlp", ds.num_classes, "he_normal", "relu"), ds,
      study.optimizer(study.SEED_SETUPS["mlp"]), key=jax.random.key(config.seed),
      steps=config.steps, batch=config.batch,
      on_chunk=None if logger is None else logger.histograms)
  summary = logs.write_run(out_dir, whole, norm_threshold=10.0)
  if logger is not None:
    logger.log_rows(logs.rows(whole))
    logger.close()
  return {"monitored_run": {**summary, "dataset": dataset, "tensorboard": config.tensorboard}}


def run(config: Config) -> dict:
  """The seed nets on every dataset, then the grid on one; an arm in both is trained once."""
  names = sorted(set(config.datasets) | {config.grid_dataset})
  sets = {n: data.load(n) for n in names}
  jobs = [("seed_nets", d, m, study.SEED_SETUPS[m], "he_normal", "relu")
          for d in config.datasets for m in study.MODELS]
  jobs += [("grid", config.grid_dataset, "mlp", o, i, a)
           for o, i, a in itertools.product(config.optimizers, config.inits, config.activations)]
  arms, done = {"seed_nets": {}, "grid": {}}, {}
  for group, d, m, o, i, a in _cli.progress(jobs, desc="classifiers"):
    name = f"{d}/{m}/{o}/{i}/{a}"
    if name not in done:
      done[name] = _arm(config, sets[d], d, m, o, i, a)
    arms[group][name] = done[name]
  return {"config": config, "arms": arms}


def plot_grid(results: dict, out_dir: pathlib.Path) -> None:
  """``grid.png``: median test accuracy per optimizer x init, one panel per activation."""
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


def plot_seed_nets(results: dict, out_dir: pathlib.Path) -> None:
  """``seed_nets.png``: the seed nets' training loss, one panel per dataset."""
  datasets = list(results["config"].datasets)
  fig, axes = plotting.figure(1, len(datasets), panel=(3.4, 3.4))
  for arm in results["arms"]["seed_nets"].values():
    ax = axes[0, datasets.index(arm["dataset"])]
    loss = np.asarray(arm["loss"], dtype=float)
    label = (f"{'001 MLP' if arm['model'] == 'mlp' else '004 BN net'}, {arm['optimizer']}\n"
             f"test accuracy {np.median(arm['test_accuracy']):.2f}")
    plotting.median_band(ax, np.arange(loss.shape[1]), loss, label=label)
    ax.set_title(arm["dataset"])
    ax.set_yscale("log")
    ax.set_xlabel("step")
  for ax in axes[0]:  # below each panel: its own nets' accuracies
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2))
  axes[0, 0].set_ylabel("training loss")
  plotting.save(fig, out_dir / "seed_nets.png")


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``grid.png`` and ``seed_nets.png``.

  ``grid.png``: median test accuracy per optimizer x init, a panel per activation.
  ``seed_nets.png``: the seed nets' training loss, a panel per dataset.
  """
  plot_grid(results, out_dir)
  plot_seed_nets(results, out_dir)


def _reached(steps: np.ndarray) -> str:
  """The median steps to target if every seed reached it, else how many did."""
  if np.all(np.isfinite(steps)):
    return f"{np.median(steps):.0f}"
  return f"{np.isfinite(steps).sum()}/{steps.size} reach" if np.isfinite(steps).any() else "never"


def summary(results: dict) -> str:
  """One row per arm, seed nets then grid: test accuracy, IQR, steps to target, final loss.

  Steps to target is the median if every seed got there, else how many did.
  """
  header = ["arm", "test acc", "IQR", "steps to target", "final loss"]
  rows = []
  for group in ("seed_nets", "grid"):
    for name, arm in results["arms"][group].items():
      acc = stats.quartiles(np.asarray(arm["test_accuracy"], dtype=float), keep_samples=False)
      final = float(np.nanmedian(np.asarray(arm["loss"], dtype=float)[:, -study.SMOOTH:]))
      rows.append([f"{group}:{name}", float(acc["median"]), f"{acc['q25']:.2f}-{acc['q75']:.2f}",
                   _reached(np.asarray(arm["steps_to_target"], dtype=float)), final])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary, logs=monitored_run)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
