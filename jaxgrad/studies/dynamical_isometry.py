r"""Dynamical isometry: Jacobian spectra of deep random nets and how fast they learn.

Spectra (Pennington, Schoenholz & Ganguli 2017). The input-output Jacobian
:math:`J = \prod_l D_l W_l` of a deep net on the critical line
(:math:`\chi_1 = 1`) has squared singular values :math:`s^2` of mean 1 and,
by free probability, variance :math:`L(\mu_2/\mu_1^2 - 1 - s_1)`, with
:math:`s_1 = -1` for Gaussian and 0 for orthogonal weights: orthogonal tanh
at a small fixed point :math:`q^*` is nearly isometric (var :math:`\approx 8Lq^{*2}`)
while Gaussian weights and ReLU never are (var :math:`\geq L`).
:func:`log_singular_values` measures the spectrum by repeated QR in a scan
over layers (:func:`jaxgrad.diagnostics.log_singular_values`), never forming
:math:`J`; :func:`spectrum` sets it beside
:func:`jaxgrad.theory.jacobian_spectrum_moments`.

Learning speed (Pennington et al. 2017; Saxe et al. 2013): near-isometric
nets take a depth-independent number of steps to a target loss, the others
more with depth. :func:`learning_speed` trains one arm at every learning rate
of a grid; :func:`steps_to_target` and :func:`best_learning_rate` read it.
"""

from collections.abc import Sequence
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import activations, data, diagnostics, theory, training
from jaxgrad.models import DeepMLP
from jaxgrad.studies.mean_field import unit_inits
from jaxgrad.studies.trainability import train_many
from jaxgrad.sweep import sweep

SMOOTHING = 25  # steps in the running mean of the training loss
EVAL_EXAMPLES = 1000  # training examples the accuracy of a trained arm is read on


def spectrum_cases(q_small: float, q_large: float) -> dict[str, tuple[str, str, float, float, float]]:
  r"""The nets whose spectra are compared: name -> (activation, weights, sigma_w2, sigma_b2, q1).

  Tanh on the critical line (:func:`jaxgrad.theory.critical_line`) at the
  fixed points ``q_small`` and ``q_large``, each with orthogonal and Gaussian
  weights, and ReLU with He init (:math:`\sigma_w^2 = 2`). ``q1`` is the first
  pre-activation variance: the input
  :math:`h_0 \sim \mathcal N(0, (q_1 - \sigma_b^2)/\sigma_w^2)` puts the tanh
  nets at their fixed point :math:`q^*` from the first layer on; ReLU gets
  :math:`q_1 = 2` (unit input).
  """
  out = {}
  for q in (q_small, q_large):
    sw2, sb2 = (float(v) for v in theory.critical_line("tanh", q))
    for weights in ("orthogonal", "gaussian"):
      out[f"tanh/{weights}/q*={q:g}"] = ("tanh", weights, sw2, max(sb2, 0.0), q)
  out["relu/gaussian/He"] = ("relu", "gaussian", 2.0, 0.0, 2.0)
  return out


def _weights(key, n: int, weights: str, sigma_w2: float, dtype) -> jax.Array:
  if weights == "orthogonal":
    return math.sqrt(sigma_w2) * jax.nn.initializers.orthogonal()(key, (n, n), dtype)
  return math.sqrt(sigma_w2 / n) * jax.random.normal(key, (n, n), dtype)


def log_singular_values(activation: str, weights: str, sigma_w2: float, sigma_b2: float,
                        q1: float, *, width: int, depth: int, seeds: int, key: jax.Array,
                        dtype=jnp.float32) -> np.ndarray:
  r"""The log singular values of :math:`J = \prod_l D_l W_l` of ``seeds`` random nets.

  Layer :math:`l` maps :math:`h \mapsto \phi(W_l h + b_l)`, :math:`W_l`
  square of side ``width``, :math:`\sigma_w` times orthogonal or
  :math:`\mathcal N(0, \sigma_w^2/N)`, :math:`b_l \sim \mathcal N(0, \sigma_b^2)`,
  each layer's from its own key; the input is
  :math:`h_0 \sim \mathcal N(0, (q_1 - \sigma_b^2)/\sigma_w^2)`.

  Args:
    activation: :math:`\phi`, a :mod:`jaxgrad.activations` name.
    weights: ``"orthogonal"`` or ``"gaussian"``.
    sigma_w2: :math:`\sigma_w^2`.
    sigma_b2: :math:`\sigma_b^2`.
    q1: the first pre-activation variance.
    width: :math:`N`.
    depth: :math:`L`.
    seeds: networks.
    key: split into one key per network.
    dtype: of the weights and the QR products.

  Returns:
    ``(seeds, width)`` log singular values, descending (``-inf`` where :math:`J` lost rank).
  """
  n, phi = width, activations.get(activation)

  def layer(key, h):
    k_w, k_b = jax.random.split(key)
    b = math.sqrt(sigma_b2) * jax.random.normal(k_b, (n,), dtype)
    return phi(_weights(k_w, n, weights, sigma_w2, dtype) @ h + b)

  def one_network(key):
    k_x, k_layers = jax.random.split(key)
    h0 = math.sqrt((q1 - sigma_b2) / sigma_w2) * jax.random.normal(k_x, (n,), dtype)
    return diagnostics.log_singular_values(layer, jax.random.split(k_layers, depth), h0)

  return np.asarray(sweep(one_network, jax.random.split(key, seeds)))


def spectrum(activation: str, weights: str, sigma_w2: float, sigma_b2: float, q1: float,
             depths: Sequence[int], *, width: int, seeds: int, key: jax.Array,
             float64: bool = False) -> dict:
  r"""One net's spectrum at every depth, measured (:func:`log_singular_values`) and predicted.

  Args:
    activation, weights, sigma_w2, sigma_b2, q1: as in :func:`log_singular_values`.
    depths: the depths :math:`L`; depth :math:`L`'s nets draw from
      ``fold_in(key, L)``.
    width: :math:`N`.
    seeds: networks per depth.
    key: the root key.
    float64: measure in float64 (the theory always is).

  Returns:
    the settings (``activation``, ``weights``, ``sigma_w2``, ``sigma_b2``,
    ``depths``), ``log_s`` (depth as a string -> ``(seeds, width)``),
    ``mean_sq_per_seed`` and ``var_sq_per_seed`` ``(seeds, depths)``, the mean
    and variance of :math:`s^2` over the spectrum, and ``theory``: their
    free-probability predictions ``mean_sq`` and ``var_sq`` ``(depths,)``.
  """
  log_s, mean_sq, var_sq = {}, [], []
  with jax.enable_x64(float64):
    for depth in depths:
      log_s[str(depth)] = log_singular_values(
          activation, weights, sigma_w2, sigma_b2, q1, width=width, depth=depth, seeds=seeds,
          key=jax.random.fold_in(key, depth), dtype=jnp.float64 if float64 else jnp.float32)
      s2 = np.exp(2.0 * log_s[str(depth)].astype(np.float64))
      var_sq.append(s2.var(axis=-1))
      mean_sq.append(s2.mean(axis=-1))
  with jax.enable_x64(True):
    moments = theory.jacobian_spectrum_moments(activation, sigma_w2, sigma_b2, q1, max(depths),
                                               weights)
  take = np.asarray(depths) - 1
  return {"activation": activation, "weights": weights, "sigma_w2": sigma_w2,
          "sigma_b2": sigma_b2, "depths": depths, "log_s": log_s,
          "var_sq_per_seed": np.asarray(var_sq).T, "mean_sq_per_seed": np.asarray(mean_sq).T,
          "theory": {"mean_sq": np.asarray(moments["mean_sq"])[take],
                     "var_sq": np.asarray(moments["var_sq"])[take]}}


def learning_arms(q_small: float) -> dict[str, tuple[str, str, float, float]]:
  """The trained nets: name -> (activation, weights, sigma_w2, sigma_b2).

  Critical tanh at the fixed point ``q_small`` with orthogonal and with
  Gaussian weights, and ReLU with He init.
  """
  sw2, sb2 = (float(v) for v in theory.critical_line("tanh", q_small))
  return {"tanh critical orthogonal": ("tanh", "orthogonal", sw2, max(sb2, 0.0)),
          "tanh critical Gaussian": ("tanh", "gaussian", sw2, max(sb2, 0.0)),
          "ReLU He (Gaussian)": ("relu", "gaussian", 2.0, 0.0)}


def learning_speed(activation: str, weights: str, sigma_w2: float, sigma_b2: float, *,
                   depth: int, width: int, dataset: data.Dataset,
                   learning_rates: Sequence[float], steps: int, batch: int, target_loss: float,
                   seeds: int, key: jax.Array) -> dict:
  r"""One arm trained with SGD (momentum 0.9) at every rate: steps to the target, and the best rate's run.

  The nets are ``DeepMLP``\ s of ``depth`` layers and ``width`` units,
  initialised by :func:`jaxgrad.studies.mean_field.scaled_init`. The seeds of
  one rate train in one vmapped program
  (:func:`jaxgrad.studies.trainability.train_many`), the rate a traced
  ``step_scale``, so every rate runs the same compiled program (from the
  compilation cache after the first); seed s draws the same initialisation
  and batches at every rate. One program per rate, not one for all rates: on
  jaxlib 0.10.2 the 20-run program (5 rates x 4 seeds, tanh orthogonal, depth
  32, 1000 steps) never returns (every XLA thread waits, 0 % CPU), while 4-
  and 8-run programs of the same net finish; jaxlib 0.12 runs the 20-run one.

  Args:
    activation, weights, sigma_w2, sigma_b2: the arm (:func:`learning_arms`).
    depth: :math:`L`, the Dense layers.
    width: the hidden width.
    dataset: the training data.
    learning_rates: the rates tried.
    steps: SGD steps per run.
    batch: examples per step.
    target_loss: the training loss (running mean over :data:`SMOOTHING`
      steps) that counts as learned.
    seeds: runs per rate.
    key: split into one key per seed, the same at every rate.

  Returns:
    the settings (``depth``, ``sigma_w2``, ``sigma_b2``, ``learning_rates``),
    ``steps_to_target_per_rate`` and ``final_loss_per_rate`` (rates, seeds),
    ``best_learning_rate`` (:func:`best_learning_rate`),
    ``best_at_grid_edge``, and the best rate's ``loss_per_seed`` (seeds,
    steps), ``train_accuracy_per_seed``, ``diverged_at_per_seed`` and
    ``steps_to_target_per_seed``.
  """
  model = DeepMLP(depth=depth, width=width, out_features=dataset.num_classes,
                  activation=activation, **unit_inits(weights))
  grid = np.full((seeds,), sigma_w2, np.float32)
  keys = jax.random.split(key, seeds)
  sgd = training.OptimizerConfig("sgd", 1.0, momentum=0.9)  # times each run's step_scale
  per_rate = [train_many(model, dataset, sgd, grid, np.full_like(grid, sigma_b2), keys,
                         budgets=(steps,), batch=batch, eval_examples=EVAL_EXAMPLES,
                         weights=weights, step_scale=np.full((seeds,), rate, np.float32))
              for rate in learning_rates]
  res = {k: np.stack([r[k] for r in per_rate]) for k in per_rate[0]}  # (rates, seeds, ...)
  loss = res["loss"]
  reached = np.stack([steps_to_target(rate_loss, target_loss) for rate_loss in loss])
  best = best_learning_rate(reached, loss[..., -1])
  return {"depth": depth, "sigma_w2": sigma_w2, "sigma_b2": sigma_b2,
          "learning_rates": list(learning_rates),
          "steps_to_target_per_rate": reached, "final_loss_per_rate": loss[..., -1],
          "best_learning_rate": learning_rates[best],
          "best_at_grid_edge": best in (0, len(learning_rates) - 1),
          "loss_per_seed": loss[best],
          "train_accuracy_per_seed": res["train_accuracy"][best, :, -1],
          "diverged_at_per_seed": res["diverged_at"][best],
          "steps_to_target_per_seed": reached[best]}


def steps_to_target(loss: np.ndarray, target: float, window: int = SMOOTHING) -> np.ndarray:
  """Per seed, the first step at which the loss's running mean over ``window`` steps is <= ``target``.

  Args:
    loss: ``(seeds, steps)`` training losses.
    target: the loss that counts as learned.
    window: steps in the running mean (the first ``window - 1`` steps have none).

  Returns:
    ``(seeds,)`` step counts, NaN for a seed that never gets there.
  """
  smooth = running_mean(loss, window)
  reached = np.nan_to_num(smooth, nan=np.inf) <= target
  return np.where(reached.any(-1), reached.argmax(-1) + loss.shape[-1] - smooth.shape[-1] + 1,
                  np.nan)


def running_mean(loss: np.ndarray, window: int = SMOOTHING) -> np.ndarray:
  """``(seeds, steps - w + 1)``: the mean of every ``w`` consecutive steps, ``w = min(window, steps)``."""
  loss = np.asarray(loss, float)
  window = min(window, loss.shape[-1])
  kernel = np.ones(window) / window
  return np.stack([np.convolve(row, kernel, mode="valid") for row in loss])


def never_as_inf(steps) -> np.ndarray:
  """Steps to the target with an unreached seed (NaN) as ``inf``: a median then counts it as never."""
  steps = np.asarray(steps, dtype=float)
  return np.where(np.isnan(steps), np.inf, steps)


def best_learning_rate(steps: np.ndarray, final_loss: np.ndarray) -> int:
  """Index of the learning rate with the fewest median steps to the target.

  Args:
    steps: ``(rates, seeds)`` steps to the target, NaN where a seed never got there.
    final_loss: ``(rates, seeds)`` last training losses, NaN or inf where a run diverged.

  Returns:
    The rate whose median steps (an unreached seed counting as never) is
    smallest; where no rate brings half its seeds to the target, the one with the
    lowest median final loss.
  """
  median_steps = np.median(never_as_inf(steps), axis=1)
  if np.isfinite(median_steps).any():
    return int(np.argmin(median_steps))
  return int(np.argmin(np.median(np.nan_to_num(final_loss, nan=np.inf), axis=1)))
