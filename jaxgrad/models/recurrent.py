r"""Stacked recurrent networks: Flax's own cells scanned over time by ``nn.RNN``.

One layer maps a sequence ``x_1..x_T`` to hidden states ``h_1..h_T``:

.. math::

   \text{simple:}\quad h_t = \tanh(W_{in} x_t + W_{rec} h_{t-1} + b), \qquad
   \text{linear:}\quad h_t = W_{in} x_t + W_{rec} h_{t-1} + b,

and the gated updates of ``nn.LSTMCell`` (carry ``(c_t, h_t)``) and
``nn.GRUCell`` (Hochreiter & Schmidhuber 1997; Cho et al. 2014). Layers are
stacked (layer ``l`` reads layer ``l-1``'s ``h_1..h_T``) and a Dense head reads
the last layer's ``h_T``: the seeds' ``VanillaRNN`` / ``LSTMModel`` /
``GRUModel``.

Backprop through time. Each layer's hidden state is marked with
``Module.perturb('h', h_t)`` *before* it is carried on, so the gradient with
respect to the ``'perturbations'`` collection is the full BPTT signal
:math:`\partial L / \partial h_t` (shape ``(B, T, H)`` per layer), which for a
loss on ``h_T`` obeys

.. math::

   \frac{\partial L}{\partial h_t} = \Big(\prod_{s=t+1}^{T}
   W_{rec}^\top \operatorname{diag}\phi'(z_s)\Big) \frac{\partial L}{\partial h_T}

(Pascanu, Mikolov & Bengio 2013): for the linear cell with
:math:`W_{rec} = \rho Q`, ``Q`` orthogonal, its norm is exactly
:math:`\rho^{T-t}\|\partial L/\partial h_T\|`; for tanh it is at most that.

Recurrent weights (``recurrent_init``):

| name       | W_rec                                   | spectral radius           |
|------------|-----------------------------------------|---------------------------|
| orthogonal | rho * Q, Q Haar-orthogonal (per gate)   | exactly rho               |
| gaussian   | N(0, rho^2 / H)                         | -> rho as H grows         |
| identity   | rho * I (Le et al. 2015's IRNN)         | exactly rho               |
| pytorch    | U(-1/sqrt(H), 1/sqrt(H)), every weight  | PyTorch's nn.RNN default  |

With ``"pytorch"`` every weight and bias (input, recurrent, head) is
U(-1/sqrt(H), 1/sqrt(H)) as in PyTorch's ``nn.RNN``/``nn.LSTM``/``nn.GRU`` and
``nn.Linear(H, out)``; PyTorch's cells carry two biases ``b_ih + b_hh`` where
Flax's carry one (so the bias variance is half PyTorch's).
"""

from collections.abc import Callable
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgrad import initializers

CELLS = ("simple", "linear", "lstm", "gru")
RECURRENT_INITS = ("orthogonal", "gaussian", "identity", "pytorch")
PERTURB_NAME = "h"


def layer_name(layer: int) -> str:
  """The submodule of :class:`RecurrentNet`'s recurrent layer ``layer`` (0 first): ``rnn_<layer>``."""
  return f"rnn_{layer}"

InitializerLike = str | Callable[..., jax.Array] | tuple[str, dict[str, Any]]


def check_cell(cell: str) -> None:
  """Raises ``ValueError`` naming ``cell`` and the valid choices."""
  if cell not in CELLS:
    raise ValueError(f"unknown cell {cell!r}; valid choices: {CELLS}")


def check_recurrent_init(name: str) -> None:
  """Raises ``ValueError`` naming ``name`` and the valid choices."""
  if name not in RECURRENT_INITS:
    raise ValueError(f"unknown recurrent_init {name!r}; valid choices: {RECURRENT_INITS}")


def scaled_identity(rho: float) -> initializers.Initializer:
  """``rho * I`` for a square kernel (the IRNN of Le, Jaitly & Hinton 2015)."""

  def init(key, shape, dtype=jnp.float32):
    del key
    if len(shape) != 2 or shape[0] != shape[1]:
      raise ValueError(f"identity init needs a square kernel, got shape {shape}")
    return rho * jnp.eye(shape[0], dtype=dtype)

  return init


def recurrent_initializer(name: str, rho: float, hidden: int) -> initializers.Initializer:
  """The recurrent kernel initializer ``name`` (see the module table) at spectral radius ``rho``."""
  check_recurrent_init(name)
  if not rho > 0:
    raise ValueError(f"rho must be > 0, got {rho!r}")
  if name == "orthogonal":
    return initializers.get("orthogonal", gain=rho)
  if name == "gaussian":
    return initializers.get("gaussian", sigma_w2=rho**2)
  if name == "identity":
    return scaled_identity(rho)
  bound = 1.0 / math.sqrt(hidden)
  return initializers.get("uniform", low=-bound, high=bound)


class ForgetBiasLSTMCell(nn.LSTMCell):
  r"""Flax's ``nn.LSTMCell`` whose forget gate's bias starts ``forget_bias`` higher.

  Flax's cell takes one ``bias_init`` for all four gates; here the forget
  gate's bias (``hf/bias``, the only bias the forget gate has) is initialised
  to ``bias_init + forget_bias`` and the other gates keep ``bias_init``.
  Parameter names, shapes and the update are Flax's own (this subclass
  repeats its ``__call__`` with that one change), so weights load both ways.
  At initialisation the forget gate is about :math:`\sigma(b_f)`, and the
  cell state carries information from ``k`` steps back with a factor of
  about :math:`\sigma(b_f)^k`: :math:`0.5^k` at Flax's and PyTorch's default
  :math:`b_f = 0`. Gers, Schmidhuber & Cummins (2000) and Jozefowicz,
  Zaremba & Sutskever (2015) start it at +1 (Keras's ``unit_forget_bias``).

  Attributes:
    forget_bias: added to the forget gate's initial bias.
  """

  forget_bias: float = 0.0

  @nn.compact
  def __call__(self, carry, inputs):
    c, h = carry
    features = h.shape[-1]
    shifted = lambda key, shape, dtype=jnp.float32: (  # noqa: E731
        self.bias_init(key, shape, dtype) + jnp.asarray(self.forget_bias, dtype))
    dense_h = lambda name, bias_init=self.bias_init: nn.Dense(  # noqa: E731
        features, use_bias=True, kernel_init=self.recurrent_kernel_init, bias_init=bias_init,
        dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    dense_i = lambda name: nn.Dense(  # noqa: E731
        features, use_bias=False, kernel_init=self.kernel_init, dtype=self.dtype,
        param_dtype=self.param_dtype, name=name)
    i = self.gate_fn(dense_i("ii")(inputs) + dense_h("hi")(h))
    f = self.gate_fn(dense_i("if")(inputs) + dense_h("hf", shifted)(h))
    g = self.activation_fn(dense_i("ig")(inputs) + dense_h("hg")(h))
    o = self.gate_fn(dense_i("io")(inputs) + dense_h("ho")(h))
    new_c = f * c + i * g
    new_h = o * self.activation_fn(new_c)
    return (new_c, new_h), new_h


class PerturbedCell(nn.RNNCellBase):
  """Wraps a Flax cell so that its hidden state ``h_t`` is a ``perturb`` point.

  The perturbed ``h_t`` is both the output and the carry, so the gradient with
  respect to the perturbation is the total derivative dL/dh_t through time.
  """

  cell: nn.RNNCellBase

  @nn.compact
  def __call__(self, carry, x):
    carry, h = self.cell(carry, x)
    h = self.perturb(PERTURB_NAME, h)
    carry = (carry[0], h) if isinstance(carry, tuple) else h  # LSTM: (c, h)
    return carry, h

  def initialize_carry(self, rng, input_shape):
    """The wrapped cell's initial carry (Flax's ``RNNCellBase`` protocol)."""
    return self.cell.initialize_carry(rng, input_shape)

  @property
  def num_feature_axes(self) -> int:
    """One feature axis, as the wrapped cells (Flax's ``RNNCellBase`` protocol)."""
    return 1


class RecurrentNet(nn.Module):
  """``layers`` stacked recurrent layers and a Dense head on the last time step.

  Attributes:
    cell: one of :data:`CELLS`.
    hidden: hidden size H.
    layers: number of stacked recurrent layers, >= 1.
    out_features: width of the head's output.
    recurrent_init: one of :data:`RECURRENT_INITS`.
    rho: spectral radius of the recurrent kernel (ignored by ``"pytorch"``).
    kernel_init: input-to-hidden and head kernels (ignored by ``"pytorch"``).
    bias_init: biases (ignored by ``"pytorch"``).
    param_dtype: parameter dtype (``jnp.float64`` for exact gradient checks).
    unroll: time steps unrolled per scan iteration (speed only).
    forget_bias: the LSTM's forget-gate bias starts this much higher
      (:class:`ForgetBiasLSTMCell`); 0 for the other cells.

  Input ``(B, T, features)``, output ``(B, out_features)``; layer ``l``'s
  parameters live under ``rnn_<l>/cell/cell``, its BPTT signal under
  ``perturbations/rnn_<l>/cell/h`` with shape ``(B, T, H)``.

  >>> import jax, jax.numpy as jnp
  >>> model = RecurrentNet(cell="lstm", hidden=8, layers=2)
  >>> variables = model.init(jax.random.key(0), jnp.ones((4, 10, 1)))
  >>> model.apply(variables, jnp.ones((4, 10, 1))).shape
  (4, 1)
  """

  cell: str = "simple"
  hidden: int = 64
  layers: int = 1
  out_features: int = 1
  recurrent_init: str = "orthogonal"
  rho: float = 1.0
  kernel_init: InitializerLike = "lecun_normal"
  bias_init: InitializerLike = "zeros"
  param_dtype: Any = jnp.float32
  unroll: int = 1
  forget_bias: float = 0.0

  def _make_cell(self) -> nn.RNNCellBase:
    rec = recurrent_initializer(self.recurrent_init, self.rho, self.hidden)
    if self.recurrent_init == "pytorch":
      kernel, bias = rec, rec
    else:
      kernel, bias = initializers.resolve(self.kernel_init), initializers.resolve(self.bias_init)
    kw = dict(kernel_init=kernel, recurrent_kernel_init=rec, bias_init=bias,
              param_dtype=self.param_dtype, dtype=self.param_dtype)
    if self.cell == "simple":
      return nn.SimpleCell(self.hidden, activation_fn=jnp.tanh, **kw, parent=None)
    if self.cell == "linear":
      return nn.SimpleCell(self.hidden, activation_fn=lambda z: z, **kw, parent=None)
    if self.cell == "lstm":
      return ForgetBiasLSTMCell(self.hidden, forget_bias=self.forget_bias, **kw, parent=None)
    return nn.GRUCell(self.hidden, **kw, parent=None)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    check_cell(self.cell)
    for field, minimum in (("hidden", 1), ("layers", 1), ("out_features", 1), ("unroll", 1)):
      value = getattr(self, field)
      if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}")
    if x.ndim != 3:
      raise ValueError(f"x must be (batch, time, features), got shape {x.shape}")
    if self.forget_bias != 0 and self.cell != "lstm":
      raise ValueError(f"forget_bias={self.forget_bias!r} applies to the LSTM only, not to "
                       f"cell={self.cell!r}")
    h = x
    for layer in range(self.layers):
      h = nn.RNN(PerturbedCell(self._make_cell(), parent=None), variable_axes={"perturbations": 1},
                 unroll=self.unroll, name=layer_name(layer))(h)
    if self.recurrent_init == "pytorch":
      head_init = recurrent_initializer("pytorch", 1.0, self.hidden)
      head = nn.Dense(self.out_features, kernel_init=head_init, bias_init=head_init,
                      param_dtype=self.param_dtype, name="head")
    else:
      head = nn.Dense(self.out_features, kernel_init=initializers.resolve(self.kernel_init),
                      bias_init=initializers.resolve(self.bias_init),
                      param_dtype=self.param_dtype, name="head")
    return head(h[:, -1])
