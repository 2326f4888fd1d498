"""What every experiment shares: flags from its ``Config``, JSON output, progress.

An experiment module defines a frozen dataclass ``Config`` (with classmethods
``quick()`` and ``smoke()``), ``run(config, out_dir) -> dict`` and
``main(argv=None)``, which calls :func:`main`.
"""

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# Before numpy/jax are imported by any experiment: CPU SVD is otherwise up to
# 50x slower when the cores are busy (see shared/notes/jax-stack.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import tqdm  # noqa: E402

from jaxgrad import compilation_cache  # noqa: E402


def _parse_tuple(item_type: type) -> Callable[[str], tuple]:
  def parse(text: str) -> tuple:
    try:
      return tuple(item_type(t) for t in text.split(",") if t.strip())
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"expected a comma-separated list of {item_type.__name__}, got {text!r}"
      ) from None

  return parse


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, hints) -> None:
  flag = "--" + field.name.replace("_", "-")
  kind = hints[field.name]
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  help_text = field.metadata.get("help", "") + f" (default: {field.default!r})"
  if kind is bool:
    parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    return
  if origin is tuple:
    parser.add_argument(flag, type=_parse_tuple(args[0]), default=None, metavar="A,B,...",
                        help=help_text)
    return
  if origin in (typing.Union, types.UnionType):  # Optional[X]
    kind = next(a for a in args if a is not type(None))
  choices = field.metadata.get("choices")
  parser.add_argument(flag, type=kind, default=None, choices=choices, help=help_text)


def parse_config(config_cls: type, argv: list[str] | None, *, name: str, doc: str | None):
  """Parses ``argv`` into ``(config, out_dir)``.

  Every ``Config`` field becomes a flag (``--field-name``); ``--quick`` starts
  from ``Config.quick()`` instead of the defaults; ``--out`` defaults to
  ``runs/<name>``; JAX's persistent compilation cache is enabled unless
  ``--no-compile-cache``. A bad value exits with argparse's usage error, which
  names the flag and the expected type or choices.
  """
  parser = argparse.ArgumentParser(
      prog=f"python -m experiments.{name}", description=doc,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs") / name,
                      help="output directory (default: runs/%(prog)s name)")
  parser.add_argument("--quick", action="store_true", help="small preset, under a minute on 2 CPU cores")
  parser.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                      help="do not use JAX's persistent compilation cache "
                           "($JAXGRAD_COMPILE_CACHE or ~/.cache/jaxgrad/xla)")
  hints = typing.get_type_hints(config_cls)
  for field in dataclasses.fields(config_cls):
    _add_field(parser, field, hints)
  args = parser.parse_args(argv)
  base = config_cls.quick() if args.quick else config_cls()
  overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
               if getattr(args, f.name) is not None}
  try:
    config = dataclasses.replace(base, **overrides)
  except ValueError as e:  # Config.__post_init__ validation
    parser.error(str(e))
  if args.compile_cache:
    compilation_cache.enable()
  return config, args.out


def to_jsonable(obj: Any) -> Any:
  """Arrays to lists, dataclasses to dicts; NaN and inf stay (Python's json writes them)."""
  if dataclasses.is_dataclass(obj):
    return to_jsonable(dataclasses.asdict(obj))
  if isinstance(obj, Mapping):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if hasattr(obj, "__array__"):
    arr = np.asarray(obj)
    return arr.item() if arr.ndim == 0 else arr.tolist()
  if isinstance(obj, (np.generic,)):
    return obj.item()
  return obj


def write_json(path: pathlib.Path, obj: Any) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(to_jsonable(obj), indent=1))
  return path


def progress(items: Iterable, *, desc: str, total: int | None = None) -> Iterable:
  """A progress bar on stderr; ``JAXGRAD_NO_PROGRESS=1`` hides it."""
  return tqdm.tqdm(items, desc=desc, total=total, file=sys.stderr, leave=False,
                   disable=bool(os.environ.get("JAXGRAD_NO_PROGRESS")))


def format_table(header: list[str], rows: list[list[Any]]) -> str:
  """A plain-text table with right-aligned numeric columns."""
  def cell(v):
    if isinstance(v, float):
      return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)

  cells = [header] + [[cell(v) for v in row] for row in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
  lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def main(module_name: str, config_cls: type, run: Callable, summary: Callable[[dict], str],
         argv: list[str] | None, doc: str | None, *, quick_compiles_fast: bool = False) -> dict:
  """Parse flags, write ``config.json``, ``run``, print the summary table.

  ``quick_compiles_fast``: the ``--quick`` preset's time is compile time, so
  under ``--quick`` compile for speed, not for run time
  (:func:`jaxgrad.compilation_cache.prefer_fast_compile`; level 0 measured on
  ``adding_problem --quick``: 60 s -> 32 s). Full runs keep optimised code.
  """
  name = module_name.rsplit(".", 1)[-1]
  if quick_compiles_fast and "--quick" in (sys.argv[1:] if argv is None else argv):
    compilation_cache.prefer_fast_compile()
  config, out = parse_config(config_cls, argv, name=name, doc=doc)
  write_json(out / "config.json", config)
  results = run(config, out)
  print(summary(results))
  print(f"\nwrote {out}/")
  return results
