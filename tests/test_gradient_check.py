"""Tests for jaxgrad.diagnostics.gradient_check: passes on real gradients, catches planted bugs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad.diagnostics.gradient_check import all_passed, gradient_check, max_error
from jaxgrad.models import DeepMLP
from jaxgrad.models.resnet import ResNet
from tests import _tol


@jax.custom_vjp
def _tanh_wrong_sign(x):
  return jnp.tanh(x)


def _fwd(x):
  return jnp.tanh(x), x


def _bwd(x, g):
  return (-g * (1.0 - jnp.tanh(x) ** 2),)  # the planted bug: the sign


_tanh_wrong_sign.defvjp(_fwd, _bwd)


def _mlp_loss(activation):
  x = jax.random.normal(jax.random.key(0), (4, 3), jnp.float64)
  model = DeepMLP(depth=4, width=6, out_features=2, activation=activation,
                  param_dtype=jnp.float64)
  params = jax.jit(model.init)(jax.random.key(1), x)["params"]
  return lambda p: jnp.mean((model.apply({"params": p}, x) - 1.0) ** 2), params


def test_quadratic_matches_analytic_and_reports_per_tensor(x64):
  a = jnp.arange(1.0, 7.0).reshape(2, 3)
  params = {"a": a, "b": jnp.ones(40)}
  checks = gradient_check(
      lambda p: jnp.sum(p["a"] ** 3) + jnp.sum(jnp.cos(p["b"])), params,
      key=jax.random.key(0), num_directions=3, max_coordinates=32)
  assert list(checks) == ["a", "b"]
  assert checks["a"].all_coordinates and checks["a"].num_directions == 6
  assert not checks["b"].all_coordinates and checks["b"].num_directions == 3
  # All coordinates of "a": the numerical gradient norm is the analytic ||3 a^2||.
  np.testing.assert_allclose(checks["a"].grad_norm, float(jnp.linalg.norm(3 * a**2)),
                             **_tol.F64_FINITE_DIFFERENCE)
  assert all_passed(checks) and max_error(checks) < _tol.F64_FINITE_DIFFERENCE["rtol"]


def test_passes_on_mlp_and_catches_planted_wrong_sign_vjp(x64):
  good = gradient_check(*_mlp_loss("tanh"), key=jax.random.key(2))
  assert all_passed(good), {k: c.error for k, c in good.items()}
  bad = gradient_check(*_mlp_loss(_tanh_wrong_sign), key=jax.random.key(2))
  # The output layer does not go through the buggy activation; every layer before it does.
  assert bad["last/dense/kernel"].passed
  for name in ("first/dense/kernel", "hidden/layers/dense/kernel"):
    assert not bad[name].passed and bad[name].error > 0.1


def test_passes_on_batchnorm_resnet_in_train_mode(x64):
  model = ResNet(stage_sizes=(1, 1), width=2, num_classes=3)
  x = jax.random.normal(jax.random.key(0), (3, 4, 4, 3), jnp.float64)
  variables = jax.jit(model.init)(jax.random.key(1, impl="rbg"), x)
  loss = lambda p: jnp.mean(model.apply({**variables, "params": p}, x, train=True,  # noqa: E731
                                        mutable=["batch_stats"])[0] ** 2)
  checks = gradient_check(loss, variables["params"], key=jax.random.key(2),
                                      max_coordinates=8, num_directions=2)
  assert all_passed(checks), {k: c.error for k, c in checks.items() if not c.passed}


def test_requires_float64_and_valid_arguments():
  with pytest.raises(ValueError, match="enable_x64"):
    gradient_check(jnp.sum, jnp.ones(2), key=jax.random.key(0))
  with jax.enable_x64(True):
    with pytest.raises(ValueError, match="computed in float32"):
      gradient_check(lambda p: jnp.sum(p.astype(jnp.float32)), jnp.ones(2), key=jax.random.key(0))
    with pytest.raises(ValueError, match="epsilon must be > 0"):
      gradient_check(jnp.sum, jnp.ones(2), key=jax.random.key(0), epsilon=0.0)
