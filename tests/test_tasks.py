"""Sequence tasks: the sine recurrence, the adding problem's marks and sum, epoch batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import data
from jaxgrad.optimizers import OptimizerConfig, make_optimizer
from jaxgrad.training import train
from tests import _tol


def test_sine_target_is_the_next_value(x64):
  """A sampled sinusoid obeys s_{t+1} + s_{t-1} = 2 cos(f dt) s_t; the target continues it."""
  x, y = data.sine_sequences(jax.random.key(0), 16, 12, dtype=jnp.float64)
  assert x.shape == (16, 12, 1) and y.shape == (16, 1)
  s = np.concatenate([x[..., 0], y], axis=1)  # (16, 13)
  two_cos = (s[:, 2:] + s[:, :-2]) / s[:, 1:-1]
  ok = np.abs(s[:, 1:-1]) > 0.1  # avoid dividing by ~0
  ref = np.array([row[m][0] for row, m in zip(two_cos, ok)])
  for row, m, r in zip(two_cos, ok, ref):
    np.testing.assert_allclose(row[m], r, rtol=1e-8)
  dt = 4 * np.pi / 11
  freq = np.arccos(ref / 2) / dt
  assert np.all((freq >= 0.5 - 1e-6) & (freq <= 2.0 + 1e-6))


def test_adding_problem_marks_and_sum():
  length = 20
  x, y = data.adding_problem(jax.random.key(1), 2000, length)
  marks = np.asarray(x[..., 1])
  np.testing.assert_array_equal(marks.sum(1), 2)
  pos = np.sort(np.argwhere(marks)[:, 1].reshape(-1, 2), axis=1)
  assert pos[:, 0].max() < 2 and pos[:, 1].min() >= 2 and pos[:, 1].max() < 10
  np.testing.assert_allclose(y[:, 0], (x[..., 0] * x[..., 1]).sum(1), **_tol.F32)
  # Predicting the mean scores Var(u1 + u2) = 1/6.
  assert float(jnp.var(y)) == pytest.approx(1 / 6, rel=0.05)


def test_epoch_batches_walk_each_epoch_once():
  index, weight = data.epoch_batches(jax.random.key(2), 1000, 64, 3)
  assert index.shape == (48, 64) and data.batches_per_epoch(1000, 64) == 16
  for e in range(3):
    idx, w = np.asarray(index[16 * e:16 * (e + 1)]), np.asarray(weight[16 * e:16 * (e + 1)])
    np.testing.assert_array_equal(np.sort(idx[w > 0]), np.arange(1000))
    assert w[-1].sum() == 40 and w[:-1].min() == 1
  assert not np.array_equal(index[:16], index[16:32])  # reshuffled


def test_sampler_gives_train_the_step_batch():
  """train() calls sample_batch(fold_in(key, step)); the sampler recovers the step exactly."""
  x = jnp.arange(10.0)[:, None, None]
  y = jnp.arange(10.0)[:, None]
  shuffle, key = jax.random.key(3), jax.random.key(4)
  sample = data.epoch_sampler(x, y, 4, 2, shuffle_key=shuffle, train_key=key)
  index, weight = data.epoch_batches(shuffle, 10, 4, 2)
  for step in range(6):
    batch = sample(jax.random.fold_in(key, step))
    np.testing.assert_array_equal(batch.x[:, 0, 0], index[step])
    np.testing.assert_array_equal(batch.weight, weight[step])
  # Through train(): loss(p) = weighted mean of y records every step's batch mean.
  result = train(lambda p, s, b: (jnp.sum(b.weight * b.y[:, 0]) / jnp.sum(b.weight) + 0 * p, s),
                 jnp.zeros(()), make_optimizer(OptimizerConfig("sgd", 1e-3)), sample, 6, key=key)
  expected = [(np.asarray(y)[index[i], 0] * weight[i]).sum() / weight[i].sum() for i in range(6)]
  np.testing.assert_allclose(result.loss, expected, **_tol.F32)


def test_weighted_mse_ignores_padding():
  batch = data.Batch(x=None, y=jnp.array([[1.0], [2.0], [9.0]]), weight=jnp.array([1.0, 1.0, 0.0]))
  assert float(data.weighted_mse(jnp.zeros((3, 1)), batch)) == pytest.approx(2.5)


@pytest.mark.parametrize("fn, kwargs, message", [
    (data.sine_sequences, dict(num=0), "num must be an integer >= 1"),
    (data.adding_problem, dict(num=4, length=3), "length must be >= 4"),
    (data.epoch_batches, dict(num=10, batch_size=0, epochs=1), "batch_size must be"),
])
def test_bad_sizes_are_clear_errors(fn, kwargs, message):
  with pytest.raises(ValueError, match=message):
    fn(jax.random.key(0), **kwargs)
