"""The argument checks the library's boundaries share: a number where a number is due."""

import numbers
from typing import Any

import numpy as np


def require_real(name: str, value: Any) -> None:
  """Raises ``ValueError`` naming ``name`` unless ``value`` is a real number or a real array.

  A string such as ``"0.1"`` would otherwise fail later with ``'<' not
  supported between 'str' and 'int'``, or be parsed by numpy without a word.
  Booleans and ``None`` are refused too; JAX tracers and arrays pass.

  Args:
    name: the argument's name, for the message.
    value: the value given.
  """
  if isinstance(value, bool) or value is None:
    ok = False
  elif isinstance(value, numbers.Real):
    ok = True
  else:
    dtype = getattr(value, "dtype", None)
    ok = dtype is not None and np.issubdtype(dtype, np.number) and not np.issubdtype(
        dtype, np.complexfloating)
  if not ok:
    raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")


def require_int(name: str, value: Any, minimum: int = 1) -> None:
  """Raises ``ValueError`` naming ``name`` unless ``value`` is an integer ``>= minimum``.

  Python and numpy integers pass; booleans (``True`` is an ``int`` to Python,
  never a width or a depth), floats and strings are refused.

  Args:
    name: the argument's name, for the message.
    value: the value given.
    minimum: the smallest value allowed.
  """
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def require_positive_int(**values: Any) -> None:
  """Raises ``ValueError`` naming the first argument that is not an integer >= 1.

  Args:
    **values: argument name -> the value given.
  """
  for name, value in values.items():
    require_int(name, value)
