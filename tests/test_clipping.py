"""Clipping through jaxgrad.optimizers.make_optimizer, in float64, and NaN-guarded chains.

The pre-clip norm is train()'s: loss = <g, p> makes the raw gradient exactly g.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad.optimizers import OptimizerConfig, make_optimizer
from jaxgrad.training import train
from tests import _tol


def _grads(scale):
  g = {"a": jnp.array([3.0, -4.0], jnp.float64), "b": {"c": jnp.array([[12.0]], jnp.float64)}}
  return jax.tree.map(lambda v: scale * v, g)  # global norm 13 * scale


def _one_step(grads, tx):
  """One train() step from p = 0 of loss <grads, p>, whose gradient is ``grads``."""
  params = jax.tree.map(jnp.zeros_like, grads)
  loss_fn = lambda p, s, b: (optax.tree.vdot(grads, p), s)  # noqa: E731
  return jax.jit(lambda p: train(loss_fn, p, tx, lambda k: None, 1, key=jax.random.key(0)))(params)


@pytest.mark.parametrize("scale", [0.01, 1.0, 7.0])
@pytest.mark.parametrize("c", [0.5, 1.0])
def test_clip_by_global_norm_gives_min_of_norm_and_threshold(x64, scale, c):
  """SGD with lr 1 makes the update -clip(g): its norm is min(||g||, c), direction kept."""
  grads = _grads(scale)
  result = _one_step(grads, make_optimizer(OptimizerConfig("sgd", 1.0, clip_norm=c)))
  norm = 13.0 * scale
  np.testing.assert_allclose(result.grad_norm, [norm], **_tol.F64)  # before clipping
  np.testing.assert_allclose(result.update_norm, [min(norm, c)], **_tol.F64)
  np.testing.assert_allclose(jnp.sqrt(sum(jnp.sum(u**2) for u in jax.tree.leaves(result.params))),
                             min(norm, c), **_tol.F64)
  factor = min(1.0, c / norm)
  jax.tree.map(lambda u, g: np.testing.assert_allclose(u, -factor * g, **_tol.F64),
               result.params, grads)


def test_clip_by_value_clamps_each_entry(x64):
  grads = _grads(1.0)
  result = _one_step(grads, make_optimizer(OptimizerConfig("sgd", 1.0, clip_value=3.5)))
  jax.tree.map(lambda u, g: np.testing.assert_allclose(u, -np.clip(g, -3.5, 3.5), **_tol.F64),
               result.params, grads)
  np.testing.assert_allclose(result.grad_norm, [13.0], **_tol.F64)


def test_nan_gradient_is_recorded_not_applied(x64):
  """loss = (p - b)^2 / 2 with b NaN at some steps: those steps leave p unchanged."""
  lr, steps, key = 0.25, 12, jax.random.key(0)

  def sample(k):
    return jnp.where(jax.random.uniform(k) < 0.3, jnp.nan, 1.0)

  targets = np.array([float(sample(jax.random.fold_in(key, i))) for i in range(steps)])
  assert np.isnan(targets).any() and np.isfinite(targets).any()
  loss_fn = lambda p, s, b: (0.5 * (p - b) ** 2, s)  # noqa: E731
  tx = make_optimizer(OptimizerConfig("sgd", lr, skip_nonfinite=True))
  result = jax.jit(lambda p: train(loss_fn, p, tx, sample, steps, key=key))(
      jnp.asarray(3.0, jnp.float64))
  p = 3.0
  for b in targets:  # the reference: skip the non-finite steps
    if np.isfinite(b):
      p -= lr * (p - b)
  np.testing.assert_allclose(result.params, p, **_tol.F64)
  assert int(result.diverged_at) == int(np.argmax(np.isnan(targets)))
  assert np.isnan(result.loss[np.isnan(targets)]).all()


def test_unguarded_nan_gradient_poisons_the_params(x64):
  """Without the guard the same run ends with NaN parameters (what the guard prevents)."""
  tx = make_optimizer(OptimizerConfig("sgd", 0.25))
  loss_fn = lambda p, s, b: (0.5 * (p - b) ** 2, s)  # noqa: E731
  result = train(loss_fn, jnp.asarray(3.0, jnp.float64), tx, lambda k: jnp.asarray(jnp.nan), 2,
                 key=jax.random.key(0))
  assert np.isnan(result.params) and int(result.diverged_at) == 0
