"""Compile cost: the persistent compilation cache writes where it is told to; the fast-compile flags."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxgrad import compilation_cache


def test_enable_writes_entries_even_after_earlier_compiles(tmp_path):
  before = jax.config.jax_compilation_cache_dir
  jax.jit(lambda a: a + 1.5)(jnp.arange(3.0)).block_until_ready()  # cache initialised here
  try:
    path = compilation_cache.enable(tmp_path / "xla")
    jax.jit(lambda a: jnp.sin(a) * 3.25)(jnp.arange(7.0)).block_until_ready()
    assert any(path.iterdir())
  finally:
    from jax.experimental.compilation_cache import compilation_cache as jax_cache
    jax_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", before)


def test_default_dir_follows_the_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXGRAD_COMPILE_CACHE", str(tmp_path))
  assert compilation_cache.default_dir() == tmp_path


def test_prefer_fast_compile_adds_each_flag_once_and_respects_a_users_choice(monkeypatch):
  level, *rest = [f"--{k}={v}" for k, v in compilation_cache.fast_compile_flags().items()]
  assert level == "--xla_backend_optimization_level=0"
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  compilation_cache.prefer_fast_compile()
  compilation_cache.prefer_fast_compile()
  assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", level, *rest]
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
  compilation_cache.prefer_fast_compile()
  assert os.environ["XLA_FLAGS"].split() == ["--xla_backend_optimization_level=3", *rest]
  monkeypatch.delenv("XLA_FLAGS")
  compilation_cache.prefer_fast_compile()
  assert os.environ["XLA_FLAGS"].split() == [level, *rest]


@pytest.mark.parametrize("version, flags", [
    ((0, 10, 0), ["xla_backend_optimization_level", "xla_cpu_use_fusion_emitters"]),
    ((0, 10, 2), ["xla_backend_optimization_level", "xla_cpu_use_fusion_emitters"]),
    ((0, 11, 2), ["xla_backend_optimization_level"]),  # the emitter switch aborts 0.11.2
    ((0, 12, 0, 1), ["xla_backend_optimization_level"]),
], ids=["0.10.0", "0.10.2", "0.11.2", "0.12.0.1"])
def test_each_flag_is_scoped_to_the_jaxlib_releases_that_know_it(version, flags):
  assert list(compilation_cache.fast_compile_flags(version)) == flags


@pytest.mark.parametrize("text, version", [
    ("0.10.2", (0, 10, 2)), ("0.12.0.1", (0, 12, 0, 1)), ("0.13.0.dev20270101", (0, 13, 0)),
    ("0.11.0rc1", (0, 11, 0)),
])
def test_parse_version(text, version):
  assert compilation_cache.parse_version(text) == version


def test_the_installed_jaxlib_compiles_under_the_chosen_flags():
  """XLA aborts the process at the first compile on a flag it does not know: run one in a child."""
  code = ("from jaxgrad import compilation_cache; compilation_cache.prefer_fast_compile(); "
          "import jax; print(float(jax.jit(lambda a: a * 2.0 + 1.0)(3.0)))")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, "-c", code], env={**env, "JAX_PLATFORMS": "cpu"},
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "7.0"
