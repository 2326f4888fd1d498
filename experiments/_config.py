"""Experiment settings declared once: each field's type, range and choices, checked on construction.

An experiment's ``Config`` is a frozen dataclass that derives from
:class:`Checked` and declares its fields with :func:`setting`::

  @dataclasses.dataclass(frozen=True)
  class Config(_config.Checked):
    depth: int = _config.setting(20, "Dense layers", at_least=2)
    activation: str = _config.setting("tanh", choices=activations.names)
    depths: tuple[int, ...] = _config.setting((10, 20), at_least=1, increasing=True)

    def relations(self):
      return {"depth": "must exceed 3"} if self.depth <= 3 else {}

Every field is checked when the ``Config`` is made, from a script as from the
command line, before any JAX work: the type (``int`` fields take integers,
``float`` fields finite reals), the range, the choices (a tuple, or a
registry's ``names`` function called at check time), and for tuples: not
empty, every item checked, no item twice unless declared (an item usually
names a setting of the run), strictly increasing where declared. Conditions
between fields come from :meth:`Checked.relations`. A broken one raises
:class:`ConfigError`, which names the field, the value and what is allowed;
the command line reports it as ``argument --field-name: ...`` and exits 2.
"""

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

Choices = Sequence[Any] | Callable[[], Sequence[Any]]


class ConfigError(ValueError):
  """A ``Config`` field holds a value it does not allow.

  Attributes:
    field: the field's name.
    value: the value given.
    allowed: what the field allows, in words.
  """

  def __init__(self, field: str, value: Any, allowed: str):
    self.field, self.value, self.allowed = field, value, allowed
    super().__init__(f"{field}={value!r}: {allowed}")


@dataclasses.dataclass(frozen=True)
class Constraint:
  """What one field allows; for a tuple field, what each of its items allows.

  Attributes:
    at_least: smallest allowed value (inclusive).
    above: values must be greater than this.
    at_most: largest allowed value (inclusive).
    below: values must be smaller than this.
    choices: the allowed values, or a function returning them (a registry's
      ``names``), called when a value is checked.
    increasing: a tuple field's items must be strictly increasing.
    allow_empty: a tuple field may be empty.
    allow_repeats: a tuple field may hold an item twice (layer widths, say;
      not names of settings).
  """

  at_least: float | None = None
  above: float | None = None
  at_most: float | None = None
  below: float | None = None
  choices: Choices | None = None
  increasing: bool = False
  allow_empty: bool = False
  allow_repeats: bool = False

  def allowed_choices(self) -> tuple:
    """The choices, with a registry's function called."""
    return tuple(self.choices() if callable(self.choices) else self.choices)

  def range_text(self) -> str:
    """The range in words, e.g. ``"> 0 and <= 1"``; ``""`` if unbounded."""
    bounds = [(">=", self.at_least), (">", self.above), ("<=", self.at_most), ("<", self.below)]
    return " and ".join(f"{op} {bound:g}" for op, bound in bounds if bound is not None)

  def in_range(self, value: float) -> bool:
    """Whether a number lies in the declared range."""
    return ((self.at_least is None or value >= self.at_least)
            and (self.above is None or value > self.above)
            and (self.at_most is None or value <= self.at_most)
            and (self.below is None or value < self.below))


def setting(default: Any, help: str = "", *, at_least: float | None = None,  # noqa: A002
            above: float | None = None, at_most: float | None = None,
            below: float | None = None, choices: Choices | None = None,
            increasing: bool = False, allow_empty: bool = False,
            allow_repeats: bool = False) -> Any:
  """A ``Config`` field with its help text and what it allows (see :class:`Constraint`).

  Args:
    default: the field's default value.
    help: the flag's help text; the range and choices are appended to it.
    at_least: smallest allowed value (inclusive).
    above: values must be greater than this.
    at_most: largest allowed value (inclusive).
    below: values must be smaller than this.
    choices: the allowed values, or a function returning them.
    increasing: a tuple field's items must be strictly increasing.
    allow_empty: a tuple field may be empty.
    allow_repeats: a tuple field may hold an item twice.

  Returns:
    A ``dataclasses.field`` whose metadata holds ``"help"`` and
    ``"constraint"``.
  """
  constraint = Constraint(at_least, above, at_most, below, choices, increasing, allow_empty,
                          allow_repeats)
  return dataclasses.field(default=default, metadata={"help": help, "constraint": constraint})


def constraint_of(field: dataclasses.Field) -> Constraint:
  """A field's :class:`Constraint`; none declared means only its type is checked."""
  return field.metadata.get("constraint", Constraint())


def field_kind(config_cls: type, name: str) -> tuple[type, bool]:
  """``(item type, is_tuple)`` of a ``Config`` field, e.g. ``(int, True)`` for ``tuple[int, ...]``.

  ``Optional[X]`` gives ``X``.
  """
  kind = typing.get_type_hints(config_cls)[name]
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin is tuple:
    return args[0], True
  if origin in (typing.Union, types.UnionType):
    return next(a for a in args if a is not type(None)), False
  return kind, False


def _type_problem(value: Any, kind: type) -> str | None:
  if kind is bool:
    return None if isinstance(value, bool) else "must be True or False"
  if kind is int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return None if ok else "must be an integer"
  if kind is float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
      return "must be a real number"
    return None if math.isfinite(value) else "must be finite"
  if kind is str:
    return None if isinstance(value, str) else "must be a string"
  return None


def _item_problem(value: Any, kind: type, constraint: Constraint) -> str | None:
  """What is wrong with one value (a scalar field's, or one item of a tuple's); ``None`` if nothing."""
  problem = _type_problem(value, kind)
  if problem:
    return problem
  if constraint.choices is not None and value not in constraint.allowed_choices():
    return f"must be one of {constraint.allowed_choices()}"
  if kind in (int, float) and not constraint.in_range(value):
    return f"must be {constraint.range_text()}"
  return None


def field_problem(config_cls: type, field: dataclasses.Field, value: Any) -> str | None:
  """What is wrong with ``value`` in ``field`` (in words), or ``None`` if it is allowed."""
  kind, is_tuple = field_kind(config_cls, field.name)
  constraint = constraint_of(field)
  if not is_tuple:
    return _item_problem(value, kind, constraint)
  if not isinstance(value, tuple):
    return "must be a tuple"
  if not value and not constraint.allow_empty:
    return "must not be empty"
  for item in value:
    if problem := _item_problem(item, kind, constraint):
      return f"every item {problem}" if len(value) > 1 else problem
  if constraint.increasing and list(value) != sorted(set(value)):
    return "must be strictly increasing"
  if not constraint.allow_repeats and len(set(value)) != len(value):
    return "must not repeat an item"
  return None


def describe(field: dataclasses.Field) -> str:
  """What a field allows, for its ``--help`` line (``""`` if only its type)."""
  constraint = constraint_of(field)
  parts = []
  if constraint.range_text():
    parts.append(constraint.range_text())
  if constraint.choices is not None:
    parts.append("from " + ", ".join(map(str, constraint.allowed_choices())))
  if constraint.increasing:
    parts.append("increasing")
  return "; ".join(parts)


class Checked:
  """Base of an experiment's ``Config``: every field is checked when the dataclass is made.

  Raises:
    ConfigError: from ``__post_init__``, for the first field whose value its
      declaration does not allow, then for the first broken
      :meth:`relations` entry.
  """

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if problem := field_problem(type(self), field, value):
        raise ConfigError(field.name, value, problem)
    for name, problem in self.relations().items():
      raise ConfigError(name, getattr(self, name), problem)

  def relations(self) -> dict[str, str]:
    """Conditions between fields that this config breaks, as ``{field: what it must be}``.

    Called after every field passed its own check; none by default.
    """
    return {}
