"""jaxgrad.studies.mixed_precision: the arms' dtypes and optimizers, underflow against float32."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import mixed_precision
from jaxgrad.models import DeepMLP
from jaxgrad.studies import mixed_precision as study


@pytest.mark.parametrize("arm, dtype", [("float32", jnp.float32), ("bfloat16", jnp.bfloat16),
                                        ("float16", jnp.float16), ("float16+scaling", jnp.float16)])
def test_arm_dtype_and_loss_scaling(arm, dtype):
  assert study.compute_dtype(arm) == dtype
  tx = study.optimizer(arm, 1e-3, init_scale=8.0, growth_interval=2)
  state = tx.init({"w": jnp.zeros(3)})
  assert mixed_precision.has_loss_scale(state) == arm.endswith("+scaling")


def test_float16_logits_of_tiny_weights_underflow_and_float32_is_its_own_reference():
  model = DeepMLP(depth=3, width=4, out_features=3)
  x, y = jnp.ones((2, 5)), jnp.array([0, 2])
  params = model.init(jax.random.key(0), x)["params"]
  # Gradient entries are products of two weights, ~1e-8: below float16's 2^-24.
  params = jax.tree.map(lambda p: p * 1e-4, params)
  for dtype, underflows in ((jnp.float32, False), (jnp.float16, True)):
    _, loss_fn = study.precision_functions(model, dtype)
    record = study.underflow_recorder(loss_fn, None)
    grads = jax.grad(lambda p: loss_fn(p, {}, (x, y))[0])(params)
    info = types.SimpleNamespace(params=params, grads=grads, opt_state=(), batch=(x, y))
    lost = record(info)["underflow"]
    assert any(float(v) > 0 for v in lost.values()) == underflows, (dtype, lost)


def test_underflow_summary_takes_medians_over_seeds():
  res = {"underflow_mean": {"a": np.array([0.0, 0.2, 0.4]), "b": np.array([0.1, 0.1, 0.1])},
         "underflow_last_quarter": {"a": np.array([0.5, 0.7, 0.9]), "b": np.zeros(3)}}
  summary = study.underflow_summary({"float16": res}, ["a", "b"])["float16"]
  assert summary["per_layer"] == pytest.approx([0.2, 0.1])
  assert summary["max"] == pytest.approx(0.2)
  assert summary["first_layer_last_quarter"] == pytest.approx(0.7)
