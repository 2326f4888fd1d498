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
rounding per layer: relative error <= (L - l) 2^-24).

Initializations:

* ``wrong`` (the seed's): w ~ N(1.5, 0.1^2), b = 0. Every weight is positive
  (P(w < 0) = Phi(-15)), every unit active, and the gradient at layer l is the
  product of L - l weights: E = 1.5^(L-l), about 4e8 at l = 1, L = 50.
* ``right`` (the seed's fix): He-normal, w ~ N(0, 2 / fan_in) = N(0, 2), b = 0.01.
  With one unit per layer a single non-positive pre-activation zeroes the
  gradient of every earlier layer. With b = 0, z_k > 0 iff w_k > 0, probability
  1/2 independently, so the gradient reaches the input with probability exactly
  2^-L. With b > 0 the per-layer probability is Phi(b / (sigma h_{k-1})) > 1/2,
  which depends on the random h_{k-1}; :func:`survival_probability` integrates
  that Markov chain on a grid (exact up to discretisation).
* ``he_zero_bias``: He-normal, b = 0, the case with the closed form 2^-L.

    python -m experiments.relu_explosion            # 16384 seeds, L up to 50, ~20 s on 2 cores
    python -m experiments.relu_explosion --quick    # 4096 seeds

Writes ``config.json``, ``results.json`` (every plotted number),
``gradients.png``, ``exactness.png`` and ``survival.png`` under ``--out``.
"""

import dataclasses
import math
import pathlib
import warnings

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy import special  # noqa: E402

from jaxgrad import diagnostics, plotting  # noqa: E402
from jaxgrad.models import DenseStack  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

INITS = {
    "wrong": dict(kernel_init=("normal", {"mean": 1.5, "stddev": 0.1}), bias_init="zeros"),
    "right": dict(kernel_init="he_normal", bias_init=("constant", {"value": 0.01})),
    "he_zero_bias": dict(kernel_init="he_normal", bias_init="zeros"),
}
WRONG_MEAN, WRONG_STD = 1.5, 0.1
HE_VARIANCE = 2.0  # 2 / fan_in with fan_in = 1
RIGHT_BIAS = 0.01
SCATTER_SEEDS = 16  # seeds per depth drawn in the exactness figure
_GRID_EDGES = np.concatenate([[0.0], np.logspace(-14, 10, 2401)])  # h bins for the Markov chain


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  depths: tuple[int, ...] = _config.setting((1, 2, 3, 5, 10, 20, 30, 40, 50), "chain lengths L",
                                            at_least=1, increasing=True)
  inits: tuple[str, ...] = _config.setting(tuple(INITS), "initializations",
                                           choices=tuple(INITS))
  seeds: int = _config.setting(16384, "chains per (init, L)", at_least=1)
  input: float = _config.setting(1.0, "the input x", above=0)
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(seeds=4096)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(depths=(1, 3, 6), seeds=64)


def measure(config: Config, init: str) -> dict[str, np.ndarray]:
  """Every depth and seed of one init in one vmapped, jitted program.

  A chain of depth L is the last L layers of a chain of depth ``max(depths)``
  whose first layers are the identity (w = 1, b = 0): with x > 0 they pass x
  through exactly (relu(1 * x + 0) = x in floating point), so the gradient at
  the last L layers is bit for bit that of the depth-L chain, and one compiled
  program serves every depth.

  Returns:
    Float32 arrays of shape (len(depths), seeds, max(depths)), the first
    ``max(depths) - L`` layers of row L being the identity padding: ``grad``
    (dL/dz_l from ``perturb``), ``kernel`` and ``bias`` (w_l, b_l).
  """
  top = max(config.depths)
  model = DenseStack(depth=top, features=1, activation="relu", **INITS[init])
  x = jnp.full((1, 1), config.input, jnp.float32)

  def one_chain(key, depth):
    variables = model.init(key, x)
    dense = variables["params"]["layers"]["dense"]
    padding = (jnp.arange(top) < top - depth)[:, None]
    dense = {"kernel": jnp.where(padding[:, :, None], 1.0, dense["kernel"]),
             "bias": jnp.where(padding, 0.0, dense["bias"])}
    variables = {**variables, "params": {"layers": {"dense": dense}}}
    loss = lambda v: jnp.sum(model.apply(v, x)[0])  # noqa: E731
    grads = diagnostics.perturbation_grads(loss, variables)
    return {"grad": grads["layers"]["preact"].reshape(top),
            "kernel": dense["kernel"].reshape(top), "bias": dense["bias"].reshape(top)}

  key = jax.random.fold_in(jax.random.key(config.seed), list(INITS).index(init))
  keys = jax.random.split(key, (len(config.depths), config.seeds))
  depths = jnp.asarray(config.depths)
  over_seeds = jax.vmap(one_chain, in_axes=(0, None))
  return {k: np.asarray(v) for k, v in sweep(over_seeds, keys, depths).items()}


def path_product(kernel: np.ndarray, bias: np.ndarray, x: float) -> np.ndarray:
  r"""The exact dL/dz_l, in float64: prod_{k>=l} 1[z_k > 0] prod_{k>l} w_k.

  Args:
    kernel, bias: (seeds, L) weights and biases of the chains.
    x: the input h_0.

  Returns:
    (seeds, L) array.
  """
  kernel, bias = kernel.astype(np.float64), bias.astype(np.float64)
  h = np.full(kernel.shape[0], float(x))
  active = np.empty(kernel.shape, dtype=bool)
  for k in range(kernel.shape[1]):
    z = kernel[:, k] * h + bias[:, k]
    active[:, k] = z > 0
    h = np.maximum(z, 0.0)
  # Reverse cumulative products: w_{l+1} ... w_L and 1[z_l] ... 1[z_L].
  w_after = np.concatenate([kernel[:, 1:], np.ones_like(kernel[:, :1])], axis=1)
  weights = np.cumprod(w_after[:, ::-1], axis=1)[:, ::-1]
  alive = np.cumprod(active[:, ::-1], axis=1)[:, ::-1]
  return weights * alive


def chain_probabilities(depth: int, x: float, bias: float, weight_var: float) -> dict:
  r"""Where the gradient arrives in chains with w ~ N(0, weight_var), constant bias b.

  Given h_{k-1} = h >= 0, z_k = w h + b ~ N(b, weight_var h^2), and
  h_k = max(z_k, 0). The distribution of h is carried on a log-spaced grid
  of bins; the transition between bins is an exact difference of normal CDFs
  at the bin edges, only the position of h inside its bin is rounded to the
  bin's geometric centre; one more state holds h = 0 exactly. ``T`` keeps
  the part of the mass with z > 0 (the unit is active), ``U`` also sends
  z <= 0 to h = 0 (a dead unit, after which z = b). Then, with ``d_{l-1}`` the distribution of h_{l-1}:
  P(units l..L all active) = 1^T T^{L-l+1} d_{l-1}. For b = 0 each step of T
  keeps exactly half of the mass and a dead unit stays dead (z = 0), so every
  probability is 2^-L.

  Returns:
    ``survival``: P(units 1..L all active) = P(dL/dz_1 != 0) for L = 1..depth;
    ``reach``: P(units l..depth all active) = P(dL/dz_l != 0), l = 1..depth.
  """
  edges = _GRID_EDGES  # bin i = [edges[i], edges[i+1]), the last one [edges[-1], inf)
  centres = np.concatenate([[edges[1] / 2], np.sqrt(edges[1:-1] * edges[2:]), [edges[-1]]])
  sigma = math.sqrt(weight_var)

  def active(h: np.ndarray) -> np.ndarray:
    """(bins, h.size): probability that z lands in each bin, for each h."""
    with np.errstate(divide="ignore"):
      cdf = special.ndtr((edges[:, None] - bias) / (sigma * h[None, :]))
    return np.vstack([cdf[1:], np.ones((1, h.size))]) - cdf

  # States: the bins of h > 0, then one state for a dead unit, h = 0 exactly,
  # from which z = b: active in b's bin if b > 0, dead again otherwise.
  dead = np.zeros((centres.size + 1, 1))
  if bias > 0:
    dead[np.searchsorted(edges, bias, side="right") - 1] = 1.0

  def with_dead(columns: np.ndarray) -> np.ndarray:
    return np.vstack([columns, np.zeros((1, columns.shape[1]))])

  transition = np.hstack([with_dead(active(centres)), dead])       # T: active part
  unconditioned = transition.copy()                                 # U: dead units too
  unconditioned[-1] += 1.0 - transition.sum(axis=0)
  first = with_dead(active(np.array([float(x)])))[:, 0]            # z_1 given h_0 = x
  h = first.copy()
  h[-1] += 1.0 - first.sum()                                        # distribution of h_1
  # survive[m] = 1^T T^m: the probability of m more active units, per state.
  survive = [np.ones(centres.size + 1)]
  for _ in range(depth):
    survive.append(survive[-1] @ transition)
  reach = np.empty(depth)
  reach[0] = survive[depth - 1] @ first
  for l in range(2, depth + 1):                                     # h holds d_{l-1}
    reach[l - 1] = survive[depth - l + 1] @ h
    h = unconditioned @ h
  survival = np.array([survive[L - 1] @ first for L in range(1, depth + 1)])
  return {"survival": survival, "reach": reach}


def _quantiles(a: np.ndarray) -> dict:
  with warnings.catch_warnings():  # a layer no seed's gradient reaches is all-NaN
    warnings.simplefilter("ignore", RuntimeWarning)
    q25, q50, q75 = np.nanpercentile(a, [25, 50, 75], axis=0)
  return {"q25": q25, "median": q50, "q75": q75}


def analyse(config: Config, depth: int, m: dict[str, np.ndarray]) -> dict:
  """Compares measured gradients with the exact path products; survival counts."""
  exact = path_product(m["kernel"], m["bias"], config.input)
  grad = m["grad"].astype(np.float64)
  nonzero = exact != 0
  with np.errstate(all="ignore"):
    rel = np.where(nonzero, np.abs(grad - exact) / np.abs(exact), 0.0)
  # Layers between l and the output: one float32 rounding each.
  bound = np.maximum(depth - np.arange(1, depth + 1), 1) * 2.0**-24
  magnitude = np.where(grad != 0, np.abs(grad), np.nan)
  return {
      "depth": depth,
      "max_rel_error": float(rel.max()),
      "max_rel_error_over_bound": float((rel / bound[None, :]).max()),
      "zero_mismatches": int(np.sum((grad == 0) != (exact == 0))),
      "nonfinite": int(np.sum(~np.isfinite(grad))),
      "reaches_input": int(np.sum(grad[:, 0] != 0)),
      "nonzero_fraction_per_layer": (grad != 0).mean(axis=0),
      "abs_grad_nonzero": _quantiles(magnitude),
      "scatter": {"exact": exact[:SCATTER_SEEDS], "measured": grad[:SCATTER_SEEDS]},
  }


def theory(config: Config) -> dict:
  """Closed forms and the Markov-chain integral, for L = 1..max depth."""
  top = max(config.depths)
  gaps = np.arange(top)  # L - l
  return {
      "wrong_mean_product": WRONG_MEAN**gaps,
      # Median of a product of n independent weights ~ exp(n E[log w]).
      "wrong_median_product": np.exp(gaps * _mean_log_normal(WRONG_MEAN, WRONG_STD)),
      "survival_zero_bias": 0.5 ** np.arange(1, top + 1),
      **{f"{k}_right": v for k, v in
         chain_probabilities(top, config.input, RIGHT_BIAS, HE_VARIANCE).items()},
  }


def _mean_log_normal(mean: float, std: float, points: int = 20_001) -> float:
  """E[log w] for w ~ N(mean, std^2) (mean >> std), trapezoid rule on +-10 std."""
  z = np.linspace(-10, 10, points)
  w = np.exp(-0.5 * z**2)
  return float(np.sum(w * np.log(mean + std * z)) / np.sum(w))


def run(config: Config) -> dict:
  """Measures every (init, depth), writes results.json and the figures."""
  cases: dict[str, dict[str, dict]] = {}
  for init in _cli.progress(config.inits, desc="relu chains"):
    m = measure(config, init)
    cases[init] = {str(d): analyse(config, d, {k: v[i, :, -d:] for k, v in m.items()})
                   for i, d in enumerate(config.depths)}
  results = {"config": config, "depths": config.depths, "seeds": config.seeds,
             "cases": cases, "theory": theory(config),
             "float32_bound_per_layer": 2.0**-24}
  return results


def plot(results: dict, out_dir: pathlib.Path) -> None:
  cases, th = results["cases"], results["theory"]
  top = str(max(results["depths"]))
  colors = {"wrong": "C3", "right": "C0", "he_zero_bias": "C2"}

  fig, axes = plotting.figure(1, 2, panel=(3.6, 2.9))
  ax = axes[0, 0]
  for init, per_depth in cases.items():
    c = per_depth[top]
    layers = np.arange(1, int(top) + 1)
    q = c["abs_grad_nonzero"]
    ax.plot(layers, q["median"], color=colors[init], label=f"{init} (median, nonzero)")
    ax.fill_between(layers, q["q25"], q["q75"], color=colors[init], alpha=0.2, linewidth=0)
    axes[0, 1].plot(layers, c["nonzero_fraction_per_layer"], color=colors[init], label=init)
  gaps = int(top) - np.arange(1, int(top) + 1)
  plotting.theory_line(ax, np.arange(1, int(top) + 1), np.asarray(th["wrong_mean_product"])[gaps],
                       color=colors["wrong"], label="1.5^(L-l) (mean)")
  ax.set_yscale("log")
  ax.set_xlabel("layer l")
  ax.set_ylabel("|dL/dz_l|")
  ax.set_title(f"gradient at each pre-activation, L={top}")
  ax.legend(loc="lower left")
  plotting.theory_line(axes[0, 1], np.arange(1, int(top) + 1), th["reach_right"],
                       color=colors["right"], label="right: Markov-chain integral")
  axes[0, 1].axhline(0.5 ** int(top), color=colors["he_zero_bias"], **plotting.THEORY,
                     label=f"b = 0: 2^-{top} at every layer")
  axes[0, 1].legend(loc="lower right")
  axes[0, 1].set_yscale("log")
  axes[0, 1].set_xlabel("layer l")
  axes[0, 1].set_ylabel("fraction of seeds with dL/dz_l ≠ 0")
  axes[0, 1].set_title("where the gradient still arrives")
  plotting.save(fig, out_dir / "gradients.png")

  fig, axes = plotting.figure(1, 1, panel=(4.2, 3.4))
  ax = axes[0, 0]
  for init, per_depth in cases.items():
    ex = np.concatenate([np.ravel(c["scatter"]["exact"]) for c in per_depth.values()])
    me = np.concatenate([np.ravel(c["scatter"]["measured"]) for c in per_depth.values()])
    keep = ex != 0
    ax.loglog(np.abs(ex[keep]), np.abs(me[keep]), ".", color=colors[init], markersize=2,
              label=init)
  lims = np.array(ax.get_xlim())
  ax.plot(lims, lims, "k-", linewidth=0.6)
  worst = max(c["max_rel_error_over_bound"] for p in cases.values() for c in p.values())
  ax.set_title(f"dL/dz_l (perturb) vs exact path product\n"
               f"worst rel. error = {worst:.2f} × (L-l)·2⁻²⁴", fontsize=8)
  ax.set_xlabel("exact ∏ w_k (float64)")
  ax.set_ylabel("measured dL/dz_l (float32)")
  ax.legend()
  plotting.save(fig, out_dir / "exactness.png")

  fig, axes = plotting.figure(1, 1, panel=(4.2, 3.2))
  ax = axes[0, 0]
  depths = np.asarray(results["depths"])
  all_depths = np.arange(1, len(th["survival_right"]) + 1)
  for init, per_depth in cases.items():
    seeds = results["seeds"]
    frac = np.array([per_depth[str(d)]["reaches_input"] / seeds for d in depths])
    ax.plot(depths, np.where(frac > 0, frac, np.nan), "o", color=colors[init], markersize=4,
            label=f"{init} (measured, {seeds} seeds)")
  plotting.theory_line(ax, all_depths, th["survival_right"], color=colors["right"],
                       label="right: Markov-chain integral")
  plotting.theory_line(ax, all_depths, th["survival_zero_bias"], color=colors["he_zero_bias"],
                       label="b = 0: 2^-L")
  ax.set_yscale("log")
  ax.set_xlabel("depth L")
  ax.set_ylabel("P(gradient reaches the input)")
  ax.set_title("a dead unit cuts off every earlier layer")
  ax.legend(loc="lower left")
  plotting.save(fig, out_dir / "survival.png")


def summary(results: dict) -> str:
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
