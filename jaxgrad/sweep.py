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
  than of ``rbg``. Under ``vmap`` an array of ``rbg`` keys draws the whole
  batch from one of them (JAX's batching rule for RngBitGenerator): the runs
  are independent, but run ``i`` does not draw what ``key[i]`` alone would.
  :func:`sweep_grid` pairs arms with keys so that this does not matter.
  """
  return jax.random.key(seed, impl="rbg")


def _pad(x: jax.Array, pad: int) -> jax.Array:
  if pad == 0:
    return x
  return jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)


def _placed(args: Any, devices: Sequence[jax.Device] | None) -> tuple[Any, int, int]:
  """``args`` padded to a multiple of the device count and sharded on their leading axis.

  Returns:
    ``(args, n, pad)``: the placed arguments, the sweep's size and the padding added.
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
  return args, n, pad


def _unpadded(out: Any, n: int, pad: int) -> Any:
  if pad == 0:  # slicing anyway would compile one small program per output shape
    return out
  return jax.tree.map(lambda x: x[:n], out)


@functools.partial(jax.jit, static_argnums=0)
def _vmapped(fn: Callable[..., Any], *args: Any) -> Any:
  """``jax.vmap(fn)(*args)``, jitted once per ``fn`` (a static argument: JAX's jit cache holds it)."""
  return jax.vmap(fn)(*args)


@functools.partial(jax.jit, static_argnums=0)
def _grid(fn: Callable[[Any, Any], Any], keys: Any, arms: Any) -> Any:
  """``fn(key, arm)`` for every arm (outer ``vmap``) x key (inner ``vmap``): leaves ``(arms, keys, ...)``."""
  return jax.vmap(lambda arm: jax.vmap(fn, in_axes=(0, None))(keys, arm))(arms)


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
  args, n, pad = _placed(args, devices)
  return _unpadded(_vmapped(fn, *args), n, pad)


def sweep_grid(fn: Callable[[Any, Any], Any], keys: Any, arms: Any, *,
               devices: Sequence[jax.Device] | None = None) -> Any:
  """``fn(key, arm)`` for every arm x key pair in one program: leaves ``(arms, keys, ...)``.

  Every arm sees the same keys and makes the same draws from them (a paired
  comparison: seed s starts from the same draw in each arm), with any PRNG:
  the arms are the outer ``vmap``, over which the keys are not batched, so
  each draw is made once and shared by the arms; only what depends on the
  arm is batched over it. (Flattening arms x keys into one ``vmap`` would pair
  threefry keys but not ``rbg`` ones: see :func:`rbg_key`.) The arm axis is
  sharded over ``devices`` as in :func:`sweep`, the keys replicated.

  Args:
    fn: ``(key, arm) -> pytree`` for one key and one arm.
    keys: a pytree of arrays with a leading key axis (e.g. ``split(key, seeds)``).
    arms: a pytree of arrays with a leading arm axis, e.g. one traced
      hyperparameter per arm.
    devices: default ``jax.devices()``.
  """
  (arms,), n, pad = _placed((arms,), devices)
  return _unpadded(_grid(fn, keys, arms), n, pad)
