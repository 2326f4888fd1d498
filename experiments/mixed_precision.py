r"""Mixed precision (seed 000 §4.2): float16 gradient underflow and its cure by loss scaling.

One MLP trained four ways, float32 master weights throughout, the forward and
backward passes computed in: float32; bfloat16; float16; float16 with dynamic
loss scaling (:func:`jaxgrad.mixed_precision.dynamic_loss_scaling`, PyTorch's
``GradScaler`` in pure JAX). float16's smallest subnormal is 2^-24 ~ 6e-8:
backpropagated signals below it become exactly 0. The experiment measures, per
layer and step, the fraction of weight-gradient entries that are exactly zero,
against the float32 run (whose zeros are structural: dead ReLU units, constant
input pixels), and the loss curves. Underflow is measured exactly: at every step
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgrad import activations, data, initializers, mixed_precision, optimizers, plotting, probe, training  # noqa: E402
from jaxgrad.models import DeepMLP  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

ARMS = ("float32", "bfloat16", "float16", "float16+scaling")
DATASETS = ("digits", "mnist1d")


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
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
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(steps=120, seeds=2, width=32)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(depth=4, width=8, steps=6, batch=8, seeds=2, growth_interval=2)


def _compute_dtype(arm: str):
  return mixed_precision.DTYPES[arm.split("+")[0]]


def train_arm(config: Config, arm: str, ds: data.Dataset) -> dict:
  """Trains ``config.seeds`` networks in ``arm``'s precision in one vmapped program."""
  dtype = _compute_dtype(arm)
  model = DeepMLP(depth=config.depth, width=config.width, out_features=ds.num_classes,
                  activation=config.activation, kernel_init=config.init)
  x_train, y_train = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  layout = probe.layout(model, x_train[:1])

  def logits_fn(params, x, dtype=dtype):
    p16 = mixed_precision.cast(params, dtype)
    return model.apply({"params": p16}, x.astype(dtype)).astype(jnp.float32)

  def loss_fn(params, state, batch, dtype=dtype):
    x, y = batch.x, batch.y
    logits = logits_fn(params, x, dtype)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state

  float32_grad = jax.grad(lambda p, b: loss_fn(p, {}, b, jnp.float32)[0])

  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("adam", config.learning_rate))
  if arm.endswith("+scaling"):
    tx = mixed_precision.dynamic_loss_scaling(tx, init_scale=config.init_scale,
                                              growth_interval=config.growth_interval)

  def record(info):
    # Underflow: entries that are exactly 0 here but not in float32, same params and batch.
    reference = float32_grad(info.params, info.batch)
    lost = jax.tree.map(lambda g, r: jnp.where((g == 0) & (r != 0), 0.0, 1.0), info.grads, reference)
    return {"zero_fraction": mixed_precision.zero_fraction(info.grads, layout=layout),
            "underflow": mixed_precision.zero_fraction(lost, layout=layout),
            "loss_scale": mixed_precision.loss_scale(info.opt_state)}

  def one_seed(key):
    k_init, k_train = jax.random.split(key)
    params = model.init(k_init, x_train[:1])["params"]
    res = training.train(loss_fn, params, tx,
                         lambda k: data.sample_batch(k, x_train, y_train, config.batch),
                         config.steps, key=k_train, record=record)
    pred = jnp.argmax(logits_fn(res.params, jnp.asarray(ds.x_test)), -1)
    acc = jnp.mean(pred == jnp.asarray(ds.y_test))
    return res.loss, res.metrics, acc, res.diverged_at

  keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 0), config.seeds)
  loss, metrics, acc, diverged = sweep(one_seed, keys)
  zero = {k: np.asarray(v) for k, v in metrics["zero_fraction"].items()}
  lost = {k: np.asarray(v) for k, v in metrics["underflow"].items()}
  return {
      "dtype": arm.split("+")[0], "loss_scaling": arm.endswith("+scaling"),
      "loss": np.asarray(loss), "test_accuracy": np.asarray(acc),
      "diverged_at": np.asarray(diverged),
      "loss_scale": np.asarray(metrics["loss_scale"]),
      "zero_fraction": zero,  # layer -> (seeds, steps)
      # per layer: mean over steps, per seed
      "zero_fraction_mean": {k: v.mean(axis=1) for k, v in zero.items()},
      # layer -> (seeds, steps): fraction of entries 0 here but not in float32
      "underflow": lost,
      "underflow_mean": {k: v.mean(axis=1) for k, v in lost.items()},
      "underflow_last_quarter": {k: v[:, -max(1, v.shape[1] // 4):].mean(axis=1)
                                 for k, v in lost.items()},
  }


def run(config: Config, out_dir: pathlib.Path) -> dict:
  ds = data.load(config.dataset)
  arms = {arm: train_arm(config, arm, ds) for arm in _cli.progress(ARMS, desc="precisions")}
  layers = list(arms["float32"]["zero_fraction"])
  underflow = {}
  for arm, res in arms.items():
    per_layer = [float(np.median(res["underflow_mean"][l])) for l in layers]
    underflow[arm] = {"per_layer": per_layer, "max": max(per_layer),
                      "first_layer_last_quarter": float(np.median(
                          res["underflow_last_quarter"][layers[0]]))}
  results = {"config": config, "layers": layers, "arms": arms, "underflow": underflow}
  _cli.write_json(out_dir / "results.json", results)
  plot(results, out_dir)
  return results


COLORS = {"float32": "k", "bfloat16": "C2", "float16": "C3", "float16+scaling": "C0"}


def plot(results: dict, out_dir: pathlib.Path) -> None:
  arms, layers = results["arms"], results["layers"]
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

  fig, axes = plotting.figure(1, 1, panel=(5.0, 2.8))
  ax = axes[0, 0]
  scale = np.asarray(arms["float16+scaling"]["loss_scale"], dtype=float)
  plotting.median_band(ax, np.arange(scale.shape[1]), scale, label="float16+scaling",
                       color=COLORS["float16+scaling"])
  ax.set_yscale("log", base=2)
  ax.set_xlabel("step")
  ax.set_ylabel("loss scale s")
  plotting.save(fig, out_dir / "loss_scale.png")


def summary(results: dict) -> str:
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


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__)


if __name__ == "__main__":
  main()
