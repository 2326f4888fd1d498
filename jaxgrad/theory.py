r"""Mean-field theory of signal propagation in deep random networks.

Weights :math:`W_{ij} \sim \mathcal N(0, \sigma_w^2/N)` (or scaled orthogonal
with gain :math:`\sigma_w`), biases :math:`b_i \sim \mathcal N(0, \sigma_b^2)`,
pre-activations :math:`h^l = W^l \phi(h^{l-1}) + b^l`. With
:math:`z, z_1, z_2 \sim \mathcal N(0, 1)` independent (Poole et al. 2016;
Schoenholz et al. 2017):

.. math::

   q^{l} = \sigma_w^2\, \mathbb E[\phi(\sqrt{q^{l-1}} z)^2] + \sigma_b^2
   \quad\text{(length map, fixed point } q^*\text{)},

   \chi_1 = \sigma_w^2\, \mathbb E[\phi'(\sqrt{q^*} z)^2],
   \qquad \xi_\nabla = -1/\ln \chi_1 ,

   c^{l} = \frac{\sigma_w^2\, \mathbb E[\phi(u_1)\phi(u_2)] + \sigma_b^2}{q^*},
   \quad u_1 = \sqrt{q^*} z_1,\ u_2 = \sqrt{q^*}(c^{l-1} z_1 + \sqrt{1 - (c^{l-1})^2} z_2)
   \quad\text{(correlation map, fixed point } c^*\text{)},

   \chi_c = \sigma_w^2\, \mathbb E[\phi'(u_1)\phi'(u_2)]\big|_{c = c^*},
   \qquad \xi_c = -1/\ln \chi_c .

In the ordered phase (:math:`\chi_1 < 1`) :math:`c^* = 1` and
:math:`\chi_c = \chi_1`; in the chaotic phase :math:`c^* < 1`. Schoenholz et
al. find networks trainable iff :math:`L \lesssim 6 \xi_c`. The critical line
:math:`\chi_1 = 1`, parametrised by :math:`q^*`, is
:math:`\sigma_w^2 = 1/\mathbb E[\phi'(\sqrt{q^*} z)^2]`,
:math:`\sigma_b^2 = q^* - \sigma_w^2 \mathbb E[\phi(\sqrt{q^*} z)^2]`.

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
ReLU Gaussian 2L, ReLU orthogonal L. For a product of L square Gaussian
matrices with :math:`\sigma_w^2 = 1` every moment is known: the k-th moment of
the eigenvalues of :math:`JJ^\top` is the Fuss-Catalan number
:math:`\frac{1}{Lk+1}\binom{(L+1)k}{k}`.

Quadrature. Expectations over one Gaussian use the trapezoid rule on a
uniform grid over :math:`z \in [-12, 12]` (12,000 nodes); over two, a
301 x 301 grid over :math:`[-8, 8]^2`. For the Gaussian-weighted analytic
integrands here the trapezoid rule converges exponentially and, unlike
Gauss-Hermite, does not degrade with :math:`q`: against the closed form
:math:`\mathbb E[\mathrm{erf}(u_1)\mathrm{erf}(u_2)] =
\tfrac{2}{\pi}\arcsin\frac{2qc}{1+2q}`, a 100 x 100 trapezoid grid is exact to
1e-15 for every :math:`q \le 10`, while Gauss-Hermite with 64 x 64 nodes errs
by 6e-16 at q = 1, 4e-8 at q = 3, 4e-4 at q = 10 (c = 0.9), and tanh behaves
alike (1-D, q = 3: 2e-5 with 64 nodes). At the kinks of ReLU and hard-tanh
Gauss-Hermite converges only algebraically (2-D ReLU, 128^2 nodes: 5e-4) and
the trapezoid rule like :math:`h^2` (301^2 nodes: 2e-5). Gauss-Hermite
(``method="gauss_hermite"``, :data:`GH_NODES` per axis) is the cheaper choice
only for smooth activations at small :math:`q` (error < 1e-15 at q <= 0.1 with
32 nodes). Every function is jit-able and differentiable in its numeric
arguments (fixed points by implicit differentiation); ``activation`` and
``method`` are static.
"""

from collections.abc import Callable, Sequence
import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from jaxgrad import _checks, activations

WEIGHTS = ("gaussian", "orthogonal")
METHODS = ("trapezoid", "gauss_hermite")
GH_NODES = 64
_S1 = {"gaussian": -1.0, "orthogonal": 0.0}
_Z_MAX, _Z_POINTS = 12.0, 12_000  # even: no node at the kink z = 0
_Z2_MAX, _Z2_POINTS = 8.0, 301
_FIXED_POINT_ITERATIONS = 2_000
_FIXED_POINT_RTOL = 1e-13
_STATIC = ("activation", "method", "depth", "weights")


# E[phi(z)^2] = E[phi'(z)^2] of the positively homogeneous activations,
# phi(a x) = a phi(x) for a > 0, whose length map is affine in q.
HOMOGENEOUS = {
    "relu": 0.5,
    "leaky_relu": 0.5 * (1.0 + activations.LEAKY_RELU_SLOPE**2),
    "linear": 1.0,
}

# The variances the formulas take: (lowest allowed, whether the bound itself is allowed).
_RANGES = {"sigma_w2": (0.0, False), "sigma_b2": (0.0, True), "q0": (0.0, False)}


def _check_ranges(signature: inspect.Signature, args: tuple, kwargs: dict) -> None:
  """Raises for a concrete variance that is negative, zero where it must not be, or not finite."""
  bound = signature.bind(*args, **kwargs)
  for name, (low, inclusive) in _RANGES.items():
    value = bound.arguments.get(name)
    if value is None or isinstance(value, jax.core.Tracer):
      continue
    _checks.require_real(name, value)
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v) & ((v >= low) if inclusive else (v > low))):
      allowed = f">= {low:g}" if inclusive else f"> {low:g}"
      raise ValueError(f"{name} must be finite and {allowed}, got {value!r}")


def _jit(fn: Callable) -> Callable:
  """Compiled once per activation (and quadrature method, depth, weights); variances checked first."""
  signature = inspect.signature(fn)
  jitted = jax.jit(fn, static_argnames=[a for a in _STATIC if a in signature.parameters])

  @functools.wraps(fn)
  def checked(*args, **kwargs):
    _check_ranges(signature, args, kwargs)
    return jitted(*args, **kwargs)

  return checked


@functools.cache
def _nodes(method: str, dims: int) -> tuple[np.ndarray, np.ndarray]:
  """Nodes z and weights w (summing to 1) of E_{z ~ N(0,1)} for one axis."""
  if method not in METHODS:
    raise ValueError(f"unknown quadrature method {method!r}; valid choices: {METHODS}")
  if method == "gauss_hermite":
    z, w = np.polynomial.hermite_e.hermegauss(GH_NODES)
  else:
    z_max, n = (_Z_MAX, _Z_POINTS) if dims == 1 else (_Z2_MAX, _Z2_POINTS)
    z = np.linspace(-z_max, z_max, n)
    w = np.exp(-0.5 * z**2)
    w[[0, -1]] *= 0.5
  return z, w / w.sum()


def gaussian_expectation(
    f: Callable[[jax.Array], jax.Array], q: jax.Array, *, method: str = "trapezoid"
) -> jax.Array:
  r""":math:`\mathbb E_{z \sim \mathcal N(0,1)}[f(\sqrt{q}\, z)]`, broadcast over ``q``.

  Args:
    f: elementwise function.
    q: variance(s), any shape.
    method: ``"trapezoid"`` (default, see the module docstring) or
      ``"gauss_hermite"`` (:data:`GH_NODES` nodes).
  """
  z, w = _nodes(method, 1)
  q = jnp.asarray(q)
  z = jnp.asarray(z, dtype=jnp.result_type(q, float)).reshape((1,) * q.ndim + z.shape)
  u = jnp.sqrt(q)[..., None] * z
  return jnp.sum(f(u) * w.reshape(z.shape), axis=-1)


def gaussian_expectation_2d(
    f: Callable[[jax.Array, jax.Array], jax.Array], q: jax.Array, c: jax.Array, *,
    method: str = "trapezoid",
) -> jax.Array:
  r""":math:`\mathbb E[f(u_1, u_2)]` for :math:`(u_1, u_2) \sim \mathcal N(0, q\,[[1, c], [c, 1]])`.

  With :math:`u_1 = \sqrt q z_1`, :math:`u_2 = \sqrt q (c z_1 + \sqrt{1-c^2} z_2)`
  on a tensor-product grid. ``q`` and ``c`` are scalars (``vmap`` for more).
  """
  z, w = _nodes(method, 2)
  dtype = jnp.result_type(q, c, float)
  z1, z2 = (jnp.asarray(a, dtype) for a in np.meshgrid(z, z, indexing="ij"))
  q, c = jnp.asarray(q, dtype), jnp.asarray(c, dtype)
  s = jnp.sqrt(jnp.maximum(1.0 - c**2, 0.0))
  u1 = jnp.sqrt(q) * z1
  u2 = jnp.sqrt(q) * (c * z1 + s * z2)
  return jnp.sum(f(u1, u2) * np.outer(w, w))


def _check_weights(weights: str) -> None:
  if weights not in WEIGHTS:
    raise ValueError(f"unknown weights {weights!r}; valid choices: {WEIGHTS}")


# ----------------------------------------------------------------- fixed points


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fixed_point(step: Callable, x0: jax.Array, theta: tuple) -> jax.Array:
  """Iterates the scalar map ``x <- step(x, theta)`` to convergence (or a cap).

  Differentiated implicitly: at :math:`x^* = f(x^*, \\theta)`,
  :math:`dx^*/d\\theta = (1 - \\partial_x f)^{-1} \\partial_\\theta f`.
  """

  def cond(state):
    i, x, previous = state
    moved = jnp.abs(x - previous) > _FIXED_POINT_RTOL * jnp.abs(x)
    return (i < _FIXED_POINT_ITERATIONS) & moved

  def body(state):
    i, x, _ = state
    return i + 1, step(x, theta), x

  x0 = jnp.asarray(x0, jnp.result_type(x0, *theta, float))
  return jax.lax.while_loop(cond, body, (0, step(x0, theta), x0))[1]


def _fixed_point_fwd(step, x0, theta):
  x = _fixed_point(step, x0, theta)
  return x, (x0, x, theta)


def _fixed_point_bwd(step, residuals, g):
  x0, x, theta = residuals
  dfdx = jax.grad(step)(x, theta)
  _, vjp = jax.vjp(lambda t: step(x, t), theta)
  (dtheta,) = vjp(g / (1.0 - dfdx))
  return jnp.zeros_like(x0), dtheta


_fixed_point.defvjp(_fixed_point_fwd, _fixed_point_bwd)


# ------------------------------------------------------------------ length map


def length_map(activation: str, q: jax.Array, sigma_w2: float, sigma_b2: float) -> jax.Array:
  r"""One step of the length map, :math:`\sigma_w^2 \mathbb E[\phi(\sqrt q z)^2] + \sigma_b^2`."""
  phi = activations.get(activation)
  return sigma_w2 * gaussian_expectation(lambda u: phi(u) ** 2, q) + sigma_b2


@_jit
def length_map_iterates(
    activation: str, q1: jax.Array, sigma_w2: float, sigma_b2: float, depth: int
) -> jax.Array:
  r""":math:`(q^1, \dots, q^{L})` starting from the first layer's :math:`q^1`."""

  def step(q, _):
    return length_map(activation, q, sigma_w2, sigma_b2), q

  _, qs = jax.lax.scan(step, jnp.asarray(q1, dtype=float), None, length=depth)
  return qs


def _length_step(activation: str, q: jax.Array, theta: tuple) -> jax.Array:
  return length_map(activation, q, *theta)


@_jit
def q_star(activation: str, sigma_w2: float, sigma_b2: float, q0: float = 1.0) -> jax.Array:
  r"""Fixed point :math:`q^*` of the length map, iterated from ``q0``.

  For the positively homogeneous activations (:data:`HOMOGENEOUS`: ReLU,
  leaky ReLU, linear) the length map is affine, :math:`q \mapsto s q +
  \sigma_b^2` with :math:`s = \sigma_w^2 \mathbb E[\phi(z)^2]`, and the
  answer is exact: :math:`\sigma_b^2/(1 - s)` for :math:`s < 1` (0 in the
  ordered limit :math:`\sigma_b = 0`); ``inf`` where :math:`q^l` grows
  without bound (:math:`s > 1`, or :math:`s = 1` with :math:`\sigma_b > 0`);
  ``q0`` itself at :math:`s = 1`, :math:`\sigma_b = 0`, where every length is
  a fixed point. Otherwise the map is iterated. Where the fixed point is 0
  (e.g. tanh at :math:`\sigma_b = 0`, :math:`\sigma_w^2 \le 1`) the
  iteration approaches it geometrically below criticality and like 1/l at
  :math:`\sigma_w^2 = 1`; the returned value (after 2,000 steps) is then 0
  or small, and its derivative meaningless.

  >>> round(float(q_star("tanh", 1.761, 0.05)), 2)
  0.57
  >>> [float(q_star("relu", s, 0.0)) for s in (1.5, 2.0, 2.01)]
  [0.0, 1.0, inf]
  """
  activations.get(activation)
  theta = (jnp.asarray(sigma_w2, float), jnp.asarray(sigma_b2, float))
  if activation in HOMOGENEOUS:
    return _affine_fixed_point(theta[0] * HOMOGENEOUS[activation], theta[1],
                               jnp.asarray(q0, theta[0].dtype))
  return _fixed_point(functools.partial(_length_step, activation), q0, theta)


def _affine_fixed_point(slope: jax.Array, offset: jax.Array, q0: jax.Array) -> jax.Array:
  r"""Where :math:`q \mapsto` ``slope`` q + ``offset`` (offset >= 0) leads from ``q0 > 0``."""
  converging = offset / jnp.where(slope < 1, 1.0 - slope, 1.0)
  marginal = jnp.where(offset > 0, jnp.inf, q0)
  return jnp.where(slope < 1, converging, jnp.where(slope > 1, jnp.inf, marginal))


def derivative_moment(activation: str, q: jax.Array, k: int = 1) -> jax.Array:
  r""":math:`\mu_k(q) = \mathbb E[\phi'(\sqrt q z)^{2k}]`; at :math:`q = 0` its limit :math:`q \to 0^+`.

  The limit is :math:`(\phi'(0^-)^{2k} + \phi'(0^+)^{2k})/2` (half of
  :math:`z` is positive): 1/2 for ReLU, whose derivative at exactly 0 JAX
  takes as 0, and :math:`\phi'(0)^{2k}` where :math:`\phi'` is continuous.

  >>> [float(derivative_moment("relu", q)) for q in (0.0, 1.0)]
  [0.5, 0.5]
  """
  dphi = activations.derivative(activation)
  q = jnp.asarray(q, jnp.result_type(q, float))
  tiny = jnp.finfo(q.dtype).tiny
  limit = 0.5 * (dphi(-tiny) ** (2 * k) + dphi(tiny) ** (2 * k))
  positive = q > 0
  moment = gaussian_expectation(lambda u: dphi(u) ** (2 * k), jnp.where(positive, q, 1.0))
  return jnp.where(positive, moment, limit)


def weight_variance(kernel: jax.Array) -> jax.Array:
  r"""The :math:`\sigma_w^2` of a drawn kernel: :math:`\mathrm{fan\_in}\cdot\overline{W^2}`.

  For a ``(..., fan_in, fan_out)`` kernel (Flax's Dense and Conv layout; every
  axis but the last feeds one output), the weight variance that this module's
  formulas take, :math:`W_{ij} \sim N(0, \sigma_w^2/\mathrm{fan\_in})`.

  >>> round(float(weight_variance(jnp.full((4, 3), 0.5))), 6)
  1.0
  """
  return jnp.mean(jnp.asarray(kernel, jnp.float32) ** 2) * np.prod(kernel.shape[:-1])


@_jit
def chi1(activation: str, sigma_w2: float, sigma_b2: float) -> jax.Array:
  r""":math:`\chi_1 = \sigma_w^2 \mu_1(q^*)`: the per-layer factor of the squared backprop signal.

  For the positively homogeneous activations :math:`\mu_1` does not depend
  on :math:`q`, so :math:`\chi_1 = \sigma_w^2 \mathbb E[\phi(z)^2]` exactly
  (ReLU: :math:`\sigma_w^2/2`), also where :math:`q^*` is 0 or diverges.

  >>> round(float(chi1("tanh", 1.0, 0.05)), 3)
  0.759
  """
  if activation in HOMOGENEOUS:  # mu_1 is E[phi(z)^2] at every q, 0 and inf included
    return jnp.asarray(sigma_w2, float) * HOMOGENEOUS[activation]
  return sigma_w2 * derivative_moment(activation, q_star(activation, sigma_w2, sigma_b2))


# ------------------------------------------------------------- correlation map


def correlation_map(
    activation: str, c: jax.Array, q: jax.Array, sigma_w2: float, sigma_b2: float, *,
    method: str = "trapezoid",
) -> jax.Array:
  r"""One step of the correlation map at fixed length :math:`q` (module docstring)."""
  phi = activations.get(activation)
  cov = gaussian_expectation_2d(lambda a, b: phi(a) * phi(b), q, c, method=method)
  return (sigma_w2 * cov + sigma_b2) / q


def _correlation_step(activation, method, c, theta):
  q, sigma_w2, sigma_b2 = theta
  return correlation_map(activation, c, q, sigma_w2, sigma_b2, method=method)


@_jit
def c_star(
    activation: str, sigma_w2: float, sigma_b2: float, *, method: str = "trapezoid"
) -> jax.Array:
  r"""Fixed point :math:`c^*` of the correlation map.

  1 in the ordered phase (:math:`\chi_1 \le 1`, where :math:`c = 1` is the
  stable fixed point); otherwise the correlation map iterated from
  :math:`c = 0` (for odd :math:`\phi` at :math:`\sigma_b = 0`, :math:`c^* = 0`).
  1 for the positively homogeneous activations in both phases: their
  correlation map, normalised by the next layer's length, does not depend
  on :math:`q` where :math:`q^*` diverges, and its fixed point is 1 (ReLU's
  arc-cosine map, Cho & Saul 2009; reached like :math:`1/l^2`).

  >>> round(float(c_star("tanh", 2.0, 0.05)), 3)
  0.744
  """
  if activation in HOMOGENEOUS:
    return jnp.ones_like(chi1(activation, sigma_w2, sigma_b2))
  q = q_star(activation, sigma_w2, sigma_b2)
  ordered = chi1(activation, sigma_w2, sigma_b2) <= 1.0
  theta = (q, jnp.asarray(sigma_w2, float), jnp.asarray(sigma_b2, float))
  step = functools.partial(_correlation_step, activation, method)
  # Start at the answer when ordered: also fast under vmap, where cond runs both branches.
  c = _fixed_point(step, jnp.where(ordered, 1.0, 0.0).astype(q.dtype), theta)
  return jnp.where(ordered, jnp.ones_like(c), c)


@_jit
def chi_c(
    activation: str, sigma_w2: float, sigma_b2: float, *, method: str = "trapezoid"
) -> jax.Array:
  r""":math:`\chi_c = \sigma_w^2 \mathbb E[\phi'(u_1)\phi'(u_2)]` at :math:`c^*`; :math:`\chi_1` when ordered."""
  if activation in HOMOGENEOUS:  # c* = 1, where E[phi'(u1) phi'(u2)] is mu_1
    return chi1(activation, sigma_w2, sigma_b2)
  q = q_star(activation, sigma_w2, sigma_b2)
  c = c_star(activation, sigma_w2, sigma_b2, method=method)
  dphi = activations.derivative(activation)
  chi = chi1(activation, sigma_w2, sigma_b2)
  return jax.lax.cond(
      chi <= 1.0, lambda: chi,
      lambda: sigma_w2 * gaussian_expectation_2d(lambda a, b: dphi(a) * dphi(b), q, c,
                                                 method=method))


@_jit
def depth_scale(activation: str, sigma_w2: float, sigma_b2: float) -> jax.Array:
  r""":math:`\xi_\nabla = -1/\ln\chi_1` (``inf`` at criticality, negative when chaotic)."""
  return _depth(chi1(activation, sigma_w2, sigma_b2))


def _depth(chi: jax.Array) -> jax.Array:
  r""":math:`-1/\ln\chi`, and ``+inf`` (not ``-inf``, from :math:`\ln 1 = +0`) at :math:`\chi = 1`."""
  return jnp.where(chi == 1.0, jnp.inf, -1.0 / jnp.log(chi))


@_jit
def depth_scales(
    activation: str, sigma_w2: float, sigma_b2: float, *, method: str = "trapezoid"
) -> dict[str, jax.Array]:
  r"""Both depth scales: ``{"xi_grad": -1/ln chi_1, "xi_c": -1/ln chi_c}``.

  :math:`\xi_\nabla` is signed (negative: gradients grow toward the input);
  :math:`\xi_c > 0` everywhere off the critical line, where it diverges.

  >>> round(float(6 * depth_scales("tanh", 1.0, 0.05)["xi_c"]), 1)
  21.8
  """
  return {"xi_grad": depth_scale(activation, sigma_w2, sigma_b2),
          "xi_c": _depth(chi_c(activation, sigma_w2, sigma_b2, method=method))}


# -------------------------------------------------------------- critical line


@_jit
def critical_line(activation: str, q_star: jax.Array) -> tuple[jax.Array, jax.Array]:
  r"""The :math:`(\sigma_w^2, \sigma_b^2)` whose length map has fixed point ``q_star`` and :math:`\chi_1 = 1`.

  :math:`\sigma_w^2 = 1/\mu_1(q^*)`, :math:`\sigma_b^2 = q^* - \sigma_w^2
  \mathbb E[\phi(\sqrt{q^*} z)^2]`; broadcast over ``q_star``. A negative
  :math:`\sigma_b^2` means no such point exists (e.g. ReLU: only
  :math:`(2, 0)`, for every :math:`q^*`).

  At small :math:`q^*` the difference cancels: in float32 tanh's
  :math:`\sigma_b^2` at :math:`q^* = 0.01` is off by 0.1 % (1.2594e-6 against
  1.2580e-6). Solve under ``jax.enable_x64(True)`` when one network must be
  built the same way in two precisions.

  >>> [round(float(v), 3) for v in critical_line("tanh", 1.0)]
  [2.153, 0.151]
  """
  phi = activations.get(activation)
  sigma_w2 = 1.0 / derivative_moment(activation, q_star)
  sigma_b2 = q_star - sigma_w2 * gaussian_expectation(lambda u: phi(u) ** 2, q_star)
  return sigma_w2, sigma_b2


@_jit
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


# ---------------------------------------------------------- Jacobian spectrum


@_jit
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


def fuss_catalan_moments(depth: int, k_max: int) -> np.ndarray:
  r"""Moments :math:`m_k = \frac{1}{Lk+1}\binom{(L+1)k}{k}`, k = 1..k_max, of :math:`JJ^\top`.

  For :math:`J` a product of ``depth`` = L independent square Gaussian
  matrices with entries :math:`\mathcal N(0, 1/N)`, :math:`N \to \infty`
  (the Fuss-Catalan distribution; L = 1 is Marchenko-Pastur). Its support is
  :math:`[0, (L+1)^{L+1}/L^L]` (see :func:`fuss_catalan_edge`).

  >>> fuss_catalan_moments(2, 3).tolist()
  [1.0, 3.0, 12.0]
  """
  if depth < 1 or k_max < 1:
    raise ValueError(f"depth and k_max must be >= 1, got {depth}, {k_max}")
  return np.array([math.comb((depth + 1) * k, k) / (depth * k + 1)
                   for k in range(1, k_max + 1)])


def fuss_catalan_edge(depth: int) -> float:
  r"""Upper edge :math:`(L+1)^{L+1}/L^L` of the Fuss-Catalan support (about :math:`eL`)."""
  return (depth + 1) ** (depth + 1) / depth**depth


def relu_log_norm_moments(widths: Sequence[int]) -> dict[str, float]:
  r"""Exact mean and variance of :math:`\ln\|J u\|^2` for a He-initialised ReLU network.

  Layers :math:`h_l = \mathrm{relu}(W_l h_{l-1})`, :math:`W_l` of shape
  :math:`N_l \times N_{l-1}` with entries :math:`\mathcal N(0, 2/N_{l-1})`, no
  biases; ``widths`` = :math:`(N_0, \dots, N_L)`; :math:`u` a unit vector.
  Derivation: ReLU is homogeneous, so :math:`J u` goes through the same
  masks as :math:`h`, and one layer multiplies :math:`\|u\|^2` by
  :math:`X_l = \frac{2}{N_{l-1}} \sum_i B_i g_i^2` with :math:`g_i = \sqrt{N_{l-1}/2}\,
  (W_l \hat u)_i \sim \mathcal N(0, 1)` and the mask :math:`B_i =
  1[(W_l h)_i > 0]`. The flip :math:`W_l \to -W_l` keeps :math:`g_i^2` and
  swaps :math:`B_i`, so :math:`B_i` is a fair coin independent of
  :math:`g_i^2` whatever the angle between :math:`u` and :math:`h`:
  :math:`X_l = \frac{2}{N_{l-1}} \chi^2_{K_l}`, :math:`K_l \sim
  \mathrm{Bin}(N_l, 1/2)`, independent across layers (the law does not depend
  on the past). With :math:`\mathbb E \ln\chi^2_k = \psi(k/2) + \ln 2` and
  :math:`\mathrm{Var} \ln\chi^2_k = \psi_1(k/2)`,

  .. math::

     \mathbb E \ln\|Ju\|^2 = \sum_l \Big[\ln\frac{4}{N_{l-1}} + \mathbb E_K\, \psi(K_l/2)\Big],
     \qquad
     \mathrm{Var} \ln\|Ju\|^2 = \sum_l \Big[\mathbb E_K\, \psi_1(K_l/2)
       + \mathrm{Var}_K\, \psi(K_l/2)\Big],

  conditioned on every :math:`K_l \ge 1` (a layer of dead units, probability
  :math:`2^{-N_l}`, sends the norm to 0). For large widths the terms are
  :math:`4/N_l + 1/N_l`, so the variance is :math:`5\beta` and the mean
  :math:`-\tfrac52\beta` with :math:`\beta = \sum_{l \ge 1} 1/N_l` (Hanin &
  Nica 2019, with equal widths :math:`\beta = L/N`).

  Args:
    widths: :math:`(N_0, \dots, N_L)`, at least two, each >= 1.

  Returns:
    ``{"mean", "var"}`` (exact, as above), ``"beta"``, and the large-width
    ``"mean_5beta"`` = :math:`-5\beta/2` and ``"var_5beta"`` = :math:`5\beta`.
  """
  widths = [int(n) for n in widths]
  if len(widths) < 2 or min(widths) < 1:
    raise ValueError(f"widths must be at least two integers >= 1, got {widths}")
  mean = var = 0.0
  for n_in, n_out in zip(widths[:-1], widths[1:]):
    k = np.arange(1, n_out + 1)
    # Binomial(n_out, 1/2) at k, in logs (the binomial coefficient overflows at n_out ~ 1000).
    log_comb = (scipy.special.gammaln(n_out + 1) - scipy.special.gammaln(k + 1)
                - scipy.special.gammaln(n_out - k + 1))
    p = np.exp(log_comb - n_out * math.log(2.0))
    p /= p.sum()
    digamma, trigamma = scipy.special.digamma(k / 2), scipy.special.polygamma(1, k / 2)
    mean += math.log(4.0 / n_in) + float(p @ digamma)
    var += float(p @ trigamma) + float(p @ digamma**2 - (p @ digamma) ** 2)
  beta = sum(1.0 / n for n in widths[1:])
  return {"mean": mean, "var": var, "beta": beta, "mean_5beta": -2.5 * beta,
          "var_5beta": 5.0 * beta}


def residual_signal(activation: str, sigma1_w2: float, sigma2_w2: float, q0: float,
                    num_blocks: int, norm: str | None = None) -> dict[str, np.ndarray]:
  r"""Mean-field signal propagation through residual blocks :math:`x_{l+1} = x_l + F_l(x_l)`.

  The branch is :math:`F(x) = W_2\, \phi(\mathrm{norm}(W_1 x))` with zero
  biases (:class:`jaxgrad.models.ResidualBlock`). The cross term of
  :math:`\|(I + \partial F/\partial x)^\top g\|^2` has mean zero, so the
  squared backprop signal grows by :math:`1 + \chi_F(q_l)` per block, and the
  stream's second moment by the branch's.

  Args:
    activation: the branch's activation.
    sigma1_w2, sigma2_w2: :math:`\sigma^2` of :math:`W_1` and :math:`W_2`
      (entries :math:`\mathcal N(0, \sigma^2/N)`; 2 for He, 1 for Xavier at
      equal fan-in and fan-out).
    q0: second moment per unit of the stream entering the first block.
    num_blocks: ``B``.
    norm: ``None`` or ``"layer"`` (LayerNorm after :math:`W_1`, unit scale).

  Returns:
    ``q``: the stream's second moment :math:`q_l` entering block ``l``
    (length ``B + 1``, the last one leaving the stack); ``chi``: the
    per-block factor :math:`1 + \chi_F(q_l)` of the squared backprop signal
    (length ``B``); ``signal_sq``: :math:`\|\partial L/\partial x_l\|^2 /
    \|\partial L/\partial x_B\|^2 = \prod_{k \ge l} (1 + \chi_F(q_k))`
    (length ``B + 1``, ending in 1). Without norm
    :math:`\chi_F = \sigma_1^2\sigma_2^2 \mu_1(\sigma_1^2 q)` and
    :math:`q_{l+1} = q_l + \sigma_2^2 \mathbb E\phi(\sqrt{\sigma_1^2 q_l} z)^2`;
    with LayerNorm the branch's pre-activation has unit variance, so
    :math:`\chi_F = \sigma_2^2 \mu_1(1) / q_l` and
    :math:`q_{l+1} = q_l + \sigma_2^2 \mathbb E\phi(z)^2`.

  Raises:
    ValueError: for ``norm`` other than ``None`` / ``"layer"``.
  """
  if norm not in (None, "layer"):
    raise ValueError(f"residual_signal supports norm None or 'layer', got {norm!r}")
  phi = activations.get(activation)
  q = [float(q0)]
  growth = []
  for _ in range(num_blocks):
    pre = 1.0 if norm == "layer" else sigma1_w2 * q[-1]
    mu1 = float(derivative_moment(activation, pre))
    branch_sq = sigma2_w2 * float(gaussian_expectation(lambda u: phi(u) ** 2, pre))
    chi_f = sigma2_w2 * mu1 / q[-1] if norm == "layer" else sigma1_w2 * sigma2_w2 * mu1
    growth.append(1.0 + chi_f)
    q.append(q[-1] + branch_sq)
  growth = np.asarray(growth)
  signal_sq = np.append(np.cumprod(growth[::-1])[::-1], 1.0)
  return {"q": np.asarray(q), "chi": growth, "signal_sq": signal_sq}
