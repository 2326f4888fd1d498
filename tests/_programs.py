"""What a traced or compiled program contains: primitives, nested jaxprs included; temp memory."""

from collections.abc import Callable
from typing import Any

import jax

# jax.checkpoint / nn.remat: 'remat2' on jax 0.10 and 0.12, 'checkpoint' in other releases.
REMAT_PRIMITIVES = frozenset({"checkpoint", "remat", "remat2"})


def primitive_names(jaxpr: Any) -> set[str]:
  """Names of the primitives of ``jaxpr`` and of every jaxpr nested in its equations' params."""
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr as .jaxpr
        if hasattr(inner, "eqns"):
          names |= primitive_names(inner)
  return names


def has_remat(fn: Callable, *args: Any) -> bool:
  """Whether the program of ``fn(*args)`` rematerialises anything (a checkpoint primitive)."""
  return bool(primitive_names(jax.make_jaxpr(fn)(*args).jaxpr) & REMAT_PRIMITIVES)


def temp_bytes(fn: Callable, *args: Any) -> int:
  """Scratch memory XLA allocates for the compiled ``jax.jit(fn)(*args)``."""
  return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes
