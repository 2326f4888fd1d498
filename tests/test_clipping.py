"""Clipping through jaxgrad.optimizers.make_optimizer, in float64, and NaN-guarded chains.

The pre-clip norm is train()'s: loss = <g, p> makes the raw gradient exactly g.
"""

import itertools

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
  """One train() step from p = 0 of loss <grads, p>, whose gradient is ``grads`` (callers jit it)."""
  params = jax.tree.map(jnp.zeros_like, grads)
  loss_fn = lambda p, s, b: (optax.tree.vdot(grads, p), s)  # noqa: E731
  return train(loss_fn, params, tx, lambda k: None, 1, key=jax.random.key(0))


def test_clip_by_global_norm_gives_min_of_norm_and_threshold(x64):
  """SGD with lr 1 makes the update -clip(g): its norm is min(||g||, c), direction kept.

  Every (scale, c) pair in one vmapped program, the threshold traced.
  """
  cases = list(itertools.product([0.01, 1.0, 7.0], [0.5, 1.0]))
  scales, thresholds = (jnp.asarray(v, jnp.float64) for v in zip(*cases))
  step = lambda scale, c: _one_step(  # noqa: E731
      _grads(scale), make_optimizer(OptimizerConfig("sgd", 1.0, clip_norm=c)))
  results = jax.device_get(jax.jit(jax.vmap(step))(scales, thresholds))
  for i, (scale, c) in enumerate(cases):
    result, grads = jax.tree.map(lambda a: a[i], results), jax.device_get(_grads(scale))
    norm = 13.0 * scale
    np.testing.assert_allclose(result.grad_norm, [norm], **_tol.F64)  # before clipping
    np.testing.assert_allclose(result.update_norm, [min(norm, c)], **_tol.F64)
    np.testing.assert_allclose(
        np.sqrt(sum(np.sum(u**2) for u in jax.tree.leaves(result.params))), min(norm, c),
        **_tol.F64)
    factor = min(1.0, c / norm)
    jax.tree.map(lambda u, g: np.testing.assert_allclose(u, -factor * g, **_tol.F64),
                 result.params, grads)


def test_clip_by_value_clamps_each_entry(x64):
  grads = _grads(1.0)
  tx = make_optimizer(OptimizerConfig("sgd", 1.0, clip_value=3.5))
  result = jax.jit(lambda: _one_step(grads, tx))()
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


def _nth_target(targets, key, first):
  """A sampler that gives step ``first + i`` (its key ``fold_in(key, first + i)``) ``targets[i]``."""
  step_keys = jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(key, i)))(
      first + jnp.arange(len(targets)))
  return lambda k: targets[jnp.argmax(jnp.all(step_keys == jax.random.key_data(k)[None], -1))]


@pytest.mark.parametrize("as_iterable", [False, True], ids=["sampler", "iterable"])
def test_a_run_whose_loss_goes_nan_records_diverged_at_and_carries_on(x64, as_iterable):
  """train's divergence guard: the first NaN step is recorded, later steps still run, nothing raises.

  Without ``skip_nonfinite`` the NaN target at step 2 poisons the parameters, so every later
  loss is NaN too; ``diverged_at`` names the first (counted from ``first_step``), and the
  per-step records cover all ``steps``, a sampler's run and an iterable's alike.
  """
  steps, first, bad, key = 5, 10, 2, jax.random.key(0)
  targets = jnp.where(jnp.arange(steps) == bad, jnp.nan, 1.0)
  data = list(targets) if as_iterable else _nth_target(targets, key, first)
  loss_fn = lambda p, s, b: (0.5 * (p - b) ** 2, s)  # noqa: E731
  tx = make_optimizer(OptimizerConfig("sgd", 0.25))
  result = train(loss_fn, jnp.asarray(3.0, jnp.float64), tx, data, steps, key=key, first_step=first)
  assert int(result.diverged_at) == first + bad
  assert result.loss.shape == result.grad_norm.shape == result.update_norm.shape == (steps,)
  np.testing.assert_allclose(result.loss[:bad], [2.0, 1.125], **_tol.F64)  # p = 3, then 2.5
  assert np.isnan(result.loss[bad:]).all() and np.isnan(result.grad_norm[bad:]).all()
  assert np.isnan(result.params)


def test_a_finite_run_has_not_diverged(x64):
  loss_fn = lambda p, s, b: (0.5 * (p - b) ** 2, s)  # noqa: E731
  tx = make_optimizer(OptimizerConfig("sgd", 0.25))
  result = train(loss_fn, jnp.asarray(3.0, jnp.float64), tx, [jnp.asarray(1.0)] * 3, 3)
  assert int(result.diverged_at) == -1 and np.isfinite(result.loss).all()
