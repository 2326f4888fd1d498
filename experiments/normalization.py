r"""Normalization under a poor initialization: none, BatchNorm, LayerNorm, weight norm.

Seed 000 §4.3 and seed 004 say BatchNorm "keeps the distribution of every
layer's input stable" and so prevents vanishing *and exploding* gradients;
§6.4 proposes weight normalization ``w = g v / ||v||``. This experiment takes
a deep MLP (:class:`jaxgrad.models.DeepMLP`, ``--depth`` Dense layers of
width ``--width``) with sigmoid or ReLU under a poor initialization (default:
the seed's ``normal_small``, N(0, 0.01^2)), and for each normalization

* ``none``: the plain net;
* ``batch``: BatchNorm after every hidden Dense layer (train mode: batch
  statistics, ``batch_stats`` carried through training as model state);
* ``layer``: LayerNorm at the same place;
* ``weight``: every kernel reparameterized as ``g v / ||v||``
  (:func:`jaxgrad.models.weight_norm.to_weight_norm`, ``g = ||v||`` at init);

measures (:func:`jaxgrad.studies.normalization.measure`), over ``--seeds``
runs vmapped into one program, the per-layer weight gradient norm
``||dL/dW_l||`` (``||dL/dv_l||`` for weight norm) and the backprop signal ``||dL/dz_l||`` at initialization and after ``--steps`` Adam
steps on MNIST-1D (:func:`jaxgrad.data.mnist1d`, standardized), with
:func:`jaxgrad.training.train`. Theory (theory.md §1.7; Yang et al. 2019):
with BatchNorm in every layer the squared backprop signal *grows* toward the
input at initialization, by ``pi / (pi - 1) = 1.467`` per layer for ReLU at
large batch, whatever the weight scale.

    python -m experiments.normalization            # depth 20, 8 seeds, ~3 min on 2 cores
    python -m experiments.normalization --quick    # sigmoid only, 3 seeds: under a minute
    python -m experiments.normalization --kernel-init he_normal   # a good init, for contrast

Writes ``config.json``, ``results.json`` (every plotted number),
``grad_norms.png``, ``signal.png`` and ``training.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import numpy as np  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)

from jaxgrad import activations, data, initializers, plotting  # noqa: E402
from jaxgrad.stats import quartiles  # noqa: E402
from jaxgrad.studies import normalization  # noqa: E402

NORMS = normalization.NORMS
BN_RELU_GROWTH = normalization.BN_RELU_GROWTH
COLORS = {"none": "C7", "batch": "C3", "layer": "C0", "weight": "C2"}
# Weight norm equals the plain net at init (g = ||v||): drawn dotted so both show.
LINESTYLES = {"weight": ":"}
PANEL = (4.0, 2.8)


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Per-layer gradients of deep MLPs under a poor init, with each normalization.

  ``seeds`` nets per (activation, normalization), at init and after Adam on MNIST-1D.
  """

  depth: int = _config.setting(20, "Dense layers, input and output included", at_least=3)
  width: int = _config.setting(64, "hidden width", at_least=1)
  activations: tuple[str, ...] = _config.setting(("sigmoid", "relu"), choices=activations.names)
  norms: tuple[str, ...] = _config.setting(NORMS, "normalizations", choices=NORMS)
  kernel_init: str = _config.setting("normal_small", "initializer name (jaxgrad.initializers)",
                                     choices=initializers.names)
  steps: int = _config.setting(200, "Adam steps", at_least=1)
  learning_rate: float = _config.setting(1e-3, above=0)
  batch: int = _config.setting(128, "batch size (BatchNorm's too)", at_least=2)
  seeds: int = _config.setting(8, "runs per case", at_least=1)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: sigmoid only, 3 seeds, about 41 s on 2 CPU cores."""
    return cls(activations=("sigmoid",), seeds=3)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: ReLU, depth 4, width 8, 3 steps of batch 8, 2 seeds."""
    return cls(depth=4, width=8, activations=("relu",), steps=3, batch=8, seeds=2)


PER_SEED = ("grad_init", "grad_final", "signal_init", "signal_final", "loss",
            "zero_grad_fraction_init", "zero_grad_fraction_final")


def _case(config: Config, activation: str, norm: str, dataset: data.Dataset) -> dict:
  m = normalization.measure(activation, norm, dataset, depth=config.depth, width=config.width,
                            kernel_init=config.kernel_init, steps=config.steps,
                            learning_rate=config.learning_rate, batch=config.batch,
                            seeds=config.seeds, seed=config.seed)
  return {
      "activation": activation, "norm": norm,
      "layers": np.arange(1, config.depth + 1),
      **{k: quartiles(m[k]) for k in PER_SEED},
      "signal_growth_init": quartiles(normalization.growth_per_layer(m["signal_init"])),
      "test_accuracy": quartiles(m["test_accuracy"]),
      "diverged_at": m["diverged_at"],
      "theory_signal_growth_init": normalization.predicted_growth(
          activation, norm, config.kernel_init, config.width),
  }


def run(config: Config) -> dict:
  """Trains and measures every case; the results dict of every plotted number."""
  dataset = data.standardize(data.mnist1d())
  jobs = [(a, n) for a in config.activations for n in config.norms]
  cases = {f"{activation}/{norm}": _case(config, activation, norm, dataset)
           for activation, norm in _cli.progress(jobs, desc="normalization")}
  return {"config": config, "dataset": "mnist1d", "bn_relu_growth": BN_RELU_GROWTH,
          "cases": cases}


def _draw(ax, x, y, norm: str, label: str) -> None:
  line = plotting.median_band(ax, x, y, color=COLORS[norm], label=label)
  line.set_linestyle(LINESTYLES.get(norm, "-"))


def _activations(cases: dict) -> list[str]:
  return list(dict.fromkeys(c["activation"] for c in cases.values()))


def _plot_grad_norms(cases: dict, steps: int, out_dir: pathlib.Path) -> None:
  """Per-layer weight-gradient norms at init (top) and after training (bottom)."""
  acts = _activations(cases)
  fig, axes = plotting.figure(2, len(acts), panel=PANEL)
  for c in cases.values():
    col = acts.index(c["activation"])
    for row, key in enumerate(("grad_init", "grad_final")):
      _draw(axes[row, col], c["layers"], c[key]["per_seed"], c["norm"], c["norm"])
  for col, a in enumerate(acts):
    axes[0, col].set_title(f"{a}, at initialization")
    axes[1, col].set_title(f"{a}, after {steps} Adam steps")
    for row in range(2):
      axes[row, col].set_yscale("log")
    axes[1, col].set_xlabel("layer")
  for row in range(2):
    axes[row, 0].set_ylabel("||dL/dW_l||")
  axes[0, 0].legend()
  plotting.save(fig, out_dir / "grad_norms.png")


def _signal_theory(ax, case: dict) -> None:
  """The mean-field growth per layer, anchored at the last hidden layer's median."""
  growth = case["theory_signal_growth_init"]
  if growth is None or case["norm"] == "weight":  # weight: the same line as none
    return
  anchor = np.asarray(case["signal_init"]["median"])[-2]
  layers = np.asarray(case["layers"])[1:-1]
  with np.errstate(all="ignore"):
    predicted = anchor * growth ** (0.5 * (layers[-1] - layers))
  plotting.theory_line(ax, layers, predicted, color=COLORS[case["norm"]],
                       label=f"{case['norm']}, mean field: ×{growth:.3g}/layer²")


def _plot_signal(cases: dict, out_dir: pathlib.Path) -> None:
  """The backprop signal at init, next to the mean-field growth."""
  acts = _activations(cases)
  fig, axes = plotting.figure(1, len(acts), panel=PANEL)
  for c in cases.values():
    ax = axes[0, acts.index(c["activation"])]
    _draw(ax, c["layers"], c["signal_init"]["per_seed"], c["norm"], c["norm"])
    _signal_theory(ax, c)
  for col, a in enumerate(acts):
    axes[0, col].set_title(f"{a}, backprop signal at initialization")
    axes[0, col].set_yscale("log")
    axes[0, col].set_xlabel("layer")
  axes[0, 0].set_ylabel("||dL/dz_l||")
  for ax in axes[0]:
    ax.legend(fontsize=6)
  plotting.save(fig, out_dir / "signal.png")


def _plot_training(cases: dict, out_dir: pathlib.Path) -> None:
  """Training loss per step, with each arm's test accuracy."""
  acts = _activations(cases)
  fig, axes = plotting.figure(1, len(acts), panel=PANEL)
  for c in cases.values():
    ax = axes[0, acts.index(c["activation"])]
    loss = np.asarray(c["loss"]["per_seed"])
    _draw(ax, np.arange(1, loss.shape[1] + 1), loss, c["norm"],
          f"{c['norm']} (test acc {float(c['test_accuracy']['median']):.2f})")
  for col, a in enumerate(acts):
    axes[0, col].set_title(f"{a}, MNIST-1D training loss")
    axes[0, col].set_xlabel("Adam step")
  axes[0, 0].set_ylabel("cross-entropy")
  for ax in axes[0]:
    ax.legend()
  plotting.save(fig, out_dir / "training.png")


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``grad_norms.png``, ``signal.png`` and ``training.png``.

  ``grad_norms.png``: ‖dL/dW_l‖ per layer at init and after training. ``signal.png``: the
  backprop signal at init beside the mean-field growth. ``training.png``: the training loss,
  with each case's test accuracy.
  """
  config = results["config"]
  steps = config["steps"] if isinstance(config, dict) else config.steps
  _plot_grad_norms(results["cases"], steps, out_dir)
  _plot_signal(results["cases"], out_dir)
  _plot_training(results["cases"], out_dir)


def summary(results: dict) -> str:
  """One row per (activation, normalization), medians over seeds.

  Columns: first/last-layer gradient ratio at init and after training, the squared signal's
  growth per layer at init beside mean field's, the fraction of float32 weight-gradient
  entries exactly 0 at init, the final loss and the test accuracy.
  """
  header = ["case", "|g₁|/|g_L| init", "after", "signal²/layer init", "theory",
            "f32 zero grads init", "final loss", "test acc"]
  rows = []
  for name, c in results["cases"].items():
    g0, g1 = (np.asarray(c[k]["median"], dtype=float) for k in ("grad_init", "grad_final"))
    t = c["theory_signal_growth_init"]
    with np.errstate(all="ignore"):
      rows.append([name, float(g0[0] / g0[-1]), float(g1[0] / g1[-1]),
                   float(c["signal_growth_init"]["median"]), "-" if t is None else float(t),
                   f"{float(c['zero_grad_fraction_init']['median']):.0%}",
                   float(np.asarray(c["loss"]["median"])[-1]),
                   float(c["test_accuracy"]["median"])])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
