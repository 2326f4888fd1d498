"""Compile cost: JAX's persistent compilation cache, and XLA's fast-compile setting.

The second run of an experiment loads its compiled programs from disk instead
of compiling them again. The cache lives in ``$JAXGRAD_COMPILE_CACHE`` or
``~/.cache/jaxgrad/xla``; experiments turn it off with ``--no-compile-cache``.
"""

import os
import pathlib

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache


def default_dir() -> pathlib.Path:
  env = os.environ.get("JAXGRAD_COMPILE_CACHE")
  return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "jaxgrad" / "xla"


def enable(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Caches every compiled program (however fast it compiled) under ``cache_dir``.

  Works even after the process has compiled something: JAX initialises its
  cache once, at the first compile, so the cache is reset to pick up the dir.
  """
  path = pathlib.Path(cache_dir) if cache_dir is not None else default_dir()
  path.mkdir(parents=True, exist_ok=True)
  _jax_cache.reset_cache()
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"


def prefer_fast_compile() -> None:
  """Skips LLVM's optimisation of XLA's CPU code, unless ``XLA_FLAGS`` already names a level.

  For programs whose time is compile time (tiny shapes, many distinct
  programs: the tests, gradient_check, adding_problem's ``--quick``), level 0
  compiles about 2x faster on CPU, but the compiled code runs slower, so it
  loses wherever the run itself takes time (transformer_ln ``--quick``: 125 s
  at level 0 against 73 s optimised). XLA reads its flags when the backend
  starts, so call this before the first computation (importing jax is fine).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_backend_optimization_level" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE_FLAG}".strip()
