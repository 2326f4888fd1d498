r"""Batches for :func:`jaxgrad.training.train`, one convention for every sampler: :class:`Batch`.

A batch is ``Batch(x, y, weight)``: inputs, targets and a per-example weight,
1 for a real example and 0 for padding, so that shapes stay static under jit
and a weighted mean (:func:`weighted_mse`) is the mean over the real examples.

* :func:`as_batch`: all of ``(x, y)`` as one batch, every weight 1 (e.g. fresh
  synthetic data from :func:`jaxgrad.data.adding_problem` at every step);
* :func:`sample_batch`: ``batch_size`` examples drawn uniformly with
  replacement, every weight 1;
* :func:`epoch_batches` / :func:`epoch_sampler`: PyTorch's
  ``DataLoader(shuffle=True)``: a fresh permutation every epoch, batches in
  order, the last one short (1000 examples, batch 64: 15 full batches and one
  of 40), padded to the full size with weight 0.

Every function is jit- and vmap-able.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxgrad import _checks


class Batch(NamedTuple):
  """One batch: ``x`` ``(B, ...)``, ``y`` ``(B, ...)``, ``weight`` ``(B,)`` (1 real, 0 padding)."""

  x: jax.Array
  y: jax.Array
  weight: jax.Array


def as_batch(x: jax.Array, y: jax.Array) -> Batch:
  """All of ``x`` and ``y`` as one :class:`Batch`, every weight 1 (in ``x``'s dtype)."""
  return Batch(x, y, jnp.ones(x.shape[:1], x.dtype))


def sample_batch(key: jax.Array, x: jax.Array, y: jax.Array, batch_size: int) -> Batch:
  """``batch_size`` examples drawn uniformly with replacement, every weight 1; jit-able.

  Raises:
    ValueError: for a ``batch_size`` that is not an integer >= 1.
  """
  _checks.require_positive_int(batch_size=batch_size)
  idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
  return as_batch(jnp.take(x, idx, axis=0), jnp.take(y, idx, axis=0))


def batches_per_epoch(num: int, batch_size: int) -> int:
  """``ceil(num / batch_size)``: the last batch is short when it does not divide."""
  _checks.require_positive_int(num=num, batch_size=batch_size)
  return -(-num // batch_size)


def epoch_batches(key: jax.Array, num: int, batch_size: int,
                  epochs: int) -> tuple[jax.Array, jax.Array]:
  """Example indices and weights for every step of ``epochs`` shuffled epochs.

  Epoch ``e`` uses ``jax.random.permutation(fold_in(key, e), num)`` cut into
  consecutive batches; the last batch is padded (index 0, weight 0).

  Returns:
    ``(index, weight)``, each ``(epochs * batches_per_epoch, batch_size)``.
  """
  _checks.require_positive_int(epochs=epochs)
  per_epoch = batches_per_epoch(num, batch_size)
  pad = per_epoch * batch_size - num

  def one_epoch(e):
    perm = jax.random.permutation(jax.random.fold_in(key, e), num)
    index = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)])
    weight = jnp.concatenate([jnp.ones((num,)), jnp.zeros((pad,))])
    return index.reshape(per_epoch, batch_size), weight.reshape(per_epoch, batch_size)

  index, weight = jax.vmap(one_epoch)(jnp.arange(epochs))
  return index.reshape(-1, batch_size), weight.reshape(-1, batch_size)


def epoch_sampler(x: jax.Array, y: jax.Array, batch_size: int, epochs: int, *,
                  shuffle_key: jax.Array, train_key: jax.Array) -> Callable[[jax.Array], Batch]:
  """A sampler ``key -> Batch`` for :func:`jaxgrad.training.train` that walks shuffled epochs.

  ``train`` calls ``sample(fold_in(train_key, step))``; the step is
  recovered by matching the key's data against the ``epochs * batches`` keys
  ``fold_in(train_key, i)`` (an exact, cheap lookup), and the step's batch is
  taken from :func:`epoch_batches` (shuffled with ``shuffle_key``).
  """
  index, weight = epoch_batches(shuffle_key, x.shape[0], batch_size, epochs)
  steps = index.shape[0]
  step_keys = jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(train_key, i)))(
      jnp.arange(steps))

  def sample(key: jax.Array) -> Batch:
    match = jnp.all(step_keys == jax.random.key_data(key)[None], axis=-1)
    i = jnp.argmax(match)
    return Batch(x[index[i]], y[index[i]], weight[i].astype(x.dtype))

  return sample


def weighted_mse(pred: jax.Array, batch: Batch) -> jax.Array:
  """``sum_b w_b mean_j (pred - y)_bj^2 / sum_b w_b``: PyTorch's ``MSELoss`` over the real examples."""
  per_example = jnp.mean((pred - batch.y) ** 2, axis=-1)
  return jnp.sum(batch.weight * per_example) / jnp.sum(batch.weight)
