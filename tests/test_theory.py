"""Mean-field theory against the notes' published numbers, closed forms and Monte Carlo."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import activations, theory
from tests import _tol

# shared/notes/theory.md §1.1: tanh critical line, q* -> (sigma_w2, sigma_b2), as printed.
CRITICAL_LINE = {0.01: ("1.0197", "0.0000"), 0.1: ("1.1776", "0.00083"), 0.5: ("1.688", "0.038"),
                 1.0: ("2.153", "0.151"), 2.0: ("2.861", "0.512")}
# theory.md §1.1, tanh at sigma_b2 = 0.05: sigma_w2 -> (chi1, c*, 6 xi_c), as printed.
TABLE = {1.0: ("0.759", "1", "21.8"), 1.25: ("0.863", "1", "40.8"), 1.5: ("0.939", "1", "94.7"),
         2.0: ("1.048", "0.744", "151"), 2.5: ("1.134", "0.447", "70.8"),
         3.0: ("1.209", "0.299", "54.3"), 4.0: ("1.342", "0.165", "41.9")}
MC_SAMPLES = 200_000
MC_SIGMAS = 5.0  # |theory - Monte Carlo| below 5 standard errors


def assert_rounds_to(value, printed: str):
  """``value`` agrees with a published number to the precision it was printed with."""
  decimals = len(printed.split(".")[1]) if "." in printed else 0
  assert abs(float(value) - float(printed)) <= 0.5 * 10.0**-decimals + 1e-12, (value, printed)


@pytest.mark.parametrize("q", sorted(CRITICAL_LINE))
def test_tanh_critical_line_matches_the_notes(x64, q):
  sigma_w2, sigma_b2 = theory.critical_line("tanh", q)
  assert_rounds_to(sigma_w2, CRITICAL_LINE[q][0])
  assert_rounds_to(sigma_b2, CRITICAL_LINE[q][1])
  # The point is on the critical line: its fixed point is q and chi1 = 1.
  np.testing.assert_allclose(theory.q_star("tanh", sigma_w2, sigma_b2), q, rtol=1e-8)
  np.testing.assert_allclose(theory.chi1("tanh", sigma_w2, sigma_b2), 1.0, rtol=1e-8)


def test_tanh_sigma_b2_005_table(x64):
  for s, (chi, c, six_xi_c) in TABLE.items():
    assert_rounds_to(theory.chi1("tanh", s, 0.05), chi)
    assert_rounds_to(theory.c_star("tanh", s, 0.05), c)
    assert_rounds_to(6 * theory.depth_scales("tanh", s, 0.05)["xi_c"], six_xi_c)
  critical = theory.critical_sigma_w2("tanh", 0.05)
  assert_rounds_to(critical, "1.761")
  assert_rounds_to(theory.q_star("tanh", critical, 0.05), "0.57")


def test_depth_scales_are_consistent(x64):
  scales = theory.depth_scales("tanh", 1.25, 0.05)
  np.testing.assert_allclose(scales["xi_grad"], theory.depth_scale("tanh", 1.25, 0.05), **_tol.F64)
  # Ordered phase: c* = 1 and chi_c = chi_1, so both depth scales agree.
  np.testing.assert_allclose(scales["xi_c"], scales["xi_grad"], **_tol.F64)
  chaotic = theory.depth_scales("tanh", 3.0, 0.05)
  assert chaotic["xi_grad"] < 0 < chaotic["xi_c"]


@pytest.mark.parametrize("method", theory.METHODS)
def test_erf_expectations_match_closed_forms(x64, method):
  """E[erf(u)^2] = 2/pi asin(2q/(1+2q)), E[erf'(u)^2] = 4/(pi sqrt(1+4q)), and the 2-D arcsine kernel."""
  q = jnp.asarray([0.05, 0.1] if method == "gauss_hermite" else [0.1, 1.0, 3.0, 10.0])
  erf = activations.get("erf")
  np.testing.assert_allclose(theory.gaussian_expectation(lambda u: erf(u) ** 2, q, method=method),
                             2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)), **_tol.F64)
  np.testing.assert_allclose(theory.derivative_moment("erf", q) if method == "trapezoid" else
                             theory.gaussian_expectation(
                                 lambda u: activations.derivative("erf")(u) ** 2, q, method=method),
                             4 / np.pi / np.sqrt(1 + 4 * q), **_tol.F64)
  for qi in np.asarray(q):
    for c in (0.3, 0.9):
      got = theory.gaussian_expectation_2d(lambda a, b: erf(a) * erf(b), qi, c, method=method)
      np.testing.assert_allclose(got, 2 / np.pi * np.arcsin(2 * qi * c / (1 + 2 * qi)), **_tol.F64)


def test_gauss_hermite_agrees_with_trapezoid_for_smooth_activations(x64):
  """Where Gauss-Hermite is accurate (smooth phi, small q) the two rules agree to float64."""
  phi = activations.get("tanh")
  f = lambda a, b: phi(a) * phi(b)  # noqa: E731
  for q, c in ((0.05, 0.2), (0.1, 0.8), (0.5, 0.5)):
    np.testing.assert_allclose(
        theory.gaussian_expectation_2d(f, q, c, method="gauss_hermite"),
        theory.gaussian_expectation_2d(f, q, c, method="trapezoid"), **_tol.F64)
  np.testing.assert_allclose(theory.c_star("tanh", 2.0, 0.05, method="gauss_hermite"),
                             theory.c_star("tanh", 2.0, 0.05), rtol=1e-6)


def test_relu_arccos_kernel_with_the_trapezoid_rule(x64):
  """Cho & Saul: E[relu(u1) relu(u2)] = q/(2 pi) (sqrt(1-c^2) + (pi - acos c) c); kinks: ~1e-5."""
  relu = activations.get("relu")
  for c in (0.0, 0.3, 0.9):
    exact = 1.0 / (2 * np.pi) * (np.sqrt(1 - c**2) + (np.pi - np.arccos(c)) * c)
    got = theory.gaussian_expectation_2d(lambda a, b: relu(a) * relu(b), 1.0, c)
    np.testing.assert_allclose(got, exact, **_tol.QUADRATURE_KINK)


def test_chi1_and_correlation_map_against_monte_carlo(x64):
  key1, key2 = jax.random.split(jax.random.key(0))
  z1 = jax.random.normal(key1, (MC_SAMPLES,), jnp.float64)
  z2 = jax.random.normal(key2, (MC_SAMPLES,), jnp.float64)
  sigma_w2, sigma_b2 = 2.5, 0.05
  q = theory.q_star("tanh", sigma_w2, sigma_b2)
  c = theory.c_star("tanh", sigma_w2, sigma_b2)
  dphi = lambda u: 1 - jnp.tanh(u) ** 2  # noqa: E731
  u1, u2 = jnp.sqrt(q) * z1, jnp.sqrt(q) * (c * z1 + jnp.sqrt(1 - c**2) * z2)
  checks = {
      "q*": (sigma_w2 * jnp.tanh(u1) ** 2 + sigma_b2, q),
      "c*": ((sigma_w2 * jnp.tanh(u1) * jnp.tanh(u2) + sigma_b2) / q, c),
      "chi1": (sigma_w2 * dphi(u1) ** 2, theory.chi1("tanh", sigma_w2, sigma_b2)),
      "chi_c": (sigma_w2 * dphi(u1) * dphi(u2), theory.chi_c("tanh", sigma_w2, sigma_b2)),
  }
  for name, (samples, predicted) in checks.items():
    error = samples.std() / math.sqrt(MC_SAMPLES)
    assert abs(samples.mean() - predicted) < MC_SIGMAS * error, name


def test_gradients_through_fixed_points_match_finite_differences(x64):
  h = 1e-6
  for fn, s in ((theory.chi1, 1.5), (theory.chi_c, 2.5)):
    grad = jax.grad(lambda s_: fn("tanh", s_, 0.05))(s)
    fd = (fn("tanh", s + h, 0.05) - fn("tanh", s - h, 0.05)) / (2 * h)
    np.testing.assert_allclose(grad, fd, **_tol.F64_FINITE_DIFFERENCE)
  grad_b = jax.grad(lambda b: theory.chi1("tanh", 2.0, b))(0.05)
  fd_b = (theory.chi1("tanh", 2.0, 0.05 + h) - theory.chi1("tanh", 2.0, 0.05 - h)) / (2 * h)
  np.testing.assert_allclose(grad_b, fd_b, **_tol.F64_FINITE_DIFFERENCE)


def test_theory_is_vmappable_and_jit_matches_eager(x64):
  s = jnp.asarray([1.2, 2.2])
  batched = jax.vmap(lambda v: theory.chi1("tanh", v, 0.05))(s)
  np.testing.assert_allclose(batched, [theory.chi1("tanh", float(v), 0.05) for v in s], **_tol.F64)
  with jax.disable_jit():
    eager = theory.chi1("tanh", 1.2, 0.05)
  np.testing.assert_allclose(batched[0], eager, **_tol.F64)


def test_relu_has_a_single_critical_point(x64):
  sigma_w2, sigma_b2 = theory.critical_line("relu", jnp.asarray([0.5, 2.0]))
  np.testing.assert_allclose(sigma_w2, 2.0, **_tol.F64)
  np.testing.assert_allclose(sigma_b2, 0.0, atol=1e-10)
  np.testing.assert_allclose(theory.chi1("relu", 1.5, 0.1), 0.75, **_tol.F64)


def test_fuss_catalan_moments(x64):
  # L = 1 is Marchenko-Pastur: Catalan numbers, C_{k+1} = sum_i C_i C_{k-i}.
  catalan = np.concatenate([[1.0], theory.fuss_catalan_moments(1, 6)])
  for k in range(6):
    assert catalan[k + 1] == sum(catalan[i] * catalan[k - i] for i in range(k + 1))
  for depth in (1, 2, 5, 16):
    m = theory.fuss_catalan_moments(depth, 2)
    linear = theory.jacobian_spectrum_moments("linear", 1.0, 0.0, 1.0, depth)
    np.testing.assert_allclose(m[0], linear["mean_sq"][-1], **_tol.F64)
    np.testing.assert_allclose(m[1] - m[0] ** 2, linear["var_sq"][-1], **_tol.F64)
    assert math.e * depth < theory.fuss_catalan_edge(depth) < math.e * (depth + 1)


def test_fuss_catalan_against_monte_carlo(x64):
  """Products of L Gaussian N x N matrices: the spectrum's edge and moments approach Fuss-Catalan."""
  n, depth = 128, 3
  keys = jax.random.split(jax.random.key(1), depth)
  j = jnp.eye(n)
  for k in keys:
    j = jax.random.normal(k, (n, n), jnp.float64) / math.sqrt(n) @ j
  lam = jnp.linalg.eigvalsh(j @ j.T)
  m = theory.fuss_catalan_moments(depth, 2)
  np.testing.assert_allclose([lam.mean(), (lam**2).mean()], m, rtol=4 * depth / math.sqrt(n))
  assert lam.max() < theory.fuss_catalan_edge(depth) * (1 + 4 * depth / math.sqrt(n))


@pytest.mark.parametrize("bad, message", [
    (lambda: theory.gaussian_expectation(jnp.tanh, 1.0, method="simpson"),
     "unknown quadrature method 'simpson'; valid choices"),
    (lambda: theory.chi1("softplus", 1.0, 0.0), "unknown activation 'softplus'"),
    (lambda: theory.fuss_catalan_moments(0, 2), "depth and k_max must be >= 1"),
])
def test_bad_input_is_a_clear_error(bad, message):
  with pytest.raises(ValueError, match=message):
    bad()


# Degenerate points: the ordered limit q* = 0 and the diverging q* of the
# positively homogeneous activations, whose length map is q -> s q + sigma_b2.
@pytest.mark.parametrize("activation, sigma_w2, sigma_b2, q_star, chi1", [
    ("relu", 1.5, 0.0, 0.0, 0.75),          # ordered limit: q* = 0, yet chi1 = sigma_w2 / 2
    ("relu", 1.5, 0.1, 0.4, 0.75),          # sigma_b2 / (1 - sigma_w2 / 2)
    ("relu", 2.0, 0.0, 1.0, 1.0),           # every q is fixed: q* = q0
    ("relu", 2.01, 0.0, math.inf, 1.005),   # chaotic: q^l grows like 1.005^l
    ("relu", 2.5, 0.0, math.inf, 1.25),
    ("relu", 2.0, 0.1, math.inf, 1.0),      # critical slope, q^l grows like l sigma_b2
    ("linear", 0.5, 0.2, 0.4, 0.5),
    ("leaky_relu", 1.0, 0.0, 0.0, 0.5 * (1 + activations.LEAKY_RELU_SLOPE**2)),
    ("hard_tanh", 0.5, 0.0, 0.0, 0.5),      # kinked, not homogeneous: q* = 0, limit phi'(0+) = 1
])
def test_degenerate_fixed_points_are_exact(x64, activation, sigma_w2, sigma_b2, q_star, chi1):
  assert float(theory.q_star(activation, sigma_w2, sigma_b2)) == pytest.approx(q_star, rel=1e-12)
  assert float(theory.chi1(activation, sigma_w2, sigma_b2)) == pytest.approx(chi1, rel=1e-12)
  expected_depth = math.inf if chi1 == 1.0 else -1.0 / math.log(chi1)
  assert float(theory.depth_scale(activation, sigma_w2, sigma_b2)) == pytest.approx(expected_depth)


def test_the_affine_fixed_point_is_where_the_iteration_goes(x64):
  # Below slope 1 the iterated length map converges to sigma_b2 / (1 - s); above it, it grows.
  for sigma_w2, sigma_b2 in [(1.5, 0.1), (1.9, 0.05), (0.5, 0.0)]:
    iterates = theory.length_map_iterates("relu", 1.0, sigma_w2, sigma_b2, 3000)
    np.testing.assert_allclose(iterates[-1], theory.q_star("relu", sigma_w2, sigma_b2), atol=1e-12)
  assert theory.length_map_iterates("relu", 1.0, 2.01, 0.0, 3000)[-1] > 1e6
  # d q*/d sigma_b2 = 1 / (1 - s), d q*/d sigma_w2 = sigma_b2 / (2 (1 - s)^2) for ReLU.
  grad = jax.grad(theory.q_star, argnums=(1, 2))("relu", 1.5, 0.1)
  np.testing.assert_allclose(grad, (0.1 / (2 * 0.25**2), 4.0), rtol=1e-12)


def test_derivative_moment_at_zero_is_its_limit_from_above(x64):
  # One program for every activation and k, evaluated at q = 0 and q = 1e-12 together.
  moments = jax.jit(lambda q: {f"{a}/{k}": theory.derivative_moment(a, q, k)
                               for a in activations.names() for k in (1, 2)})
  for name, (at_zero, near_zero) in moments(jnp.asarray([0.0, 1e-12])).items():
    np.testing.assert_allclose(at_zero, near_zero, rtol=1e-5, err_msg=name)
  assert float(theory.derivative_moment("relu", 0.0)) == 0.5
  assert np.isfinite(jax.grad(lambda q: theory.derivative_moment("tanh", q))(0.0))


def test_ordered_relu_network_shrinks_the_signal_by_chi1_per_layer():
  """A random ReLU net at sigma_w2 = 1.5, sigma_b2 = 0: ||delta||^2 falls by 0.75 a layer (not 0)."""
  width, depth, nets = 256, 12, 8
  keys = jax.random.split(jax.random.key(0), nets)

  def ratios(key):
    k_x, k_w, k_d = jax.random.split(key, 3)
    weights = jax.random.normal(k_w, (depth, width, width)) * jnp.sqrt(1.5 / width)

    def forward(h, w):
      z = w @ h
      return jax.nn.relu(z), z > 0

    _, masks = jax.lax.scan(forward, jax.random.normal(k_x, (width,)), weights)

    def backward(delta, w_m):
      w, m = w_m
      delta = w.T @ (delta * m)
      return delta, jnp.sum(delta**2)

    _, norms = jax.lax.scan(backward, jax.random.normal(k_d, (width,)), (weights, masks),
                            reverse=True)
    norms = norms[::-1]  # from the top layer down, as the backward pass goes
    return norms[1:] / norms[:-1]

  measured = float(jnp.exp(jnp.mean(jnp.log(jax.jit(jax.vmap(ratios))(keys)))))
  assert measured == pytest.approx(float(theory.chi1("relu", 1.5, 0.0)), rel=0.05)


def test_residual_signal_closed_forms():
  """Residual blocks, He-init ReLU: q and the squared signal grow by 1 + 2 * 2 * 1/2 = 3 per block;
  with LayerNorm q_l = q_0 + l and the squared signal is q_B / q_l."""
  plain = theory.residual_signal("relu", 2.0, 2.0, 1.0, 5)
  np.testing.assert_allclose(plain["chi"], 3.0, rtol=1e-4)
  np.testing.assert_allclose(plain["signal_sq"], 3.0 ** np.arange(5, -1, -1), rtol=1e-3)
  ln = theory.residual_signal("relu", 2.0, 2.0, 1.0, 5, norm="layer")
  np.testing.assert_allclose(ln["q"], 1.0 + np.arange(6), rtol=1e-4)
  np.testing.assert_allclose(ln["signal_sq"], ln["q"][-1] / ln["q"], rtol=1e-4)
  with pytest.raises(ValueError, match="norm None or 'layer', got 'batch'"):
    theory.residual_signal("relu", 2.0, 2.0, 1.0, 5, norm="batch")
