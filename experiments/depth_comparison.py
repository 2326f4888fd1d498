r"""Seed 000 section 7.2: per-layer gradients against depth, relu (He) / tanh, sigmoid (Xavier).

The seed's ``DeepNet`` at depths 5, 10, 20, 50, 100 (Dense layers, input and
output included), width 100, input 10, output 1, biases 0, MSE against random
targets on a random batch of 32; relu with He-normal (Var = 2/fan_in), tanh and
sigmoid with Xavier-normal (Var = 2/(fan_in + fan_out)). Per layer, against the
normalised position (l - 1)/(L - 1): the weight-gradient norm
:math:`\|\partial L/\partial W_l\|_F` (what the seed draws, one network per
curve; here median and IQR over ``--seeds``) and the backprop signal
:math:`s_l = \mathbb E_b\|\partial L/\partial z_l[b]\|`. Measurements are
:mod:`jaxgrad.studies.signal_propagation`'s, as in init_comparison (float32
gradients, float64 norms; every activation and seed of a depth in one jitted
program, depths within 4x of each other in the same one, the shallower ones
as the deepest network with its extra layers masked:
:func:`jaxgrad.studies.signal_propagation.measure_depths`).

Summary figure: the ratio first layer / last layer against depth.

* For the backprop signal mean-field theory predicts it:
  :math:`s_1/s_L \approx \prod_{l=2}^{L} \sqrt{\sigma_{w,l}^2\mu_1(q_{l-1})}`,
  i.e. :math:`\chi_1^{(L-1)/2}` where :math:`q` sits at its fixed point and
  every layer has the same :math:`\sigma_w^2` (:math:`\chi_1 = \sigma_w^2\mu_1(q^*)`
  is the factor of the *squared* signal, hence the square root). Here the
  first and last layers are not square (Xavier gives them
  :math:`\sigma_w^2 = 10\cdot 2/110` and :math:`100\cdot 2/101`), so the line
  uses the exact per-layer product of
  :func:`jaxgrad.studies.signal_propagation.predicted_signal`.
  relu + He: every factor is :math:`2 \cdot \tfrac12 = 1`, ratio 1 at any depth.
  sigmoid + Xavier: :math:`\chi_1 \approx 0.06`, the signal loses a factor
  about 4 per layer and reaches float32's underflow (exact zeros) by depth 100.
* The weight-gradient ratio is NOT a power of :math:`\chi_1`:
  :math:`\|\partial L/\partial W_l\|_F^2 = \sum_{b,b'} (h_{l-1,b}\cdot h_{l-1,b'})
  (\delta_{l,b}\cdot\delta_{l,b'})` also carries the forward activations
  :math:`h_{l-1}` (for one example it is :math:`\|h_{l-1}\|\,\|\delta_l\|`) and
  the correlations between the examples of the batch, which differ between the
  10 raw inputs and the deep, correlated hidden layers; so only the measurement
  is drawn.

    python -m experiments.depth_comparison            # 20 seeds: 15 s on 2 cores cold, 6 s warm cache
    python -m experiments.depth_comparison --quick    # depths 5 and 50, 8 seeds

Writes ``config.json``, ``results.json`` (every plotted number),
``profiles.png`` and ``ratio.png`` under ``--out``.
"""

import dataclasses
import functools
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import plotting, stats  # noqa: E402
from jaxgrad.studies import signal_propagation as sp  # noqa: E402

INIT_FOR = {"relu": "he_normal", "tanh": "xavier_normal", "sigmoid": "xavier_normal"}


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Per-layer gradients at init of the seed's DeepNet at every depth, against mean field."""

  depths: tuple[int, ...] = _config.setting((5, 10, 20, 50, 100),
                                            "Dense layers, input and output included",
                                            at_least=2, increasing=True)
  activations: tuple[str, ...] = _config.setting(tuple(INIT_FOR), choices=tuple(INIT_FOR))
  width: int = _config.setting(100, at_least=1)
  in_features: int = _config.setting(10, at_least=1)
  batch: int = _config.setting(32, at_least=1)
  seeds: int = _config.setting(20, "networks (and batches) per curve", at_least=1)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: depths 5 and 50, 8 seeds, about 15 s on 2 CPU cores."""
    return cls(depths=(5, 50), seeds=8)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: depths 3 and 6, width 8, 3 inputs, batch 4, 3 seeds."""
    return cls(depths=(3, 6), width=8, in_features=3, batch=4, seeds=3)


def _case(act: str, depth: int, m: dict[str, np.ndarray], config: Config) -> dict:
  """One activation at one depth: the arm's summary, its positions and first/last ratios."""
  fans = sp.layer_fans(depth, config.width, config.in_features)
  sigma_w2 = sp.layer_sigma_w2(INIT_FOR[act], act, fans)
  return {
      **sp.summarize_arm(m, act, sigma_w2),
      "init": INIT_FOR[act],
      "position": np.linspace(0.0, 1.0, depth),
      "weight_ratio": stats.quartiles(sp.first_over_last(m["weight"])),
      "signal_ratio": stats.quartiles(sp.first_over_last(m["signal"])),
      "theory_signal_ratio": float(sp.predicted_signal(act, sigma_w2)[0]),
  }


def run(config: Config) -> dict:
  """Every depth and activation against mean field; depths within 4x of each other share a program.

  Depth j's networks are drawn from ``fold_in(key, j)``, whichever program
  measures them (:func:`jaxgrad.studies.signal_propagation.measure_depths`).
  Every program is dispatched before any is read, deepest first: tracing the
  next overlaps running the previous one.
  """
  arms = [(act, sp.kernel_init(INIT_FOR[act], act)) for act in config.activations]
  measured = {}
  with jax.enable_x64(True):
    key = jax.random.key(config.seed, impl=sp.PRNG_IMPL)
    dispatched = {
        group: sp.measure_depths(
            sp.seed_network(group[0], config.width), group, arms,
            jax.vmap(functools.partial(jax.random.fold_in, key))(
                np.asarray([config.depths.index(d) for d in group])),
            config.seeds, config.batch, config.in_features)
        for group in _cli.progress(sp.depth_groups(config.depths), desc="depth groups traced")}
    for group, m in jax.device_get(dispatched).items():
      for i, depth in enumerate(group):
        measured[depth] = {k: v[i, ..., :depth] for k, v in m.items()}
    cases = {act: {str(depth): _case(act, depth, {k: v[a] for k, v in measured[depth].items()},
                                     config)
                   for depth in config.depths}
             for a, act in enumerate(config.activations)}
  return {"config": config, "depths": config.depths, "cases": cases}


def _profiles_figure(cases: dict, path: pathlib.Path) -> None:
  """Per-layer weight gradients (top) and backprop signal with mean field (bottom), per activation."""
  acts = list(cases)
  fig, axes = plotting.figure(2, len(acts), panel=(3.0, 2.5))
  for col, act in enumerate(acts):
    for i, (depth, case) in enumerate(cases[act].items()):
      color = plotting.plt.cm.viridis(i / max(1, len(cases[act]) - 1))
      x = np.asarray(case["position"])
      for row, key in enumerate(("weight", "signal")):
        ax = axes[row, col]
        plotting.median_band(ax, x, case[key]["per_seed"], label=f"L={depth}", color=color)
        zero = np.asarray(case["zeros"][f"{key}_all_zero"]) > len(case[key]["per_seed"]) // 2
        if zero.any():  # float32 gradient exactly 0 in most seeds: underflow
          ax.plot(x[zero], np.full(zero.sum(), 1e-38), "v", color=color, markersize=3)
      plotting.theory_line(axes[1, col], x, case["theory_signal"], color=color)
    axes[0, col].set_title(f"{act} ({cases[act][next(iter(cases[act]))]['init']})")
    axes[1, col].set_xlabel("normalised layer position (l-1)/(L-1)")
    for row in range(2):
      axes[row, col].set_yscale("log")
  axes[0, 0].set_ylabel("‖∂L/∂W_l‖_F")
  axes[1, 0].set_ylabel("E_b‖∂L/∂z_l‖ (dashed: mean field)")
  axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  fig.suptitle("median and IQR over seeds; ▼ at 1e-38: float32 gradient exactly 0 (underflow)",
               fontsize=8)
  plotting.save(fig, path)


def _ratio_figure(cases: dict, depths: np.ndarray, path: pathlib.Path) -> None:
  """First / last layer against depth: weight gradient (left), backprop signal with mean field (right)."""
  fig, axes = plotting.figure(1, 2, panel=(3.4, 2.9))
  for i, act in enumerate(cases):
    color = f"C{i}"
    for ax, key in zip(axes[0], ("weight_ratio", "signal_ratio")):
      per_seed = np.stack([np.asarray(cases[act][str(d)][key]["per_seed"], dtype=float)
                           for d in depths], axis=1)
      plotting.median_band(ax, depths, per_seed, label=act, color=color, marker="o")
    plotting.theory_line(axes[0, 1], depths,
                         [cases[act][str(d)]["theory_signal_ratio"] for d in depths], color=color)
  axes[0, 0].set_title("‖∂L/∂W_1‖ / ‖∂L/∂W_L‖\n(not a power of χ₁: no line)")
  axes[0, 1].set_title("s_1 / s_L\n(dashed: mean field ≈ χ₁^((L-1)/2))")
  for ax in axes[0]:
    ax.set_yscale("log")
    ax.set_xlabel("depth L")
  axes[0, 0].legend()
  plotting.save(fig, path)


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``profiles.png`` and ``ratio.png``.

  ``profiles.png``: per activation, ‖∂L/∂W_l‖ and the backprop signal against the normalised
  layer position, a curve per depth, mean field dashed. ``ratio.png``: first layer over
  last against depth, for the weight gradient and for the signal (beside mean field's).
  """
  _profiles_figure(results["cases"], out_dir / "profiles.png")
  _ratio_figure(results["cases"], np.asarray(results["depths"]), out_dir / "ratio.png")


def summary(results: dict) -> str:
  """One row per (activation, depth): first/last-layer ratios and float32 zeros.

  Columns: the median ratios of ‖∂L/∂W‖ and of the signal s, mean field's s_1/s_L, and the
  (layer, seed) pairs whose float32 weight gradient is all zero or whose float32 norm is 0
  though the gradient is not.
  """
  header = ["activation", "L", "‖∂L/∂W_1‖/‖∂L/∂W_L‖", "s_1/s_L", "theory s_1/s_L",
            "layers·seeds all-zero", "f32 norm = 0"]
  rows = []
  for act, per_depth in results["cases"].items():
    for depth, c in per_depth.items():
      z = c["zeros"]
      rows.append([act, int(depth), float(c["weight_ratio"]["median"]),
                   float(c["signal_ratio"]["median"]), float(c["theory_signal_ratio"]),
                   int(np.sum(z["weight_all_zero"])), int(np.sum(z["weight_f32_norm_underflow"]))])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
