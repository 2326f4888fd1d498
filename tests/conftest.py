"""Test configuration: single-threaded BLAS, strict rank promotion, an x64 fixture."""

from collections.abc import Callable
import os
import pathlib
import types
from typing import NamedTuple

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy/jax: see notes/jax-stack.md
os.environ.setdefault("JAXGRAD_NO_PROGRESS", "1")
import jax  # noqa: E402
import pytest  # noqa: E402

from jaxgrad import compilation_cache, files  # noqa: E402

# Tests use tiny shapes, so their time is compile time: skipping LLVM's
# optimisation passes and the fusion emitters cuts it 2-5x (measured on
# normalization's smoke run: 10.6 s of compiling at level 0, 4.3 s with both).
compilation_cache.prefer_fast_compile()

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
  """Runs the test with float64 enabled, restored afterwards even on failure."""
  with jax.enable_x64(True):
    yield


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
  """Datasets and compiled programs made by tests go to session-wide temporary caches."""
  os.environ.setdefault("JAXGRAD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
  os.environ.setdefault("JAXGRAD_COMPILE_CACHE", str(tmp_path_factory.getbasetemp() / "xla"))


class SmokeRun(NamedTuple):
  """One experiment's smoke run: its folder and its ``results.json`` as read back."""

  out: pathlib.Path
  results: dict


@pytest.fixture(scope="session")
def _smoke_runs(tmp_path_factory) -> Callable[[types.ModuleType], tuple[SmokeRun, dict]]:
  """Each experiment's ``Config.smoke()`` run once per session: its files and its results as returned."""
  done: dict[str, tuple[SmokeRun, dict]] = {}

  def run(module: types.ModuleType) -> tuple[SmokeRun, dict]:
    name = module.__name__.rsplit(".", 1)[-1]
    if name not in done:
      out = tmp_path_factory.mktemp(name)
      returned = module.EXPERIMENT.execute(module.Config.smoke(), out)
      done[name] = SmokeRun(out, files.read_json(out / "results.json")), returned
    return done[name]

  return run


@pytest.fixture(scope="session")
def smoke_run(_smoke_runs) -> Callable[[types.ModuleType], SmokeRun]:
  """``smoke_run(module)``: the experiment's smoke run, shared by its tests.

  An experiment's numeric tests and its contract test
  (:func:`tests._contract.harness_test`) sit in one file, which ``--dist
  loadfile`` keeps on one worker: the run is made once.
  """
  return lambda module: _smoke_runs(module)[0]


@pytest.fixture(scope="session")
def smoke_returned(_smoke_runs) -> Callable[[types.ModuleType], dict]:
  """``smoke_returned(module)``: the results of the same run as ``run`` returned them (arrays, the ``Config``)."""
  return lambda module: _smoke_runs(module)[1]
