"""Compile cost: JAX's persistent compilation cache, and XLA's fast-compile setting.

The second run of an experiment loads its compiled programs from disk instead
of compiling them again. The cache lives in ``$JAXGRAD_COMPILE_CACHE`` or
``~/.cache/jaxgrad/xla``; experiments turn it off with ``--no-compile-cache``.
"""

import dataclasses
import os
import pathlib
import re

import jax
import jaxlib.version
from jax.experimental.compilation_cache import compilation_cache as _jax_cache


def default_dir() -> pathlib.Path:
  """The cache folder: ``$JAXGRAD_COMPILE_CACHE``, else ``~/.cache/jaxgrad/xla``."""
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


@dataclasses.dataclass(frozen=True)
class XlaFlag:
  """One XLA flag and the jaxlib releases that know it.

  XLA aborts the whole process ("Unknown flag in XLA_FLAGS") at the first
  compile when ``XLA_FLAGS`` names a flag its jaxlib does not have, so a flag
  is only ever set inside the versions where it was seen to be accepted.

  Attributes:
    name: the flag without its leading ``--``.
    value: the value it is set to.
    until: the first jaxlib release without the flag (exclusive bound), or
      ``None`` if every release from the ``pyproject.toml`` floor on has it.
  """

  name: str
  value: str
  until: tuple[int, ...] | None = None

  def exists_in(self, version: tuple[int, ...]) -> bool:
    """Whether jaxlib ``version`` knows the flag (releases before ``until``)."""
    return self.until is None or version < self.until


# Checked by starting a compile with each flag alone in XLA_FLAGS, on jaxlib
# 0.10.0, 0.10.2, 0.11.2 and 0.12.0.1: the optimisation level is accepted by
# all four, the fusion-emitter switch only by 0.10.x (0.11.2 and 0.12.0.1
# abort). tests/test_compilation_cache.py starts a compile under the flags
# chosen for the installed jaxlib, so a release that drops one fails there.
#
# jaxlib >= 0.11 compiles every fusion through the MLIR fusion emitters (a
# quarter of all CPU samples in a perf profile of transformer_ln's smoke run) and
# has no flag that avoids them: that run compiles in 13-16 s on jaxlib 0.12.1,
# 7-8 s on 0.10.2 with both flags and 14.6-15.0 s on 0.10.2 with the emitters
# turned back on. On 0.12.1 each of these left the compile time of that run (or,
# for the XNNPACK ones and the ISA, normalization's: 7.3-8.5 s against 7.8 s) within
# the run-to-run spread (12-16 s): xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE,
# xla_llvm_disable_expensive_passes, xla_cpu_parallel_codegen_split_count=1,
# xla_cpu_use_thunk_runtime=false, xla_cpu_use_new_xtile_lowering=false,
# xla_cpu_experimental_enable_tiling_propagation=false, xla_cpu_use_xnnpack=false,
# xla_cpu_experimental_xnn_fusion_type=eltwise,reduce,
# xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY,
# xla_cpu_copy_insertion_use_region_analysis=true, xla_cpu_max_isa=AVX2,
# JAX_OPTIMIZATION_LEVEL=O0, JAX_MEMORY_FITTING_LEVEL=O0,
# JAX_INCLUDE_FULL_TRACEBACKS_IN_LOCATIONS=0 and JAX_TRACEBACK_IN_LOCATIONS_LIMIT=0.
FAST_COMPILE_FLAGS = (
    XlaFlag("xla_backend_optimization_level", "0"),
    XlaFlag("xla_cpu_use_fusion_emitters", "false", until=(0, 11)),
)


def jaxlib_version() -> tuple[int, ...]:
  """The installed jaxlib's release as integers, e.g. ``(0, 12, 0, 1)``; read without starting XLA."""
  return parse_version(jaxlib.version.__version__)


def parse_version(text: str) -> tuple[int, ...]:
  """``"0.12.0.1"`` -> ``(0, 12, 0, 1)``; a suffix such as ``.dev20260101`` or ``rc1`` ends it.

  Raises:
    ValueError: ``text`` does not start with a number.
  """
  parts = []
  for piece in text.split("."):
    digits = re.match(r"\d+", piece)
    if digits is None:
      break
    parts.append(int(digits.group()))
    if digits.end() != len(piece):
      break
  if not parts:
    raise ValueError(f"not a version number: {text!r}")
  return tuple(parts)


def fast_compile_flags(version: tuple[int, ...] | None = None) -> dict[str, str]:
  """The fast-compile flags (name -> value) that jaxlib ``version`` knows.

  Args:
    version: a jaxlib release as integers; the installed one if ``None``.
  """
  version = jaxlib_version() if version is None else version
  return {f.name: f.value for f in FAST_COMPILE_FLAGS if f.exists_in(version)}


def prefer_fast_compile() -> None:
  """Trades run speed for compile speed in XLA's CPU backend, unless ``XLA_FLAGS`` says otherwise.

  Adds each flag of :func:`fast_compile_flags` (those the installed jaxlib
  knows) that ``XLA_FLAGS`` does not already name:
  ``--xla_backend_optimization_level=0`` skips LLVM's optimisation passes, and,
  on jaxlib < 0.11 (later releases removed it),
  ``--xla_cpu_use_fusion_emitters=false`` emits fusions through the older,
  cheaper path. Measured on smoke configurations under jaxlib 0.10 (trace +
  compile bound): resnet_vs_plain's compile time 23.9 s optimised, 12.8 s at
  level 0, 7.3 s with both; normalization 10.6 s -> 4.3 s, transformer_ln
  10.7 s -> 5.6 s from the first flag alone to both. For programs whose time
  is compile time (tiny shapes, many distinct programs: the tests,
  gradient_check, adding_problem's ``--quick``) this wins; the compiled code
  runs slower, so it loses wherever the run itself takes time (transformer_ln
  ``--quick``: 125 s at level 0 against 73 s optimised). XLA reads its flags
  when the backend starts, so call this before the first computation
  (importing jax is fine).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  added = [f"--{name}={value}" for name, value in fast_compile_flags().items()
           if name not in flags]
  os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
