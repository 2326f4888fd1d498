r"""Finite-difference gradient check of every model in jaxgrad, and a planted bug that must fail.

Each model of the zoo is built at tiny widths in float64 on a fixed random
batch with a squared-error (regression) or cross-entropy (classifier) loss,
and :func:`jaxgrad.diagnostics.gradient_check.gradient_check` compares
``jax.grad`` with central differences tensor by tensor (seed 000 §6.3). The
negative control, ``planted_bug``, is a DeepMLP whose tanh has a hand-written
VJP with the wrong sign (``jax.custom_vjp``): its relative error is of order 1,
every real model's far below 1e-6.

Every builder is lazy: call :func:`zoo` and the builders under
``jax.enable_x64(True)``.

Example:
  >>> import jax
  >>> from jaxgrad import sweep
  >>> from jaxgrad.studies import gradient_check as study
  >>> with jax.enable_x64(True):
  ...   build, expected = study.zoo()["mlp_tanh"]
  ...   case = study.check(build, expected, key=sweep.rbg_key(0), check_key=jax.random.key(0))
  >>> case["passed"], case["as_expected"]
  (True, True)
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgrad import models
from jaxgrad.diagnostics.gradient_check import gradient_check
from jaxgrad.models import layers, resnet, transformer

F64 = jnp.float64
Builder = Callable[[jax.Array], tuple[Callable, dict]]
"""key -> (loss of the parameters, the parameters)."""

MODEL_NAMES = ("mlp_tanh", "mlp_relu_layernorm", "mlp_batchnorm", "resnet", "plainnet",
               "resnet_no_bn", "transformer_pre_ln", "transformer_post_ln",
               "reversible_coupling", "depthwise_separable", "dilated_conv", "residual_mlp",
               "rnn_simple", "rnn_lstm", "rnn_gru", "planted_bug")


@jax.custom_vjp
def tanh_wrong_sign(x: jax.Array) -> jax.Array:
  """tanh whose backward pass has the wrong sign: the planted bug."""
  return jnp.tanh(x)


tanh_wrong_sign.defvjp(lambda x: (jnp.tanh(x), x),
                       lambda x, g: (-g * (1.0 - jnp.tanh(x) ** 2),))



def _out(result: Any) -> jax.Array:
  return result[0] if isinstance(result, tuple) else result


def regression(model: nn.Module, x: jax.Array, *, mutable: bool = False) -> Builder:
  r"""Squared error :math:`\mathrm{mean}\,(f_\theta(x) - y)^2` against a random normal target.

  Args:
    model: any linen module; a tuple output ``(y, aux)`` counts by its ``y``.
    x: the input batch.
    mutable: apply in training mode with mutable ``batch_stats`` (BatchNorm).

  Returns:
    A :data:`Builder`: the key initialises the model and draws the target.
  """
  def build(key):
    k_init, k_y = jax.random.split(key)
    variables = jax.jit(model.init)(k_init, x)
    kwargs = dict(train=True, mutable=["batch_stats"]) if mutable else {}
    y = jax.random.normal(k_y, jax.eval_shape(lambda v: _out(model.apply(v, x, **kwargs)),
                                              variables).shape, F64)

    def loss(params):
      return jnp.mean((_out(model.apply({**variables, "params": params}, x, **kwargs)) - y) ** 2)

    return loss, variables["params"]
  return build


def classifier(model: nn.Module, tokens: jax.Array, classes: int) -> Builder:
  """Cross-entropy of a sequence model's logits against the reversed tokens modulo ``classes``.

  Args:
    model: maps ``tokens`` (batch, length) to logits (batch, length, classes).
    tokens: the integer input batch.
    classes: the number of target classes.

  Returns:
    A :data:`Builder`: the key initialises the model.
  """
  def build(key):
    variables = jax.jit(model.init)(key, tokens)
    targets = tokens[:, ::-1] % classes

    def loss(params):
      logits = model.apply({"params": params}, tokens)
      return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    return loss, variables["params"]
  return build


def _dense_models(vec: jax.Array) -> dict[str, tuple[Builder, bool]]:
  return {
      "mlp_tanh": (regression(models.DeepMLP(4, 6, 2, activation="tanh"), vec), True),
      "mlp_relu_layernorm": (regression(models.DeepMLP(4, 6, 2, norm="layer"), vec), True),
      "mlp_batchnorm": (regression(models.DeepMLP(3, 6, 2, norm="batch"), vec, mutable=True),
                        True),
  }


def _conv_models(img: jax.Array) -> dict[str, tuple[Builder, bool]]:
  return {
      "resnet": (regression(resnet.ResNet((1, 1), width=2, num_classes=3), img, mutable=True),
                 True),
      "plainnet": (regression(resnet.PlainNet((1, 1), width=2, num_classes=3), img,
                              mutable=True), True),
      "resnet_no_bn": (regression(resnet.ResNet((1, 1), width=2, num_classes=3, norm=False),
                                  img), True),
  }


def _transformers(tok: jax.Array) -> dict[str, tuple[Builder, bool]]:
  def transformer_4(**kwargs):
    return transformer.Transformer(4, 5, 4, d_model=4, depth=2, num_heads=2, d_ff=8, **kwargs)

  return {
      "transformer_pre_ln": (classifier(transformer_4(norm_position="pre"), tok, 4), True),
      "transformer_post_ln": (classifier(transformer_4(norm_position="post",
                                                       scale_attention=False), tok, 4), True),
  }


def _layers(img: jax.Array) -> dict[str, tuple[Builder, bool]]:
  return {
      "reversible_coupling": (regression(layers.ReversibleCoupling(), img, mutable=True), True),
      "depthwise_separable": (regression(layers.DepthwiseSeparableConv(4), img, mutable=True),
                              True),
      "dilated_conv": (regression(layers.DilatedConvBlock(3, dilation=2), img, mutable=True),
                       True),
  }


def _optional_models(vec: jax.Array, seq: jax.Array) -> dict[str, tuple[Builder, bool]]:
  """Models other issues add to jaxgrad.models, when present.

  RecurrentNet computes in its param_dtype (the carry), so casting its
  parameters is not enough: it is built in float64.
  """
  out = {}
  if hasattr(models, "ResidualMLP"):
    out["residual_mlp"] = (regression(models.ResidualMLP(2, 6, 2), vec), True)
  if hasattr(models, "RecurrentNet"):
    for cell in ("simple", "lstm", "gru"):
      out[f"rnn_{cell}"] = (regression(
          models.RecurrentNet(cell=cell, hidden=3, param_dtype=F64), seq), True)
  return out


def zoo() -> dict[str, tuple[Builder, bool]]:
  """Every model of :data:`MODEL_NAMES` in this checkout: name -> (builder, expected to pass).

  The inputs are drawn from ``jax.random.key(123)``: vectors (4, 3), images
  (2, 4, 4, 4), sequences (2, 5, 2) and tokens (2, 5) in [0, 4). Call under
  ``jax.enable_x64(True)``.
  """
  k = jax.random.key(123)
  vec = jax.random.normal(k, (4, 3), F64)
  img = jax.random.normal(k, (2, 4, 4, 4), F64)
  seq = jax.random.normal(k, (2, 5, 2), F64)
  tok = jax.random.randint(k, (2, 5), 0, 4)
  return {**_dense_models(vec), **_conv_models(img), **_transformers(tok), **_layers(img),
          "planted_bug": (regression(models.DeepMLP(4, 6, 2, activation=tanh_wrong_sign), vec),
                          False),
          **_optional_models(vec, seq)}


def check(build: Builder, expected: bool, *, key: jax.Array, check_key: jax.Array,
          num_directions: int = 4, max_coordinates: int = 16, epsilon: float = 1e-6) -> dict:
  """Builds one model and checks its gradient, every tensor.

  Args:
    build: a :data:`Builder` from :func:`zoo`, :func:`regression` or :func:`classifier`.
    expected: whether the model should pass (False for the planted bug).
    key: initialises the model (:func:`jaxgrad.sweep.rbg_key`).
    check_key: draws the random directions of the check.
    num_directions: random unit directions per tensor larger than ``max_coordinates``.
    max_coordinates: tensors of at most this many entries are checked along every coordinate.
    epsilon: the central difference's step.

  Returns:
    ``expected_to_pass``, ``passed`` (every tensor), ``as_expected``,
    ``max_error`` (the largest relative error), ``kinks`` (directions not
    checkable, straddling a kink), ``num_parameters`` and ``tensors`` (each
    tensor's :class:`~jaxgrad.diagnostics.gradient_check.TensorCheck` as a dict).
  """
  loss, params = build(key)
  checks = gradient_check(loss, params, key=check_key, num_directions=num_directions,
                          max_coordinates=max_coordinates, epsilon=epsilon)
  passed = all(c.passed for c in checks.values())
  return {
      "expected_to_pass": expected, "passed": passed, "as_expected": passed == expected,
      "max_error": max(c.error for c in checks.values()),
      "kinks": sum(c.kinks for c in checks.values()),
      "num_parameters": int(sum(np.size(a) for a in jax.tree.leaves(params))),
      "tensors": {k: c._asdict() for k, c in checks.items()},
  }
