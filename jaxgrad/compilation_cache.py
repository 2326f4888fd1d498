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


# XLA aborts the process on a flag it does not know: these exist in jaxlib 0.10
# (pyproject pins jax < 0.11); check them again before raising that pin.
FAST_COMPILE_FLAGS = {
    "xla_backend_optimization_level": "0",
    "xla_cpu_use_fusion_emitters": "false",
}


def prefer_fast_compile() -> None:
  """Trades run speed for compile speed in XLA's CPU backend, unless ``XLA_FLAGS`` says otherwise.

  Two flags, each added only where ``XLA_FLAGS`` does not already name it:
  ``--xla_backend_optimization_level=0`` skips LLVM's optimisation passes, and
  ``--xla_cpu_use_fusion_emitters=false`` emits fusions through the older,
  cheaper path. Measured on smoke configurations (trace + compile bound):
  resnet_vs_plain's compile time 23.9 s optimised, 12.8 s at level 0, 7.3 s
  with both; normalization 10.6 s -> 4.3 s, transformer_ln 10.7 s -> 5.6 s
  from the first flag alone to both. For programs whose time is compile time
  (tiny shapes, many distinct programs: the tests, gradient_check,
  adding_problem's ``--quick``) this wins; the compiled code runs slower, so
  it loses wherever the run itself takes time (transformer_ln ``--quick``:
  125 s at level 0 against 73 s optimised). XLA reads its flags when the
  backend starts, so call this before the first computation (importing jax is
  fine).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  added = [f"--{name}={value}" for name, value in FAST_COMPILE_FLAGS.items() if name not in flags]
  os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
