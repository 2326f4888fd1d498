"""Compile cost: the persistent compilation cache writes where it is told to; the fast-compile flag."""

import os

import jax
import jax.numpy as jnp

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
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  compilation_cache.prefer_fast_compile()
  compilation_cache.prefer_fast_compile()
  assert os.environ["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=2 "
                                     "--xla_backend_optimization_level=0 "
                                     "--xla_cpu_use_fusion_emitters=false")
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
  compilation_cache.prefer_fast_compile()
  assert os.environ["XLA_FLAGS"] == ("--xla_backend_optimization_level=3 "
                                     "--xla_cpu_use_fusion_emitters=false")
  monkeypatch.delenv("XLA_FLAGS")
  compilation_cache.prefer_fast_compile()
  assert os.environ["XLA_FLAGS"] == ("--xla_backend_optimization_level=0 "
                                     "--xla_cpu_use_fusion_emitters=false")
