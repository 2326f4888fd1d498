"""log_singular_values: exact on known products, equal to the direct SVD where that is reliable."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import diagnostics, theory
from jaxgrad.diagnostics import spectra
from jaxgrad.models import DenseBlock
from tests import _tol

N, DEPTH = 6, 200
SVD_RESOLUTION = 1e-8  # a float64 SVD gives s_i to relative error eps * s_max / s_i <= 1e-8 here


def _orthogonal(key, n, dtype):
  return jax.nn.initializers.orthogonal()(key, (n, n), dtype)


def _telescoping(dtype, log_d):
  """J_l = Q_l diag(d_l) Q_{l-1}^T: the product is Q_L diag(prod d_l) Q_0^T, exactly."""
  qs = jax.vmap(lambda k: _orthogonal(k, N, dtype))(jax.random.split(jax.random.key(0), DEPTH + 1))
  params = (qs[1:], qs[:-1], jnp.exp(log_d).astype(dtype))
  layer = lambda p, h: p[0] @ (p[2] * (p[1].T @ h))  # noqa: E731
  return layer, params


@pytest.mark.parametrize("dtype, tol", [("float64", _tol.F64), ("float32", _tol.F32_REDUCED)])
def test_orthogonal_times_known_diagonal_scalings_is_exact(x64, dtype, tol):
  dtype = jnp.dtype(dtype)
  noise = 0.05 * jax.random.normal(jax.random.key(1), (DEPTH, N), jnp.float64)
  log_d = -0.5 * jnp.arange(N, dtype=jnp.float64)[None, :] + noise  # graded: sums from -20 to -500 apart
  layer, params = _telescoping(dtype, log_d)
  got = diagnostics.log_singular_values(layer, params, jnp.ones((N,), dtype))
  assert got.dtype == dtype
  np.testing.assert_allclose(got, -np.sort(-np.asarray(log_d.sum(0))), **tol)


def test_degenerate_spectrum_is_exact(x64):
  """J_l = c_l O_l: every singular value equals prod c_l, whatever the frame."""
  log_c = 0.3 * jax.random.normal(jax.random.key(2), (DEPTH,), jnp.float64)
  params = (jax.vmap(lambda k: _orthogonal(k, N, jnp.float64))(
      jax.random.split(jax.random.key(3), DEPTH)), jnp.exp(log_c))
  layer = lambda p, h: p[1] * (p[0] @ h)  # noqa: E731
  for sweeps in (1, 2):
    got = diagnostics.log_singular_values(layer, params, jnp.ones((N,)), sweeps=sweeps)
    np.testing.assert_allclose(got, np.full(N, float(log_c.sum())), **_tol.F64)


def test_float32_sum_over_10000_layers_does_not_drift(x64):
  """J_l = c I with c = 1.1 in float32: ln s = L ln c exactly (computed in float64).

  A plain float32 running sum of the ~0.095 log-diagonals reaches ~950, where
  each addition rounds by up to 3e-5: it drifts by about 0.2 over 10,000 layers.
  Compensated summation leaves only float32's error in ln(c) itself, L x 4e-9.
  """
  depth, c = 10_000, np.float32(1.1)
  got = diagnostics.log_singular_values(lambda p, h: p * h, jnp.full((depth,), c),
                                        jnp.ones((2,), jnp.float32), sweeps=1)
  exact = depth * math.log(float(c))
  np.testing.assert_allclose(np.asarray(got, np.float64), [exact, exact],
                             rtol=0, atol=depth * 2 * float(np.spacing(np.float32(0.1))))


def _tanh_net(dtype, weights, q):
  """A critical tanh net of width N, depth DEPTH, on the critical line at fixed point q."""
  sigma_w2, sigma_b2 = (float(v) for v in theory.critical_line("tanh", q))
  k_w, k_b = jax.random.split(jax.random.key(4))
  if weights == "orthogonal":
    w = math.sqrt(sigma_w2) * jax.vmap(lambda k: _orthogonal(k, N, dtype))(
        jax.random.split(k_w, DEPTH))
  else:
    w = math.sqrt(sigma_w2 / N) * jax.random.normal(k_w, (DEPTH, N, N), dtype)
  b = math.sqrt(sigma_b2) * jax.random.normal(k_b, (DEPTH, N), dtype)
  h0 = math.sqrt(q) * jax.random.normal(jax.random.key(5), (N,), dtype)
  return (lambda p, h: jnp.tanh(p[0] @ h + p[1])), (w, b), h0


def _direct_log_svd(layer, params, h0):
  def step(carry, p):
    h, j = carry
    return (layer(p, h), jax.jacfwd(lambda x: layer(p, x))(h) @ j), None

  (_, j), _ = jax.lax.scan(step, (h0, jnp.eye(h0.shape[0], dtype=h0.dtype)), params)
  return np.log(np.linalg.svd(np.asarray(j), compute_uv=False))


@pytest.mark.parametrize("weights, q", [("gaussian", 0.5), ("orthogonal", 0.01)])
def test_depth_200_agrees_with_direct_svd_in_float64(x64, weights, q):
  layer, params, h0 = _tanh_net(jnp.float64, weights, q)
  direct = _direct_log_svd(layer, params, h0)
  got = np.asarray(jax.jit(functools.partial(diagnostics.log_singular_values, layer))(params, h0))
  resolved = direct > direct[0] + math.log(SVD_RESOLUTION)
  np.testing.assert_allclose(got[resolved], direct[resolved], **_tol.F64)
  assert np.all(np.diff(got) <= 0)
  if weights == "gaussian":  # graded spectrum: a k-frame finds the top k
    np.testing.assert_allclose(diagnostics.log_singular_values(layer, params, h0, k=3),
                               got[:3], **_tol.F64)


def test_float32_matches_float64_and_flax_layers_work(x64):
  model = DenseBlock(N, activation="tanh", kernel_init=("gaussian", {"sigma_w2": 1.0}))
  keys = jax.random.split(jax.random.key(6), DEPTH // 4)
  params = jax.vmap(lambda k: model.init(k, jnp.ones((N,)))["params"])(keys)
  layer = lambda p, h: model.apply({"params": p}, h)  # noqa: E731
  h0 = jnp.full((N,), 0.5)
  f32 = diagnostics.log_singular_values(layer, params, h0.astype(jnp.float32))
  as64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
  f64 = diagnostics.log_singular_values(layer, as64, h0.astype(jnp.float64))
  np.testing.assert_allclose(f32, f64, **_tol.F32_REDUCED)


def test_float32_resolves_singular_values_far_below_the_largest(x64):
  """Critical tanh, width 48, depth 200: the top ten ln s span 20, so s_10 / s_1 ~ 1e-9 < eps.

  An SVD of the tracked product resolves only s > eps s_max in float32; the
  zero-shift QR steps keep each one to float32's relative accuracy. Measured:
  1.7e-5 (without the QR steps: 3.2e-2).
  """
  width, depth, q = 48, 200, 0.01
  sigma_w2, sigma_b2 = (float(v) for v in theory.critical_line("tanh", q))
  k_w, k_b, k_h = jax.random.split(jax.random.key(4), 3)
  w = math.sqrt(sigma_w2 / width) * jax.random.normal(k_w, (depth, width, width), jnp.float32)
  b = math.sqrt(sigma_b2) * jax.random.normal(k_b, (depth, width), jnp.float32)
  h0 = math.sqrt(q) * jax.random.normal(k_h, (width,), jnp.float32)
  layer = lambda p, h: jnp.tanh(p[0] @ h + p[1])  # noqa: E731
  f32 = diagnostics.log_singular_values(layer, (w, b), h0)
  f64 = diagnostics.log_singular_values(
      layer, jax.tree.map(lambda a: a.astype(jnp.float64), (w, b)), h0.astype(jnp.float64))
  assert float(f64[0] - f64[9]) > -math.log(np.finfo(np.float32).eps)
  np.testing.assert_allclose(np.asarray(f32[:10], np.float64), f64[:10], **_tol.F32_LOG_SPECTRUM)


def test_zero_shift_qr_keeps_the_singular_values_and_diagonalises(x64):
  """P = diag(e^l) N, N unit upper triangular: the steps keep P's singular values and drive
  its diagonal to them (float64, grading mild enough for a direct SVD to be exact)."""
  k = 6
  logs = -2.0 * jnp.arange(k, dtype=jnp.float64)[::-1]  # ascending: the steps sort it
  n = jnp.eye(k) + jnp.triu(jax.random.normal(jax.random.key(9), (k, k)), 1)
  direct = np.log(np.linalg.svd(np.exp(np.asarray(logs))[:, None] * np.asarray(n),
                                compute_uv=False))
  logs_out, n_out = spectra._zero_shift_qr(logs, n, spectra.QR_STEPS)
  product = np.exp(np.asarray(logs_out))[:, None] * np.asarray(n_out)
  np.testing.assert_allclose(np.log(np.linalg.svd(product, compute_uv=False)), direct, **_tol.F64)
  np.testing.assert_allclose(np.sort(np.asarray(logs_out))[::-1], direct, **_tol.F64)


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=0), r"k must be in \[1, 6\], got 0"),
    (dict(sweeps=0), "sweeps must be >= 1, got 0"),
    (dict(h0=jnp.ones((2, N))), r"h0 must be one example vector of shape \(n,\)"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
  args = dict(layer_fn=lambda p, h: p * h, params=jnp.ones((3, N)), h0=jnp.ones((N,)))
  with pytest.raises(ValueError, match=message):
    diagnostics.log_singular_values(**{**args, **kwargs})
