r"""Singular-value spectra of deep networks' input-output Jacobians at the critical point, against theory.

A network ``h_l = phi(W_l h_{l-1})`` of width N (no bias), with Gaussian
weights N(0, sigma_w^2/N) or orthogonal ones with gain sigma_w, at the
critical :math:`\sigma_w^2` where :math:`\chi_1 = \sigma_w^2\mathbb E[\phi'(h)^2] = 1`
(:func:`critical_sigma_w2`). :func:`squared_singular_values` measures the
squared singular values of :math:`J_L = \partial h_L/\partial x` at every
depth asked for, for many seeds, in one compiled program.

Free probability predicts the mean and variance of the eigenvalues of
:math:`J J^T` (:func:`jaxgrad.theory.jacobian_spectrum_moments`): linear
Gaussian variance L, linear orthogonal 0, ReLU Gaussian 2L, ReLU orthogonal L
(Pennington, Schoenholz & Ganguli 2017, 2018). These are infinite-width
results; at width N the fluctuations grow with :math:`\beta = L/N` (Hanin &
Nica 2019), so :func:`agreement` holds measurement to theory only at
:math:`L \le N/16`.
"""

from collections.abc import Sequence
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import diagnostics, initializers, theory
from jaxgrad.models import DenseStack
from jaxgrad.sweep import sweep

# Critical sigma_w^2 at sigma_b^2 = 0 where it is known in closed form; any
# other activation gets jaxgrad.theory.critical_sigma_w2 (sigmoid: ~103).
CRITICAL_SIGMA_W2 = {"linear": 1.0, "relu": 2.0, "tanh": 1.0, "hard_tanh": 1.0}
AGREEMENT_RTOL = 0.15  # the bar for depth <= width / 16
DENSITY_BINS = 40


def critical_sigma_w2(activation: str) -> float:
  r"""The :math:`\sigma_w^2` at which :math:`\chi_1 = 1` with zero bias (closed form where known)."""
  if activation in CRITICAL_SIGMA_W2:
    return CRITICAL_SIGMA_W2[activation]
  return float(theory.critical_sigma_w2(activation, 0.0))


def weight_init(weights: str, sigma_w2: float):
  r"""Gaussian :math:`N(0, \sigma_w^2/\mathrm{fan\_in})` or orthogonal with gain :math:`\sigma_w`."""
  if weights == "gaussian":
    return initializers.gaussian(sigma_w2)
  return initializers.orthogonal(gain=math.sqrt(sigma_w2))


def squared_singular_values(activation: str, sigma_w2: float, weights: str, *, width: int,
                            depths: Sequence[int], seeds: int, key: jax.Array,
                            input_q: float = 1.0, dtype=jnp.float32) -> np.ndarray:
  r"""Squared singular values of :math:`J_L = \partial h_L/\partial x` at every depth, every seed.

  One network of depth ``max(depths)`` per seed, its Jacobian at every
  depth from one forward-mode pass (``jax.jacfwd`` of every layer's output),
  every seed in one :func:`~jaxgrad.sweep.sweep`.

  Args:
    activation: registered name of :math:`\phi`.
    sigma_w2: the weights' :math:`\sigma_w^2`.
    weights: ``"gaussian"`` or ``"orthogonal"`` (:func:`weight_init`).
    width: N.
    depths: the depths L to measure, each >= 1.
    seeds: networks.
    key: split into one key per seed; each seed's key gives its weights and
      its input :math:`x \sim N(0, q_{in} I)`.
    input_q: :math:`q_{in}`.
    dtype: parameter and input dtype (float64 needs ``jax.enable_x64``).

  Returns:
    (seeds, len(depths), width): :math:`s_i^2` of :math:`J_L`, descending.
  """
  model = DenseStack(depth=max(depths), features=width, activation=activation,
                     kernel_init=weight_init(weights, sigma_w2), bias_init="zeros",
                     param_dtype=dtype)
  take = jnp.asarray(depths) - 1
  n, d = width, len(depths)

  def one_network(key):
    k_params, k_x = jax.random.split(key)
    x = math.sqrt(input_q) * jax.random.normal(k_x, (n,), dtype)
    params = model.init(k_params, x)
    every_depth = lambda v: model.apply(params, v)[1][take].reshape(-1)  # noqa: E731
    jac = diagnostics.jacobian(every_depth, x).reshape(d, n, n)
    return jnp.linalg.svd(jac, compute_uv=False) ** 2

  return np.asarray(sweep(one_network, jax.random.split(key, seeds)))


def over_seeds(per_seed: np.ndarray) -> dict:
  r"""(seeds, depths) -> mean (and its standard error), median, quartiles, raw values.

  The percentiles are those of every seed, infinite values included
  (``np.percentile``): an infinite condition number (an exactly-zero
  singular value) makes its depth's median NaN or inf rather than being left
  out, unlike :func:`jaxgrad.stats.quartiles`, so the published numbers stay
  what they were.

  Returns:
    ``mean``, ``sem`` (:math:`\mathrm{sd}/\sqrt{n}`, NaN for one seed),
    ``median``, ``q25``, ``q75``, ``per_seed``.
  """
  with np.errstate(all="ignore"):
    q25, q50, q75 = np.percentile(per_seed, [25, 50, 75], axis=0)
    sem = per_seed.std(0, ddof=1) / np.sqrt(len(per_seed)) if len(per_seed) > 1 else np.nan
    return {"mean": per_seed.mean(0), "sem": sem, "median": q50, "q25": q25, "q75": q75,
            "per_seed": per_seed}


def log_bins(s2: np.ndarray, bins: int = DENSITY_BINS) -> np.ndarray:
  """``bins + 1`` edges in log10 s² spanning the resolvable values (at least half a decade)."""
  kept = s2[diagnostics.resolvable(s2)]
  lo, hi = np.log10(kept.min()), np.log10(kept.max())
  return np.linspace(min(lo, hi - 0.5), max(hi, lo + 0.5), bins + 1)


def log_density(s2: np.ndarray, depth_index: int, bins: np.ndarray) -> dict:
  """Histogram of log10 s² at one depth, integrating to the resolvable fraction.

  Args:
    s2: (seeds, depths, width) from :func:`squared_singular_values`.
    depth_index: which depth.
    bins: edges (:func:`log_bins`).

  Returns:
    ``log10_s2_bin_edges``, ``density``, and ``unresolved_fraction``: the
    values below the SVD's resolution (:func:`jaxgrad.diagnostics.resolvable`).
  """
  values = s2[:, depth_index]
  keep = diagnostics.resolvable(values)
  counts, _ = np.histogram(np.log10(values[keep]), bins=bins)
  density = counts / max(values.size, 1) / np.diff(bins)
  return {"log10_s2_bin_edges": bins, "density": density,
          "unresolved_fraction": float(1 - keep.mean())}


def spectrum_case(activation: str, sigma_w2: float, weights: str, *, width: int,
                  depths: Sequence[int], seeds: int, key: jax.Array, density_at: Sequence[int],
                  input_q: float = 1.0, dtype=jnp.float32) -> dict:
  """One (activation, sigma_w2, weights) case: measured spectra, theory, densities.

  Args:
    activation, sigma_w2, weights, width, depths, seeds, key, input_q, dtype:
      as in :func:`squared_singular_values` (``sigma_w2`` is usually
      :func:`critical_sigma_w2`).
    density_at: indices into ``depths`` whose densities to keep.

  Returns:
    ``activation``, ``weights``, ``sigma_w2``, ``depths``; per
    :func:`jaxgrad.diagnostics.spectrum_stats` entry (``mean_sq``, ``var_sq``,
    ``max``, ``min``, ``condition``) its :func:`over_seeds` summary;
    ``theory`` (``mean_sq``, ``var_sq`` at each depth,
    :func:`jaxgrad.theory.jacobian_spectrum_moments`); ``density`` by depth.
  """
  s2 = squared_singular_values(activation, sigma_w2, weights, width=width, depths=depths,
                               seeds=seeds, key=key, input_q=input_q, dtype=dtype)
  measured = diagnostics.spectrum_stats(np.sqrt(s2))
  predicted = theory.jacobian_spectrum_moments(activation, sigma_w2, 0.0, sigma_w2 * input_q,
                                               max(depths), weights)
  take = np.asarray(depths) - 1
  bins = log_bins(s2)
  return {
      "activation": activation,
      "weights": weights,
      "sigma_w2": sigma_w2,
      "depths": depths,
      **{k: over_seeds(np.asarray(v)) for k, v in measured.items()},
      "theory": {"mean_sq": np.asarray(predicted["mean_sq"])[take],
                 "var_sq": np.asarray(predicted["var_sq"])[take]},
      "density": {str(depths[i]): log_density(s2, i, bins) for i in density_at},
  }


def agreement(cases: dict[str, dict], width: int, rtol: float = AGREEMENT_RTOL) -> dict:
  """Measured / predicted var_sq (mean over seeds) per case and depth.

  Args:
    cases: :func:`spectrum_case` results by name.
    width: N; only depths L <= N/16, where finite-width corrections (of
      order L/N) are small, and whose theory is not 0, are checked.
    rtol: the relative error allowed there.

  Returns:
    Per case: ``ratio`` at every depth, ``max_rel_error_small_depth`` and
    ``within_rtol`` over the checked depths (``None`` if none is checked).
  """
  out = {}
  for name, case in cases.items():
    small = [i for i, L in enumerate(case["depths"]) if L <= width / 16]
    measured = np.asarray(case["var_sq"]["mean"], dtype=float)
    predicted = np.asarray(case["theory"]["var_sq"], dtype=float)
    with np.errstate(all="ignore"):
      ratio = measured / predicted
    checked = [i for i in small if predicted[i] > 0]
    out[name] = {
        "ratio": ratio,
        "max_rel_error_small_depth": (float(np.max(np.abs(ratio[checked] - 1)))
                                      if checked else None),
        "within_rtol": (bool(np.all(np.abs(ratio[checked] - 1) <= rtol)) if checked else None),
    }
  return out
