r"""Synthetic sequence tasks, deterministic functions of a PRNG key, and epoch batching.

* :func:`sine_sequences` (seed 000 §7.3): ``x_t = sin(f t + p)`` on
  ``t = linspace(0, 4 pi, T)``, ``f ~ U[0.5, 2]``, ``p ~ U[0, 2 pi)``; the target
  is the next value ``sin(f (t_T + dt) + p)``.
* :func:`adding_problem` (Hochreiter & Schmidhuber 1997; Pascanu et al. 2013):
  channel 0 holds values ``U[0, 1]``, channel 1 marks two positions, one in the
  first 10% of the sequence and one in ``[10%, 50%)``; the target is the sum of
  the two marked values. Predicting the constant 1 scores MSE
  ``Var(u_1 + u_2) = 2/12 = 1/6``.
* :func:`epoch_batches` / :func:`epoch_sampler`: PyTorch's
  ``DataLoader(shuffle=True)``: a fresh permutation every epoch, batches in
  order, the last one short (1000 examples, batch 64: 15 full batches and one
  of 40); the short batch is padded to the full size with weight 0, so shapes
  stay static and the weighted mean is the mean over the real examples.

Every function is jit- and vmap-able.
"""

from collections.abc import Callable
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Batch(NamedTuple):
  x: jax.Array  # (B, T, features)
  y: jax.Array  # (B, out)
  weight: jax.Array  # (B,) 1 for real examples, 0 for padding


def _check_positive(**values: int) -> None:
  for name, value in values.items():
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def sine_sequences(key: jax.Array, num: int = 1000, length: int = 100,
                   dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """The seed's sine sequences: ``x`` of shape ``(num, length, 1)``, next value ``y`` ``(num, 1)``.

  >>> x, y = sine_sequences(jax.random.key(0), 8, 100)
  >>> x.shape, y.shape
  ((8, 100, 1), (8, 1))
  """
  _check_positive(num=num, length=length)
  if length < 2:
    raise ValueError(f"length must be >= 2 (the step dt = t[1] - t[0]), got {length}")
  k_freq, k_phase = jax.random.split(key)
  freq = jax.random.uniform(k_freq, (num, 1), dtype, 0.5, 2.0)
  phase = jax.random.uniform(k_phase, (num, 1), dtype, 0.0, 2 * math.pi)
  t = jnp.linspace(0.0, 4 * math.pi, length, dtype=dtype)
  x = jnp.sin(freq * t[None, :] + phase)[..., None]
  y = jnp.sin(freq * (t[-1] + t[1] - t[0]) + phase)
  return x, y


def adding_problem(key: jax.Array, num: int, length: int,
                   dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """The adding problem: ``x`` ``(num, length, 2)`` (values, markers), ``y`` ``(num, 1)``.

  Marker positions follow Pascanu et al.'s ``addition.py``:
  ``p0 ~ U{0, .., ceil(0.1 T) - 1}``, ``p1 ~ U{ceil(0.1 T), .., ceil(0.5 T) - 1}``.
  """
  _check_positive(num=num, length=length)
  if length < 4:
    raise ValueError(f"length must be >= 4 (two marks in different segments), got {length}")
  k_val, k0, k1 = jax.random.split(key, 3)
  values = jax.random.uniform(k_val, (num, length), dtype)
  first, half = math.ceil(0.1 * length), math.ceil(0.5 * length)
  p0 = jax.random.randint(k0, (num,), 0, first)
  p1 = jax.random.randint(k1, (num,), first, half)
  steps = jnp.arange(length)[None, :]
  marks = ((steps == p0[:, None]) | (steps == p1[:, None])).astype(dtype)
  x = jnp.stack([values, marks], axis=-1)
  y = jnp.sum(values * marks, axis=1, keepdims=True)
  return x, y


def batches_per_epoch(num: int, batch_size: int) -> int:
  """``ceil(num / batch_size)``: the last batch is short when it does not divide."""
  _check_positive(num=num, batch_size=batch_size)
  return -(-num // batch_size)


def epoch_batches(key: jax.Array, num: int, batch_size: int,
                  epochs: int) -> tuple[jax.Array, jax.Array]:
  """Example indices and weights for every step of ``epochs`` shuffled epochs.

  Epoch ``e`` uses ``jax.random.permutation(fold_in(key, e), num)`` cut into
  consecutive batches; the last batch is padded (index 0, weight 0).

  Returns:
    ``(index, weight)``, each ``(epochs * batches_per_epoch, batch_size)``.
  """
  _check_positive(epochs=epochs)
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
  """A ``sample_batch(key)`` for :func:`jaxgrad.training.train` that walks shuffled epochs.

  ``train`` calls ``sample_batch(fold_in(train_key, step))``; the step is
  recovered by matching the key's data against the ``epochs * batches`` keys
  ``fold_in(train_key, i)`` (an exact, cheap lookup), and the step's batch is
  taken from :func:`epoch_batches` (shuffled with ``shuffle_key``).
  """
  index, weight = epoch_batches(shuffle_key, x.shape[0], batch_size, epochs)
  steps = index.shape[0]
  step_keys = jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(train_key, i)))(
      jnp.arange(steps))

  def sample_batch(key: jax.Array) -> Batch:
    match = jnp.all(step_keys == jax.random.key_data(key)[None], axis=-1)
    i = jnp.argmax(match)
    return Batch(x[index[i]], y[index[i]], weight[i].astype(x.dtype))

  return sample_batch


def weighted_mse(pred: jax.Array, batch: Batch) -> jax.Array:
  """``sum_b w_b mean_j (pred - y)_bj^2 / sum_b w_b``: PyTorch's ``MSELoss`` over the real examples."""
  per_example = jnp.mean((pred - batch.y) ** 2, axis=-1)
  return jnp.sum(batch.weight * per_example) / jnp.sum(batch.weight)
