"""Per-layer views of parameter-shaped pytrees, in the model's execution order.

A scanned stack of ``L`` layers keeps its per-layer values as one array with a
layer axis (one vmapped op, not ``L`` slices), so a 10,000-layer train step
that records per-layer norms compiles as fast as a 10-layer one;
:class:`LayerValues` names the layers only when they are read.

Which subtrees are stacks, and in which order the layers run, comes from a
probe of the model (:func:`jaxgrad.probe.layout`): structure seen in the run,
never guessed from a module's name. Without one, the tree's own order is kept
and nothing is expanded.
"""

from collections.abc import Callable, Iterator, Mapping
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxgrad.probe import Trace, layer_names


class _Group(NamedTuple):
  """Static description of one array of a :class:`LayerValues`."""

  keys: tuple[str, ...]  # module path of the leaf's owner
  stack: int | None  # index of the scanned-stack component in keys, None if unstacked
  layers: int  # length of the layer axis (1 if unstacked)
  value_ndim: int  # ndim of one layer's reduced value

  def names(self) -> list[str]:
    """One name per layer of the group (a stack's layers numbered ``_000`` …)."""
    return layer_names(self.keys, None if self.stack is None else (self.stack, self.layers))


class _Layout(NamedTuple):
  """Static: the groups and the order of their layers, ``(group, layer)`` input to output."""

  groups: tuple[_Group, ...]
  order: tuple[tuple[int, int], ...]

  def index(self) -> dict[str, tuple[int, int]]:
    """Layer name -> ``(group, layer)``."""
    return _index(self)

  def permutation(self) -> tuple[int, ...]:
    """Positions, in the groups' concatenated layers, of the layers in execution order."""
    offsets = [0]
    for group in self.groups:
      offsets.append(offsets[-1] + group.layers)
    return tuple(offsets[g] + i for g, i in self.order)


@functools.lru_cache(maxsize=256)
def _index(layout: _Layout) -> dict[str, tuple[int, int]]:
  """Layer name -> (group, index in group), input to output (cached: read once per name)."""
  names = [g.names() for g in layout.groups]
  return {names[g][i]: (g, i) for g, i in layout.order}


@jax.tree_util.register_pytree_with_keys_class
class LayerValues(Mapping[str, jax.Array]):
  """Read-only ``{layer path: value}``, input to output; a pytree of per-stack arrays.

  Reading ``values[name]`` slices the stack's array, whatever leading axes
  ``vmap`` or ``lax.scan`` added (the layer axis sits just before the reduced
  value's own axes). Inside ``jit`` keep it whole and read it outside, or use
  :meth:`stack`, which gathers every layer in three ops.
  """

  def __init__(self, layout: _Layout, arrays: tuple[Any, ...]):
    self._layout = layout
    self._groups = layout.groups
    self._arrays = tuple(arrays)

  def tree_flatten_with_keys(self):
    keys = [jax.tree_util.DictKey("/".join(g.keys) or "(root)") for g in self._groups]
    return tuple(zip(keys, self._arrays)), self._layout

  @classmethod
  def tree_unflatten(cls, layout, arrays):
    return cls(layout, arrays)

  def __getitem__(self, name: str) -> jax.Array:
    index = self._layout.index()
    if name not in index:
      raise KeyError(f"no layer {name!r}; layers are {list(index)[:8]}"
                     f"{' ...' if len(index) > 8 else ''}")
    g, i = index[name]
    group, array = self._groups[g], self._arrays[g]
    if group.stack is None:
      return array
    return array[(Ellipsis, i) + (slice(None),) * group.value_ndim]

  def __iter__(self) -> Iterator[str]:
    return iter(self._layout.index())

  def __len__(self) -> int:
    return sum(g.layers for g in self._groups)

  def __repr__(self) -> str:
    return f"LayerValues({len(self)} layers: {list(self)[:4]}{' ...' if len(self) > 4 else ''})"

  def stack(self) -> jax.Array:
    """All layers along one axis, input to output: shape ``(*batch, layers, *value)``.

    Without leading batch axes this is ``jnp.stack(list(self.values()))``.
    """
    ndims = {g.value_ndim for g in self._groups}
    if len(ndims) != 1:
      raise ValueError(f"stack() needs every layer's value to have one ndim; got {sorted(ndims)}")
    (k,) = ndims
    axis = -(1 + k)
    parts = [a if g.stack is not None else jnp.expand_dims(a, axis)
             for g, a in zip(self._groups, self._arrays)]
    out = jnp.concatenate(parts, axis=axis)
    order = self._layout.permutation()
    if order != tuple(range(len(order))):
      out = jnp.take(out, jnp.asarray(order), axis=axis)
    return out


def _leaves(tree: Mapping[str, Any], names: tuple[str, ...], prefix=()) -> Iterator[tuple]:
  """``(owner path, leaf)`` for every leaf called one of ``names``, in the tree's own order."""
  for key, value in tree.items():
    if isinstance(value, Mapping):
      yield from _leaves(value, names, prefix + (str(key),))
    elif str(key) in names:
      if value is None or isinstance(value, (list, tuple)):
        raise ValueError(f"leaf {'/'.join(prefix + (str(key),))} is {type(value).__name__}, "
                         "not an array")
      yield prefix, value


def per_layer(
    tree: Mapping[str, Any],
    leaf_name: str | tuple[str, ...],
    reduce: Callable[[jax.Array], jax.Array],
    *,
    layout: Trace | None = None,
) -> LayerValues:
  """Applies ``reduce`` to every leaf called ``leaf_name``, one entry per layer.

  Args:
    tree: nested dict, as Flax's variable collections are.
    leaf_name: the leaf key (or keys) that identifies a layer's array, e.g.
      ``'kernel'``; the layer's name is the path of the module that owns it.
    reduce: maps one layer's array to a scalar or an array.
    layout: the model's probed structure (:func:`jaxgrad.probe.layout`).
      With it, entries follow the execution order, and a leaf under a scanned
      stack (an extra leading layer axis) is reduced per layer with
      ``jax.vmap(reduce)``, its layers named ``<stack>_000``, ``<stack>_001``,
      … in the order they run. Without it, the tree's own order is kept and
      nothing is expanded.

  Raises:
    ValueError: for a tree that is not a mapping, a leaf that is not an array,
      or a ``leaf_name`` no leaf has.
  """
  if not isinstance(tree, Mapping):
    raise ValueError(f"tree must be a nested mapping (Flax params), got {type(tree).__name__}")
  names = (leaf_name,) if isinstance(leaf_name, str) else tuple(leaf_name)
  groups, arrays = [], []
  for path, leaf in _leaves(tree, names):
    stack = layout.stack_of(path) if layout is not None else None
    if stack is not None:
      value = jax.vmap(reduce)(leaf)
      groups.append(_Group(path, stack[0], leaf.shape[0], jnp.ndim(value) - 1))
    else:
      value = reduce(leaf)
      groups.append(_Group(path, None, 1, jnp.ndim(value)))
    arrays.append(value)
  if not groups:
    raise ValueError(f"no leaf named {leaf_name!r} in the tree")
  return LayerValues(_Layout(tuple(groups), _order(groups, layout)), tuple(arrays))


def _order(groups: list[_Group], layout: Trace | None) -> tuple[tuple[int, int], ...]:
  """Execution order: by where the owner (a stack: its root) returned, then layer, then owner."""
  if layout is None:
    return tuple((g, i) for g, group in enumerate(groups) for i in range(group.layers))
  unknown = len(layout.modules)

  def position(path):
    p = layout.position(path)
    return unknown if p is None else p

  keys = []
  for g, group in enumerate(groups):
    own = position(group.keys)
    if group.stack is None:
      keys += [((own, 0, 0, g), (g, 0))]
    else:
      root = position(group.keys[:group.stack + 1])
      keys += [((root, i, own, g), (g, i)) for i in range(group.layers)]
  return tuple(entry for _, entry in sorted(keys))
