"""Dynamic loss scaling: skip/backoff/growth, and float16 underflow cured by scaling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad import mixed_precision as mp
from jaxgrad import optimizers, training
from tests import _tol


def test_scaler_unscales_skips_backs_off_and_grows():
  tx = mp.dynamic_loss_scaling(optax.sgd(0.5), init_scale=8.0, growth_interval=2)
  p = jnp.array([1.0, -2.0])
  state = tx.init(p)
  u, state = tx.update(8.0 * jnp.array([2.0, 4.0]), state, p)  # gradient of 8 L
  np.testing.assert_allclose(u, [-1.0, -2.0], **_tol.F32)
  assert float(state.scale) == 8.0 and int(state.good_steps) == 1
  u, state = tx.update(jnp.array([jnp.nan, 1.0]), state, p)
  np.testing.assert_array_equal(u, [0.0, 0.0])
  assert float(state.scale) == 4.0 and int(state.skipped) == 1 and int(state.good_steps) == 0
  for _ in range(2):
    _, state = tx.update(jnp.ones(2), state, p)
  assert float(state.scale) == 8.0 and int(state.good_steps) == 0  # grew after 2 finite steps


def test_skipped_step_leaves_the_inner_state_unchanged():
  tx = mp.dynamic_loss_scaling(optax.adam(1e-2), init_scale=2.0)
  p = jnp.ones(3)
  state = tx.init(p)
  _, s1 = tx.update(jnp.ones(3), state, p)
  _, s2 = tx.update(jnp.full(3, jnp.inf), s1, p)
  chex.assert_trees_all_equal(s2.inner_state, s1.inner_state)


@pytest.mark.parametrize("kwargs", [dict(init_scale=0.0), dict(backoff_factor=1.5),
                                    dict(growth_interval=0)])
def test_bad_scaler_arguments(kwargs):
  with pytest.raises(ValueError):
    mp.dynamic_loss_scaling(optax.sgd(1.0), **kwargs)


def _underflow_problem():
  """Loss 1e-7 * mean((x W)^2) in float16: its backprop signal (~1e-8) is below 2^-24."""
  x = jax.random.normal(jax.random.key(0), (8, 4))
  w = {"dense": {"kernel": jax.random.normal(jax.random.key(1), (4, 4)) / 2}}

  def loss(params, dtype):
    y = x.astype(dtype) @ params["dense"]["kernel"].astype(dtype)
    return (1e-7 * jnp.mean(y.astype(jnp.float32) ** 2)), y

  return w, loss


def _one_step_grads(scaled: bool):
  w, loss = _underflow_problem()
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("sgd", 1.0))
  if scaled:
    tx = mp.dynamic_loss_scaling(tx, init_scale=2.0**15)
  loss_fn = lambda p, s, b: (loss(p, jnp.float16)[0], s)  # noqa: E731
  res = training.train(loss_fn, w, tx, lambda k: None, 1, key=jax.random.key(0),
                       record=lambda info: {"grads": info.grads})
  return jax.tree.map(lambda g: g[0], res.metrics["grads"]), jax.grad(
      lambda p: loss(p, jnp.float32)[0])(w)


def test_float16_underflow_without_scaling_and_its_cure():
  unscaled, reference = _one_step_grads(scaled=False)
  assert float(mp.zero_fraction(reference)["dense"]) == 0.0
  assert float(mp.zero_fraction(unscaled)["dense"]) == 1.0  # every entry underflowed
  scaled, reference = _one_step_grads(scaled=True)
  assert float(mp.zero_fraction(scaled)["dense"]) == 0.0
  np.testing.assert_allclose(optax.tree.norm(scaled), optax.tree.norm(reference), **_tol.F32_REDUCED)


def test_bfloat16_does_not_underflow_there():
  w, loss = _underflow_problem()
  g = jax.grad(lambda p: loss(p, jnp.bfloat16)[0])(w)
  assert float(mp.zero_fraction(g)["dense"]) == 0.0
