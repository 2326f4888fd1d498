r"""Mean-field theory of signal propagation in deep random networks.

Weights :math:`W_{ij} \sim \mathcal N(0, \sigma_w^2/N)` (or scaled orthogonal
with gain :math:`\sigma_w`), biases :math:`b_i \sim \mathcal N(0, \sigma_b^2)`,
pre-activations :math:`h^l = W^l \phi(h^{l-1}) + b^l`. With
:math:`z \sim \mathcal N(0, 1)` (Poole et al. 2016; Schoenholz et al. 2017):

.. math::

   q^{l} = \sigma_w^2\, \mathbb E[\phi(\sqrt{q^{l-1}} z)^2] + \sigma_b^2
   \quad\text{(length map, fixed point } q^*\text{)},

   \chi_1 = \sigma_w^2\, \mathbb E[\phi'(\sqrt{q^*} z)^2],
   \qquad \xi_\nabla = -1/\ln \chi_1 .

For the input-output Jacobian :math:`J = \prod_l D^l W^l`,
:math:`D^l = \mathrm{diag}\,\phi'(h^l)`, free probability gives the mean and
variance of the eigenvalues of :math:`JJ^\top` (Pennington, Schoenholz &
Ganguli 2017, 2018): with :math:`\mu_k(q) = \mathbb E[\phi'(\sqrt q z)^{2k}]`,
the mean multiplies and the normalised variance adds over layers,

.. math::

   m_1(L) = \prod_{l=1}^{L} \sigma_w^2 \mu_1(q^l), \qquad
   \frac{\sigma^2_{JJ^\top}(L)}{m_1(L)^2} =
   \sum_{l=1}^{L} \Big(\frac{\mu_2(q^l)}{\mu_1(q^l)^2} - 1 - s_1\Big),

with :math:`s_1 = -1` for Gaussian and :math:`s_1 = 0` for orthogonal weights.
At criticality (:math:`q^l = q^*`, :math:`\chi_1 = 1`) this is the published
:math:`L(\mu_2/\mu_1^2 - 1 - s_1)`: linear Gaussian L, linear orthogonal 0,
ReLU Gaussian 2L, ReLU orthogonal L.

Gaussian expectations use the trapezoid rule on a uniform grid over
:math:`z \in [-12, 12]`: spectrally accurate for smooth integrands, and
accurate to ~1e-4 for the kinks of ReLU and hard-tanh, where Gauss-Hermite
nodes converge only like 1/sqrt(n). Every function is jit-able and
differentiable in its numeric arguments; ``activation`` is static.
"""

from collections.abc import Callable
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import activations

WEIGHTS = ("gaussian", "orthogonal")
_S1 = {"gaussian": -1.0, "orthogonal": 0.0}
_Z_MAX, _Z_POINTS = 12.0, 12_000  # even: no node at the kink z = 0
_FIXED_POINT_ITERATIONS = 2_000


@functools.cache
def _grid() -> tuple[np.ndarray, np.ndarray]:
  z = np.linspace(-_Z_MAX, _Z_MAX, _Z_POINTS)
  w = np.exp(-0.5 * z**2)
  w[[0, -1]] *= 0.5
  return z, w / w.sum()


def gaussian_expectation(f: Callable[[jax.Array], jax.Array], q: jax.Array) -> jax.Array:
  r""":math:`\mathbb E_{z \sim \mathcal N(0,1)}[f(\sqrt{q}\, z)]`, broadcast over ``q``."""
  z, w = _grid()
  q = jnp.asarray(q)
  z = jnp.asarray(z, dtype=jnp.result_type(q, float)).reshape((1,) * q.ndim + z.shape)
  u = jnp.sqrt(q)[..., None] * z
  return jnp.sum(f(u) * w.reshape(z.shape), axis=-1)


def _check_weights(weights: str) -> None:
  if weights not in WEIGHTS:
    raise ValueError(f"unknown weights {weights!r}; valid choices: {WEIGHTS}")


def length_map(activation: str, q: jax.Array, sigma_w2: float, sigma_b2: float) -> jax.Array:
  r"""One step of the length map, :math:`\sigma_w^2 \mathbb E[\phi(\sqrt q z)^2] + \sigma_b^2`."""
  phi = activations.get(activation)
  return sigma_w2 * gaussian_expectation(lambda u: phi(u) ** 2, q) + sigma_b2


def length_map_iterates(
    activation: str, q1: jax.Array, sigma_w2: float, sigma_b2: float, depth: int
) -> jax.Array:
  r""":math:`(q^1, \dots, q^{L})` starting from the first layer's :math:`q^1`."""

  def step(q, _):
    return length_map(activation, q, sigma_w2, sigma_b2), q

  _, qs = jax.lax.scan(step, jnp.asarray(q1, dtype=float), None, length=depth)
  return qs


def q_star(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> jax.Array:
  r"""Fixed point :math:`q^*` of the length map, iterated from ``q0``.

  Where the fixed point is 0 (e.g. tanh at :math:`\sigma_b = 0`,
  :math:`\sigma_w^2 \le 1`) the iteration approaches it like 1/l; the
  returned value is then small but not 0.
  """
  return length_map_iterates(activation, q0, sigma_w2, sigma_b2, _FIXED_POINT_ITERATIONS)[-1]


def derivative_moment(activation: str, q: jax.Array, k: int = 1) -> jax.Array:
  r""":math:`\mu_k(q) = \mathbb E[\phi'(\sqrt q z)^{2k}]`."""
  dphi = activations.derivative(activation)
  return gaussian_expectation(lambda u: dphi(u) ** (2 * k), q)


def chi1(activation: str, sigma_w2: float, sigma_b2: float) -> jax.Array:
  r""":math:`\chi_1 = \sigma_w^2 \mu_1(q^*)`: the per-layer factor of the squared backprop signal."""
  return sigma_w2 * derivative_moment(activation, q_star(activation, sigma_w2, sigma_b2))


def depth_scale(activation: str, sigma_w2: float, sigma_b2: float) -> jax.Array:
  r""":math:`\xi_\nabla = -1/\ln\chi_1` (``inf`` at criticality, negative when chaotic)."""
  return -1.0 / jnp.log(chi1(activation, sigma_w2, sigma_b2))


def critical_sigma_w2(
    activation: str, sigma_b2: float, lo: float = 1e-2, hi: float = 1e4
) -> jax.Array:
  r"""The :math:`\sigma_w^2` at which :math:`\chi_1 = 1` for the given :math:`\sigma_b^2`.

  Bisection in :math:`\ln\sigma_w^2` over ``[lo, hi]`` (:math:`\chi_1` grows
  with :math:`\sigma_w^2` along the fixed point). Returns NaN when
  :math:`\chi_1 - 1` does not change sign on the interval: no critical point.
  For sigmoid at :math:`\sigma_b^2 = 0` it lies near 105, far from any
  standard initialisation.
  """

  def excess(log_s):
    return chi1(activation, jnp.exp(log_s), sigma_b2) - 1.0

  def halve(_, bounds):
    a, b = bounds
    m = 0.5 * (a + b)
    below = excess(m) < 0
    return jnp.where(below, m, a), jnp.where(below, b, m)

  a, b = jnp.log(lo), jnp.log(hi)
  bracketed = (excess(a) < 0) & (excess(b) > 0)
  a, b = jax.lax.fori_loop(0, 60, halve, (a, b))
  return jnp.where(bracketed, jnp.exp(0.5 * (a + b)), jnp.nan)


def jacobian_spectrum_moments(
    activation: str,
    sigma_w2: float,
    sigma_b2: float,
    q1: float,
    depth: int,
    weights: str = "gaussian",
) -> dict[str, jax.Array]:
  r"""Predicted mean and variance of the eigenvalues of :math:`JJ^\top` at depths 1..L.

  Args:
    activation: registered activation name.
    sigma_w2, sigma_b2: weight and bias variances (see module docstring).
    q1: the first layer's pre-activation variance; for an input ``x`` of width
      N, :math:`q^1 = \sigma_w^2 \|x\|^2/N + \sigma_b^2`.
    depth: number of layers L; every layer is ``phi(W h + b)``.
    weights: ``"gaussian"`` or ``"orthogonal"``.

  Returns:
    ``{"q": (L,), "mean_sq": (L,), "var_sq": (L,)}``, entry ``l-1`` for the
    network made of the first ``l`` layers.
  """
  _check_weights(weights)
  qs = length_map_iterates(activation, q1, sigma_w2, sigma_b2, depth)
  mu1 = derivative_moment(activation, qs, 1)
  mu2 = derivative_moment(activation, qs, 2)
  mean = jnp.cumprod(sigma_w2 * mu1)
  normalised_var = jnp.cumsum(mu2 / mu1**2 - 1.0 - _S1[weights])
  return {"q": qs, "mean_sq": mean, "var_sq": mean**2 * normalised_var}
