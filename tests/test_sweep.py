"""jaxgrad.sweep: sharded over 4 simulated CPU devices it gives the one-device results."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import diagnostics
from jaxgrad.models import DeepMLP
from jaxgrad.sweep import sweep, sweep_grid
from tests import _tol

# Run as a script in a subprocess: the device count is fixed when jax starts.
SCRIPT = """
import json, jax, jax.numpy as jnp
from tests.test_sweep import grad_norms_one_seed, scaled_draw
from jaxgrad.sweep import sweep, sweep_grid
keys = jax.random.split(jax.random.key(0), 6)   # 6 runs on 4 devices: padded to 8
out = sweep(grad_norms_one_seed, keys)
grid = sweep_grid(scaled_draw, keys[:2], jnp.arange(3.0))   # 3 arms on 4 devices: padded to 4
print(json.dumps({"devices": jax.device_count(), "out": out.tolist(), "grid": grid.tolist()}))
"""


def scaled_draw(key, arm):
  return arm * jax.random.normal(key, (3,))


def grad_norms_one_seed(key):
  model = DeepMLP(depth=5, width=8, out_features=1, activation="tanh")
  x = jnp.ones((4, 3))
  v = model.init(key, x)
  g = jax.grad(lambda p: jnp.mean(model.apply({"params": p}, x) ** 2))(v["params"])
  return diagnostics.layer_grad_norms(g).stack()


def test_one_device_sweep_is_jit_of_vmap():
  keys = jax.random.split(jax.random.key(0), 6)
  chex.assert_trees_all_close(sweep(grad_norms_one_seed, keys),
                              jax.jit(jax.vmap(grad_norms_one_seed))(keys), rtol=0, atol=0)


def test_four_simulated_devices_give_the_one_device_results():
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
  env = {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True,
                        text=True, timeout=300, check=True)
  sharded = json.loads(done.stdout.strip().splitlines()[-1])
  assert sharded["devices"] == 4
  keys = jax.random.split(jax.random.key(0), 6)
  np.testing.assert_allclose(sharded["out"], sweep(grad_norms_one_seed, keys), rtol=1e-6)
  np.testing.assert_allclose(sharded["grid"], sweep_grid(scaled_draw, keys[:2], jnp.arange(3.0)),
                             rtol=1e-6)


def test_sweep_rejects_mismatched_axes():
  with pytest.raises(ValueError, match="same leading sweep axis"):
    sweep(lambda a, b: a + b, jnp.ones(3), jnp.ones(4))


def test_sweep_grid_pairs_every_arm_with_every_key():
  keys = jax.random.split(jax.random.key(0), 3)
  arms = jnp.asarray([0.5, 2.0])
  fn = lambda key, arm: arm * jax.random.normal(key, (2,))  # noqa: E731
  got = sweep_grid(fn, keys, arms)
  chex.assert_shape(got, (2, 3, 2))
  expected = jnp.stack([jnp.stack([fn(k, a) for k in keys]) for a in arms])
  chex.assert_trees_all_close(got, expected, **_tol.F32)


def test_sweep_grid_pairs_rbg_keys_too():
  """Under one flat vmap rbg keys would draw a batch from one key; the grid keeps the arms paired."""
  keys = jax.random.split(jax.random.key(0, impl="rbg"), 3)
  got = sweep_grid(lambda k, arm: arm + jax.random.normal(k, (4,)), keys, jnp.arange(2.0))
  chex.assert_trees_all_close(got[1] - got[0], jnp.ones((3, 4)), **_tol.F32)
  assert not np.allclose(got[0, 0], got[0, 1])  # the keys still draw differently


def test_the_same_function_is_traced_once_for_the_same_shapes():
  traced = []

  def fn(x):
    traced.append(1)  # runs when JAX traces fn, not when the compiled program runs
    return jnp.sin(x) * 2

  x = jnp.arange(6.0).reshape(3, 2)
  first = sweep(fn, x)
  second = sweep(fn, x + 1)
  assert len(traced) == 1
  np.testing.assert_allclose(second, np.sin(np.asarray(x) + 1) * 2, rtol=1e-6)
  np.testing.assert_allclose(first, np.sin(np.asarray(x)) * 2, rtol=1e-6)
  sweep(fn, jnp.ones((4, 2)))  # a new shape: traced again
  assert len(traced) == 2
