r"""Seed 003's ReLU explosion network: a chain of one-unit layers, measured over many seeds.

The network is ``L`` Dense layers of one unit each, ``z_k = w_k h_{k-1} + b_k``,
``h_k = relu(z_k)``, ``h_0 = x``, loss = output ``h_L`` (the seed registers a
hook on every pre-activation ``z_k``; here ``Module.perturb``, read with
:func:`jaxgrad.diagnostics.perturbation_grads`). By the chain rule the gradient
at every intermediate is exactly a product along the path,

.. math::

   \frac{\partial L}{\partial z_l} \;=\; \prod_{k=l}^{L} \mathbf 1[z_k > 0]
   \;\prod_{k=l+1}^{L} w_k ,

which the measured float32 gradient must equal to float32 precision (one
rounding per layer: relative error <= (L - l) 2^-24). The science is
:mod:`jaxgrad.studies.relu_chains`.

Initializations:

* ``wrong`` (the seed's): w ~ N(1.5, 0.1^2), b = 0. Every weight is positive
  (P(w < 0) = Phi(-15)), every unit active, and the gradient at layer l is the
  product of L - l weights: E = 1.5^(L-l), about 4e8 at l = 1, L = 50.
* ``right`` (the seed's fix): He-normal, w ~ N(0, 2 / fan_in) = N(0, 2), b = 0.01.
  With one unit per layer a single non-positive pre-activation zeroes the
  gradient of every earlier layer. With b = 0, z_k > 0 iff w_k > 0, probability
  1/2 independently, so the gradient reaches the input with probability exactly
  2^-L. With b > 0 the per-layer probability is Phi(b / (sigma h_{k-1})) > 1/2,
  which depends on the random h_{k-1}; ``chain_probabilities`` integrates
  that Markov chain on a grid (exact up to discretisation).
* ``he_zero_bias``: He-normal, b = 0, the case with the closed form 2^-L.

    python -m experiments.relu_explosion            # 16384 seeds, L up to 50, ~20 s on 2 cores
    python -m experiments.relu_explosion --quick    # 4096 seeds

Writes ``config.json``, ``results.json`` (every plotted number),
``gradients.png``, ``exactness.png`` and ``survival.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import plotting  # noqa: E402
from jaxgrad.studies import relu_chains as chains  # noqa: E402

COLORS = {"wrong": "C3", "right": "C0", "he_zero_bias": "C2"}


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """One-unit ReLU chains per init and length L: gradients against exact path products."""

  depths: tuple[int, ...] = _config.setting((1, 2, 3, 5, 10, 20, 30, 40, 50), "chain lengths L",
                                            at_least=1, increasing=True)
  inits: tuple[str, ...] = _config.setting(tuple(chains.INITS), "initializations",
                                           choices=tuple(chains.INITS))
  seeds: int = _config.setting(16384, "chains per (init, L)", at_least=1)
  input: float = _config.setting(1.0, "the input x", above=0)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: 4096 chains per (init, L), about 8 s on 2 CPU cores."""
    return cls(seeds=4096)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: L = 1, 3, 6, 64 chains each."""
    return cls(depths=(1, 3, 6), seeds=64)


def run(config: Config) -> dict:
  """Measures every (init, depth) against the exact path products and the predictions."""
  cases: dict[str, dict[str, dict]] = {}
  for init in _cli.progress(config.inits, desc="relu chains"):
    key = jax.random.fold_in(jax.random.key(config.seed), list(chains.INITS).index(init))
    m = chains.chain_gradients(init, config.depths, config.seeds, config.input, key=key)
    cases[init] = {str(d): chains.compare_chains({k: v[i, :, -d:] for k, v in m.items()},
                                                 config.input)
                   for i, d in enumerate(config.depths)}
  return {"config": config, "depths": config.depths, "seeds": config.seeds,
          "cases": cases, "theory": chains.predictions(max(config.depths), config.input),
          "float32_bound_per_layer": chains.FLOAT32_ROUNDING}


def _gradients_figure(cases: dict, th: dict, top: str, path: pathlib.Path) -> None:
  """At the longest chain: |dL/dz_l| per layer (left), fraction of seeds it reaches (right)."""
  fig, axes = plotting.figure(1, 2, panel=(3.6, 2.9))
  ax = axes[0, 0]
  layers = np.arange(1, int(top) + 1)
  for init, per_depth in cases.items():
    c = per_depth[top]
    q = c["abs_grad_nonzero"]
    ax.plot(layers, q["median"], color=COLORS[init], label=f"{init} (median, nonzero)")
    ax.fill_between(layers, q["q25"], q["q75"], color=COLORS[init], alpha=0.2, linewidth=0)
    axes[0, 1].plot(layers, c["nonzero_fraction_per_layer"], color=COLORS[init], label=init)
  gaps = int(top) - layers
  plotting.theory_line(ax, layers, np.asarray(th["wrong_mean_product"])[gaps],
                       color=COLORS["wrong"], label="1.5^(L-l) (mean)")
  ax.set_yscale("log")
  ax.set_xlabel("layer l")
  ax.set_ylabel("|dL/dz_l|")
  ax.set_title(f"gradient at each pre-activation, L={top}")
  ax.legend(loc="lower left")
  plotting.theory_line(axes[0, 1], layers, th["reach_right"],
                       color=COLORS["right"], label="right: Markov-chain integral")
  axes[0, 1].axhline(0.5 ** int(top), color=COLORS["he_zero_bias"], **plotting.THEORY,
                     label=f"b = 0: 2^-{top} at every layer")
  axes[0, 1].legend(loc="lower right")
  axes[0, 1].set_yscale("log")
  axes[0, 1].set_xlabel("layer l")
  axes[0, 1].set_ylabel("fraction of seeds with dL/dz_l ≠ 0")
  axes[0, 1].set_title("where the gradient still arrives")
  plotting.save(fig, path)


def _exactness_figure(cases: dict, path: pathlib.Path) -> None:
  """Measured dL/dz_l against the exact path product, every init and depth."""
  fig, axes = plotting.figure(1, 1, panel=(4.2, 3.4))
  ax = axes[0, 0]
  for init, per_depth in cases.items():
    ex = np.concatenate([np.ravel(c["scatter"]["exact"]) for c in per_depth.values()])
    me = np.concatenate([np.ravel(c["scatter"]["measured"]) for c in per_depth.values()])
    keep = ex != 0
    ax.loglog(np.abs(ex[keep]), np.abs(me[keep]), ".", color=COLORS[init], markersize=2,
              label=init)
  lims = np.array(ax.get_xlim())
  ax.plot(lims, lims, "k-", linewidth=0.6)
  worst = max(c["max_rel_error_over_bound"] for p in cases.values() for c in p.values())
  ax.set_title(f"dL/dz_l (perturb) vs exact path product\n"
               f"worst rel. error = {worst:.2f} × (L-l)·2⁻²⁴", fontsize=8)
  ax.set_xlabel("exact ∏ w_k (float64)")
  ax.set_ylabel("measured dL/dz_l (float32)")
  ax.legend()
  plotting.save(fig, path)


def _survival_figure(cases: dict, th: dict, depths: np.ndarray, seeds: int,
                     path: pathlib.Path) -> None:
  """P(gradient reaches the input) against depth, measured and predicted."""
  fig, axes = plotting.figure(1, 1, panel=(4.2, 3.2))
  ax = axes[0, 0]
  all_depths = np.arange(1, len(th["survival_right"]) + 1)
  for init, per_depth in cases.items():
    frac = np.array([per_depth[str(d)]["reaches_input"] / seeds for d in depths])
    ax.plot(depths, np.where(frac > 0, frac, np.nan), "o", color=COLORS[init], markersize=4,
            label=f"{init} (measured, {seeds} seeds)")
  plotting.theory_line(ax, all_depths, th["survival_right"], color=COLORS["right"],
                       label="right: Markov-chain integral")
  plotting.theory_line(ax, all_depths, th["survival_zero_bias"], color=COLORS["he_zero_bias"],
                       label="b = 0: 2^-L")
  ax.set_yscale("log")
  ax.set_xlabel("depth L")
  ax.set_ylabel("P(gradient reaches the input)")
  ax.set_title("a dead unit cuts off every earlier layer")
  ax.legend(loc="lower left")
  plotting.save(fig, path)


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``gradients.png``, ``exactness.png`` and ``survival.png``.

  ``gradients.png``: |dL/dz_l| per layer of the longest chain, and the fraction of seeds it
  reaches. ``exactness.png``: measured dL/dz_l against the exact path product.
  ``survival.png``: P(gradient reaches the input) against L, beside the predictions.
  """
  cases, th = results["cases"], results["theory"]
  _gradients_figure(cases, th, str(max(results["depths"])), out_dir / "gradients.png")
  _exactness_figure(cases, out_dir / "exactness.png")
  _survival_figure(cases, th, np.asarray(results["depths"]), results["seeds"],
                   out_dir / "survival.png")


def summary(results: dict) -> str:
  """One row per (init, L): |dL/dz_1|, how often it is not 0, and the error.

  Columns: the median nonzero |dL/dz_1|, the fraction of chains it reaches beside theory's,
  the worst relative error against the exact product (also over the float32 rounding bound)
  and the zero mismatches.
  """
  header = ["init", "L", "|dL/dz_1| median", "reaches input", "theory", "max rel err",
            "/ (L-1)2^-24", "zero mismatches"]
  rows = []
  th = results["theory"]
  seeds = results["seeds"]
  for init, per_depth in results["cases"].items():
    for d, c in per_depth.items():
      L = int(d)
      p = {"right": th["survival_right"][L - 1], "he_zero_bias": th["survival_zero_bias"][L - 1],
           "wrong": 1.0}[init]
      rows.append([init, L, float(np.asarray(c["abs_grad_nonzero"]["median"])[0]),
                   f"{c['reaches_input'] / seeds:.4f}", f"{float(p):.4f}",
                   c["max_rel_error"], c["max_rel_error_over_bound"], c["zero_mismatches"]])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
