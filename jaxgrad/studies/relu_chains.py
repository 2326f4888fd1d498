r"""Seed 003's one-unit ReLU chain: gradients as exact weight products, and where a dead unit cuts them.

The network is ``L`` Dense layers of one unit each, ``z_k = w_k h_{k-1} + b_k``,
``h_k = relu(z_k)``, ``h_0 = x``, loss = output ``h_L``. By the chain rule
the gradient at every pre-activation is a product along the path
(:func:`path_product`),

.. math::

   \frac{\partial L}{\partial z_l} \;=\; \prod_{k=l}^{L} \mathbf 1[z_k > 0]
   \;\prod_{k=l+1}^{L} w_k ,

which the measured float32 gradient (:func:`chain_gradients`) must equal to
one rounding per layer, relative error <= (L - l) 2^-24 (:func:`compare_chains`).

Initialisations (:data:`INITS`): ``wrong``, w ~ N(1.5, 0.1^2), b = 0, every
unit active and the gradient at layer l about 1.5^(L-l); ``right``, He-normal
w ~ N(0, 2) (He et al. 2015) with b = 0.01; ``he_zero_bias``, He-normal with
b = 0, where each unit is active with probability 1/2 independently and the
gradient reaches the input with probability exactly 2^-L. With b > 0 the
probability depends on the random h_{k-1}; :func:`chain_probabilities`
integrates that Markov chain on a grid (:func:`predictions`).
"""

from collections.abc import Sequence
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from jaxgrad import diagnostics, stats
from jaxgrad.models import DenseStack
from jaxgrad.models.stack import STACK_NAME
from jaxgrad.sweep import sweep

INITS = {
    "wrong": dict(kernel_init=("normal", {"mean": 1.5, "stddev": 0.1}), bias_init="zeros"),
    "right": dict(kernel_init="he_normal", bias_init=("constant", {"value": 0.01})),
    "he_zero_bias": dict(kernel_init="he_normal", bias_init="zeros"),
}
WRONG_MEAN, WRONG_STD = 1.5, 0.1
HE_VARIANCE = 2.0  # 2 / fan_in with fan_in = 1
RIGHT_BIAS = 0.01
SCATTER_SEEDS = 16  # seeds per depth kept for the exactness scatter
FLOAT32_ROUNDING = 2.0**-24  # relative error of one float32 rounding
_GRID_EDGES = np.concatenate([[0.0], np.logspace(-14, 10, 2401)])  # h bins for the Markov chain


def chain_gradients(init: str, depths: Sequence[int], seeds: int, x: float, *,
                    key: jax.Array) -> dict[str, np.ndarray]:
  """Every depth and seed of one initialisation in one vmapped, jitted program.

  A chain of depth L is the last L layers of a chain of depth ``max(depths)``
  whose first layers are the identity (w = 1, b = 0): with x > 0 they pass x
  through exactly (relu(1 * x + 0) = x in floating point), so the gradient at
  the last L layers is bit for bit that of the depth-L chain, and one compiled
  program serves every depth. The seed's hook on every ``z_k`` is
  ``Module.perturb``, read with :func:`jaxgrad.diagnostics.perturbation_grads`.

  Args:
    init: one of :data:`INITS`.
    depths: chain lengths L.
    seeds: chains per depth.
    x: the input h_0 > 0.
    key: split into one key per (depth, seed).

  Returns:
    Float32 arrays of shape (len(depths), seeds, max(depths)), the first
    ``max(depths) - L`` layers of row L being the identity padding: ``grad``
    (dL/dz_l from ``perturb``), ``kernel`` and ``bias`` (w_l, b_l).
  """
  top = max(depths)
  model = DenseStack(depth=top, features=1, activation="relu", **INITS[init])
  inputs = jnp.full((1, 1), x, jnp.float32)

  def one_chain(key, depth):
    variables = model.init(key, inputs)
    dense = variables["params"][STACK_NAME]["dense"]
    padding = (jnp.arange(top) < top - depth)[:, None]
    dense = {"kernel": jnp.where(padding[:, :, None], 1.0, dense["kernel"]),
             "bias": jnp.where(padding, 0.0, dense["bias"])}
    variables = {**variables, "params": {STACK_NAME: {"dense": dense}}}
    loss = lambda v: jnp.sum(model.apply(v, inputs)[0])  # noqa: E731
    grads = diagnostics.perturbation_grads(loss, variables)
    return {"grad": grads[STACK_NAME]["preact"].reshape(top),
            "kernel": dense["kernel"].reshape(top), "bias": dense["bias"].reshape(top)}

  keys = jax.random.split(key, (len(depths), seeds))
  over_seeds = jax.vmap(one_chain, in_axes=(0, None))
  return {k: np.asarray(v) for k, v in sweep(over_seeds, keys, jnp.asarray(depths)).items()}


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


def compare_chains(m: dict[str, np.ndarray], x: float) -> dict:
  """Measured gradients of chains of one depth against their exact path products; survival counts.

  Args:
    m: ``grad``, ``kernel``, ``bias`` of shape (seeds, L) (one depth of
      :func:`chain_gradients`, padding dropped).
    x: the input h_0.

  Returns:
    ``depth``; ``max_rel_error`` and ``max_rel_error_over_bound`` (against
    (L - l) float32 roundings); ``zero_mismatches`` (measured zero where the
    product is not, or the reverse); ``nonfinite``; ``reaches_input`` (seeds
    whose dL/dz_1 is not 0); ``nonzero_fraction_per_layer``;
    ``abs_grad_nonzero`` (quartiles over seeds of the nonzero |dL/dz_l|);
    ``scatter`` (exact and measured of the first :data:`SCATTER_SEEDS` seeds).
  """
  depth = m["grad"].shape[1]
  exact = path_product(m["kernel"], m["bias"], x)
  grad = m["grad"].astype(np.float64)
  nonzero = exact != 0
  with np.errstate(all="ignore"):
    rel = np.where(nonzero, np.abs(grad - exact) / np.abs(exact), 0.0)
  # Layers between l and the output: one float32 rounding each.
  bound = np.maximum(depth - np.arange(1, depth + 1), 1) * FLOAT32_ROUNDING
  magnitude = np.where(grad != 0, np.abs(grad), np.nan)
  return {
      "depth": depth,
      "max_rel_error": float(rel.max()),
      "max_rel_error_over_bound": float((rel / bound[None, :]).max()),
      "zero_mismatches": int(np.sum((grad == 0) != (exact == 0))),
      "nonfinite": int(np.sum(~np.isfinite(grad))),
      "reaches_input": int(np.sum(grad[:, 0] != 0)),
      "nonzero_fraction_per_layer": (grad != 0).mean(axis=0),
      "abs_grad_nonzero": stats.quartiles(magnitude, keep_samples=False),
      "scatter": {"exact": exact[:SCATTER_SEEDS], "measured": grad[:SCATTER_SEEDS]},
  }


def _chain_matrices(x: float, bias: float, weight_var: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """On the grid of h states (h = 0 exactly last): T (active part), U (dead units too), z_1 given h_0 = x."""
  edges = _GRID_EDGES  # bin i = [edges[i], edges[i+1]), the last one [edges[-1], inf)
  centres = np.concatenate([[edges[1] / 2], np.sqrt(edges[1:-1] * edges[2:]), [edges[-1]]])
  sigma = math.sqrt(weight_var)

  def active(h: np.ndarray) -> np.ndarray:
    """(bins + 1, h.size): probability that z lands in each bin (h = 0 state: 0), for each h."""
    with np.errstate(divide="ignore"):
      cdf = special.ndtr((edges[:, None] - bias) / (sigma * h[None, :]))
    columns = np.vstack([cdf[1:], np.ones((1, h.size))]) - cdf
    return np.vstack([columns, np.zeros((1, h.size))])

  # From a dead unit, h = 0 exactly, z = b: active in b's bin if b > 0, dead again otherwise.
  dead = np.zeros((centres.size + 1, 1))
  if bias > 0:
    dead[np.searchsorted(edges, bias, side="right") - 1] = 1.0
  transition = np.hstack([active(centres), dead])                   # T: active part
  unconditioned = transition.copy()                                 # U: dead units too
  unconditioned[-1] += 1.0 - transition.sum(axis=0)
  return transition, unconditioned, active(np.array([float(x)]))[:, 0]


def chain_probabilities(depth: int, x: float, bias: float, weight_var: float) -> dict:
  r"""Where the gradient arrives in chains with w ~ N(0, weight_var), constant bias b.

  Given h_{k-1} = h >= 0, z_k = w h + b ~ N(b, weight_var h^2), and
  h_k = max(z_k, 0). The distribution of h is carried on a log-spaced grid
  of bins; the transition between bins is an exact difference of normal CDFs
  at the bin edges, only the position of h inside its bin is rounded to the
  bin's geometric centre; one more state holds h = 0 exactly. ``T`` keeps
  the part of the mass with z > 0 (the unit is active), ``U`` also sends
  z <= 0 to h = 0 (a dead unit, after which z = b). Then, with ``d_{l-1}`` the
  distribution of h_{l-1}: P(units l..L all active) = 1^T T^{L-l+1} d_{l-1}.
  For b = 0 each step of T keeps exactly half of the mass and a dead unit
  stays dead (z = 0), so every probability is 2^-L.

  Args:
    depth: the longest chain.
    x: the input h_0 > 0.
    bias: b.
    weight_var: Var(w).

  Returns:
    ``survival``: P(units 1..L all active) = P(dL/dz_1 != 0) for L = 1..depth;
    ``reach``: P(units l..depth all active) = P(dL/dz_l != 0), l = 1..depth.
  """
  transition, unconditioned, first = _chain_matrices(x, bias, weight_var)
  h = first.copy()
  h[-1] += 1.0 - first.sum()                                        # distribution of h_1
  # survive[m] = 1^T T^m: the probability of m more active units, per state.
  survive = [np.ones(transition.shape[0])]
  for _ in range(depth):
    survive.append(survive[-1] @ transition)
  reach = np.empty(depth)
  reach[0] = survive[depth - 1] @ first
  for l in range(2, depth + 1):                                     # h holds d_{l-1}
    reach[l - 1] = survive[depth - l + 1] @ h
    h = unconditioned @ h
  survival = np.array([survive[L - 1] @ first for L in range(1, depth + 1)])
  return {"survival": survival, "reach": reach}


def _mean_log_normal(mean: float, std: float, points: int = 20_001) -> float:
  """E[log w] for w ~ N(mean, std^2) (mean >> std), trapezoid rule on +-10 std."""
  z = np.linspace(-10, 10, points)
  w = np.exp(-0.5 * z**2)
  return float(np.sum(w * np.log(mean + std * z)) / np.sum(w))


def predictions(top: int, x: float) -> dict:
  """Closed forms and the Markov-chain integral, for L = 1..``top`` (gaps L - l = 0..top-1).

  Returns:
    ``wrong_mean_product``: E[prod of L - l weights] = 1.5^(L-l);
    ``wrong_median_product``: exp((L - l) E[log w]), the product's median;
    ``survival_zero_bias``: 2^-L; ``survival_right`` and ``reach_right``:
    :func:`chain_probabilities` of the ``right`` initialisation.
  """
  gaps = np.arange(top)  # L - l
  return {
      "wrong_mean_product": WRONG_MEAN**gaps,
      # Median of a product of n independent weights ~ exp(n E[log w]).
      "wrong_median_product": np.exp(gaps * _mean_log_normal(WRONG_MEAN, WRONG_STD)),
      "survival_zero_bias": 0.5 ** np.arange(1, top + 1),
      **{f"{k}_right": v for k, v in
         chain_probabilities(top, x, RIGHT_BIAS, HE_VARIANCE).items()},
  }
