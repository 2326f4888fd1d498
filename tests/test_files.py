"""jaxgrad.files: strict JSON (one encoding of NaN/±inf, read back), atomic writes, JSON lines."""

import dataclasses
import math
import os
import pathlib

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from jaxgrad import files, plotting
from tests._json import strict_json


@dataclasses.dataclass(frozen=True)
class _Config:
  depths: tuple[int, ...] = (2, 4)
  clip_norm: float = math.inf
  out: pathlib.Path = pathlib.Path("runs/x")


def _diverged_results():
  return {
      "config": _Config(),
      "loss": np.array([[0.5, np.nan], [np.inf, -np.inf]], np.float32),
      "grad_norm": jnp.array([1.0, jnp.inf, jnp.nan]),
      "final": np.float64(np.nan), "steps": np.int64(3), "solved": np.array([True, False]),
      "diverged_at": jnp.asarray(7), "scalar": jnp.asarray(-jnp.inf),
      "settings": {("tanh", 3): [float("nan"), 1.5, None, "text"]},
  }


def test_a_diverged_run_is_strict_json_and_round_trips():
  text = files.to_json(_diverged_results())
  raw = strict_json(text)
  assert raw["loss"] == [[0.5, "nan"], ["inf", "-inf"]]
  assert raw["config"] == {"depths": [2, 4], "clip_norm": "inf", "out": "runs/x"}
  back = files.loads(text)
  np.testing.assert_array_equal(back["loss"], [[0.5, np.nan], [np.inf, -np.inf]])
  np.testing.assert_array_equal(back["grad_norm"], [1.0, np.inf, np.nan])
  assert math.isnan(back["final"]) and back["scalar"] == -math.inf
  assert back["steps"] == 3 and type(back["steps"]) is int
  assert back["solved"] == [True, False] and back["diverged_at"] == 7
  assert back["config"]["clip_norm"] == math.inf
  assert back["settings"]["('tanh', 3)"][1:] == [1.5, None, "text"]


def test_write_json_is_strict_atomic_and_reads_back(tmp_path):
  path = files.write_json(tmp_path / "new" / "results.json", _diverged_results())
  assert path == tmp_path / "new" / "results.json"
  strict_json(path.read_text())
  np.testing.assert_array_equal(files.read_json(path)["grad_norm"], [1.0, np.inf, np.nan])
  files.write_json(path, {"a": 1})
  assert files.read_json(path) == {"a": 1}
  assert os.listdir(path.parent) == ["results.json"]  # no temporary file left


def test_write_json_keeps_the_old_file_when_the_object_cannot_be_written(tmp_path):
  path = files.write_json(tmp_path / "results.json", {"a": 1})
  with pytest.raises(TypeError):
    files.write_json(path, {"a": object()})
  assert files.read_json(path) == {"a": 1}
  assert os.listdir(tmp_path) == ["results.json"]


def test_write_json_gives_the_umasks_mode_not_0600(tmp_path):
  old = os.umask(0o022)
  try:
    path = files.write_json(tmp_path / "config.json", {})
  finally:
    os.umask(old)
  assert path.stat().st_mode & 0o777 == 0o644


def test_jsonl_appends_strict_lines_and_reads_them_back(tmp_path):
  path = tmp_path / "logs" / "metrics.jsonl"
  files.append_jsonl(path, {"step": 1, "loss": np.float32(0.25)})
  files.append_jsonl(path, {"step": 2, "loss": np.float32(np.nan)}, {"step": 3, "loss": jnp.inf})
  lines = path.read_text().splitlines()
  assert len(lines) == 3 and all(strict_json(line) for line in lines)
  rows = files.read_jsonl(path)
  assert [r["step"] for r in rows] == [1, 2, 3]
  assert rows[0]["loss"] == 0.25 and math.isnan(rows[1]["loss"]) and rows[2]["loss"] == math.inf


def test_read_jsonl_skips_a_last_line_cut_short_and_names_a_bad_line(tmp_path):
  path = tmp_path / "alarms.jsonl"
  path.write_text('{"step": 1}\n\n{"step": 2}\n{"step": 3, "lo')
  assert files.read_jsonl(path) == [{"step": 1}, {"step": 2}]
  path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
  with pytest.raises(ValueError, match=r"alarms\.jsonl:2"):
    files.read_jsonl(path)


def test_readers_accept_the_bare_tokens_of_older_files():
  back = files.loads('{"a": NaN, "b": [Infinity, -Infinity]}')
  assert math.isnan(back["a"]) and back["b"] == [math.inf, -math.inf]


def test_to_json_refuses_what_json_cannot_represent():
  with pytest.raises(TypeError):
    files.to_json({"a": {1, 2}})


def test_the_module_docstrings_example():
  import doctest
  assert doctest.testmod(files).failed == 0


def test_a_figure_that_fails_to_draw_leaves_the_old_file_and_no_temporary(tmp_path):
  path = tmp_path / "fig.png"
  fig, ax = plt.subplots()
  ax.plot([0, 1], [1, 2])
  plotting.save(fig, path)
  old = path.read_bytes()
  assert old.startswith(b"\x89PNG")
  fig, ax = plt.subplots()
  ax.text(0.5, 0.5, r"$\notacommand$")  # mathtext fails while the file is being written
  with pytest.raises(ValueError):
    plotting.save(fig, path)
  plt.close("all")
  assert path.read_bytes() == old
  assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]
