r"""Seed 000 section 7.1: seven initializations of a deep MLP, per-layer gradients, over seeds.

The seed's ``DeepNet``: ``depth`` = 20 Dense layers (10 -> 100 -> ... -> 100 -> 1),
relu or tanh, biases 0, MSE against random targets on one random batch of 32
(x, t ~ N(0, 1)). For each initialization it plots one network's per-layer
weight-gradient norm :math:`\|\partial L/\partial W_l\|_F`. Here every curve
is the median over ``--seeds`` networks (each with its own batch, shared by
every activation and initialization) with an interquartile band, beside the
per-layer backprop signal :math:`s_l = \mathbb E_b \|\partial L/\partial z_l[b]\|`
(z_l the pre-activation; :func:`jaxgrad.diagnostics.backprop_signal`). All
seeds, both activations and all seven initializations run in ONE jitted
program that draws every network and differentiates it once, one arm after
another with its seeds vmapped (the activation and the initializer traced
switches: every arm has the same shapes;
:func:`jaxgrad.studies.signal_propagation.measure_arms`).

Mean-field theory (dashed) predicts the backprop signal from the output back:
:math:`\mathbb E\|\delta_{l-1}\|^2 = \sigma_{w,l}^2\,\mu_1(q_{l-1})\,
\mathbb E\|\delta_l\|^2`, with :math:`\sigma_{w,l}^2 = \mathrm{fan\_in}_l
\mathrm{Var}(W_l)`, :math:`\mu_1(q) = \mathbb E[\phi'(\sqrt q z)^2]` and
:math:`q_l` from the length map started at :math:`q_1 = \sigma_{w,1}^2`
(unit-variance inputs); the line is anchored at the measured last layer
(:func:`jaxgrad.studies.signal_propagation.predicted_signal`).

Float32 underflow. With the small initializations the gradient entries are
tiny but not zero (normal_small, tanh: about 1e-20 in every layer, since the
forward signal shrinks by sqrt(100 * 0.01^2) = 0.1 per layer and the backward
signal too). Their float32 *norm* is exactly 0: the squares (1e-40) are below
the smallest normal float32 (1.2e-38) and XLA on CPU flushes subnormals to
zero. So the gradient is computed in float32, as in the seed, but every norm is
reduced in float64 (the float32 gradient is exact in float64); the naive
float32 norms are recorded too, and ``results.json`` counts, per layer, the
seeds whose naive float32 norm is 0 and the exactly-zero gradient entries (dead
ReLUs). Since this finding, jaxgrad's own norms (``diagnostics.safe_norm``)
scale by the largest entry before squaring and do not underflow.

Kaiming: the seed calls ``kaiming_*_(w, nonlinearity=activation)``, which for
tanh uses PyTorch's gain 5/3, Var = (25/9) / fan_in. jaxgrad's ``he_*`` is
Var = 2 / fan_in for every activation (``--kaiming-gain he``, the default);
``--kaiming-gain torch`` reproduces the seed (relu's gain sqrt(2) is the same).

    python -m experiments.init_comparison            # 20 seeds: 9 s on 2 cores cold, 3.6 s warm cache
    python -m experiments.init_comparison --quick    # 8 seeds
    python -m experiments.init_comparison --kaiming-gain torch

Writes ``config.json``, ``results.json`` (every plotted number) and
``gradients_<activation>.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import activations, plotting  # noqa: E402
from jaxgrad.studies import signal_propagation as sp  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Per-layer gradients at init under every initialization, against mean field.

  ``seeds`` seed DeepNets per (activation, initialization); float32 underflow counted.
  """

  depth: int = _config.setting(20, "Dense layers, input and output included", at_least=2)
  width: int = _config.setting(100, at_least=1)
  in_features: int = _config.setting(10, at_least=1)
  batch: int = _config.setting(32, at_least=1)
  activations: tuple[str, ...] = _config.setting(("relu", "tanh"), choices=activations.names)
  inits: tuple[str, ...] = _config.setting(sp.INITS, choices=sp.INITS)
  seeds: int = _config.setting(20, "networks (and batches) per curve", at_least=1)
  kaiming_gain: str = _config.setting("he", "he: Var = 2/fan_in; torch: PyTorch's gain^2/fan_in",
                                      choices=sp.KAIMING_GAINS)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  def relations(self) -> dict[str, str]:
    """With ``kaiming_gain='torch'``, every activation needs a PyTorch gain."""
    if self.kaiming_gain == "torch" and any(a not in sp.TORCH_GAIN for a in self.activations):
      return {"activations": f"with kaiming_gain='torch', every item must be one of "
                             f"{tuple(sp.TORCH_GAIN)} (PyTorch's gains)"}
    return {}

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: 8 seeds instead of 20, about 13 s on 2 CPU cores."""
    return cls(seeds=8)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: depth 6, width 8, 3 inputs, batch 4, 3 seeds."""
    return cls(depth=6, width=8, in_features=3, batch=4, seeds=3)


def run(config: Config) -> dict:
  """Every activation x initialization in one program, summarised per arm against mean field."""
  fans = sp.layer_fans(config.depth, config.width, config.in_features)
  arms = [(act, name) for act in config.activations for name in config.inits]
  with jax.enable_x64(True):
    m = jax.device_get(sp.measure_arms(
        sp.seed_network(config.depth, config.width),
        [(act, sp.kernel_init(name, act, config.kaiming_gain)) for act, name in arms],
        jax.random.key(config.seed, impl=sp.PRNG_IMPL), config.seeds, config.batch,
        config.in_features))
    per_activation = {act: {} for act in config.activations}
    for a, (act, name) in enumerate(arms):
      sigma_w2 = sp.layer_sigma_w2(name, act, fans, config.kaiming_gain)
      per_activation[act][name] = sp.summarize_arm({k: v[a] for k, v in m.items()}, act, sigma_w2)
  return {"config": config, "layers": np.arange(1, config.depth + 1),
          "float32_tiny": float(np.finfo(np.float32).tiny), "activations": per_activation}


def _gradients_figure(act: str, arms: dict, layers: np.ndarray, seeds: int,
                      path: pathlib.Path) -> None:
  """One activation: weight-gradient norms (left) and backprop signal with mean field (right)."""
  fig, axes = plotting.figure(1, 2, panel=(3.7, 3.0))
  for i, (name, arm) in enumerate(arms.items()):
    color = f"C{i}"
    for ax, key in zip(axes[0], ("weight", "signal")):
      plotting.median_band(ax, layers, arm[key]["per_seed"], label=name, color=color, marker="o")
      underflow = np.asarray(arm[f"{key}_f32_median"]) == 0
      if underflow.any():
        ax.plot(layers[underflow], np.asarray(arm[key]["median"])[underflow], "x", color="k",
                markersize=5)
    plotting.theory_line(axes[0, 1], layers, arm["theory_signal"], color=color)
  axes[0, 0].set_title("weight gradient ‖∂L/∂W_l‖_F\n(×: its float32 norm is 0)")
  axes[0, 1].set_title("backprop signal E_b‖∂L/∂z_l‖\n(dashed: mean field)")
  fig.suptitle(f"{act}: median and IQR over {seeds} seeds", fontsize=9)
  for ax in axes[0]:
    ax.set_yscale("log")
    ax.set_xlabel("layer l")
    ax.set_xticks(layers[:: max(1, len(layers) // 10)])
  axes[0, 1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, path)


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``gradients_<activation>.png`` per activation, a curve per initialization.

  Left: ‖∂L/∂W_l‖ per layer (× where its float32 norm is 0). Right: the backprop signal, mean
  field dashed. Median and IQR over seeds.
  """
  layers = np.asarray(results["layers"])
  config = results["config"]
  seeds = config["seeds"] if isinstance(config, dict) else config.seeds
  for act, arms in results["activations"].items():
    _gradients_figure(act, arms, layers, seeds, out_dir / f"gradients_{act}.png")


def summary(results: dict) -> str:
  """One row per (activation, init): first/last-layer gradients, signal, float32 zeros.

  Columns, medians over seeds: ‖∂L/∂W‖ at the first and last layer, the signal s_1 beside mean
  field's, s_L, and the (layer, seed) pairs whose float32 norm is 0 and whose float32 gradient
  is all zero.
  """
  header = ["activation", "init", "‖∂L/∂W_1‖", "‖∂L/∂W_L‖", "signal s_1", "theory s_1", "s_L",
            "f32 norm = 0 (layer·seed)", "all-zero"]
  rows = []
  for act, arms in results["activations"].items():
    for name, arm in arms.items():
      w, s, z = arm["weight"]["median"], arm["signal"]["median"], arm["zeros"]
      rows.append([act, name, float(w[0]), float(w[-1]), float(s[0]), float(arm["theory_signal"][0]),
                   float(s[-1]), int(np.sum(z["weight_f32_norm_underflow"])),
                   int(np.sum(z["weight_all_zero"]))])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
