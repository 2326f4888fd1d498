r"""The tutorials' MNIST classifiers on data we can ship; optimizers x inits x activations.

Seed 001 trains ``784-512-256-10`` (ReLU) with SGD, lr 0.01, momentum 0.9;
seed 004 trains ``784-256-BatchNorm-ReLU-10`` with Adam, lr 1e-3, and claims
that adaptive optimizers (Adam, RMSProp, AdaGrad; Kingma & Ba 2015, Duchi et
al. 2011) and BatchNorm (Ioffe & Szegedy 2015) ease vanishing gradients. Both
nets are rebuilt here (:class:`SeedNet`, :func:`seed_net`) with their input
layer shaped to the dataset (MNIST-1D: 40 features, scikit-learn digits: 64).
An arm (:func:`train_arm`) trains all its seeds in one vmapped program and
reports the test accuracy and the steps until the running mean of the training
loss first reaches a target (:func:`steps_to_target`);
:func:`monitored_training` re-trains one net with the full per-step monitor
(:mod:`jaxgrad.monitoring`).

Example:
  >>> import numpy as np
  >>> from jaxgrad.studies import classifiers as study
  >>> study.steps_to_target(np.array([[3.0] * 10 + [0.1] * 20]), 1.0)
  array([16.])
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgrad import activations, data, monitoring, training
from jaxgrad.models import DenseBlock
from jaxgrad.sweep import sweep

MODELS = ("mlp", "bn")  # seed 001's MLP, seed 004's BatchNorm net
# name -> (optimizer, learning rate, momentum): the seeds' settings and Optax defaults.
OPTIMIZERS = {
    "sgd_momentum": ("sgd", 1e-2, 0.9),  # seed 001
    "adam": ("adam", 1e-3, None),  # seed 004
    "rmsprop": ("rmsprop", 1e-3, None),
    "adagrad": ("adagrad", 1e-2, None),
}
SEED_SETUPS = {"mlp": "sgd_momentum", "bn": "adam"}  # each seed net's own optimizer
SMOOTH = 10  # running-mean window for steps-to-target


class SeedNet(nn.Module):
  """``in -> widths[0] -> ... -> out``, each hidden layer a :class:`jaxgrad.models.DenseBlock`.

  ``widths=(512, 256)``: seed 001's ``Net``; ``widths=(256,), norm="batch"``:
  seed 004's ``SimpleNet`` (Linear, BatchNorm1d, ReLU, Linear).
  """

  widths: tuple[int, ...]
  out_features: int
  activation: str = "relu"
  kernel_init: str = "he_normal"
  norm: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for i, w in enumerate(self.widths):
      x = DenseBlock(w, activation=self.activation, kernel_init=self.kernel_init,
                     norm=self.norm, name=f"layer_{i}")(x, train)
    return DenseBlock(self.out_features, activation="linear", kernel_init=self.kernel_init,
                      name=f"layer_{len(self.widths)}")(x)


def seed_net(kind: str, classes: int, *, init: str, activation: str,
             mlp_widths: tuple[int, ...], bn_width: int) -> SeedNet:
  """Seed 001's MLP (``kind="mlp"``, hidden ``mlp_widths``) or seed 004's BatchNorm net (``"bn"``).

  Args:
    kind: one of :data:`MODELS`.
    classes: output features.
    init: the kernel initializer's name (:mod:`jaxgrad.initializers`).
    activation: the hidden activation's name.
    mlp_widths: the MLP's hidden widths.
    bn_width: the BatchNorm net's one hidden width.
  """
  if kind == "bn":
    return SeedNet((bn_width,), classes, activation, init, norm="batch")
  return SeedNet(mlp_widths, classes, activation, init)


def optimizer(name: str) -> optax.GradientTransformation:
  """The optimizer of :data:`OPTIMIZERS` by name, with its learning rate (and momentum)."""
  opt, lr, momentum = OPTIMIZERS[name]
  return training.make_optimizer(training.OptimizerConfig(opt, lr, momentum=momentum))


def classification_functions(model: nn.Module, ds: data.Dataset,
                             batch: int) -> tuple[Callable, Callable, Callable]:
  """Cross-entropy, accuracy and a minibatch sampler for ``model`` on ``ds``.

  Args:
    model: a classifier taking ``train`` as its second argument (BatchNorm statistics).
    ds: the dataset.
    batch: the minibatch size (drawn with replacement).

  Returns:
    ``loss_fn(params, state, batch) -> (loss, new_state)`` (training mode),
    ``accuracy(params, state, xs, ys)`` (inference mode) and ``sample(key) -> batch``.
  """
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)

  def loss_fn(params, state, b):
    logits, new = model.apply({"params": params, **state}, b[0], True, mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, b[1]).mean(), new

  def accuracy(params, state, xs, ys):
    return jnp.mean(jnp.argmax(model.apply({"params": params, **state}, xs), -1) == ys)

  return loss_fn, accuracy, lambda k: data.sample_batch(k, x, y, batch)


def steps_to_target(loss: np.ndarray, target: float, window: int = SMOOTH) -> np.ndarray:
  """Per seed, the first step whose running mean of the loss is <= ``target``; NaN if none.

  Args:
    loss: (seeds, steps); a NaN (diverged) step counts as +inf.
    target: the loss to reach.
    window: the running mean's window (at most the number of steps).

  Returns:
    (seeds,): the last step of the first window whose mean is <= ``target``.
  """
  loss = np.asarray(loss, dtype=float)
  w = min(window, loss.shape[1])
  kernel = np.ones(w) / w
  out = []
  for row in loss:
    smooth = np.convolve(np.nan_to_num(row, nan=np.inf), kernel, mode="valid")
    hit = np.nonzero(smooth <= target)[0]
    out.append(float(hit[0] + w - 1) if hit.size else float("nan"))
  return np.asarray(out)


def train_arm(model: nn.Module, ds: data.Dataset, tx: optax.GradientTransformation, *,
              key: jax.Array, seeds: int, steps: int, batch: int, target_loss: float) -> dict:
  """All seeds of one arm in one vmapped, jitted program.

  Args:
    model: e.g. from :func:`seed_net`.
    ds: the dataset.
    tx: the optimizer, e.g. from :func:`optimizer`.
    key: split into the seeds' keys (each: initialisation, then batches).
    seeds: networks.
    steps: training steps.
    batch: minibatch size.
    target_loss: for :func:`steps_to_target`.

  Returns:
    ``loss`` (seeds, steps), ``test_accuracy`` (seeds,), ``steps_to_target``
    (seeds,), ``diverged_at`` (seeds,; -1 where finite throughout).
  """
  loss_fn, accuracy, sample = classification_functions(model, ds, batch)
  xt, yt = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)

  def one_seed(key):
    k_init, k_train = jax.random.split(key)
    variables = model.init(k_init, xt[:2])
    state = {k: v for k, v in variables.items() if k == "batch_stats"}
    res = training.train(loss_fn, variables["params"], tx, sample, steps, key=k_train,
                         model_state=state)
    return res.loss, accuracy(res.params, res.model_state, xt, yt), res.diverged_at

  loss, acc, diverged = sweep(one_seed, jax.random.split(key, seeds))
  loss = np.asarray(loss)
  return {"loss": loss, "test_accuracy": np.asarray(acc),
          "steps_to_target": steps_to_target(loss, target_loss),
          "diverged_at": np.asarray(diverged)}


def hidden_outputs(model: SeedNet, params: Any, x: jax.Array) -> dict[str, jax.Array]:
  """Hidden-layer activations of a :class:`SeedNet` without norm, keyed like layer_grad_norms."""
  out, h = {}, x
  for i in range(len(model.widths)):
    p = params[f"layer_{i}"]["dense"]
    h = activations.get(model.activation)(h @ p["kernel"] + p["bias"][None])
    out[f"layer_{i}/dense"] = h
  return out


def _concatenate(params: Any, chunks: list[training.TrainResult]) -> training.TrainResult:
  """One TrainResult of consecutive chunks; ``diverged_at`` is the first non-finite loss's step."""
  cat = lambda *a: np.concatenate(a)  # noqa: E731
  loss = cat(*[r.loss for r in chunks])
  bad = ~np.isfinite(loss)
  return training.TrainResult(
      params, None, loss, cat(*[r.grad_norm for r in chunks]),
      int(np.argmax(bad)) if bad.any() else -1,
      jax.tree.map(cat, *[r.layer_grad_norms for r in chunks]),
      jax.tree.map(cat, *[r.metrics for r in chunks]))


def monitored_training(model: SeedNet, ds: data.Dataset, tx: optax.GradientTransformation, *,
                       key: jax.Array, steps: int, batch: int, chunks: int = 4,
                       on_chunk: Callable[[int, Any, Any], None] | None = None
                       ) -> training.TrainResult:
  """One net trained with the full per-step monitor, in ``chunks`` jitted chunks.

  Every step records the loss, the batch accuracy, per-layer gradient norms,
  update-to-weight ratios and dead units (:func:`jaxgrad.monitoring.recorder`).

  Args:
    model: a :class:`SeedNet` without norm (its hidden outputs are measured).
    ds: the dataset.
    tx: the optimizer.
    key: split into the initialisation's key and the batches' key.
    steps: training steps; ``chunks * (steps // chunks)`` are run.
    batch: minibatch size.
    chunks: how many programs the run is cut into.
    on_chunk: called before each chunk with ``(step, params, grads)``, the
      gradient on that step's batch, e.g. to write histograms.

  Returns:
    The whole run's :class:`jaxgrad.training.TrainResult` (no model state).
  """
  loss_fn, accuracy, sample = classification_functions(model, ds, batch)
  record = monitoring.recorder(
      accuracy_fn=lambda p, s, b: accuracy(p, s, *b),
      outputs_fn=lambda p, s, b: hidden_outputs(model, p, b[0]), activation=model.activation)
  k_init, k_train = jax.random.split(key)
  params = model.init(k_init, jnp.asarray(ds.x_test[:2]))["params"]
  chunk = steps // chunks
  run_chunk = jax.jit(lambda p, o, first: training.train(
      loss_fn, p, tx, sample, chunk, key=k_train, record=record, opt_state=o, first_step=first))
  opt_state, results = tx.init(params), []
  for c in range(chunks):
    res = run_chunk(params, opt_state, c * chunk)
    if on_chunk is not None:
      batch_c = sample(jax.random.fold_in(k_train, c * chunk))
      on_chunk(c * chunk, params, jax.grad(lambda p: loss_fn(p, {}, batch_c)[0])(params))
    params, opt_state = res.params, res.opt_state
    results.append(res)
  return _concatenate(params, results)
