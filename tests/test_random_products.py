"""Published results on products of random matrices, measured by Monte Carlo at two widths.

* The top squared singular value of a product of L Gaussian N(0, 1/N) matrices
  approaches the free-probability edge (L+1)^(L+1)/L^L (Pennington, Schoenholz
  & Ganguli 2018), from below, with a deviation that shrinks like N^(-2/3)
  (Tracy-Widom; at L = 1, E[lambda_max] = 4 + 2^(4/3) N^(-2/3) E[TW_1]).
* The log squared norm of a He-ReLU network's Jacobian along a direction has
  variance 5 beta, beta = sum 1/N_l (Hanin & Nica 2019); the exact finite-width
  law is theory.relu_log_norm_moments.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import theory

TW1_MEAN = -1.2065335745820  # mean of the GOE Tracy-Widom law (Tracy & Widom 1996)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _top_squared_singular_values(key, width: int, depth: int, samples: int) -> jax.Array:
  def one(k):
    mats = jax.random.normal(k, (depth, width, width)) / jnp.sqrt(width)
    product = jax.lax.fori_loop(1, depth, lambda i, p: mats[i] @ p, mats[0])
    return jnp.linalg.svd(product, compute_uv=False)[0] ** 2

  return jax.vmap(one)(jax.random.split(key, samples))


def test_marchenko_pastur_edge_with_its_tracy_widom_shift(x64):
  """L = 1: the mean top eigenvalue of W W^T sits 2^(4/3) N^(-2/3) |E TW_1| below the edge 4."""
  width, samples = 160, 200
  top = np.asarray(_top_squared_singular_values(jax.random.key(0), width, 1, samples))
  expected = theory.fuss_catalan_edge(1) + 2 ** (4 / 3) * width ** (-2 / 3) * TW1_MEAN
  standard_error = top.std(ddof=1) / np.sqrt(samples)
  assert abs(top.mean() - expected) < 4 * standard_error + 0.1 * abs(expected - 4)


@pytest.mark.parametrize("depth", [2, 4])
def test_product_edge_is_approached_from_below_like_n_to_the_minus_two_thirds(x64, depth):
  """N^(2/3) (1 - E[lambda_max] / edge) is one positive constant at N = 40 and at N = 320."""
  edge = theory.fuss_catalan_edge(depth)
  scaled = {}
  for width, samples in ((40, 100), (320, 24)):
    top = np.asarray(_top_squared_singular_values(jax.random.key(depth), width, depth, samples))
    deviation = (1.0 - top / edge) * width ** (2 / 3)
    scaled[width] = (deviation.mean(), deviation.std(ddof=1) / np.sqrt(samples))
    assert scaled[width][0] > 2 * scaled[width][1], (width, scaled[width])  # from below
  (c_small, se_small), (c_large, se_large) = scaled[40], scaled[320]
  assert abs(c_small - c_large) < 4 * np.hypot(se_small, se_large), scaled


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _relu_log_squared_norms(key, width: int, depth: int, samples: int) -> jax.Array:
  """ln ||J u||^2 of He-ReLU nets (no biases), J at a Gaussian input, u a random unit vector."""

  def one(k):
    k_h, k_u, k_w = jax.random.split(k, 3)
    h = jax.random.normal(k_h, (width,))
    u = jax.random.normal(k_u, (width,))
    u = u / jnp.linalg.norm(u)

    def layer(carry, k_layer):
      h, u, log_norm = carry
      w = jax.random.normal(k_layer, (width, width)) * jnp.sqrt(2.0 / width)
      z = w @ h
      h = jax.nn.relu(z)
      u = jnp.where(z > 0, w @ u, 0.0)
      norm2 = jnp.sum(u**2)
      # Rescaling h and u changes neither the masks nor the log norm's increments.
      return (h / jnp.linalg.norm(h), u / jnp.sqrt(norm2), log_norm + jnp.log(norm2)), None

    (_, _, log_norm), _ = jax.lax.scan(layer, (h, u, 0.0), jax.random.split(k_w, depth))
    return log_norm

  return jax.vmap(one)(jax.random.split(key, samples))


@pytest.mark.parametrize("width", [16, 24])
def test_relu_log_norm_variance_matches_the_exact_law(width):
  depth, samples = width // 2, 2000  # beta = L / N = 1/2
  logs = np.asarray(_relu_log_squared_norms(jax.random.key(width), width, depth, samples),
                    np.float64)
  # A layer whose units are all dead (probability 2^-N each) ends the signal; the exact
  # law is conditioned on there being none.
  alive = np.isfinite(logs)
  assert alive.mean() > 0.99
  logs = logs[alive]
  exact = theory.relu_log_norm_moments([width] * (depth + 1))
  assert abs(logs.var(ddof=1) - exact["var"]) < 4 * exact["var"] * np.sqrt(2 / (len(logs) - 1))
  assert abs(logs.mean() - exact["mean"]) < 4 * np.sqrt(exact["var"] / len(logs))
  # Finite width adds to the variance: 5 beta is the large-width limit, approached from above.
  assert exact["var"] > exact["var_5beta"] == pytest.approx(2.5)


def test_relu_log_norm_moments_at_large_width_and_bad_input():
  moments = theory.relu_log_norm_moments([4096] * 9)
  assert moments["beta"] == pytest.approx(8 / 4096)
  assert moments["var"] == pytest.approx(5 * 8 / 4096, rel=2e-3)
  assert moments["mean"] == pytest.approx(-2.5 * 8 / 4096, rel=2e-3)
  with pytest.raises(ValueError, match="widths must be at least two integers >= 1"):
    theory.relu_log_norm_moments([8])
