"""Tests for jaxgrad.diagnostics.gradient_check: passes on real gradients, catches planted bugs,
reports kinks as not checked, names the model's own precision knob."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad.diagnostics.gradient_check import (all_passed, gradient_check, max_error, num_kinks,
                                                precision_advice)
from jaxgrad.models import DeepMLP
from jaxgrad.models.resnet import ResNet
from tests import _tol
from tests import foreign_models


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
  assert num_kinks(good) == 0 and num_kinks(bad) == 0  # tanh is smooth: nothing excused
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


def test_random_directions_are_each_tensors_own_gaussian_draws(x64):
  """A linear loss <w, p>: each tensor's a_k = <w_i, v_k>, so its grad_norm is ||V_i w_i||, V_i
  the normalised rows of normal(fold_in(key, i), (K, n_i)) (i: the tensor's flatten index) for
  tensors of several sizes, drawn in one program (JAX's default partitionable threefry); the
  small tensor ``a`` is checked per coordinate."""
  shapes = {"a": (2,), "b": (3, 5), "c": (7,)}  # flatten order a, b, c
  weights = {k: jax.random.normal(jax.random.key(i), s, jnp.float64)
             for i, (k, s) in enumerate(shapes.items())}
  params = {k: jnp.zeros(s, jnp.float64) for k, s in shapes.items()}
  key, k = jax.random.key(7), 3
  checks = gradient_check(lambda p: sum(jnp.sum(weights[n] * p[n]) for n in p), params, key=key,
                          num_directions=k, max_coordinates=4)
  for i, name in ((1, "b"), (2, "c")):
    v = np.asarray(jax.random.normal(jax.random.fold_in(key, i), (k, np.size(weights[name])),
                                     jnp.float64))
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    expected = np.linalg.norm(v @ np.ravel(weights[name]))
    assert checks[name].num_directions == k and not checks[name].all_coordinates
    np.testing.assert_allclose(checks[name].grad_norm, expected, **_tol.F64_FINITE_DIFFERENCE)
  assert checks["a"].all_coordinates and checks["a"].num_directions == 2
  np.testing.assert_allclose(checks["a"].grad_norm, np.linalg.norm(weights["a"]),
                             **_tol.F64_FINITE_DIFFERENCE)
  assert all_passed(checks)


def test_too_many_directions_are_refused_before_they_are_built(x64):
  # 8,000 coordinate directions x 8,000 parameters = 6.4e7 entries (512 MB) > 5e7.
  with pytest.raises(ValueError, match="8000 directions x 8000 parameters exceed 5e"):
    gradient_check(jnp.sum, jnp.zeros(8000, jnp.float64), key=jax.random.key(0),
                   max_coordinates=8000)


def test_requires_float64_and_valid_arguments():
  with pytest.raises(ValueError, match="enable_x64"):
    gradient_check(jnp.sum, jnp.ones(2), key=jax.random.key(0))
  with jax.enable_x64(True):
    with pytest.raises(ValueError, match="computed in float32"):
      gradient_check(lambda p: jnp.sum(p.astype(jnp.float32)), jnp.ones(2), key=jax.random.key(0))
    with pytest.raises(ValueError, match="epsilon must be > 0"):
      gradient_check(jnp.sum, jnp.ones(2), key=jax.random.key(0), epsilon=0.0)


@jax.custom_vjp
def _relu_wrong_sign(x):
  return jax.nn.relu(x)


_relu_wrong_sign.defvjp(lambda x: (jax.nn.relu(x), x), lambda x, g: (-g * (x > 0),))


def _relu_loss(activation):
  # Entry 0 sits exactly on the kink; 1-3 within epsilon = 1e-6 of it (3e-7:
  # beyond epsilon / 10; 5e-8: closer; -3e-7: the other side); the rest far from it.
  w = jnp.array([0.0, 3e-7, 5e-8, -3e-7, 1.0, -1.0, 0.3])
  weights = jnp.arange(1.0, 8.0)
  return lambda p: jnp.sum(weights * activation(p["w"])) + jnp.sum(jnp.sin(p["w"])), {"w": w}


def test_relu_kink_is_reported_not_failed(x64):
  checks = gradient_check(*_relu_loss(jax.nn.relu), key=jax.random.key(0))
  assert checks["w"].kinks == 4 and checks["w"].num_directions == 7
  assert checks["w"].passed and checks["w"].error < _tol.F64_FINITE_DIFFERENCE["rtol"]
  # A wrong-sign ReLU VJP still fails, near the kink too (3e-7, 5e-8); only 0 and
  # -3e-7 are excused, where its zero is the exact left derivative.
  bad = gradient_check(*_relu_loss(_relu_wrong_sign), key=jax.random.key(0))
  assert not bad["w"].passed and bad["w"].error > 0.1 and bad["w"].kinks == 2


def _stock_resnet_loss(dtype):
  model, variables, x, kwargs = foreign_models.make_resnet(jax.random.key(0), dtype=dtype,
                                                          image_size=14)

  def loss(params):
    return jnp.mean(model.apply({**variables, "params": params}, x, **kwargs)[0] ** 2)

  return model, variables, loss


def test_stock_flax_resnet_passes_with_its_kinks_marked(x64):
  # Zero-initialised last BatchNorm scale: exact zeros on the shortcut meet a
  # branch adding exactly 0, so ReLU sits on its kink (image_size=14: see make_resnet).
  model, variables, loss = _stock_resnet_loss(jnp.float64)
  checks = gradient_check(loss, variables["params"], key=jax.random.key(2), max_coordinates=8,
                          num_directions=2, model=model)
  assert all_passed(checks), {k: c.error for k, c in checks.items() if not c.passed}
  assert max_error(checks) < _tol.F64_FINITE_DIFFERENCE["rtol"]
  kinked = {k for k, c in checks.items() if c.kinks}
  assert kinked and kinked <= {"ResNetBlock_0/BatchNorm_1/bias", "ResNetBlock_0/BatchNorm_1/scale"}
  assert all(c.kinks < c.num_directions for c in checks.values())


class _ComputesInParamDtype(nn.Module):
  """Its only precision knob is param_dtype, which it also computes in (as a recurrent carry)."""

  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.Dense(2, dtype=self.param_dtype, param_dtype=self.param_dtype)(x)


def test_advice_names_the_models_own_precision_knob(x64):
  model, variables, loss = _stock_resnet_loss(jnp.float32)
  with pytest.raises(ValueError, match="computed in float32") as info:
    gradient_check(loss, variables["params"], key=jax.random.key(0), model=model)
  assert "ResNet with dtype=jnp.float64 (now dtype=float32)" in str(info.value)
  assert "param_dtype" not in str(info.value)
  model = _ComputesInParamDtype()
  x = jnp.ones((2, 3), jnp.float64)
  params = jax.jit(model.init)(jax.random.key(0), x)["params"]
  with pytest.raises(ValueError, match="computed in float32") as info:
    gradient_check(lambda p: jnp.sum(model.apply({"params": p}, x)), params,
                   key=jax.random.key(0), model=model)
  assert "_ComputesInParamDtype with param_dtype=jnp.float64 (now param_dtype=float32)" in str(
      info.value)
  assert "with dtype=" not in str(info.value)
  assert "param_dtype=jnp.float64 (now param_dtype=float32)" in precision_advice(
      DeepMLP(depth=2, width=2, out_features=1))
  assert "dtype=jnp.float64 and param_dtype=jnp.float64" in precision_advice(
      foreign_models.MlpBlock(8))
  assert "cast its parameters after init" in precision_advice(foreign_models.CNN())
