"""Per-layer views of parameter-shaped pytrees, ordered input to output.

A scanned stack of ``L`` layers keeps its per-layer values as one array with a
layer axis (one vmapped op, not ``L`` slices), so a 10,000-layer train step
that records per-layer norms compiles as fast as a 10-layer one;
:class:`LayerValues` names the layers only when they are read.
"""

from collections.abc import Callable, Iterator, Mapping
import functools
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxgrad.models.mlp import STACK_NAME


def _natural_key(path: str) -> list[Any]:
  """'Dense_10' sorts after 'Dense_9': digit runs compare as integers."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def _is_stacked(component: str) -> bool:
  # jaxgrad names scanned stacks `layers`; Flax names an unnamed nn.scan of
  # class `Block` `ScanBlock_0`.
  return component == STACK_NAME or component.startswith("Scan")


class _Group(NamedTuple):
  """Static description of one array of a :class:`LayerValues`."""

  keys: tuple[str, ...]  # module path of the leaf's owner
  stack: int | None  # index of the scanned-stack component in keys, None if unstacked
  layers: int  # length of the layer axis (1 if unstacked)
  value_ndim: int  # ndim of one layer's reduced value

  def names(self) -> list[str]:
    if self.stack is None:
      return ["/".join(self.keys) or "root"]
    s = self.stack
    return ["/".join(self.keys[:s] + (f"{self.keys[s]}_{i:03d}",) + self.keys[s + 1:])
            for i in range(self.layers)]


@functools.lru_cache(maxsize=256)
def _layout(groups: tuple[_Group, ...]) -> tuple[dict[str, tuple[int, int]], tuple[int, ...]]:
  """Layer name -> (group, index in group), input to output; the stack() permutation."""
  entries = [(name, g, i) for g, group in enumerate(groups)
             for i, name in enumerate(group.names())]
  # Expanded names sort layer first, then sublayer (layers_000/attn before layers_001/attn).
  entries.sort(key=lambda e: _natural_key(e[0]))
  offsets = [0]
  for group in groups:
    offsets.append(offsets[-1] + group.layers)
  return ({name: (g, i) for name, g, i in entries},
          tuple(offsets[g] + i for _, g, i in entries))


@jax.tree_util.register_pytree_with_keys_class
class LayerValues(Mapping[str, jax.Array]):
  """Read-only ``{layer path: value}``, input to output; a pytree of per-stack arrays.

  Reading ``values[name]`` slices the stack's array, whatever leading axes
  ``vmap`` or ``lax.scan`` added (the layer axis sits just before the reduced
  value's own axes). Inside ``jit`` keep it whole and read it outside, or use
  :meth:`stack`, which gathers every layer in three ops.
  """

  def __init__(self, groups: tuple[_Group, ...], arrays: tuple[Any, ...]):
    self._groups = groups
    self._arrays = tuple(arrays)

  def tree_flatten_with_keys(self):
    keys = [jax.tree_util.DictKey("/".join(g.keys) or "root") for g in self._groups]
    return tuple(zip(keys, self._arrays)), self._groups

  @classmethod
  def tree_unflatten(cls, groups, arrays):
    return cls(groups, arrays)

  def __getitem__(self, name: str) -> jax.Array:
    index, _ = _layout(self._groups)
    if name not in index:
      raise KeyError(f"no layer {name!r}; layers are {list(index)[:8]}"
                     f"{' ...' if len(index) > 8 else ''}")
    g, i = index[name]
    group, array = self._groups[g], self._arrays[g]
    if group.stack is None:
      return array
    return array[(Ellipsis, i) + (slice(None),) * group.value_ndim]

  def __iter__(self) -> Iterator[str]:
    return iter(_layout(self._groups)[0])

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
    order = _layout(self._groups)[1]
    if order != tuple(range(len(order))):
      out = jnp.take(out, jnp.asarray(order), axis=axis)
    return out


def per_layer(
    tree: Mapping[str, Any],
    leaf_name: str | tuple[str, ...],
    reduce: Callable[[jax.Array], jax.Array],
) -> LayerValues:
  """Applies ``reduce`` to every leaf called ``leaf_name``, one entry per layer.

  Args:
    tree: nested dict, as Flax's variable collections are.
    leaf_name: the leaf key (or keys) that identifies a layer's array, e.g.
      ``'kernel'``; the layer's name is the path of the module that owns it.
    reduce: maps one layer's array to a scalar or an array. Leaves under a
      scanned stack carry an extra leading layer axis; ``jax.vmap(reduce)``
      maps over it, and the stack's layers read back as ``layers_000`` and so on.

  Returns:
    A :class:`LayerValues` ordered input to output: paths in natural sort order
    (Flax's automatic names ``Dense_0 .. Dense_10`` and jaxgrad's module names
    sort that way), a stack's layers in stack order.
  """
  leaf_names = (leaf_name,) if isinstance(leaf_name, str) else leaf_name
  groups, arrays = [], []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = tuple(str(getattr(k, "key", k)) for k in path)
    if not keys or keys[-1] not in leaf_names:
      continue
    keys = keys[:-1]
    stacked = [i for i, k in enumerate(keys) if _is_stacked(k)]
    if len(stacked) > 1:
      raise ValueError(f"nested scanned stacks are not supported: {'/'.join(keys)}")
    if stacked:
      value = jax.vmap(reduce)(leaf)
      groups.append(_Group(keys, stacked[0], leaf.shape[0], jnp.ndim(value) - 1))
    else:
      value = reduce(leaf)
      groups.append(_Group(keys, None, 1, jnp.ndim(value)))
    arrays.append(value)
  return LayerValues(tuple(groups), tuple(arrays))
