r"""Mean-field signal propagation in wide random networks, measured beside its theory.

For weights :math:`W^l_{ij} \sim \mathcal N(0, \sigma_w^2/N)` and biases
:math:`b^l_i \sim \mathcal N(0, \sigma_b^2)`, mean-field theory (Poole et al.
2016; Schoenholz et al. 2017; :mod:`jaxgrad.theory`) predicts

* the pre-activation variance :math:`q^l` of every layer, the iterates of the
  length map :math:`q^l = \sigma_w^2\,\mathbb E_z[\phi(\sqrt{q^{l-1}} z)^2] + \sigma_b^2`;
* the per-layer factor of the squared backprop signal,
  :math:`\|\partial L/\partial z_{l-1}\|^2 / \|\partial L/\partial z_l\|^2 \to
  \chi_1 = \sigma_w^2\,\mathbb E_z[\phi'(\sqrt{q^*} z)^2]`.

:func:`measure` draws the networks and reads both off them; :func:`predict` is
the theory; :func:`compare` puts them side by side. :func:`scaled_init` and
:func:`unit_inits` draw any model's variables at a traced
:math:`(\sigma_w^2, \sigma_b^2)`, so one compiled program serves a whole grid
of them (also for :mod:`jaxgrad.studies.trainability`).
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import diagnostics, theory
from jaxgrad.models import DenseStack
from jaxgrad.models.stack import STACK_NAME
from jaxgrad.sweep import sweep

WEIGHTS = ("gaussian", "orthogonal")


def scaled_init(model, key: jax.Array, x: jax.Array, sigma_w2: jax.Array, sigma_b2: jax.Array,
                weights: str = "gaussian") -> dict:
  r"""Variables of ``model``: kernels :math:`\sigma_w \cdot` (N(0, 1/fan_in) or orthogonal), biases N(0, sigma_b^2).

  The model must be built with :func:`unit_inits` (``kernel_init`` =
  ``("gaussian", {"sigma_w2": 1})`` or ``"orthogonal"``, ``bias_init`` =
  ``("normal", {"stddev": 1})``); every kernel is then multiplied by
  :math:`\sigma_w` and every bias by :math:`\sigma_b` after ``init``, so
  ``sigma_w2`` and ``sigma_b2`` may be traced (``vmap`` over a grid of them).

  Args:
    model: a Flax module whose parameters are named ``kernel`` and ``bias``.
    key: the key of ``model.init``.
    x: an input batch for ``model.init``.
    sigma_w2: the weight variance :math:`\sigma_w^2` (times 1/fan_in for ``"gaussian"``).
    sigma_b2: the bias variance :math:`\sigma_b^2`.
    weights: ``"gaussian"`` or ``"orthogonal"``, as ``model`` was built.

  Returns:
    ``model``'s variables, the ``params`` scaled.

  Raises:
    ValueError: for ``weights`` not in :data:`WEIGHTS`.
  """
  if weights not in WEIGHTS:
    raise ValueError(f"unknown weights {weights!r}; valid choices: {WEIGHTS}")
  variables = model.init(key, x)

  def scale(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return leaf * jnp.sqrt(sigma_w2).astype(leaf.dtype)
    if name == "bias":
      return leaf * jnp.sqrt(sigma_b2).astype(leaf.dtype)
    return leaf

  return {**variables, "params": jax.tree_util.tree_map_with_path(scale, variables["params"])}


def unit_inits(weights: str = "gaussian") -> dict:
  """The ``kernel_init`` and ``bias_init`` model arguments that :func:`scaled_init` expects."""
  kernel = ("gaussian", {"sigma_w2": 1.0}) if weights == "gaussian" else "orthogonal"
  return {"kernel_init": kernel, "bias_init": ("normal", {"stddev": 1.0})}


def measure(activation: str, sigma_w2, sigma_b2: float, *, width: int, depth: int, batch: int,
            seeds: int, key: jax.Array) -> dict[str, np.ndarray]:
  r"""The backprop signal and the pre-activation variance of every layer, per :math:`\sigma_w^2` and seed.

  Each network (a :class:`jaxgrad.models.DenseStack` of ``depth`` layers of
  ``width`` units) gets ``batch`` inputs scaled to :math:`\|x\|^2/N = 1` and a
  random output gradient :math:`\partial L/\partial h_L = r \sim \mathcal N(0, I)`
  (:math:`L = \sum r \cdot h_L`), sent back through it.

  Args:
    activation: the nonlinearity :math:`\phi`, a :mod:`jaxgrad.activations` name.
    sigma_w2: the grid of :math:`\sigma_w^2`, one network per value and seed.
    sigma_b2: the bias variance :math:`\sigma_b^2`.
    width: :math:`N`.
    depth: :math:`L`, the number of layers.
    batch: inputs per network.
    seeds: networks per :math:`\sigma_w^2`; seed ``s`` draws the same
      weights (up to scale), inputs and output gradient at every value.
    key: split into one key per seed.

  Returns:
    ``(grid, seeds, depth)`` arrays: ``log_grad_sq``,
    :math:`\ln \mathbb E_b\|\partial L/\partial z_l\|^2`, and ``q``,
    :math:`q^l = \mathbb E_{b,i}[(z^l_i)^2]`.
  """
  model = DenseStack(depth=depth, features=width, activation=activation, **unit_inits())

  def one_network(key, s_w):
    k_init, k_x, k_r = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (batch, width))
    x = x / jnp.sqrt(jnp.mean(x**2, axis=-1, keepdims=True))  # ||x||^2 / N = 1
    variables = scaled_init(model, k_init, x, s_w, sigma_b2)
    r = jax.random.normal(k_r, (batch, width))

    def loss(v):
      return jnp.sum(model.apply(v, x)[0] * r)

    grads = diagnostics.perturbation_grads(loss, variables)[STACK_NAME]["preact"]  # (L, b, n)
    _, hs = model.apply(variables, x)
    layer = variables["params"][STACK_NAME]["dense"]
    inputs = jnp.concatenate([x[None], hs[:-1]], axis=0)
    z = jnp.einsum("lbi,lio->lbo", inputs, layer["kernel"]) + layer["bias"][:, None, :]
    return jnp.log(jnp.mean(jnp.sum(grads**2, axis=-1), axis=-1)), jnp.mean(z**2, axis=(1, 2))

  keys = jax.random.split(key, seeds)
  grid = jnp.asarray(sigma_w2)
  # Seeds are the sweep axis; the grid is a loop inside, so memory holds one
  # network per seed whatever the grid size.
  log_g2, q = sweep(lambda k: jax.lax.map(lambda s: one_network(k, s), grid), keys)
  return {"log_grad_sq": np.swapaxes(np.asarray(log_g2), 0, 1), "q": np.swapaxes(np.asarray(q), 0, 1)}


def fit_slope(log_g2: np.ndarray, burn_in: int) -> np.ndarray:
  r"""Least-squares slope of :math:`\ln\|\partial L/\partial z_l\|^2` against :math:`-l` (toward the input).

  On the layers where :math:`q^l` has settled at :math:`q^*` the signal falls
  or grows by :math:`\chi_1` per layer, so the slope estimates
  :math:`\ln \chi_1`.

  Args:
    log_g2: ``(..., L)`` log squared signals, input layer first.
    burn_in: layers skipped at the input; the fit uses layers
      ``burn_in .. L-2`` (the last layer, fed the raw output gradient, is left out).

  Returns:
    ``(...)`` slopes; NaN where a value is not finite.
  """
  y = log_g2[..., burn_in:-1]
  x = -np.arange(y.shape[-1], dtype=float)
  x = x - x.mean()
  with np.errstate(all="ignore"):
    return np.sum((y - y.mean(-1, keepdims=True)) * x, axis=-1) / np.sum(x**2)


def predict(activation: str, sigma_w2, sigma_b2: float, depth: int) -> dict[str, np.ndarray]:
  r"""Mean-field :math:`\chi_1` and length-map iterates :math:`q^1..q^L` per :math:`\sigma_w^2` (float64).

  The inputs of :func:`measure` have :math:`\|x\|^2/N = 1`, so
  :math:`q^1 = \sigma_w^2 + \sigma_b^2`.

  Returns:
    ``chi1`` ``(grid,)`` and ``q`` ``(grid, depth)``.
  """
  with jax.enable_x64(True):
    grid = jnp.asarray(sigma_w2, jnp.float64)
    chi = jax.vmap(lambda s: theory.chi1(activation, s, sigma_b2))(grid)
    q1 = grid + sigma_b2
    qs = jax.vmap(lambda s, q: theory.length_map_iterates(activation, q, s, sigma_b2, depth))(
        grid, q1)
    return {"chi1": np.asarray(chi), "q": np.asarray(qs)}


def compare(measured: dict[str, np.ndarray], predicted: dict[str, np.ndarray],
            burn_in: int) -> dict[str, np.ndarray]:
  r"""The measured :math:`\chi_1 = \exp(\mathrm{median}_s\,\mathrm{slope}_s)` against the predicted one.

  Args:
    measured: :func:`measure`'s output.
    predicted: :func:`predict`'s output for the same grid.
    burn_in: as in :func:`fit_slope`.

  Returns:
    ``chi1_theory``, ``log_chi1_measured_per_seed`` (grid, seeds),
    ``chi1_measured_median``, ``chi1_rel_error``
    :math:`|\chi_1^{meas} - \chi_1| / \chi_1`, ``q_theory``,
    ``q_measured_per_seed`` and ``log_grad_sq_per_seed``.
  """
  slope = fit_slope(measured["log_grad_sq"], burn_in)  # (grid, seeds)
  chi_measured = np.exp(np.median(slope, axis=1))
  with np.errstate(all="ignore"):
    rel_error = np.abs(chi_measured - predicted["chi1"]) / predicted["chi1"]
  return {"chi1_theory": predicted["chi1"], "log_chi1_measured_per_seed": slope,
          "chi1_measured_median": chi_measured, "chi1_rel_error": rel_error,
          "q_theory": predicted["q"], "q_measured_per_seed": measured["q"],
          "log_grad_sq_per_seed": measured["log_grad_sq"]}
