r"""Synthetic sequence tasks, deterministic functions of a PRNG key.

* :func:`sine_sequences` (seed 000 §7.3): ``x_t = sin(f t + p)`` on
  ``t = linspace(0, 4 pi, T)``, ``f ~ U[0.5, 2]``, ``p ~ U[0, 2 pi)``; the target
  is the next value ``sin(f (t_T + dt) + p)``.
* :func:`adding_problem` (Hochreiter & Schmidhuber 1997; Pascanu et al. 2013):
  channel 0 holds values ``U[0, 1]``, channel 1 marks two positions, one in the
  first 10% of the sequence and one in ``[10%, 50%)``; the target is the sum of
  the two marked values. Predicting the constant 1 scores MSE
  ``Var(u_1 + u_2) = 2/12 = 1/6``.

Each returns the arrays ``(x, y)`` of ``num`` examples, like a
:class:`jaxgrad.data.Dataset`'s; :mod:`jaxgrad.data.batches` turns arrays into
batches. Every function is jit- and vmap-able.
"""

import math

import jax
import jax.numpy as jnp

from jaxgrad import _checks


def sine_sequences(key: jax.Array, num: int = 1000, length: int = 100,
                   dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  """The seed's sine sequences: ``x`` of shape ``(num, length, 1)``, next value ``y`` ``(num, 1)``.

  >>> x, y = sine_sequences(jax.random.key(0), 8, 100)
  >>> x.shape, y.shape
  ((8, 100, 1), (8, 1))
  """
  _checks.require_positive_int(num=num, length=length)
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
  _checks.require_positive_int(num=num, length=length)
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
