"""Tests for jaxgrad.models.resnet: shapes, parameter counts, BatchNorm modes, shortcuts."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import diagnostics, probe
from jaxgrad.models import resnet
from tests import _tol

X = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))


def key(seed: int) -> jax.Array:
  """RngBitGenerator keys: XLA compiles threefry for ~50 conv tensors ~8x slower on CPU."""
  return jax.random.key(seed, impl="rbg")
TINY = dict(stage_sizes=(1, 2), width=4)


def _count(tree) -> int:
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _shapes(model, x=X):
  return jax.eval_shape(model.init, jax.random.key(0), x)


def test_resnet18_cifar_parameter_count_and_logits_shape():
  model = resnet.ResNet()  # the seed's ResNet18(): width 64, [2, 2, 2, 2], 10 classes
  x = jnp.ones((2, 32, 32, 3))
  variables = _shapes(model, x)
  # The reference PyTorch CIFAR ResNet-18 (kuangliu/pytorch-cifar) has 11,173,962
  # parameters: same convolutions, BN affine parameters, 1x1 projection shortcuts.
  assert _count(variables["params"]) == 11_173_962
  assert jax.eval_shape(model.apply, variables, x).shape == (2, 10)
  assert resnet.num_layers(resnet.RESNET18) == 18
  assert resnet.num_layers(resnet.RESNET34) == 34


@pytest.mark.parametrize("stage_sizes", [resnet.RESNET18, resnet.RESNET34])
def test_residual_and_plain_differ_only_by_projection_shortcuts(stage_sizes):
  width = 4
  res = _shapes(resnet.ResNet(stage_sizes, width=width))["params"]
  plain = _shapes(resnet.PlainNet(stage_sizes, width=width))["params"]
  # Stage i >= 2 starts with a 1x1 conv C_{i-1} -> C_i (no bias) and a BatchNorm (2 C_i).
  channels = [width * 2**i for i in range(len(stage_sizes))]
  shortcuts = sum(c_in * c_out + 2 * c_out for c_in, c_out in zip(channels, channels[1:]))
  assert _count(res) - _count(plain) == shortcuts
  strip = lambda p: {s: {b: {k: v for k, v in blk.items() if not k.startswith("shortcut")}  # noqa: E731
                         for b, blk in st.items()} if s.startswith("stage") and "_" not in s
                     else st for s, st in p.items()}
  chex.assert_trees_all_equal_shapes(strip(res), plain)


def test_stages_downsample_and_scanned_blocks_have_a_layer_axis():
  model = resnet.ResNet((3, 1), width=4)
  params = _shapes(model)["params"]
  assert params["stage1"]["layers"]["conv1"]["kernel"].shape == (2, 3, 3, 4, 4)
  assert params["stage2"]["block0"]["conv1"]["kernel"].shape == (3, 3, 4, 8)
  assert params["stage2"]["block0"]["shortcut_conv"]["kernel"].shape == (1, 1, 4, 8)
  assert "shortcut_conv" not in params["stage1"]["block0"]  # same shape: identity shortcut


def test_batchnorm_train_updates_running_stats_and_eval_uses_them():
  model = resnet.ResNet(**TINY)

  @jax.jit
  def run(key):
    variables = model.init(key, X)
    logits, state = model.apply(variables, X, train=True, mutable=["batch_stats"])
    stem = nn.Conv(4, (3, 3), use_bias=False).apply(
        {"params": variables["params"]["stage0_stem"]}, X)
    eval_logits = model.apply(variables, X)  # running averages, no mutable collection needed
    return logits, state, stem, eval_logits

  logits, state, stem, eval_logits = run(key(1))
  # Flax momentum 0.9 (PyTorch's 0.1): new mean = 0.9 * 0 + 0.1 * batch mean of the stem conv.
  chex.assert_trees_all_close(state["batch_stats"]["stage0_stem_bn"]["mean"],
                              0.1 * stem.mean(axis=(0, 1, 2)), **_tol.F32)
  assert float(jnp.max(jnp.abs(eval_logits - logits))) > 1e-3


def test_identity_block_is_identity_when_residual_branch_is_zero():
  """bn2 scale = 0 kills F: z = x + 0, and relu(x) = x for x >= 0 (the highway)."""
  x = jax.nn.relu(jax.random.normal(jax.random.key(2), (2, 5, 5, 4)))

  @jax.jit
  def run(key):
    variables = resnet.BasicBlock(4).init(key, x)
    variables["params"]["bn2"]["scale"] = jnp.zeros(4)
    return [resnet.BasicBlock(4, residual=r).apply(
        variables, x, train=True, mutable=["batch_stats"])[0] for r in (True, False)]

  y, y_plain = run(key(3))
  chex.assert_trees_all_close(y, x, **_tol.F32)
  assert float(jnp.max(jnp.abs(y_plain))) == 0.0


def test_backprop_signal_one_entry_per_block_input_to_output():
  model = resnet.ResNet(**TINY)
  loss = lambda v: jnp.mean(model.apply(v, X, train=True, mutable=["batch_stats"])[0] ** 2)  # noqa: E731
  layout = probe.layout(model, X, train=True, mutable=["batch_stats"])
  signal = jax.jit(lambda k: diagnostics.backprop_signal(loss, model.init(k, X), layout=layout))(
      key(1))
  assert list(signal) == ["stage1/block0", "stage2/block0", "stage2/layers_000"]
  assert all(np.isfinite(float(s)) and float(s) > 0 for s in signal.values())


def test_bad_stage_sizes_and_input_rank_raise():
  with pytest.raises(ValueError, match="stage_sizes"):
    _shapes(resnet.ResNet((2, 0), width=4))
  with pytest.raises(ValueError, match=r"\(batch, H, W, C\)"):
    _shapes(resnet.ResNet(width=4), jnp.ones((8, 8, 3)))
