"""Test configuration: single-threaded BLAS, strict rank promotion, an x64 fixture."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy/jax: see notes/jax-stack.md
os.environ.setdefault("JAXGRAD_NO_PROGRESS", "1")
import jax  # noqa: E402
import pytest  # noqa: E402

from jaxgrad import compilation_cache  # noqa: E402

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
