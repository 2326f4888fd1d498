"""Tests for jaxgrad.models.transformer: block orders, attention scale, shapes."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad.models import transformer
from tests import _programs, _tol

X = jax.random.normal(jax.random.key(0), (2, 5, 8))


def _zero_branches(params):
  """Zero the attention and MLP output projections: both residual branches return 0."""
  params = jax.tree.map(lambda a: a, params)
  for name in ("out",):
    params["attn"][name] = jax.tree.map(jnp.zeros_like, params["attn"][name])
  params["mlp_out"] = jax.tree.map(jnp.zeros_like, params["mlp_out"])
  return params


def test_pre_ln_and_post_ln_order():
  """With zero branches: pre-LN is the identity, post-LN is LN(LN(x)) = LN(x)."""
  outs = {}
  for position in transformer.NORM_POSITIONS:
    block = transformer.TransformerBlock(num_heads=2, d_ff=16, norm_position=position)
    params = _zero_branches(block.init(jax.random.key(1), X)["params"])
    outs[position] = block.apply({"params": params}, X)
  chex.assert_trees_all_close(outs["pre"], X, **_tol.F32)
  ln = nn.LayerNorm().apply({"params": {"scale": jnp.ones(8), "bias": jnp.zeros(8)}}, X)
  chex.assert_trees_all_close(outs["post"], ln, **_tol.F32)


def test_post_ln_output_is_normalised_and_pre_ln_residual_stream_is_not():
  for position, normalised in (("post", True), ("pre", False)):
    block = transformer.TransformerBlock(num_heads=2, d_ff=16, norm_position=position)
    y = block.apply(block.init(jax.random.key(1), 3.0 * X), 3.0 * X)
    std = jnp.std(y, axis=-1)
    assert bool(jnp.allclose(std, 1.0, atol=1e-3)) == normalised


def test_attention_scale_divides_logits_by_sqrt_dk():
  """Unscaled attention with W_Q / sqrt(d_k) equals scaled attention with W_Q."""
  d_k = 4
  attn = {s: transformer.MultiHeadSelfAttention(num_heads=2, scale_attention=s)
          for s in (True, False)}
  variables = attn[True].init(jax.random.key(2), X)
  params = variables["params"]
  scaled_q = {**params, "query": {"kernel": params["query"]["kernel"] / np.sqrt(d_k),
                                  "bias": params["query"]["bias"] / np.sqrt(d_k)}}
  out_scaled, a_scaled = attn[True].apply({"params": params}, X, mutable=["intermediates"])
  out_plain, a_plain = attn[False].apply({"params": scaled_q}, X, mutable=["intermediates"])
  chex.assert_trees_all_close(out_scaled, out_plain, **_tol.F32)
  (probs,) = a_scaled["intermediates"]["attention"]
  chex.assert_shape(probs, (2, 2, 5, 5))
  chex.assert_trees_all_close(probs.sum(-1), jnp.ones((2, 2, 5)), **_tol.F32)


def test_causal_mask_zeroes_future_keys():
  attn = transformer.MultiHeadSelfAttention(num_heads=2, causal=True)
  v = attn.init(jax.random.key(2), X)
  _, state = attn.apply(v, X, mutable=["intermediates"])
  (probs,) = state["intermediates"]["attention"]
  assert float(jnp.max(jnp.triu(probs, k=1))) == 0.0


def test_transformer_shapes_scan_and_names():
  model = transformer.Transformer(vocab_size=6, max_len=7, out_features=3, d_model=8, depth=3,
                                  num_heads=2, d_ff=16, norm_position="pre")
  tokens = jnp.zeros((2, 5), jnp.int32)
  variables = jax.eval_shape(model.init, jax.random.key(0), tokens)
  params = variables["params"]
  assert params["hidden"]["layers"]["mlp_out"]["kernel"].shape == (3, 16, 8)
  assert "output_ln" in params["hidden"]
  assert sorted(params) == ["embed", "embed_pos", "hidden", "output_proj"]  # input to output
  assert variables["perturbations"]["hidden"]["layers"]["residual"].shape == (3, 2, 5, 8)
  assert jax.eval_shape(model.apply, variables, tokens).shape == (2, 5, 3)
  post = model.clone(norm_position="post")
  assert "output_ln" not in jax.eval_shape(post.init, jax.random.key(0), tokens)["params"]["hidden"]


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="unknown norm_position 'mid'"):
    transformer.TransformerBlock(2, 8, norm_position="mid").init(jax.random.key(0), X)
  with pytest.raises(ValueError, match="num_heads=3 must divide d_model=8"):
    transformer.MultiHeadSelfAttention(3).init(jax.random.key(0), X)


def test_stack_remat_changes_memory_not_gradients():
  def grad_and_params(remat):
    model = transformer.TransformerStack(depth=2, num_heads=2, d_ff=16, remat=remat)
    params = jax.jit(model.init)(jax.random.key(1), X)["params"]
    return jax.grad(lambda p: jnp.mean(model.apply({"params": p}, X) ** 2)), params

  (remat, params), (plain, _) = grad_and_params(True), grad_and_params(False)
  assert _programs.has_remat(remat, params) and not _programs.has_remat(plain, params)
  g_remat, g_plain = jax.jit(remat)(params), jax.jit(plain)(params)
  chex.assert_trees_all_close(g_remat, g_plain, **_tol.F32)


def test_stream_is_sown_and_attention_and_activation_are_options():
  """'stream_in' is x_0, 'residual' the stack of block outputs; attention=False drops the sublayer."""
  model = transformer.Transformer(vocab_size=6, max_len=5, out_features=3, d_model=8, depth=3,
                                  num_heads=2, d_ff=16, norm_position="post")
  tokens = jnp.arange(10).reshape(2, 5) % 6
  variables = model.init(jax.random.key(0), tokens)
  _, state = model.apply({"params": variables["params"]}, tokens, mutable=[transformer.STREAM])
  hidden = state[transformer.STREAM]["hidden"]
  (x0,) = hidden[transformer.STREAM_IN]
  (xs,) = hidden["layers"][transformer.RESIDUAL]
  chex.assert_shape(x0, (2, 5, 8))
  chex.assert_shape(xs, (3, 2, 5, 8))
  chex.assert_trees_all_close(jnp.std(xs, axis=-1), jnp.ones((3, 2, 5)), atol=1e-3)  # post-LN

  block = transformer.TransformerBlock(num_heads=2, d_ff=16, attention=False, activation=nn.relu)
  params = block.init(jax.random.key(1), X)["params"]
  assert sorted(params) == ["mlp_in", "mlp_ln", "mlp_out"]
  u = nn.LayerNorm().apply({"params": params["mlp_ln"]}, X)
  h = jnp.maximum(u @ params["mlp_in"]["kernel"] + params["mlp_in"]["bias"][None, None], 0.0)
  expected = X + h @ params["mlp_out"]["kernel"] + params["mlp_out"]["bias"][None, None]
  chex.assert_trees_all_close(block.apply({"params": params}, X), expected, **_tol.F32)
