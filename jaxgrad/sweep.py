"""Many runs in one program: ``vmap`` over a sweep axis, sharded over every device.

:func:`sweep` maps a function over the leading axis of its arguments (seeds,
configurations, ...) with ``jax.vmap`` inside one ``jax.jit``, and places that
axis on a one-dimensional device mesh with ``NamedSharding``, so XLA's SPMD
partitioner splits the runs across all of ``jax.devices()``: accelerators, or
CPU devices made with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.
The axis is padded to a multiple of the device count (with copies of its last
entry, so padding never creates NaNs) and the padding is dropped from the
result. On one device this is exactly ``jax.jit(jax.vmap(fn))``.

Past one machine: start every host with ``jax.distributed.initialize()``;
``jax.devices()`` then lists the devices of all hosts and the same call shards
the sweep across them.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

AXIS = "sweep"


def rbg_key(seed: int) -> jax.Array:
  """A typed key of JAX's ``rbg`` PRNG (XLA's RngBitGenerator), for programs that draw many tensors.

  XLA's CPU compile of the default threefry for many tensors is about 8x slower
  than of ``rbg``. Split such keys before a ``vmap`` (:func:`sweep_grid` warns
  why).
  """
  return jax.random.key(seed, impl="rbg")


def _pad(x: jax.Array, pad: int) -> jax.Array:
  if pad == 0:
    return x
  return jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)


@functools.partial(jax.jit, static_argnums=0)
def _vmapped(fn: Callable[..., Any], *args: Any) -> Any:
  """``jax.vmap(fn)(*args)``, jitted once per ``fn`` (a static argument: JAX's jit cache holds it)."""
  return jax.vmap(fn)(*args)


def sweep(fn: Callable[..., Any], *args: Any, devices: Sequence[jax.Device] | None = None) -> Any:
  """``jax.jit(jax.vmap(fn))(*args)`` with the mapped axis sharded over ``devices``.

  Args:
    fn: maps one entry of the sweep (one slice of every leaf of ``args``) to a pytree.
    *args: pytrees whose leaves share the leading sweep axis of size n >= 1.
    devices: default ``jax.devices()``.

  Returns:
    ``fn``'s outputs stacked along a leading axis of size n.

  Calling it again with the same ``fn`` (the same object) and arguments of the
  same shapes reuses the compiled program; a new ``lambda`` or
  ``functools.partial`` per call is a new function, traced and compiled anew.
  """
  leaves = jax.tree.leaves(args)
  if not leaves:
    raise ValueError("sweep needs at least one array argument with a leading sweep axis")
  sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(f"every argument leaf needs the same leading sweep axis; got sizes {sizes}")
  (n,) = sizes
  devices = list(jax.devices() if devices is None else devices)
  pad = (-n) % len(devices)
  args = jax.tree.map(lambda x: _pad(jnp.asarray(x), pad), args)
  if len(devices) > 1:
    mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
    args = jax.device_put(args, sharding)
  out = _vmapped(fn, *args)
  if pad == 0:  # slicing anyway would compile one small program per output shape
    return out
  return jax.tree.map(lambda x: x[:n], out)


def sweep_grid(fn: Callable[[Any, Any], Any], keys: Any, arms: Any) -> Any:
  """``fn(key, arm)`` for every arm x key pair in one :func:`sweep`: leaves ``(arms, keys, ...)``.

  Every arm sees the same keys (a paired comparison: seed s starts from the
  same draw in each arm); ``arms`` is a pytree of arrays with a leading arm
  axis, e.g. one traced hyperparameter per arm. The pairing needs keys whose
  draws ``vmap`` respects, as threefry's (JAX's default) do: under ``vmap``
  ``rbg`` / ``unsafe_rbg`` keys draw the whole batch from one of them (JAX's
  batching rule for XLA's RngBitGenerator), so equal keys give unequal draws.
  """
  n_arms = jax.tree.leaves(arms)[0].shape[0]
  n_keys = jax.tree.leaves(keys)[0].shape[0]
  flat_keys = jax.tree.map(lambda k: jnp.concatenate([k] * n_arms), keys)
  flat_arms = jax.tree.map(lambda a: jnp.repeat(jnp.asarray(a), n_keys, axis=0), arms)
  out = sweep(fn, flat_keys, flat_arms)
  return jax.tree.map(lambda x: x.reshape(n_arms, n_keys, *x.shape[1:]), out)
