"""The harness every experiment runs under: flags from its ``Config``, files, resuming, progress.

An experiment module defines a frozen dataclass ``Config`` (with classmethods
``quick()`` and ``smoke()``), ``run(config) -> results`` (no I/O: it calls the
library's studies and returns a dict), ``plot(results, out_dir)`` (its
figures, from the results alone), ``summary(results) -> str`` (the printed
table) and, at module level, ``EXPERIMENT = _cli.Experiment(...)`` bundling
them; ``main = EXPERIMENT.main``.

Files: :meth:`Experiment.execute` writes ``config.json`` before the run and
``results.json`` after it into ``--out`` (default ``runs/<experiment>``), both
strict JSON written atomically by :mod:`jaxgrad.files` (NaN and ±inf as the
strings ``"nan"``, ``"inf"``, ``"-inf"``; :func:`jaxgrad.files.read_json`
reads them back as floats), then calls ``plot``.

Reruns: a rerun into a folder whose ``config.json`` holds the same config goes
on from what is there; another config is refused (exit 2) unless
``--overwrite``, which starts afresh. A long experiment declares
``settings(config)``, the names of the settings it runs, and takes
``run(config, checkpoint)``: it skips the settings in ``checkpoint.done``
(those an earlier run of the same config finished) and hands its results to
``checkpoint.save`` after each setting, which the harness writes as
``results.json``. Ctrl-C exits 130 without a traceback and says what was kept.
"""

import argparse
import contextlib
import dataclasses
import functools
import gc
import json
import math
import numbers
import os
import pathlib
import signal
import sys
import threading
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

# Before numpy/jax are imported by any experiment: CPU SVD is otherwise up to
# 50x slower when the cores are busy (see shared/notes/jax-stack.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import tqdm  # noqa: E402

from experiments import _config  # noqa: E402
from jaxgrad import compilation_cache, files  # noqa: E402

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
FAST_COMPILE = ("never", "quick", "always")  # Experiment.fast_compile


def _parse_tuple(item_type: type) -> Callable[[str], tuple]:
  def parse(text: str) -> tuple:
    try:
      return tuple(item_type(t) for t in text.split(",") if t.strip())
    except ValueError:
      raise argparse.ArgumentTypeError(
          f"expected a comma-separated list of {item_type.__name__}, got {text!r}"
      ) from None

  return parse


def _add_field(parser: argparse.ArgumentParser, config_cls: type, field: dataclasses.Field) -> None:
  """One flag per field; its values are checked by the ``Config`` itself (:mod:`experiments._config`)."""
  flag = "--" + field.name.replace("_", "-")
  kind, is_tuple = _config.field_kind(config_cls, field.name)
  allowed = _config.describe(field)
  help_text = " ".join(filter(None, [field.metadata.get("help", ""),
                                     f"({allowed})" if allowed else ""]))
  help_text += f" (default: {field.default!r})"
  if kind is bool and not is_tuple:
    parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
  elif is_tuple:
    parser.add_argument(flag, type=_parse_tuple(kind), default=None, metavar="A,B,...",
                        help=help_text)
  else:
    parser.add_argument(flag, type=kind, default=None, help=help_text)


def experiment_name(module_name: str) -> str:
  """The experiment's short name, also when its module runs as ``__main__``.

  Under ``python -m experiments.adding_problem`` the module's ``__name__`` is
  ``"__main__"``, but its ``__spec__`` still says
  ``experiments.adding_problem``; run as a script, its file name says it.

  Args:
    module_name: the module's ``__name__``.

  Returns:
    The last part of the module's dotted name, e.g. ``"adding_problem"``.
  """
  module = sys.modules.get(module_name)
  spec = getattr(module, "__spec__", None)
  if spec is not None and spec.name and spec.name != "__main__":
    module_name = spec.name
  elif module_name == "__main__" and getattr(module, "__file__", None):
    module_name = pathlib.Path(module.__file__).stem
  return module_name.rsplit(".", 1)[-1]


class Parsed(typing.NamedTuple):
  """What :func:`parse_config` read from the command line."""

  config: Any
  out: pathlib.Path
  overwrite: bool


def _encoded(config: Any) -> Any:
  """``config`` as it reads back from ``config.json`` before decoding (NaN as ``"nan"``)."""
  return json.loads(files.to_json(config))


def _stored_config(out: pathlib.Path) -> Any:
  """``out/config.json`` parsed but not decoded (comparable with :func:`_encoded`); ``None`` if absent."""
  path = out / CONFIG_FILE
  if not path.is_file():
    return None
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
    return "(unreadable)"


def _config_difference(stored: Any, config: Any) -> str:
  new = _encoded(config)
  if not isinstance(stored, dict):
    return f"its {CONFIG_FILE} is {stored!r}"
  absent = "(absent)"
  keys = [k for k in {**stored, **new} if stored.get(k, absent) != new.get(k, absent)]
  return "; ".join(f"{k}: {stored.get(k, absent)!r} there, {new.get(k, absent)!r} now"
                   for k in keys)


def _check_out(parser: argparse.ArgumentParser, out: pathlib.Path, config: Any,
               overwrite: bool) -> None:
  """Exits 2 unless ``out`` can take this run: a folder, holding no other config, that can be written (it is made here)."""
  if out.exists() and not out.is_dir():
    parser.error(f"--out {out}: exists and is not a folder")
  stored = _stored_config(out)
  if stored is not None and not overwrite and stored != _encoded(config):
    parser.error(f"--out {out} holds a run of another config ({_config_difference(stored, config)}); "
                 "pass --overwrite to start afresh there, or choose another --out")
  try:  # really try: permissions, read-only file systems, a file where a parent folder should be
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".jaxgrad_write_test"
    probe.write_bytes(b"")
    probe.unlink()
  except OSError as e:
    parser.error(f"--out {out}: cannot write there ({e.strerror or e})")


def parse_config(config_cls: type, argv: list[str] | None, *, name: str,
                 doc: str | None) -> Parsed:
  """Parses and checks ``argv``, before JAX does any work.

  Every ``Config`` field becomes a flag (``--field-name``); ``--quick`` starts
  from ``Config.quick()`` instead of the defaults; ``--out`` defaults to
  ``runs/<name>``; JAX's persistent compilation cache is enabled unless
  ``--no-compile-cache``; ``--print-config`` prints the config as strict JSON
  (as ``config.json`` holds it) and exits 0. A bad value exits 2 with argparse's usage error,
  which names the flag and the expected type or choices; so does an ``--out``
  that is a file or not writable, or that holds a run of another config
  (unless ``--overwrite``).
  """
  parser = argparse.ArgumentParser(
      prog=f"python -m experiments.{name}", description=doc,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs") / name,
                      help=f"output directory (default: runs/{name})")
  parser.add_argument("--quick", action="store_true", help="small preset, under a minute on 2 CPU cores")
  parser.add_argument("--overwrite", action="store_true",
                      help="start afresh in --out even if it holds a run of another config "
                           "(a rerun of the same config resumes; another is refused)")
  parser.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                      help="do not use JAX's persistent compilation cache "
                           "($JAXGRAD_COMPILE_CACHE or ~/.cache/jaxgrad/xla)")
  parser.add_argument("--print-config", action="store_true",
                      help="print the config these flags give, as JSON, and exit: nothing runs, "
                           "nothing is written")
  for field in dataclasses.fields(config_cls):
    _add_field(parser, config_cls, field)
  args = parser.parse_args(argv)
  base = config_cls.quick() if args.quick else config_cls()
  overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
               if getattr(args, f.name) is not None}
  try:
    config = dataclasses.replace(base, **overrides)
  except _config.ConfigError as e:
    value = ",".join(map(str, e.value)) if isinstance(e.value, tuple) else e.value
    parser.error(f"argument --{e.field.replace('_', '-')}: {value!r} is not allowed: {e.allowed}")
  if args.print_config:
    print(files.to_json(config, indent=1))
    parser.exit()
  _check_out(parser, args.out, config, args.overwrite)
  if args.compile_cache:
    compilation_cache.enable()
  return Parsed(config, args.out, args.overwrite)


def finished_settings(out_dir: pathlib.Path, config: Any) -> dict[str, Any]:
  """The settings that an earlier run of this same ``config`` left in ``out_dir``, by name.

  Args:
    out_dir: the run's folder.
    config: the run's ``Config``.

  Returns:
    ``results.json``'s ``"settings"`` (NaN and ±inf as floats, arrays as
    lists) when ``out_dir/config.json`` holds ``config``; ``{}`` otherwise: a
    fresh folder, another config or an unreadable file
    (:meth:`Experiment.execute` writes ``config.json`` first).
  """
  path = out_dir / RESULTS_FILE
  if not path.is_file() or _stored_config(out_dir) != _encoded(config):
    return {}
  try:
    settings = files.read_json(path).get("settings", {})
  except (OSError, ValueError, AttributeError):  # unreadable or not an object: start afresh
    return {}
  return settings if isinstance(settings, dict) else {}


def progress(items: Iterable, *, desc: str, total: int | None = None) -> Iterable:
  """A progress bar on stderr; ``JAXGRAD_NO_PROGRESS=1`` hides it."""
  return tqdm.tqdm(items, desc=desc, total=total, file=sys.stderr, leave=False,
                   disable=bool(os.environ.get("JAXGRAD_NO_PROGRESS")))


def format_table(header: list[str], rows: list[list[Any]]) -> str:
  """A plain-text table with right-aligned numeric columns; real numbers (numpy's too) to 4 digits."""
  def cell(v):
    if isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral):
      return "nan" if math.isnan(v) else f"{float(v):.4g}"
    return str(v)

  cells = [header] + [[cell(v) for v in row] for row in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
  lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


@contextlib.contextmanager
def _reliable_ctrl_c() -> Iterator[None]:
  """Ctrl-C raises ``KeyboardInterrupt`` in the run, never inside a garbage collection.

  Python raises it at the next bytecode of whatever runs, and one raised
  inside a ``gc`` callback is printed ("Exception ignored in ...") and
  dropped: jax registers such a callback (``_xla_gc_callback``, at every
  collection), so a plain Ctrl-C was sometimes lost with a traceback on the
  screen. Here a Ctrl-C that lands inside a collection is raised again just
  after it (a thread sends the signal again). Only where Ctrl-C has Python's
  default handler (not ignored, not the caller's own), in the main thread.
  """
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
    yield
    return
  collecting = threading.Event()

  def first(phase, info):  # first of gc's callbacks
    if phase == "start":
      collecting.set()

  def last(phase, info):  # last of gc's callbacks (jax's was added when jax was imported)
    if phase == "stop":
      collecting.clear()

  def handler(signum, frame):
    if collecting.is_set():
      threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
      return
    raise KeyboardInterrupt

  gc.callbacks.insert(0, first)
  gc.callbacks.append(last)
  signal.signal(signal.SIGINT, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for callback in (first, last):
      with contextlib.suppress(ValueError):
        gc.callbacks.remove(callback)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """What a long run resumes from and where its partial results go; the harness owns the files.

  Attributes:
    done: the settings an earlier run of the same config finished, by name
      (``results["settings"]`` as it reads back from ``results.json``).
    save: called with the results so far after each finished setting.
  """

  done: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  save: Callable[[dict], None] = lambda results: None


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One experiment: its ``Config``, its run, its figures and its summary.

  Attributes:
    name: the module's ``__name__`` (``"__main__"`` under ``python -m`` is
      understood: :func:`experiment_name`).
    doc: the module's docstring, shown by ``--help``.
    config: the experiment's ``Config`` class.
    run: ``run(config) -> results``, or ``run(config, checkpoint)`` where
      ``settings`` is given; no I/O.
    plot: ``plot(results, out_dir)``, the figures.
    summary: ``summary(results) -> str``, the printed table.
    settings: for an experiment that saves after every setting,
      ``settings(config)`` names all the settings the config runs (the keys of
      ``results["settings"]``); a rerun then says what it resumes from, and
      Ctrl-C prints ``interrupted: kept N of M settings in DIR``.
    logs: for an experiment whose product is also a training log (JSONL,
      TensorBoard events, written as it trains), ``logs(config, out_dir) ->
      dict``, run after ``run``; what it returns joins the results.
    fast_compile: when to compile for speed, not for run time
      (:func:`jaxgrad.compilation_cache.prefer_fast_compile`): ``"never"``
      (optimised code); ``"quick"``, under ``--quick``, whose time is compile
      time (level 0 measured on ``adding_problem --quick``: 60 s -> 32 s);
      ``"always"``, for an experiment of many small programs
      (``gradient_check``).
  """

  name: str
  doc: str | None
  config: type
  run: Callable[..., dict]
  plot: Callable[[dict, pathlib.Path], None]
  summary: Callable[[dict], str]
  settings: Callable[[Any], list[str]] | None = None
  logs: Callable[[Any, pathlib.Path], dict] | None = None
  fast_compile: str = "never"

  def __post_init__(self) -> None:
    if self.fast_compile not in FAST_COMPILE:
      raise ValueError(f"fast_compile must be one of {FAST_COMPILE}, got {self.fast_compile!r}")

  def execute(self, config: Any, out_dir: pathlib.Path) -> dict:
    """Runs ``config`` into ``out_dir``: ``config.json``, the run, ``results.json``, the figures.

    A folder holding an earlier run of the same config resumes from its
    finished settings (an experiment with ``settings``); the caller checks
    that ``out_dir`` may take the run (:func:`parse_config` does).

    Args:
      config: the run's ``Config``.
      out_dir: the run's folder, made if absent.

    Returns:
      The run's results, as ``plot`` and ``summary`` take them.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resumes = self.settings is not None
    done = finished_settings(out_dir, config) if resumes else {}  # before config.json is written
    files.write_json(out_dir / CONFIG_FILE, config)
    if resumes:
      save = functools.partial(files.write_json, out_dir / RESULTS_FILE)
      results = self.run(config, Checkpoint(done, save))
    else:
      results = self.run(config)
    if self.logs is not None:
      results.update(self.logs(config, out_dir))
    files.write_json(out_dir / RESULTS_FILE, results)
    self.plot(results, out_dir)
    return results

  def main(self, argv: list[str] | None = None) -> dict:
    """The command line: parses the flags, executes the run, prints the summary table.

    Args:
      argv: the flags; ``sys.argv[1:]`` if ``None``.

    Returns:
      The run's results. Ctrl-C exits 130 without a traceback (raises
      ``SystemExit(130)``, or, when the experiment is the program itself,
      ``os._exit(130)``, as an interrupted XLA compile can crash the
      interpreter's teardown).
    """
    name = experiment_name(self.name)
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    if self.fast_compile == "always" or (self.fast_compile == "quick" and quick):
      compilation_cache.prefer_fast_compile()
    config, out, overwrite = parse_config(self.config, argv, name=name, doc=self.doc)
    if overwrite:
      (out / RESULTS_FILE).unlink(missing_ok=True)
    names = list(self.settings(config)) if self.settings is not None else []
    if names and (kept := _kept(out, config, names)):
      print(f"resuming: {kept} of {len(names)} settings already in {out}/", file=sys.stderr)
    program = self.name == "__main__"
    if program:
      # Python's cyclic GC traverses every live object at each full
      # collection and again at exit; the few hundred thousand that importing
      # jax and flax and tracing the programs create are never garbage.
      # Freezing them (gc.freeze: out of every later collection) here and
      # before exit saves 0.8-1.0 s of a warm init_comparison or
      # depth_comparison run (4.7 -> 3.7-4.0 s, 6.8 -> 5.7-5.9 s).
      gc.freeze()
    try:
      with _reliable_ctrl_c():
        results = self.execute(config, out)
    except KeyboardInterrupt:
      self._interrupted(out, config, names)
    print(self.summary(results))
    print(f"\nwrote {out}/")
    if program:
      gc.freeze()
    return results

  def _interrupted(self, out: pathlib.Path, config: Any, names: list[str]) -> typing.NoReturn:
    """Says what an interrupted run kept, and exits 130."""
    if names:
      print(f"\ninterrupted: kept {_kept(out, config, names)} of {len(names)} settings in {out}/",
            file=sys.stderr)
    else:
      print(f"\ninterrupted: {experiment_name(self.name)} writes {RESULTS_FILE} at the end, so "
            f"nothing of this run is kept in {out}/", file=sys.stderr)
    if self.name == "__main__":
      # Ctrl-C during an XLA compile returns to Python while the compile goes
      # on in another thread, and the interpreter's teardown then crashes
      # (seen on jaxlib 0.10.2: "Fatal Python error: Segmentation fault" and
      # exit -11 after the message). Every file is already complete (atomic
      # writes), so the program leaves at once.
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(130)
    raise SystemExit(130) from None


def _kept(out: pathlib.Path, config: Any, names: list[str]) -> int:
  return len(set(finished_settings(out, config)) & set(names))
