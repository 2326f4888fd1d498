r"""Where vanishing and exploding gradients come from: four of the tutorials' claims, measured.

1. "Sigmoid, tanh and ReLU vanish by exponential growth of the activation"
   (seed 001). ReLU's derivative is exactly 0 or 1, so the product of
   derivatives along a path through L layers is exactly 0 or 1: it cannot
   shrink geometrically. In a He-initialised ReLU net the fraction of paths
   whose product is 1 is :math:`2^{-L}` and the squared backprop signal keeps
   its size, :math:`\chi_1 = \sigma_w^2/2 = 1` per layer.
2. "Softmax / exponential activations have no vanishing" (seed 001). The
   softmax Jacobian :math:`J = \mathrm{diag}(p) - pp^\top` saturates: with
   :math:`p_1` the largest probability, :math:`p_1(1-p_1) \le \|J\|_2 \le
   2(1-p_1)`, and :math:`1 - p_1 \approx \sum_{j>1} e^{-(z_1 - z_j)}` is
   exponentially small in the logit gap.
3. "Exploding comes from the activation's exponential decay" (seed 001). It
   comes from the weights: a tanh net (:math:`|\tanh'| \le 1`) at
   :math:`\sigma_w^2 = 4` and a linear net (:math:`\phi' \equiv 1`) at
   :math:`\sigma_w^2 = 1.2` both explode, each layer multiplying the squared
   signal by mean-field theory's :math:`\chi_1 = \sigma_w^2\,\mathbb
   E[\phi'(h)^2]` (Poole et al. 2016; Schoenholz et al. 2017).
4. "Gradient clipping also cures vanishing gradients" (seed 004 §5). Clipping
   only shrinks: by norm the result has norm :math:`\min(\|g\|, c)`, by
   value every entry keeps its size below the threshold, so a vanishing
   gradient leaves either unchanged.

The measurements are :mod:`jaxgrad.studies.gradient_sources`.

    python -m experiments.gradient_sources            # a few seconds
    python -m experiments.gradient_sources --quick

Writes ``config.json``, ``results.json`` (every plotted number) and
``sources.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import plotting  # noqa: E402
from jaxgrad.studies import gradient_sources as study  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """The four claims measured: ReLU paths, softmax, exploding weights, clipping."""

  width: int = _config.setting(256, "network width N", at_least=2)
  depths: tuple[int, ...] = _config.setting((1, 2, 4, 8, 12, 16), "ReLU path lengths L",
                                            at_least=1, increasing=True)
  paths: int = _config.setting(100_000, "random paths per ReLU net", at_least=1)
  depth: int = _config.setting(30, "depth of the exploding nets", at_least=2)
  classes: int = _config.setting(10, "softmax classes K", at_least=2)
  logit_scales: int = _config.setting(40, "logit scales from 0.1 to 100", at_least=2)
  clip_norm: float = _config.setting(1.0, "clip_by_global_norm threshold", above=0)
  clip_value: float = _config.setting(0.1, "clip-by-value threshold", above=0)
  seeds: int = _config.setting(8, "networks (and logit draws) per case", at_least=1)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: width 128, 20,000 paths, 4 seeds, about 20 s on 2 CPU cores."""
    return cls(width=128, paths=20_000, seeds=4)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: width 16, depths 1-3, depth-4 nets, 3 classes, 2 seeds."""
    return cls(width=16, depths=(1, 2, 3), paths=2_000, depth=4, classes=3, logit_scales=5,
               seeds=2)


def run(config: Config) -> dict:
  """The four studies of :mod:`jaxgrad.studies.gradient_sources`, one key each."""
  keys = jax.random.split(jax.random.key(config.seed), 4)
  return {"config": config,
          "relu_paths": study.relu_paths(keys[0], width=config.width, depths=config.depths,
                                         paths=config.paths, seeds=config.seeds),
          "softmax": study.softmax_saturation(keys[1], classes=config.classes,
                                              logit_scales=config.logit_scales,
                                              seeds=config.seeds),
          "exploding": study.exploding_from_weights(keys[2], width=config.width,
                                                    depth=config.depth, seeds=config.seeds),
          "clipping": study.clipping_a_vanishing_gradient(
              keys[3], width=config.width, clip_norm=config.clip_norm,
              clip_value=config.clip_value)}


def plot_relu_paths(ax, paths: dict) -> None:
  """The fraction of ReLU paths whose product of derivatives is 1, against 2^-L."""
  ax.plot(paths["depths"], paths["fraction_one"], "o", label="measured")
  plotting.theory_line(ax, paths["depths"], paths["fraction_one_theory"], label="$2^{-L}$")
  ax.set(xlabel="path length L", ylabel=r"fraction of paths with $\prod \phi' = 1$",
         yscale="log", title=r"ReLU: $\prod\phi' \in \{0, 1\}$ along a path")
  ax.legend()


def plot_softmax(ax, soft: dict) -> None:
  """The softmax Jacobian's norm against the logit gap, between its two bounds."""
  gap, norm = np.ravel(soft["logit_gap"]), np.ravel(soft["jacobian_norm"])
  order = np.argsort(gap)
  order = order[norm[order] > 0]
  ax.plot(gap[order], norm[order], ".", markersize=3, label="measured")
  for bound, label in (("lower_bound", "$p_1(1-p_1)$"), ("upper_bound", "$2(1-p_1)$")):
    plotting.theory_line(ax, gap[order], np.ravel(soft[bound])[order], label=label)
  ax.set(xlabel="logit gap $z_1 - z_2$", ylabel="softmax Jacobian norm", yscale="log",
         title=f"softmax: ln‖J‖ slope {soft['log_norm_slope']:.2f}")
  ax.legend()


def plot_exploding(ax, exploding: dict) -> None:
  """The squared signal against the layers below the output, with chi_1^l from the last layer."""
  for i, (name, case) in enumerate(exploding.items()):
    signal = np.asarray(case["signal"])
    layers = np.arange(signal.shape[1])[::-1]  # layers below the output
    plotting.median_band(ax, layers, signal, color=f"C{i}",
                         label=f"{name}: max|φ'| = {case['max_derivative']:.2g}")
    plotting.theory_line(ax, layers, np.median(signal[:, -1]) * case["chi1"] ** layers,
                         color=f"C{i}")
  ax.set(xlabel="layers below the output", ylabel=r"$\|\partial L/\partial h\|^2$",
         yscale="log", title=r"exploding: $\chi_1^l$ (dashed)")
  ax.legend(fontsize=6)


def plot_clipping(ax, clip: dict) -> None:
  """Norms after clipping by norm and by value against the norm before, and min(||g||, c)."""
  ax.plot(clip["norm_before"], clip["norm_after_clip_norm"], "o", label="clip_by_global_norm")
  ax.plot(clip["norm_before"], clip["norm_after_clip_value"], "x", label="clip by value")
  plotting.theory_line(ax, clip["norm_before"], clip["expected_clip_norm"],
                       label=r"$\min(\|g\|, c)$")
  ax.set(xscale="log", yscale="log", xlabel="‖g‖ before", ylabel="‖g‖ after",
         title="clipping only shrinks")
  ax.legend(fontsize=7)


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``sources.png``, a panel per claim.

  The fraction of ReLU paths with product 1 against 2^-L; the softmax Jacobian's norm against
  the logit gap between its bounds; the exploding nets' squared signal against χ₁^l; gradient
  norms after clipping by norm and by value against before.
  """
  fig, axes = plotting.figure(1, 4, panel=(3.3, 2.7))
  plot_relu_paths(axes[0, 0], results["relu_paths"])
  plot_softmax(axes[0, 1], results["softmax"])
  plot_exploding(axes[0, 2], results["exploding"])
  plot_clipping(axes[0, 3], results["clipping"])
  plotting.save(fig, out_dir / "sources.png")


def summary(results: dict) -> str:
  """A table of measurement and value, a row per number the four claims rest on.

  The values ReLU path products take and the He-ReLU signal factor; the slope of ln ‖J‖ of
  softmax; each exploding net's growth per layer beside χ₁; a 1e-12 gradient's norm after
  clipping by norm and by value.
  """
  paths, soft, clip = results["relu_paths"], results["softmax"], results["clipping"]
  rows = [["ReLU path products take the values", ", ".join(f"{v:g}" for v in
                                                            paths["product_values"])],
          ["He-ReLU squared signal per layer (chi_1 = 1)", f"{paths['signal_factor']:.4f}"],
          ["softmax: slope of ln ||J|| against the logit gap (gap > 5)",
           f"{soft['log_norm_slope']:.3f}"]]
  rows += [[f"{name}: growth per layer (chi_1 = {case['chi1']:.3f}, max|phi'| = "
            f"{case['max_derivative']:.3g})", f"{case['growth']:.4f}"]
           for name, case in results["exploding"].items()]
  rows.append(["clipping a gradient of norm 1e-12: norm after (by norm, by value)",
               f"{clip['norm_after_clip_norm'][0]:.3g}, {clip['norm_after_clip_value'][0]:.3g}"])
  return _cli.format_table(["measurement", "value"], rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
