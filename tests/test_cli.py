"""The experiments' harness as a user meets it: ``python -m experiments.<name>``, files, reruns.

The subprocess tests run the README's command from a temporary working
directory; the rest call ``main`` in-process with a fake trainer (no JAX work).
"""

import contextlib
import dataclasses
import gc
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import _cli
from experiments import adding_problem as ap
from jaxgrad import files
from tests._json import strict_json

ROOT = pathlib.Path(__file__).resolve().parents[1]

# adding_problem at its smallest: two settings (T = 4, 5), one compile each.
# The simple RNN: the cheapest cell to compile; what these tests check is the CLI, not the cell.
TINY_ADDING = ["--lengths", "4,5", "--cells", "simple", "--clipping", "none",
               "--seeds", "2", "--hidden", "4", "--steps", "4", "--batch-size", "4",
               "--test-size", "50", "--log-every", "1", "--unroll", "1"]


def _env() -> dict[str, str]:
  path = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
  return {**os.environ, "PYTHONPATH": path, "JAXGRAD_NO_PROGRESS": "1"}


def _python_m(name: str, *argv: str, cwd: pathlib.Path, **kwargs) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-m", f"experiments.{name}", *argv], cwd=cwd,
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **kwargs)


def test_help_shows_the_module_and_the_default_folder(tmp_path):
  proc = _python_m("activations", "--help", cwd=tmp_path)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  assert out.startswith("usage: python -m experiments.activations ")
  assert "(default: runs/activations)" in out
  assert "__main__" not in out


def test_python_m_writes_runs_name_in_the_working_directory(tmp_path):
  # The smallest grid and depth range: what is checked is where the files go, not the numbers.
  proc = _python_m("activations", "--activations", "sigmoid,tanh", "--x-max", "4", "--step", "0.1",
                   "--max-depth", "1", cwd=tmp_path)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  run_dir = tmp_path / "runs" / "activations"
  assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["activations"]
  assert {"config.json", "results.json"} <= {p.name for p in run_dir.iterdir()}
  assert strict_json((run_dir / "config.json").read_text())["activations"] == ["sigmoid", "tanh"]
  results = strict_json((run_dir / "results.json").read_text())
  assert set(results["activations"]) == {"sigmoid", "tanh"}
  assert "wrote runs/activations/" in out


@pytest.mark.parametrize("module_name, name", [
    ("experiments.adding_problem", "adding_problem"), ("adding_problem", "adding_problem"),
])
def test_experiment_name(module_name, name):
  assert _cli.experiment_name(module_name) == name


# --- reruns, in-process with a fake trainer ---------------------------------------------------


def _fake_train_settings(calls: list, interrupt_at: int | None = None):
  """Stands in for ap.train_settings: a deterministic result per (cell, T), one diverged seed."""
  def train_settings(config, cell, length, forget_bias):
    calls.append((cell, length))
    if len(calls) == interrupt_at:
      raise KeyboardInterrupt
    logged = config.steps // config.log_every
    loss = np.full((config.seeds, logged), 0.1 * length, np.float32)
    loss[0, -1] = np.nan  # a diverged seed: strict JSON has to carry it
    test_mse = np.array([np.inf, 0.01 * length][:config.seeds], np.float32)
    return {k: {"loss": loss, "grad_norm": loss * 2, "test_mse": test_mse,
                "error_rate": np.zeros(config.seeds), "constant_mse": np.full(config.seeds, 1 / 6),
                "diverged_at": np.array([logged - 1, -1][:config.seeds]),
                "solved": test_mse < ap.SOLVED_MSE, "fraction_solved": 0.5, "diverged": 1}
            for k in config.clipping}

  return train_settings


ARGV = ["--lengths", "4,5,6", "--cells", "lstm", "--forget-biases", "0", "--clipping", "none",
        "--seeds", "2", "--steps", "4", "--log-every", "2", "--no-compile-cache"]


def test_a_rerun_resumes_and_ends_with_the_uninterrupted_results(tmp_path, monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(ap, "train_settings", _fake_train_settings(calls))
  ap.main(ARGV + ["--out", str(tmp_path / "whole")])
  whole = (tmp_path / "whole" / "results.json").read_text()
  strict_json(whole)

  calls.clear()
  monkeypatch.setattr(ap, "train_settings", _fake_train_settings(calls, interrupt_at=3))
  with pytest.raises(SystemExit) as stop:
    ap.main(ARGV + ["--out", str(tmp_path / "part")])
  assert stop.value.code == 130
  err = capsys.readouterr().err
  assert f"interrupted: kept 2 of 3 settings in {tmp_path / 'part'}/" in err

  calls.clear()
  monkeypatch.setattr(ap, "train_settings", _fake_train_settings(calls))
  results = ap.main(ARGV + ["--out", str(tmp_path / "part")])
  assert calls == [("lstm", 6)]  # T = 4 and 5 were kept
  assert f"resuming: 2 of 3 settings already in {tmp_path / 'part'}/" in capsys.readouterr().err
  assert (tmp_path / "part" / "results.json").read_text() == whole
  assert np.isnan(results["settings"][ap.setting_name("lstm b_f=0", "none", 4)]["loss"][0][-1])
  assert (tmp_path / "part" / "loss.png").exists()


def test_another_config_is_refused_naming_overwrite(tmp_path, monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(ap, "train_settings", _fake_train_settings(calls))
  ap.main(ARGV + ["--out", str(tmp_path)])
  capsys.readouterr()
  with pytest.raises(SystemExit) as stop:
    ap.main(ARGV + ["--out", str(tmp_path), "--seeds", "1"])
  assert stop.value.code == 2
  err = capsys.readouterr().err
  assert "holds a run of another config (seeds: 2 there, 1 now)" in err
  assert "--overwrite" in err
  assert files.read_json(tmp_path / "config.json")["seeds"] == 2  # left as it was

  calls.clear()
  ap.main(ARGV + ["--out", str(tmp_path), "--seeds", "1", "--overwrite"])
  assert len(calls) == 3  # afresh: nothing resumed
  assert files.read_json(tmp_path / "config.json")["seeds"] == 1
  settings = files.read_json(tmp_path / "results.json")["settings"]
  assert all(len(s["test_mse"]) == 1 for s in settings.values())


def test_print_config_prints_what_config_json_would_hold_and_runs_nothing(tmp_path, monkeypatch,
                                                                         capsys):
  calls = []
  monkeypatch.setattr(ap, "train_settings", _fake_train_settings(calls))
  out = tmp_path / "never"
  with pytest.raises(SystemExit) as stop:
    ap.main(ARGV + ["--out", str(out), "--print-config"])
  assert stop.value.code == 0
  printed = strict_json(capsys.readouterr().out)
  expected = ap.Config(lengths=(4, 5, 6), cells=("lstm",), forget_biases=(0.0,),
                       clipping=("none",), seeds=2, steps=4, log_every=2)
  assert printed == files.loads(files.to_json(expected))
  assert printed["lengths"] == [4, 5, 6] and printed["seeds"] == 2
  assert calls == [] and not out.exists()


def test_print_config_still_refuses_a_bad_value(capsys):
  with pytest.raises(SystemExit) as stop:
    ap.main(["--seeds", "0", "--print-config"])
  assert stop.value.code == 2
  assert "--seeds" in capsys.readouterr().err


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
  (tmp_path / "taken").write_text("")
  with pytest.raises(SystemExit) as stop:
    ap.main(ARGV + ["--out", str(tmp_path / "taken")])
  assert stop.value.code == 2
  assert "--out" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may write to a read-only folder")
def test_out_in_a_read_only_folder_is_a_clear_error(tmp_path, capsys):
  locked = tmp_path / "locked"
  locked.mkdir(mode=0o555)
  with pytest.raises(SystemExit) as stop:
    ap.main(ARGV + ["--out", str(locked / "run")])
  assert stop.value.code == 2
  assert "cannot write there (Permission denied)" in capsys.readouterr().err


def test_out_below_a_file_is_a_clear_error_also_for_root(tmp_path, capsys):
  (tmp_path / "a_file").write_text("")
  with pytest.raises(SystemExit) as stop:
    ap.main(ARGV + ["--out", str(tmp_path / "a_file" / "run")])
  assert stop.value.code == 2
  assert "cannot write there (Not a directory)" in capsys.readouterr().err


# --- killed and interrupted for real, in a subprocess ------------------------------------------


def _wait_for_settings(path: pathlib.Path, n: int, proc: subprocess.Popen, timeout: float = 300):
  """Polls results.json (replaced atomically, so never half-written) until it holds n settings."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if path.exists() and len(files.read_json(path)["settings"]) >= n:
      return
    if proc.poll() is not None:
      raise AssertionError(f"exited {proc.returncode} early: {proc.communicate()[1][-2000:]}")
    time.sleep(0.01)
  raise AssertionError(f"no {n} settings in {path} after {timeout} s")


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_results(tmp_path):
  killed = _python_m("adding_problem", *TINY_ADDING, "--out", "part", cwd=tmp_path)
  _wait_for_settings(tmp_path / "part" / "results.json", 1, killed)
  killed.send_signal(signal.SIGKILL)
  killed.communicate(timeout=60)
  assert len(files.read_json(tmp_path / "part" / "results.json")["settings"]) == 1

  rerun = _python_m("adding_problem", *TINY_ADDING, "--out", "part", cwd=tmp_path)
  _, err = rerun.communicate(timeout=600)
  assert rerun.returncode == 0, err
  assert "resuming: 1 of 2 settings already in part/" in err

  # Last, so that both programs come from the compilation cache.
  whole = _python_m("adding_problem", *TINY_ADDING, "--out", "whole", cwd=tmp_path)
  _, err = whole.communicate(timeout=600)
  assert whole.returncode == 0, err
  assert ((tmp_path / "part" / "results.json").read_text()
          == (tmp_path / "whole" / "results.json").read_text())


def test_sigint_prints_what_was_kept_without_a_traceback_and_exits_130(tmp_path):
  """Ctrl-C a second into the run: XLA is compiling the first setting (or Python is tracing it)."""
  # As `python -m`, with Python's Ctrl-C handler even where CI starts us with SIGINT ignored
  # (no preexec_fn: forking a process that runs JAX threads may deadlock).
  code = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "sys.argv[0] = 'adding_problem'; "
          "runpy.run_module('experiments.adding_problem', run_name='__main__', alter_sys=True)")
  proc = subprocess.Popen([sys.executable, "-c", code, *TINY_ADDING, "--no-compile-cache",
                           "--out", "run"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 300
  while not (tmp_path / "run" / "config.json").exists() and time.monotonic() < deadline:
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    time.sleep(0.01)
  time.sleep(1.0)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err
  assert "Traceback" not in err and "Fatal Python error" not in err
  kept = len(files.read_json(tmp_path / "run" / "results.json")["settings"]) if (
      tmp_path / "run" / "results.json").exists() else 0
  assert err.strip().endswith(f"interrupted: kept {kept} of 2 settings in run/")


def test_python_m_experiments_lists_every_experiment(capsys):
  from experiments import __main__ as listing
  listing.main()
  out = capsys.readouterr().out
  assert out.startswith("usage: python -m experiments.<name>")
  names = {p.stem for p in (ROOT / "experiments").glob("[a-z]*.py")}
  assert set(listing.experiments()) == names and "adding_problem" in names
  assert all(f"  {n} " in out for n in names)


def _interrupt_in_a_gc_callback(guarded: bool) -> bool:
  """Sends SIGINT from inside a gc callback (as jax's runs at every collection); True if raised."""
  fired = []

  def callback(phase, info):
    if phase == "start" and not fired:
      fired.append(True)
      os.kill(os.getpid(), signal.SIGINT)

  old = signal.signal(signal.SIGINT, signal.default_int_handler)
  guard = _cli._reliable_ctrl_c() if guarded else contextlib.nullcontext()
  try:
    with guard:
      gc.callbacks.append(callback)
      gc.collect()
      for _ in range(200):
        time.sleep(0.01)
  except KeyboardInterrupt:
    return True
  finally:
    gc.callbacks.remove(callback)
    signal.signal(signal.SIGINT, old)
  return False


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped one
def test_ctrl_c_inside_a_garbage_collection_is_raised_after_it():
  assert not _interrupt_in_a_gc_callback(guarded=False)  # Python drops it: the reason for the guard
  assert _interrupt_in_a_gc_callback(guarded=True)


@pytest.mark.parametrize("fast_compile, argv, expected", [
    ("never", ["--quick"], 0), ("quick", [], 0), ("quick", ["--quick"], 1), ("always", [], 1)])
def test_fast_compile_is_asked_for_when_the_experiment_says(monkeypatch, fast_compile, argv,
                                                            expected):
  asked = []
  monkeypatch.setattr(_cli.compilation_cache, "prefer_fast_compile", lambda: asked.append(1))
  experiment = dataclasses.replace(ap.EXPERIMENT, fast_compile=fast_compile)
  with pytest.raises(SystemExit):  # --print-config: nothing runs
    experiment.main([*argv, "--print-config"])
  assert len(asked) == expected


def test_an_unknown_fast_compile_is_refused_naming_the_choices():
  with pytest.raises(ValueError, match=r"fast_compile must be one of \('never', 'quick', 'always'\)"):
    dataclasses.replace(ap.EXPERIMENT, fast_compile="sometimes")


def test_the_summary_table_rounds_numpy_floats_as_python_floats():
  table = _cli.format_table(["a", "b", "c"], [[np.float32(0.94713335), 0.94713335, np.int64(3)]])
  assert table.splitlines()[-1].split() == ["0.9471", "0.9471", "3"]
  assert _cli.format_table(["x"], [[np.float32("nan")]]).splitlines()[-1].strip() == "nan"
