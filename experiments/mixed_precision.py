r"""Mixed precision (seed 000 §4.2): float16 gradient underflow and its cure by loss scaling.

One MLP trained four ways, float32 master weights throughout, the forward and
backward passes computed in: float32; bfloat16; float16; float16 with dynamic
loss scaling (:func:`jaxgrad.mixed_precision.dynamic_loss_scaling`, PyTorch's
``GradScaler`` in pure JAX; the arms: :mod:`jaxgrad.studies.mixed_precision`).
float16's smallest subnormal is 2^-24 ~ 6e-8: backpropagated signals below it
become exactly 0. The experiment measures, per layer and step, the fraction
of weight-gradient entries that are exactly zero, against the float32 run
(whose zeros are structural: dead ReLU units, constant input pixels), and the
loss curves. Underflow is measured exactly: at every step
the float32 gradient is computed too, on the same parameters and batch, and an
entry counts as underflowed when it is 0 in the arm's gradient but not in
float32's. The network is deep and initialised with LeCun-normal weights under
ReLU (chi_1 = 1/2), so the backprop signal shrinks layer by layer towards the
input, and shrinks further as the loss falls: the first layers underflow first.

    python -m experiments.mixed_precision            # ~3 min on 2 cores
    python -m experiments.mixed_precision --quick    # under a minute

Writes ``config.json``, ``results.json``, ``loss.png``, ``underflow.png`` and
``loss_scale.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import activations, data, initializers, plotting  # noqa: E402
from jaxgrad.models import DeepMLP  # noqa: E402
from jaxgrad.studies import mixed_precision as study  # noqa: E402

DATASETS = ("digits", "mnist1d")
COLORS = {"float32": "k", "bfloat16": "C2", "float16": "C3", "float16+scaling": "C0"}


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """One deep MLP trained in float32, bfloat16, float16, and float16 with loss scaling.

  Every step, weight-gradient underflow is measured against the float32 gradient.
  """

  dataset: str = _config.setting("digits", choices=DATASETS)
  depth: int = _config.setting(32, "Dense layers, input and output included", at_least=2)
  width: int = _config.setting(128, at_least=1)
  activation: str = _config.setting("relu", choices=activations.names)
  init: str = _config.setting("lecun_normal", "kernel initializer", choices=initializers.names)
  steps: int = _config.setting(400, at_least=1)
  batch: int = _config.setting(128, at_least=1)
  learning_rate: float = _config.setting(1e-3, "Adam", above=0)
  seeds: int = _config.setting(4, at_least=1)
  init_scale: float = _config.setting(2.0**15, "initial loss scale", at_least=1)
  growth_interval: int = _config.setting(100, "finite steps before the scale doubles", at_least=1)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: width 32, 120 steps, 2 seeds, about 30 s on 2 CPU cores."""
    return cls(steps=120, seeds=2, width=32)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: depth 4, width 8, 6 steps of batch 8, 2 seeds."""
    return cls(depth=4, width=8, steps=6, batch=8, seeds=2, growth_interval=2)


def run(config: Config) -> dict:
  """Every arm of :func:`jaxgrad.studies.mixed_precision.train_arm` on the same seeds.

  The arms share the network and the key, so they start from the same
  initialisations and see the same batches; then the underflow summary.
  """
  ds = data.load(config.dataset)
  model = DeepMLP(depth=config.depth, width=config.width, out_features=ds.num_classes,
                  activation=config.activation, kernel_init=config.init)
  key = jax.random.fold_in(jax.random.key(config.seed), 0)
  arms = {arm: study.train_arm(
              model, arm, ds, key=key, seeds=config.seeds, steps=config.steps,
              batch=config.batch, learning_rate=config.learning_rate,
              init_scale=config.init_scale, growth_interval=config.growth_interval)
          for arm in _cli.progress(study.ARMS, desc="precisions")}
  layers = list(arms["float32"]["zero_fraction"])
  return {"config": config, "layers": layers, "arms": arms,
          "underflow": study.underflow_summary(arms, layers)}


def plot_loss(arms: dict, out_dir: pathlib.Path) -> None:
  """``loss.png``: each arm's training loss, median and IQR over seeds."""
  fig, axes = plotting.figure(1, 1, panel=(5.0, 3.2))
  ax = axes[0, 0]
  for arm, res in arms.items():
    loss = np.asarray(res["loss"], dtype=float)
    plotting.median_band(ax, np.arange(loss.shape[1]), loss, label=arm, color=COLORS[arm])
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("training loss (median, IQR over seeds)")
  ax.legend()
  plotting.save(fig, out_dir / "loss.png")


def plot_underflow(arms: dict, layers: list[str], out_dir: pathlib.Path) -> None:
  """``underflow.png``: each layer's mean underflow per arm, input to output."""
  fig, axes = plotting.figure(1, 1, panel=(6.0, 3.2))
  ax = axes[0, 0]
  idx = np.arange(len(layers))
  for arm, res in arms.items():
    per_seed = np.stack([np.asarray(res["underflow_mean"][l], dtype=float) for l in layers], 1)
    plotting.median_band(ax, idx, per_seed, label=arm, color=COLORS[arm], marker="o")
  ax.set_xticks(idx, [l.replace("hidden/layers_", "h").replace("/dense", "") for l in layers],
                rotation=60)
  ax.set_xlabel("layer (input → output)")
  ax.set_ylabel("weight-gradient entries exactly 0\nbut not 0 in float32 (mean over steps)")
  ax.set_title("gradient underflow: float16 without loss scaling vs with it")
  ax.legend()
  plotting.save(fig, out_dir / "underflow.png")


def plot_loss_scale(arms: dict, out_dir: pathlib.Path) -> None:
  """``loss_scale.png``: the dynamic loss scale of the float16+scaling arm against the step."""
  fig, axes = plotting.figure(1, 1, panel=(5.0, 2.8))
  ax = axes[0, 0]
  scale = np.asarray(arms["float16+scaling"]["loss_scale"], dtype=float)
  plotting.median_band(ax, np.arange(scale.shape[1]), scale, label="float16+scaling",
                       color=COLORS["float16+scaling"])
  ax.set_yscale("log", base=2)
  ax.set_xlabel("step")
  ax.set_ylabel("loss scale s")
  plotting.save(fig, out_dir / "loss_scale.png")


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``loss.png``, ``underflow.png`` and ``loss_scale.png``.

  ``loss.png``: each arm's training loss. ``underflow.png``: each layer's mean fraction of
  weight-gradient entries that underflow, per arm. ``loss_scale.png``: the dynamic loss scale
  of the float16+scaling arm.
  """
  plot_loss(results["arms"], out_dir)
  plot_underflow(results["arms"], results["layers"], out_dir)
  plot_loss_scale(results["arms"], out_dir)


def summary(results: dict) -> str:
  """One row per arm: final loss, test accuracy, first-layer zeros and underflow.

  Medians over seeds: the first layer's fraction of zero gradient entries and of underflowed
  ones (over the run and over its last quarter), and the steps skipped on overflow.
  """
  header = ["arm", "final loss", "test acc", "zero-grad frac (first layer)",
            "underflow (first layer)", "underflow (first, last 1/4)", "skipped steps"]
  rows = []
  first = results["layers"][0]
  for arm, res in results["arms"].items():
    loss = np.asarray(res["loss"], dtype=float)
    scale = np.asarray(res["loss_scale"], dtype=float)
    skipped = int(np.median(np.sum(np.diff(scale, axis=1) < 0, axis=1))) if res["loss_scaling"] else 0
    rows.append([arm, float(np.nanmedian(loss[:, -10:])), float(np.median(res["test_accuracy"])),
                 float(np.median(res["zero_fraction_mean"][first])),
                 float(np.median(res["underflow_mean"][first])),
                 results["underflow"][arm]["first_layer_last_quarter"], skipped])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
