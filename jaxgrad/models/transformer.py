r"""Transformer blocks, pre-LN or post-LN, with or without the ``1/sqrt(d_k)`` scale.

Multi-head self-attention (seed 000 §5.3), for ``H`` heads of size
``d_k = d_model / H``:

.. math::

   A = \mathrm{softmax}\!\Big(\frac{Q K^\top}{\tau}\Big), \qquad
   \tau = \sqrt{d_k}\ (\texttt{scale\_attention=True})\ \text{or}\ 1,
   \qquad \mathrm{Attn}(x) = \mathrm{concat}_h(A_h V_h)\, W_O .

With unit-variance inputs and weights of variance ``1/d_model``, the entries of
``q`` and ``k`` have unit variance, so a logit :math:`q\cdot k` has variance
``d_k``: without the scale the softmax saturates as ``d_k`` grows.

The two block orders (Xiong et al. 2020, theory.md §1.6):

.. math::

   \text{post-LN:}\ x \leftarrow \mathrm{LN}(x + \mathrm{Attn}(x)),\
   x \leftarrow \mathrm{LN}(x + \mathrm{MLP}(x)); \qquad
   \text{pre-LN:}\ x \leftarrow x + \mathrm{Attn}(\mathrm{LN}(x)),\
   x \leftarrow x + \mathrm{MLP}(\mathrm{LN}(x)),

with :math:`\mathrm{MLP}(x) = W_2\,\phi(W_1 x)`, :math:`\phi` = GELU by default. A
pre-LN stack ends with a final LayerNorm. ``attention=False`` drops the attention
sublayer (a block is then its MLP sublayer alone, the simplified model of
Xiong et al.'s analysis). Every block's output (the residual stream
:math:`x_l`) is exposed as ``Module.perturb('residual', x)`` and sown into the collection
``'stream'`` as ``'residual'`` (stacked ``(depth, batch, T, d_model)``), the
stack's input :math:`x_0` as ``'stream_in'``; every attention matrix and its
(scaled) logits are sown into ``'intermediates'`` as ``'attention'`` and ``'logits'`` (shape
``(batch, heads, T, T)``).
"""

from collections.abc import Callable
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgrad import initializers
from jaxgrad.models.stack import scan_layers

InitializerLike = initializers.Initializer | str | tuple[str, dict[str, Any]]
Activation = Callable[[jax.Array], jax.Array]
NORM_POSITIONS = ("pre", "post")
RESIDUAL = "residual"
STREAM = "stream"
STREAM_IN = "stream_in"
ATTENTION = "attention"
LOGITS = "logits"


def check_norm_position(norm_position: str) -> None:
  """Raises ``ValueError`` naming ``norm_position`` and the valid choices."""
  if norm_position not in NORM_POSITIONS:
    raise ValueError(f"unknown norm_position {norm_position!r}; valid choices: {NORM_POSITIONS}")


class MultiHeadSelfAttention(nn.Module):
  """Self-attention over axis -2 of ``(batch, T, d_model)``.

  Attributes:
    num_heads: ``H``; must divide ``d_model``.
    scale_attention: divide the logits by ``sqrt(d_k)``.
    causal: mask out keys after the query.
    kernel_init: initializer of the four projections.
    param_dtype: dtype of the parameters.
  """

  num_heads: int
  scale_attention: bool = True
  causal: bool = False
  kernel_init: InitializerLike = "xavier_uniform"
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    *batch, t, d_model = x.shape
    if d_model % self.num_heads:
      raise ValueError(f"num_heads={self.num_heads} must divide d_model={d_model}")
    d_k = d_model // self.num_heads
    dense = lambda name: nn.Dense(  # noqa: E731
        d_model, kernel_init=initializers.resolve(self.kernel_init),
        param_dtype=self.param_dtype, name=name)
    split = lambda a: a.reshape(*batch, t, self.num_heads, d_k)  # noqa: E731
    q, k, v = split(dense("query")(x)), split(dense("key")(x)), split(dense("value")(x))
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k)
    if self.scale_attention:
      logits = logits / jnp.sqrt(jnp.asarray(d_k, logits.dtype))
    self.sow("intermediates", LOGITS, logits)
    if self.causal:
      mask = jnp.tril(jnp.ones((t, t), bool))
      logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    attention = jax.nn.softmax(logits, axis=-1)
    self.sow("intermediates", ATTENTION, attention)
    out = jnp.einsum("...hqk,...khd->...qhd", attention, v).reshape(*batch, t, d_model)
    return dense("out")(out)


class TransformerBlock(nn.Module):
  r"""One block: attention and MLP sublayers, each with a residual and a LayerNorm.

  Attributes:
    num_heads: attention heads.
    d_ff: hidden width of the MLP (``4 d_model`` is usual).
    norm_position: ``'pre'`` (LN inside the residual branch) or ``'post'`` (LN
      after the addition, the original Transformer).
    scale_attention, causal, kernel_init, param_dtype: as in
      :class:`MultiHeadSelfAttention`.
    activation: the MLP's nonlinearity :math:`\phi` (default ``nn.gelu``, its
      tanh approximation).
    attention: with ``False`` the block has no attention sublayer.
  """

  num_heads: int
  d_ff: int
  norm_position: str = "pre"
  scale_attention: bool = True
  causal: bool = False
  kernel_init: InitializerLike = "xavier_uniform"
  param_dtype: Any = jnp.float32
  activation: Activation = nn.gelu
  attention: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    check_norm_position(self.norm_position)
    init = initializers.resolve(self.kernel_init)
    ln = lambda name: nn.LayerNorm(param_dtype=self.param_dtype, name=name)  # noqa: E731
    attn = MultiHeadSelfAttention(self.num_heads, self.scale_attention, self.causal,
                                  self.kernel_init, self.param_dtype, name="attn")

    def mlp(h):
      h = nn.Dense(self.d_ff, kernel_init=init, param_dtype=self.param_dtype, name="mlp_in")(h)
      h = self.activation(h)
      return nn.Dense(x.shape[-1], kernel_init=init, param_dtype=self.param_dtype,
                      name="mlp_out")(h)

    if self.norm_position == "pre":
      x = x + attn(ln("attn_ln")(x)) if self.attention else x
      x = x + mlp(ln("mlp_ln")(x))
    else:
      x = ln("attn_ln")(x + attn(x)) if self.attention else x
      x = ln("mlp_ln")(x + mlp(x))
    x = self.perturb(RESIDUAL, x)
    self.sow(STREAM, RESIDUAL, x)
    return x


class TransformerStack(nn.Module):
  """``depth`` :class:`TransformerBlock` s stacked with ``nn.scan`` (submodule ``layers``).

  A pre-LN stack ends with a LayerNorm (``output_ln``); a post-LN stack's
  last block already ends with one. Input and output ``(batch, T, d_model)``.

  Attributes:
    depth: number of blocks, >= 1.
    num_heads, d_ff, norm_position, scale_attention, causal, kernel_init,
      param_dtype, activation, attention: as in :class:`TransformerBlock`.
    remat: rematerialise each block in the backward pass (``nn.remat``):
      reverse-mode memory holds one residual stream per block instead of
      every block's intermediates; same gradients, one more forward pass.
  """

  depth: int
  num_heads: int
  d_ff: int
  norm_position: str = "pre"
  scale_attention: bool = True
  causal: bool = False
  kernel_init: InitializerLike = "xavier_uniform"
  param_dtype: Any = jnp.float32
  remat: bool = False
  activation: Activation = nn.gelu
  attention: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    check_norm_position(self.norm_position)
    block = functools.partial(
        TransformerBlock, self.num_heads, self.d_ff, self.norm_position, self.scale_attention,
        self.causal, self.kernel_init, self.param_dtype, self.activation, self.attention)
    self.sow(STREAM, STREAM_IN, x)
    x, _ = scan_layers(block, self.depth, x, remat=self.remat)
    if self.norm_position == "pre":
      x = nn.LayerNorm(param_dtype=self.param_dtype, name="output_ln")(x)
    return x


class Transformer(nn.Module):
  """Token sequence model: embeddings, a :class:`TransformerStack`, a per-position head.

  Names sort input to output: ``embed``, ``embed_pos``, ``hidden`` (the
  stack: ``hidden/layers`` scanned, ``hidden/output_ln``), ``output_proj``.

  Attributes:
    vocab_size: number of input tokens.
    max_len: longest sequence (learned positional embeddings).
    out_features: logits per position.
    d_model: residual-stream width.
    depth, num_heads, d_ff, norm_position, scale_attention, causal, kernel_init,
      param_dtype, remat, activation, attention: as in :class:`TransformerStack`.

  >>> import jax, jax.numpy as jnp
  >>> model = Transformer(vocab_size=8, max_len=6, out_features=8, d_model=16, depth=2,
  ...                     num_heads=2, d_ff=32)
  >>> tokens = jnp.zeros((3, 6), jnp.int32)
  >>> model.apply(model.init(jax.random.key(0), tokens), tokens).shape
  (3, 6, 8)
  """

  vocab_size: int
  max_len: int
  out_features: int
  d_model: int = 64
  depth: int = 6
  num_heads: int = 4
  d_ff: int = 256
  norm_position: str = "pre"
  scale_attention: bool = True
  causal: bool = False
  kernel_init: InitializerLike = "xavier_uniform"
  param_dtype: Any = jnp.float32
  remat: bool = False
  activation: Activation = nn.gelu
  attention: bool = True

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    t = tokens.shape[-1]
    if t > self.max_len:
      raise ValueError(f"sequence length {t} exceeds max_len={self.max_len}")
    embed = nn.initializers.normal(1.0)
    x = nn.Embed(self.vocab_size, self.d_model, embedding_init=embed,
                 param_dtype=self.param_dtype, name="embed")(tokens)
    pos = self.param("embed_pos", embed, (self.max_len, self.d_model), self.param_dtype)
    x = (x + pos[None, :t]) / jnp.sqrt(jnp.asarray(2.0, x.dtype))
    x = TransformerStack(self.depth, self.num_heads, self.d_ff, self.norm_position,
                         self.scale_attention, self.causal, self.kernel_init,
                         self.param_dtype, self.remat, self.activation, self.attention,
                         name="hidden")(x)
    return nn.Dense(self.out_features, kernel_init=initializers.resolve(self.kernel_init),
                    param_dtype=self.param_dtype, name="output_proj")(x)


__all__ = ["MultiHeadSelfAttention", "NORM_POSITIONS", "Transformer", "TransformerBlock",
           "TransformerStack"]
