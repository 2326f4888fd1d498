"""jaxgrad.models.WeightNormDense and the whole-model reparameterization."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad.models import DeepMLP, WeightNormDense
from jaxgrad.models.weight_norm import from_weight_norm, to_weight_norm, weight_norm
from tests import _tol


def _layer_and_params(key=0):
  layer = WeightNormDense(3, param_dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(1), (5, 4), jnp.float64)
  params = layer.init(jax.random.key(key), x)["params"]
  # A g unrelated to ||v||, so that the checks below see it.
  params = {**params, "g": jnp.asarray([0.5, 2.0, 3.0], jnp.float64),
            "bias": jnp.asarray([0.1, -0.2, 0.3], jnp.float64)}
  return layer, params, x


def test_forward_is_x_times_g_v_over_norm_v(x64):
  layer, p, x = _layer_and_params()
  v, g, b = (np.asarray(p[k]) for k in ("v", "g", "bias"))
  w = v / np.sqrt((v ** 2).sum(axis=0)) * g
  chex.assert_trees_all_close(layer.apply({"params": p}, x), np.asarray(x) @ w + b, **_tol.F64)


def test_column_norms_equal_g_exactly(x64):
  _, p, _ = _layer_and_params()
  w = weight_norm(p["v"], p["g"])
  chex.assert_trees_all_close(jnp.linalg.norm(w, axis=0), p["g"], **_tol.F64)


def test_g_starts_at_norm_of_v_so_init_equals_plain_dense(x64):
  layer = WeightNormDense(3, param_dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(1), (5, 4), jnp.float64)
  p = layer.init(jax.random.key(0), x)["params"]
  chex.assert_trees_all_close(p["g"], jnp.linalg.norm(p["v"], axis=0), **_tol.F64)
  dense = nn.Dense(3, param_dtype=jnp.float64)
  plain = dense.apply({"params": {"kernel": p["v"], "bias": p["bias"]}}, x)
  chex.assert_trees_all_close(layer.apply({"params": p}, x), plain, **_tol.F64)


def test_gradient_wrt_g_matches_finite_differences_and_formula(x64):
  layer, p, x = _layer_and_params()
  target = jnp.sin(jnp.arange(15.0, dtype=jnp.float64)).reshape(5, 3)

  def loss_of_g(g):
    return jnp.sum((layer.apply({"params": {**p, "g": g}}, x) - target) ** 2)

  grad = jax.grad(loss_of_g)(p["g"])
  eps = 1e-6
  fd = jnp.stack([(loss_of_g(p["g"].at[j].add(eps)) - loss_of_g(p["g"].at[j].add(-eps))) / (2 * eps)
                  for j in range(3)])
  chex.assert_trees_all_close(grad, fd, **_tol.F64_FINITE_DIFFERENCE)
  # dL/dg_j = w_j . dL/dw_j / g_j.
  w = weight_norm(p["v"], p["g"])
  dense_loss = lambda k: jnp.sum((x @ k + p["bias"][None] - target) ** 2)  # noqa: E731
  dw = jax.grad(dense_loss)(w)
  chex.assert_trees_all_close(grad, jnp.sum(w * dw, axis=0) / p["g"], **_tol.F64)


def test_gradient_wrt_v_is_orthogonal_to_w(x64):
  layer, p, x = _layer_and_params()
  dv = jax.grad(lambda v: jnp.sum(jnp.tanh(layer.apply({"params": {**p, "v": v}}, x))))(p["v"])
  w = weight_norm(p["v"], p["g"])
  chex.assert_trees_all_close(jnp.sum(dv * w, axis=0), jnp.zeros(3), **_tol.F64)
  assert float(jnp.linalg.norm(dv)) > 1e-3


def test_reparameterized_deep_mlp_round_trips_and_scanned_g_has_a_layer_axis(x64):
  model = DeepMLP(depth=5, width=6, out_features=2, param_dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(1), (3, 4), jnp.float64)
  params = model.init(jax.random.key(0), x)["params"]
  wn = to_weight_norm(params)
  chex.assert_shape(wn["hidden"]["layers"]["dense"]["v"], (3, 6, 6))
  chex.assert_shape(wn["hidden"]["layers"]["dense"]["g"], (3, 6))
  assert "kernel" not in wn["first"]["dense"] and "bias" in wn["first"]["dense"]
  chex.assert_trees_all_close(from_weight_norm(wn), params, **_tol.F64)
  scaled = jax.tree.map(lambda a: a, wn)
  scaled["hidden"]["layers"]["dense"]["g"] = 2.0 * wn["hidden"]["layers"]["dense"]["g"]
  kernel = from_weight_norm(scaled)["hidden"]["layers"]["dense"]["kernel"]
  chex.assert_trees_all_close(jnp.linalg.norm(kernel, axis=-2),
                              scaled["hidden"]["layers"]["dense"]["g"], **_tol.F64)


def test_module_and_reparameterization_agree(x64):
  layer, p, x = _layer_and_params()
  plain = nn.Dense(3, param_dtype=jnp.float64).apply({"params": from_weight_norm(p)}, x)
  chex.assert_trees_all_close(layer.apply({"params": p}, x), plain, **_tol.F64)
