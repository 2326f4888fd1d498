"""Per-layer views of parameter-shaped pytrees, ordered input to output."""

from collections.abc import Callable, Mapping
import re
from typing import Any

import jax

from jaxgrad.models.mlp import STACK_NAME


def _natural_key(path: str) -> list[Any]:
  """'Dense_10' sorts after 'Dense_9': digit runs compare as integers."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def _is_stacked(component: str) -> bool:
  # jaxgrad names scanned stacks `layers`; Flax names an unnamed nn.scan of
  # class `Block` `ScanBlock_0`.
  return component == STACK_NAME or component.startswith("Scan")


def per_layer(
    tree: Mapping[str, Any],
    leaf_name: str | tuple[str, ...],
    reduce: Callable[[jax.Array], jax.Array],
) -> dict[str, jax.Array]:
  """Applies ``reduce`` to every leaf called ``leaf_name``, one entry per layer.

  Args:
    tree: nested dict, as Flax's variable collections are.
    leaf_name: the leaf key (or keys) that identifies a layer's array, e.g.
      ``'kernel'``; the layer's name is the path of the module that owns it.
    reduce: maps one layer's array to a scalar or an array. Leaves under a
      scanned stack carry an extra leading layer axis, which is expanded into
      one entry per layer, ``layers_000`` and so on, before ``reduce``.

  Returns:
    A dict ordered input to output: paths in natural sort order (Flax's
    automatic names ``Dense_0 .. Dense_10`` and jaxgrad's module names sort that
    way), a stack's layers in stack order.
  """
  leaf_names = (leaf_name,) if isinstance(leaf_name, str) else leaf_name
  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, "key", k)) for k in path]
    if keys and keys[-1] in leaf_names:
      found.append((keys[:-1], leaf))
  out: dict[str, jax.Array] = {}
  for keys, leaf in found:
    stacked = [i for i, k in enumerate(keys) if _is_stacked(k)]
    if not stacked:
      out["/".join(keys) or "root"] = reduce(leaf)
      continue
    if len(stacked) > 1:
      raise ValueError(f"nested scanned stacks are not supported: {'/'.join(keys)}")
    (s,) = stacked
    for i in range(leaf.shape[0]):
      name = keys[:s] + [f"{keys[s]}_{i:03d}"] + keys[s + 1 :]
      out["/".join(name)] = reduce(leaf[i])
  # Expanded names sort layer first, then sublayer (layers_000/attn before layers_001/attn).
  return dict(sorted(out.items(), key=lambda item: _natural_key(item[0])))
