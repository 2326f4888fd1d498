r"""Gradient underflow in reduced precision and its cure by dynamic loss scaling.

One network trained in four arms (:data:`ARMS`), float32 master weights
throughout, the forward and backward passes computed in float32, bfloat16,
float16, or float16 with dynamic loss scaling
(:func:`jaxgrad.mixed_precision.dynamic_loss_scaling`, Micikevicius et al.
2018; PyTorch's ``GradScaler``). float16's smallest subnormal is
:math:`2^{-24} \approx 6\cdot 10^{-8}`: a backpropagated signal below it
becomes exactly 0. Underflow is measured exactly: at every step the float32
gradient is computed too, on the same parameters and batch, and an entry counts
as underflowed when it is 0 in the arm's gradient but not in float32's,

.. math::

   u_l = \frac{1}{|W_l|}\,\#\{(i, j) : g^{\text{arm}}_{l,ij} = 0 \ne g^{\text{f32}}_{l,ij}\},

per layer l (weights only), input to output.

Example:
  >>> from jaxgrad.studies import mixed_precision as study
  >>> study.compute_dtype("float16+scaling")
  <class 'jax.numpy.float16'>
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgrad import data, mixed_precision, probe, training
from jaxgrad.sweep import sweep

ARMS = ("float32", "bfloat16", "float16", "float16+scaling")


def compute_dtype(arm: str) -> Any:
  """The dtype an arm computes in: ``"float16+scaling"`` -> ``jnp.float16``."""
  return mixed_precision.DTYPES[arm.split("+")[0]]


def precision_functions(model: nn.Module, dtype: Any) -> tuple[Callable, Callable]:
  """Logits and cross-entropy of ``model`` computed in ``dtype`` from float32 parameters.

  Args:
    model: a classifier, ``model.apply({"params": p}, x) -> logits``.
    dtype: the compute dtype (parameters and inputs are cast to it).

  Returns:
    ``logits_fn(params, x, dtype=dtype)`` (float32 logits) and
    ``loss_fn(params, state, batch, dtype=dtype) -> (loss, state)``, in
    :func:`jaxgrad.training.train`'s form; ``dtype`` can be overridden, e.g.
    with float32 for the reference gradient.
  """
  def logits_fn(params, x, dtype=dtype):
    p16 = mixed_precision.cast(params, dtype)
    return model.apply({"params": p16}, x.astype(dtype)).astype(jnp.float32)

  def loss_fn(params, state, batch, dtype=dtype):
    x, y = batch
    logits = logits_fn(params, x, dtype)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state

  return logits_fn, loss_fn


def optimizer(arm: str, learning_rate: float, *, init_scale: float,
              growth_interval: int) -> optax.GradientTransformation:
  """Adam, wrapped in dynamic loss scaling for a ``"+scaling"`` arm.

  Args:
    arm: one of :data:`ARMS`.
    learning_rate: Adam's.
    init_scale: the initial loss scale s.
    growth_interval: finite steps before s doubles (a non-finite step halves it and is skipped).

  Returns:
    The optax transformation.
  """
  tx = training.make_optimizer(training.OptimizerConfig("adam", learning_rate))
  if arm.endswith("+scaling"):
    tx = mixed_precision.dynamic_loss_scaling(tx, init_scale=init_scale,
                                              growth_interval=growth_interval)
  return tx


def underflow_recorder(loss_fn: Callable, layout: Any) -> Callable[[training.StepInfo], dict]:
  """A :func:`jaxgrad.training.train` ``record``: zeros, underflow against float32, loss scale.

  Args:
    loss_fn: from :func:`precision_functions`; called with ``dtype=jnp.float32`` for the reference.
    layout: :func:`jaxgrad.probe.layout` of the model, for the layers' order.

  Returns:
    ``record(info)`` -> ``zero_fraction`` and ``underflow`` (layer -> fraction
    of weight-gradient entries), ``loss_scale``.
  """
  float32_grad = jax.grad(lambda p, b: loss_fn(p, {}, b, jnp.float32)[0])

  def record(info):
    reference = float32_grad(info.params, info.batch)
    lost = jax.tree.map(lambda g, r: jnp.where((g == 0) & (r != 0), 0.0, 1.0), info.grads,
                        reference)
    return {"zero_fraction": mixed_precision.zero_fraction(info.grads, layout=layout),
            "underflow": mixed_precision.zero_fraction(lost, layout=layout),
            "loss_scale": mixed_precision.loss_scale(info.opt_state)}
  return record


def _arm_results(arm: str, loss, metrics: dict, accuracy, diverged) -> dict:
  zero = {k: np.asarray(v) for k, v in metrics["zero_fraction"].items()}
  lost = {k: np.asarray(v) for k, v in metrics["underflow"].items()}
  return {
      "dtype": arm.split("+")[0], "loss_scaling": arm.endswith("+scaling"),
      "loss": np.asarray(loss), "test_accuracy": np.asarray(accuracy),
      "diverged_at": np.asarray(diverged),
      "loss_scale": np.asarray(metrics["loss_scale"]),
      "zero_fraction": zero,  # layer -> (seeds, steps)
      # per layer: mean over steps, per seed
      "zero_fraction_mean": {k: v.mean(axis=1) for k, v in zero.items()},
      # layer -> (seeds, steps): fraction of entries 0 here but not in float32
      "underflow": lost,
      "underflow_mean": {k: v.mean(axis=1) for k, v in lost.items()},
      "underflow_last_quarter": {k: v[:, -max(1, v.shape[1] // 4):].mean(axis=1)
                                 for k, v in lost.items()},
  }


def train_arm(model: nn.Module, arm: str, ds: data.Dataset, *, key: jax.Array, seeds: int,
              steps: int, batch: int, learning_rate: float, init_scale: float,
              growth_interval: int) -> dict:
  """Trains ``seeds`` networks in ``arm``'s precision in one vmapped program.

  Args:
    model: the classifier, e.g. a deep :class:`jaxgrad.models.DeepMLP`.
    arm: one of :data:`ARMS`.
    ds: the dataset; minibatches of ``batch`` drawn with replacement.
    key: split into the seeds' keys; pass the same to every arm, so that arms
      start from the same networks and see the same batches.
    seeds: networks.
    steps: Adam steps.
    batch: minibatch size.
    learning_rate: Adam's.
    init_scale: the initial loss scale (``"+scaling"`` arm).
    growth_interval: finite steps before the scale doubles.

  Returns:
    ``dtype``, ``loss_scaling``, ``loss`` (seeds, steps), ``test_accuracy``,
    ``diverged_at``, ``loss_scale`` (seeds, steps); per layer (input to
    output): ``zero_fraction`` and ``underflow`` (seeds, steps), their means
    over steps per seed, and ``underflow_last_quarter`` (the last quarter's mean).
  """
  logits_fn, loss_fn = precision_functions(model, compute_dtype(arm))
  x_train, y_train = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  record = underflow_recorder(loss_fn, probe.layout(model, x_train[:1]))
  tx = optimizer(arm, learning_rate, init_scale=init_scale, growth_interval=growth_interval)

  def one_seed(key):
    k_init, k_train = jax.random.split(key)
    params = model.init(k_init, x_train[:1])["params"]
    res = training.train(loss_fn, params, tx,
                         lambda k: data.sample_batch(k, x_train, y_train, batch),
                         steps, key=k_train, record=record)
    pred = jnp.argmax(logits_fn(res.params, jnp.asarray(ds.x_test)), -1)
    acc = jnp.mean(pred == jnp.asarray(ds.y_test))
    return res.loss, res.metrics, acc, res.diverged_at

  loss, metrics, acc, diverged = sweep(one_seed, jax.random.split(key, seeds))
  return _arm_results(arm, loss, metrics, acc, diverged)


def underflow_summary(arms: dict[str, dict], layers: list[str]) -> dict[str, dict]:
  """Per arm, medians over seeds of each layer's mean underflow and of the first layer's late one.

  Args:
    arms: arm -> :func:`train_arm`'s result.
    layers: the layers, input to output.

  Returns:
    arm -> ``per_layer`` (list, ``layers``' order), ``max``,
    ``first_layer_last_quarter`` (median over seeds).
  """
  underflow = {}
  for arm, res in arms.items():
    per_layer = [float(np.median(res["underflow_mean"][l])) for l in layers]
    underflow[arm] = {"per_layer": per_layer, "max": max(per_layer),
                      "first_layer_last_quarter": float(np.median(
                          res["underflow_last_quarter"][layers[0]]))}
  return underflow
