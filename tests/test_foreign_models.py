"""tests/foreign_models.py: each public-style model inits, applies, keeps its quirks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import foreign_models as fm

FACTORIES = {
    "cnn": fm.make_cnn,
    "vit": fm.make_vit,
    "resnet": fm.make_resnet,
    "he_relu_mlp": fm.make_he_relu_mlp,
    "small_sigmoid_mlp": fm.make_small_sigmoid_mlp,
    "exploding_relu_mlp": fm.make_exploding_relu_mlp,
    "sequential_mlp": fm.make_sequential_mlp,
    "scan_res_mlp": fm.make_scan_res_mlp,
}


@functools.cache
def _built(name):
  """``FACTORIES[name](key 0)`` made once and shared by the tests that read it."""
  return FACTORIES[name](jax.random.key(0))


@functools.cache
def _applied(name):
  """The factory's model applied to its own batch once: ``model.apply(variables, x, **kwargs)``.

  Jitted: one compile, where op-by-op it was one per distinct operation.
  """
  model, variables, x, kwargs = _built(name)
  return jax.jit(functools.partial(model.apply, **kwargs))(variables, x)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_factory_inits_and_applies(name):
  _, variables, x, kwargs = _built(name)
  assert "params" in variables
  out = _applied(name)
  out = out[0] if "mutable" in kwargs else out  # then apply returns (output, updates)
  assert out.shape == (x.shape[0], 10)
  assert bool(jnp.all(jnp.isfinite(out)))


def test_resnet_zero_last_bn_scale_and_batch_stats_update():
  variables = _built("resnet")[1]
  params = variables["params"]
  for block in ("ResNetBlock_0", "ResNetBlock_1"):
    np.testing.assert_array_equal(params[block]["BatchNorm_1"]["scale"], 0.0)
    assert np.all(np.asarray(params[block]["BatchNorm_0"]["scale"]) == 1.0)
  assert "conv_proj" in params["ResNetBlock_1"] and "conv_proj" not in params["ResNetBlock_0"]
  _, updates = _applied("resnet")
  old, new = variables["batch_stats"]["bn_init"], updates["batch_stats"]["bn_init"]
  assert not np.allclose(old["mean"], new["mean"])
  assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
      variables["batch_stats"])


def test_vit_head_is_zero_unless_asked():
  params = _built("vit")[1]["params"]
  np.testing.assert_array_equal(params["head"]["kernel"], 0.0)
  assert params["Transformer"]["posembed_input"]["pos_embedding"].shape == (1, 5, 16)
  assert {"encoderblock_0", "encoderblock_1", "encoder_norm"} <= set(params["Transformer"])
  _, variables, _, _ = fm.make_vit(jax.random.key(0), zero_head=False)
  assert float(jnp.abs(variables["params"]["head"]["kernel"]).max()) > 0.0


@pytest.mark.parametrize("named, stack", [(False, "ScanBlock_0"), (True, "blocks")])
def test_scan_res_mlp_params_are_stacked(named, stack):
  model, variables, _, _ = fm.make_scan_res_mlp(jax.random.key(0), named=named)
  params = variables["params"]
  assert set(params) == {"Dense_0", stack, "Dense_1"}
  assert params[stack]["Dense_0"]["kernel"].shape == (model.depth, model.width, model.width)
  assert params[stack]["Dense_1"]["bias"].shape == (model.depth, model.width)
  kernels = params[stack]["Dense_0"]["kernel"]
  assert not np.allclose(kernels[0], kernels[1])  # split_rngs: one draw per layer


def test_mlp_layer_names_are_flax_defaults():
  _, listed, _, _ = fm.make_list_mlp(jax.random.key(0), depth=2)
  assert set(listed["params"]) == {"layers_0", "layers_1", "head"}
  _, seq, _, _ = fm.make_sequential_mlp(jax.random.key(0), depth=2)
  assert set(seq["params"]) == {"layers"}
  assert set(seq["params"]["layers"]) == {"layers_0", "layers_2", "layers_4"}
