r"""Small public Flax models, written the way their public sources write them.

jaxgrad's diagnostics must work on a model *as its user wrote it*: no
``Module.perturb``, no jaxgrad base class, no jaxgrad import, Flax's own names
(``ScanBlock_0``, a Sequential called ``layers``) and Flax's own init choices
(a zero-initialised ViT head, a zero-initialised last BatchNorm scale in each
ResNet branch). The modules below copy the structure, names and initialisers
of their public sources; only the sizes are shrunk so that a test compiles in
seconds.

- :class:`CNN`: the Flax examples' MNIST CNN (``examples/mnist``, linen).
- :class:`VisionTransformer` (alias :data:`ViT`): google-research/vision_transformer
  ``vit_jax/models_vit.py``.
- :class:`ResNet` with :class:`ResNetBlock`: the Flax examples' ImageNet ResNet
  (``examples/imagenet/models.py``).
- :class:`ListMLP`: Dense layers kept as a Python list built in ``setup``.
- :class:`SequentialMLP`: the same MLP as ``nn.Sequential`` stored as ``self.layers``.
- :class:`ScanResMLP`: a user's own ``nn.scan`` over residual blocks
  :math:`x \mapsto x + W_2\,\mathrm{relu}(W_1 x + b_1) + b_2` (``variable_axes``
  lists only ``'params'``), auto-named (``ScanBlock_0``) or named ``blocks``.

Factory protocol. Every ``make_<name>(key, ...) -> (model, variables, x, apply_kwargs)``:

- ``model``: the unbound ``flax.linen`` Module;
- ``variables``: ``model.init(key, x, ...)`` (a dict with ``'params'``, plus
  ``'batch_stats'`` for the ResNet);
- ``x``: an input batch, leading batch axis, in the factory's ``dtype``;
- ``apply_kwargs``: the keyword arguments ``model.apply`` needs, so that
  ``model.apply(variables, x, **apply_kwargs)`` runs. When ``apply_kwargs``
  holds ``"mutable"`` (the ResNet: ``{"train": True, "mutable": ["batch_stats"]}``)
  ``apply`` returns ``(output, updated_collections)``, otherwise the output alone.
  The ViT gets ``{"train": False}`` (its dropout rates are 0.0, as in the public
  ViT-B/16 config, so ``train=True`` needs no ``'dropout'`` rng either).

The output is always ``(batch, num_classes)``.

Deviation from the sources, on purpose: the ImageNet ResNet's BatchNorm has
``axis_name='batch'`` there because its training step runs under ``jax.pmap``;
outside a mapped axis of that name ``BatchNorm`` fails, so it is left out here.
"""

from collections.abc import Callable, Sequence
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

ModuleDef = Any
Dtype = Any
Factory = tuple[nn.Module, dict, jax.Array, dict]


# --- Flax examples: MNIST CNN -------------------------------------------------------------


class CNN(nn.Module):
  """A simple CNN model."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(features=32, kernel_size=(3, 3))(x)
    x = nn.relu(x)
    x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = nn.Conv(features=64, kernel_size=(3, 3))(x)
    x = nn.relu(x)
    x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))  # flatten
    x = nn.Dense(features=256)(x)
    x = nn.relu(x)
    x = nn.Dense(features=10)(x)
    return x


def make_cnn(key: jax.Array, *, dtype: Dtype = jnp.float32) -> Factory:
  """The MNIST CNN on a (4, 12, 12, 1) batch (MNIST is 28 x 28; 12 x 12 compiles faster)."""
  k_init, k_x = jax.random.split(key)
  model = CNN()
  x = jax.random.normal(k_x, (4, 12, 12, 1), dtype)
  return model, jax.jit(model.init)(k_init, x), x, {}


# --- google-research/vision_transformer: models_vit.py ---------------------------------------


class IdentityLayer(nn.Module):
  """Identity layer, convenient for giving a name to an array."""

  @nn.compact
  def __call__(self, x):
    return x


class AddPositionEmbs(nn.Module):
  """Adds learned positional embeddings to the inputs.

  Attributes:
    posemb_init: positional embedding initializer.
  """

  posemb_init: Callable[[jax.Array, Sequence[int], Dtype], jax.Array]
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs):
    # inputs.shape is (batch_size, seq_len, emb_dim).
    assert inputs.ndim == 3, ("Number of dimensions should be 3,"
                              " but it is: %d" % inputs.ndim)
    pos_emb_shape = (1, inputs.shape[1], inputs.shape[2])
    pe = self.param("pos_embedding", self.posemb_init, pos_emb_shape, self.param_dtype)
    return inputs + pe


class MlpBlock(nn.Module):
  """Transformer MLP / feed-forward block."""

  mlp_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  out_dim: int | None = None
  dropout_rate: float = 0.1
  kernel_init: Callable = nn.initializers.xavier_uniform()
  bias_init: Callable = nn.initializers.normal(stddev=1e-6)

  @nn.compact
  def __call__(self, inputs, *, deterministic):
    """Applies Transformer MlpBlock module."""
    actual_out_dim = inputs.shape[-1] if self.out_dim is None else self.out_dim
    x = nn.Dense(features=self.mlp_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                 kernel_init=self.kernel_init, bias_init=self.bias_init)(inputs)
    x = nn.gelu(x)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
    output = nn.Dense(features=actual_out_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                      kernel_init=self.kernel_init, bias_init=self.bias_init)(x)
    output = nn.Dropout(rate=self.dropout_rate)(output, deterministic=deterministic)
    return output


class Encoder1DBlock(nn.Module):
  """Transformer encoder layer.

  Attributes:
    mlp_dim: dimension of the mlp on top of attention block.
    num_heads: Number of heads in nn.MultiHeadDotProductAttention
    dtype: the dtype of the computation (default: float32).
    dropout_rate: dropout rate.
    attention_dropout_rate: dropout for attention heads.
  """

  mlp_dim: int
  num_heads: int
  dtype: Dtype = jnp.float32
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, inputs, *, deterministic):
    # Attention block.
    assert inputs.ndim == 3, f"Expected (batch, seq, hidden) got {inputs.shape}"
    x = nn.LayerNorm(dtype=self.dtype)(inputs)
    x = nn.MultiHeadDotProductAttention(
        dtype=self.dtype,
        kernel_init=nn.initializers.xavier_uniform(),
        broadcast_dropout=False,
        deterministic=deterministic,
        dropout_rate=self.attention_dropout_rate,
        num_heads=self.num_heads)(x, x)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
    x = x + inputs

    # MLP block.
    y = nn.LayerNorm(dtype=self.dtype)(x)
    y = MlpBlock(mlp_dim=self.mlp_dim, dtype=self.dtype, dropout_rate=self.dropout_rate)(
        y, deterministic=deterministic)

    return x + y


class Encoder(nn.Module):
  """Transformer Model Encoder for sequence to sequence translation.

  Attributes:
    num_layers: number of layers
    mlp_dim: dimension of the mlp on top of attention block
    num_heads: Number of heads in nn.MultiHeadDotProductAttention
    dropout_rate: dropout rate.
    attention_dropout_rate: dropout rate in self attention.
  """

  num_layers: int
  mlp_dim: int
  num_heads: int
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  add_position_embedding: bool = True

  @nn.compact
  def __call__(self, x, *, train):
    assert x.ndim == 3  # (batch, len, emb)

    if self.add_position_embedding:
      x = AddPositionEmbs(
          posemb_init=nn.initializers.normal(stddev=0.02),  # from BERT.
          name="posembed_input")(x)
      x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)

    # Input Encoder
    for lyr in range(self.num_layers):
      x = Encoder1DBlock(
          mlp_dim=self.mlp_dim,
          dropout_rate=self.dropout_rate,
          attention_dropout_rate=self.attention_dropout_rate,
          name=f"encoderblock_{lyr}",
          num_heads=self.num_heads)(x, deterministic=not train)
    encoded = nn.LayerNorm(name="encoder_norm")(x)

    return encoded


class Patches(NamedTuple):
  """Stands in for the public config's ``ml_collections.ConfigDict(size=(16, 16))``."""

  size: tuple[int, int]


class VisionTransformer(nn.Module):
  """VisionTransformer.

  ``zero_head`` is this copy's only addition: ``True`` (the public code) gives
  the ``head`` Dense ``kernel_init=zeros``; ``False`` gives it Flax's default
  LeCun-normal kernel, for tests that need a nonzero head.
  """

  num_classes: int
  patches: Any
  transformer: Any
  hidden_size: int
  representation_size: int | None = None
  classifier: str = "token"
  head_bias_init: float = 0.
  encoder: type[nn.Module] = Encoder
  model_name: str | None = None
  zero_head: bool = True

  @nn.compact
  def __call__(self, inputs, *, train):
    x = inputs
    # We can merge s2d+emb into a single conv; it's the same.
    x = nn.Conv(
        features=self.hidden_size,
        kernel_size=self.patches.size,
        strides=self.patches.size,
        padding="VALID",
        name="embedding")(x)

    # Here, x is a grid of embeddings.
    if self.transformer is not None:
      n, h, w, c = x.shape
      x = jnp.reshape(x, [n, h * w, c])

      # If we want to add a class token, add it here.
      if self.classifier in ["token", "token_unpooled"]:
        cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
        cls = jnp.tile(cls, [n, 1, 1])
        x = jnp.concatenate([cls, x], axis=1)

      x = self.encoder(name="Transformer", **self.transformer)(x, train=train)

    if self.classifier == "token":
      x = x[:, 0]
    elif self.classifier == "gap":
      x = jnp.mean(x, axis=list(range(1, x.ndim - 1)))  # (1,) or (1,2)
    else:
      raise ValueError(f"Invalid classifier={self.classifier}")

    if self.representation_size is not None:
      x = nn.Dense(features=self.representation_size, name="pre_logits")(x)
      x = nn.tanh(x)
    else:
      x = IdentityLayer(name="pre_logits")(x)

    if self.num_classes:
      x = nn.Dense(
          features=self.num_classes,
          name="head",
          kernel_init=(nn.initializers.zeros if self.zero_head
                       else nn.initializers.lecun_normal()),
          bias_init=nn.initializers.constant(self.head_bias_init))(x)
    return x


ViT = VisionTransformer


def make_vit(key: jax.Array, *, zero_head: bool = True, dtype: Dtype = jnp.float32) -> Factory:
  """A 2-block ViT, hidden 16, 2 heads, 8 x 8 images in 4 x 4 patches (5 tokens with cls)."""
  k_init, k_x = jax.random.split(key)
  model = VisionTransformer(
      num_classes=10, patches=Patches(size=(4, 4)), hidden_size=16, zero_head=zero_head,
      transformer=dict(num_layers=2, mlp_dim=32, num_heads=2, dropout_rate=0.0,
                       attention_dropout_rate=0.0))
  x = jax.random.normal(k_x, (2, 8, 8, 3), dtype)
  variables = jax.jit(functools.partial(model.init, train=False))(k_init, x)
  return model, variables, x, {"train": False}


# --- Flax examples: ImageNet ResNet (examples/imagenet/models.py) ----------------------------


class ResNetBlock(nn.Module):
  """ResNet block."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)

    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
      residual = self.norm(name="norm_proj")(residual)

    return self.act(residual + y)


class ResNet(nn.Module):
  """ResNetV1.5."""

  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_filters: int = 64
  num_classes: int = 1000
  dtype: Any = jnp.float32
  act: Callable = nn.relu
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype)
    norm = functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=self.dtype,
    )

    x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
    x = norm(name="bn_init")(x)
    x = nn.relu(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = self.block_cls(self.num_filters * 2**i, strides=strides, conv=conv, norm=norm,
                           act=self.act)(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
    x = jnp.asarray(x, self.dtype)
    return x


def make_resnet(key: jax.Array, *, dtype: Dtype = jnp.float32, image_size: int = 16) -> Factory:
  """ResNet(stage_sizes=(1, 1), num_filters=8, num_classes=10) on a (2, 16, 16, 3) batch.

  Stage 0's block keeps 8 channels (identity shortcut); stage 1's doubles them
  with stride 2 (``conv_proj`` / ``norm_proj`` shortcut). ``dtype`` is the
  model's ``dtype`` field and the input's dtype (the parameters stay float32,
  BatchNorm/Conv/Dense's default ``param_dtype``).

  ``image_size=14`` makes the model's ReLU kinks reach the loss: 14 x 14 is
  7 x 7 after the stem and 4 x 4 after the SAME-padded 3 x 3 / 2 max-pool,
  whose corner windows hold only 2 x 2 values. Where all four are ReLU zeros
  the shortcut carries an exact 0, the branch adds exactly 0 (its last
  BatchNorm scale is 0), and the block's ReLU sits exactly on its kink, as in
  the full-size model; the corner (0, 0) is one that ``conv_proj``'s stride 2
  passes on to the loss. (At 16 x 16 the max-pool has no padding before row 0,
  and the small windows fall on odd rows and columns, which stride 2 drops.)
  """
  k_init, k_x = jax.random.split(key)
  model = ResNet(stage_sizes=(1, 1), block_cls=ResNetBlock, num_filters=8, num_classes=10,
                 dtype=dtype)
  x = jax.random.normal(k_x, (2, image_size, image_size, 3), dtype)
  variables = jax.jit(model.init)(k_init, x)
  return model, variables, x, {"train": True, "mutable": ["batch_stats"]}


# --- MLPs as users write them ----------------------------------------------------------------


class ListMLP(nn.Module):
  """``x -> head(act(layers[-1](... act(layers[0](x)))))``, the layers a list built in setup."""

  widths: Sequence[int]
  out_features: int = 10
  activation: Callable = nn.relu
  kernel_init: Callable = nn.initializers.lecun_normal()

  def setup(self):
    self.layers = [nn.Dense(w, kernel_init=self.kernel_init) for w in self.widths]
    self.head = nn.Dense(self.out_features, kernel_init=self.kernel_init)

  def __call__(self, x):
    for layer in self.layers:
      x = self.activation(layer(x))
    return self.head(x)


class SequentialMLP(nn.Module):
  """The same MLP as :class:`ListMLP`, as one ``nn.Sequential`` named ``layers``."""

  widths: Sequence[int]
  out_features: int = 10
  activation: Callable = nn.relu
  kernel_init: Callable = nn.initializers.lecun_normal()

  def setup(self):
    layers = []
    for w in self.widths:
      layers += [nn.Dense(w, kernel_init=self.kernel_init), self.activation]
    layers.append(nn.Dense(self.out_features, kernel_init=self.kernel_init))
    self.layers = nn.Sequential(layers)

  def __call__(self, x):
    return self.layers(x)


def _make_mlp(cls: type[nn.Module], key: jax.Array, activation: Callable, kernel_init: Callable,
              depth: int, width: int, dtype: Dtype) -> Factory:
  k_init, k_x = jax.random.split(key)
  model = cls(widths=(width,) * depth, out_features=10, activation=activation,
              kernel_init=kernel_init)
  x = jax.random.normal(k_x, (4, width), dtype)
  return model, jax.jit(model.init)(k_init, x), x, {}


# The three initialisations the seed experiments contrast, for ReLU / sigmoid nets of width n:
HE_NORMAL = nn.initializers.he_normal()  # truncated normal, Var W = 2 / fan_in: critical ReLU
SMALL_NORMAL = nn.initializers.normal(stddev=0.01)  # N(0, 0.01^2): vanishing
EXPLODING_NORMAL = nn.initializers.variance_scaling(8.0, "fan_in", "normal")  # N(0, 8/fan_in)


def make_list_mlp(key: jax.Array, *, activation: Callable = nn.relu,
                  kernel_init: Callable = HE_NORMAL, depth: int = 6, width: int = 16,
                  dtype: Dtype = jnp.float32) -> Factory:
  """A :class:`ListMLP` of ``depth`` hidden layers of ``width`` on a (4, width) batch."""
  return _make_mlp(ListMLP, key, activation, kernel_init, depth, width, dtype)


def make_sequential_mlp(key: jax.Array, *, activation: Callable = nn.relu,
                        kernel_init: Callable = HE_NORMAL, depth: int = 6, width: int = 16,
                        dtype: Dtype = jnp.float32) -> Factory:
  """A :class:`SequentialMLP` of ``depth`` hidden layers of ``width`` on a (4, width) batch."""
  return _make_mlp(SequentialMLP, key, activation, kernel_init, depth, width, dtype)


def make_he_relu_mlp(key: jax.Array) -> Factory:
  """ReLU ListMLP with He-normal weights: the backprop signal neither grows nor shrinks."""
  return make_list_mlp(key, activation=nn.relu, kernel_init=HE_NORMAL)


def make_small_sigmoid_mlp(key: jax.Array) -> Factory:
  """Sigmoid ListMLP with N(0, 0.01^2) weights: the gradient vanishes towards the input."""
  return make_list_mlp(key, activation=nn.sigmoid, kernel_init=SMALL_NORMAL)


def make_exploding_relu_mlp(key: jax.Array) -> Factory:
  """ReLU ListMLP with N(0, 8 / fan_in) weights: E||h||^2 grows by 8 / 2 = 4x per layer."""
  return make_list_mlp(key, activation=nn.relu, kernel_init=EXPLODING_NORMAL)


# --- A user's own nn.scan over residual blocks -----------------------------------------------


class Block(nn.Module):
  """``x -> x + Dense(relu(Dense(x)))``, written as an ``nn.scan`` body ``(carry, _)``."""

  width: int

  @nn.compact
  def __call__(self, x, _):
    h = nn.Dense(self.width)(x)
    h = nn.relu(h)
    h = nn.Dense(self.width)(h)
    return x + h, None


class ScanResMLP(nn.Module):
  """Dense in, ``depth`` scanned residual blocks, Dense out.

  ``named=False`` leaves the scanned stack to Flax's auto name (``ScanBlock_0``);
  ``named=True`` names it ``blocks``. Either way its parameters have a leading
  axis of length ``depth``.
  """

  width: int = 8
  depth: int = 4
  out_features: int = 10
  named: bool = False

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.width)(x)
    x, _ = nn.scan(
        Block,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        length=self.depth,
    )(self.width, name="blocks" if self.named else None)(x, None)
    return nn.Dense(self.out_features)(x)


def make_scan_res_mlp(key: jax.Array, *, named: bool = False,
                      dtype: Dtype = jnp.float32) -> Factory:
  """ScanResMLP(width=8, depth=4) on a (4, 6) batch."""
  k_init, k_x = jax.random.split(key)
  model = ScanResMLP(named=named)
  x = jax.random.normal(k_x, (4, 6), dtype)
  return model, jax.jit(model.init)(k_init, x), x, {}
