"""The files jaxgrad writes: strict JSON, written atomically, and JSON lines.

Every ``.json`` and ``.jsonl`` file jaxgrad writes is strict JSON: it loads
with ``json.loads(text, parse_constant=...)`` set to raise, in ``jq``, in a
browser. JSON has no NaN or infinity, so a non-finite float is written as a
string (the one encoding used everywhere):

=============  ============
float          written as
=============  ============
``nan``        ``"nan"``
``+inf``       ``"inf"``
``-inf``       ``"-inf"``
=============  ============

The readers here (:func:`loads`, :func:`read_json`, :func:`read_jsonl`) turn
exactly these three strings back into floats wherever they appear as a value
(in an object, a list, or alone; object keys are left alone), so a string
field whose value is literally ``"nan"``, ``"inf"`` or ``"-inf"`` reads back
as a float. They also accept the bare ``NaN`` / ``Infinity`` tokens of files
written before this encoding.

What :func:`to_json` converts: mappings (keys become strings), lists and
tuples, dataclasses (as :func:`dataclasses.asdict`), numpy and JAX arrays
(nested lists) and scalars, :class:`pathlib.PurePath` (its string). Anything
else that :mod:`json` cannot write raises ``TypeError``.

>>> s = to_json({"loss": [0.5, float("nan")], "clip": float("inf")})
>>> s
'{"loss": [0.5, "nan"], "clip": "inf"}'
>>> loads(s)
{'loss': [0.5, nan], 'clip': inf}
"""

import contextlib
import dataclasses
import json
import math
import os
import pathlib
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["NONFINITE", "append_jsonl", "decode", "encode", "loads", "read_json", "read_jsonl",
           "to_json", "write_json"]

#: The encoding: each string and the float it stands for.
NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode_float(x: float) -> float | str:
  if math.isfinite(x):
    return x
  return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def encode(obj: Any) -> Any:
  """``obj`` as plain JSON values (dict, list, str, int, float, bool, None), NaN/±inf as strings.

  Args:
    obj: a mapping, list, tuple, dataclass, numpy or JAX array or scalar,
      path, or plain JSON value, nested freely.

  Returns:
    The same data that :func:`json.dumps` writes with ``allow_nan=False``.
    Values it does not know are returned as they are (``json`` then raises
    ``TypeError``).
  """
  if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
    return obj
  if isinstance(obj, float):
    return _encode_float(obj)
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return encode(dataclasses.asdict(obj))
  if isinstance(obj, Mapping):
    return {str(k): encode(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [encode(v) for v in obj]
  if isinstance(obj, pathlib.PurePath):
    return str(obj)
  if isinstance(obj, np.generic) or hasattr(obj, "__array__"):
    return encode(np.asarray(obj).tolist())  # 0-d arrays give a Python scalar
  return obj


def decode(obj: Any) -> Any:
  """The inverse of :func:`encode` on parsed JSON: ``"nan"``, ``"inf"``, ``"-inf"`` become floats."""
  if isinstance(obj, str):
    return NONFINITE.get(obj, obj)
  if isinstance(obj, list):
    return [decode(v) for v in obj]
  if isinstance(obj, dict):
    return {k: decode(v) for k, v in obj.items()}
  return obj


def to_json(obj: Any, *, indent: int | None = None) -> str:
  """Strict JSON text of ``obj`` (see the module docstring for the encoding).

  Args:
    obj: what to write; converted by :func:`encode`.
    indent: as in :func:`json.dumps`; ``None`` writes one line.

  Raises:
    TypeError: ``obj`` holds a value that JSON cannot represent.
  """
  return json.dumps(encode(obj), indent=indent, allow_nan=False)


def loads(text: str) -> Any:
  """Parses JSON written by :func:`to_json`, the non-finite strings back to floats."""
  return decode(json.loads(text))


def read_json(path: str | os.PathLike) -> Any:
  """Reads a file written by :func:`write_json`."""
  return loads(pathlib.Path(path).read_text())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """A temporary path beside ``path`` that replaces ``path`` in one rename when the block ends.

  Write the file to the yielded path; when the ``with`` block ends without an
  exception it replaces ``path`` (:func:`os.replace`), so a reader, or a run
  killed mid-write, sees the old file or the new one, never half of one. On
  an exception the temporary file is removed and ``path`` is left as it was.
  Missing parent folders are created.

  Args:
    path: the file to write.

  Yields:
    The temporary path, in ``path``'s folder (so the rename stays on one file
    system), named ``.<name>.<pid>.<random>.tmp``.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> pathlib.Path:
  """Writes ``obj`` as strict JSON to ``path``, atomically (:func:`atomic_path`).

  The text is made before anything is written, so an object that cannot be
  encoded leaves the old file as it was.

  Returns:
    ``path``, as a :class:`pathlib.Path`.
  """
  path = pathlib.Path(path)
  text = to_json(obj, indent=indent) + "\n"
  with atomic_path(path) as tmp:
    # os.open rather than tempfile.mkstemp: the file gets the umask's mode, not 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
  return path


def append_jsonl(path: str | os.PathLike, *records: Any) -> pathlib.Path:
  """Appends each record to ``path`` as one line of strict JSON; creates the file and its folders.

  The lines go out in one write of a file opened for appending, so a run
  killed mid-write leaves at most a truncated last line, which
  :func:`read_jsonl` skips.

  Returns:
    ``path``, as a :class:`pathlib.Path`.
  """
  path = pathlib.Path(path)
  text = "".join(to_json(r) + "\n" for r in records)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a") as f:
    f.write(text)
  return path


def read_jsonl(path: str | os.PathLike) -> list[Any]:
  """The records of a JSON-lines file, non-finite strings back to floats.

  Blank lines are skipped, and so is a last line cut short (no final newline
  and not valid JSON: the write of a killed run).

  Raises:
    ValueError: a line before the last is not JSON; the message names the
      file and the line number.
  """
  path = pathlib.Path(path)
  text = path.read_text()
  lines = text.split("\n")
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      records.append(loads(line))
    except json.JSONDecodeError as e:
      if number == len(lines):  # no newline after it: a write cut short
        break
      raise ValueError(f"{path}:{number}: not a JSON line ({e.msg})") from None
  return records

