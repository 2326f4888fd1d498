r"""Normalization under a poor initialization: none, BatchNorm, LayerNorm, weight norm.

A deep MLP (:class:`jaxgrad.models.DeepMLP`) under a poor initialization, in
four arms (:data:`NORMS`):

* ``none``: the plain net;
* ``batch``: BatchNorm after every hidden Dense layer (Ioffe & Szegedy 2015;
  train mode: batch statistics, ``batch_stats`` carried through training as
  model state);
* ``layer``: LayerNorm at the same place (Ba et al. 2016);
* ``weight``: every kernel reparameterized as :math:`w = g v / \|v\|`
  (Salimans & Kingma 2016; :func:`jaxgrad.models.weight_norm.to_weight_norm`,
  :math:`g = \|v\|` at init, so the arm equals ``none`` at init).

:func:`measure` trains every arm with Adam and records the per-layer weight
gradient norms and backprop signal at init and after training;
:func:`predicted_growth` is the mean-field growth of the squared signal per
layer at init, which :func:`growth_per_layer` fits to the measurement. With
BatchNorm in every ReLU layer the squared signal *grows* toward the input by
:data:`BN_RELU_GROWTH` per layer at large batch, whatever the weight scale
(Yang et al. 2019).
"""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgrad import activations, data, diagnostics, probe, theory
from jaxgrad.models import DeepMLP
from jaxgrad.models.weight_norm import from_weight_norm, to_weight_norm
from jaxgrad.training import OptimizerConfig, make_optimizer, train
from jaxgrad.sweep import sweep

NORMS = ("none", "batch", "layer", "weight")
# Yang et al. 2019 (theory.md §1.7): growth of the squared backprop signal per
# BatchNorm-ReLU layer, large-batch limit.
BN_RELU_GROWTH = math.pi / (math.pi - 1)
# sigma_w^2 = fan_in * Var(W) of the initializers whose variance is known in
# closed form, as a function of fan_in (the hidden width).
SIGMA_W2 = {"normal_small": lambda fan_in: fan_in * 0.01**2, "he_normal": lambda _: 2.0,
            "lecun_normal": lambda _: 1.0, "xavier_normal": lambda _: 1.0}
# The weight-gradient leaves: kernels, and weight norm's directions v.
WEIGHT_NAMES = ("kernel", "v")


def model(activation: str, norm: str, *, depth: int, width: int, kernel_init: str,
          out_features: int = 10) -> DeepMLP:
  """The arm's MLP: ``depth`` Dense layers (input and output included), zero biases,
  BatchNorm or LayerNorm after every hidden Dense for ``norm`` batch / layer."""
  return DeepMLP(depth=depth, width=width, out_features=out_features,
                 activation=activation, kernel_init=kernel_init, bias_init="zeros",
                 norm=norm if norm in ("batch", "layer") else None)


class _Arm:
  """One arm's forward pass, loss and diagnosis, for the parameters its arm trains."""

  def __init__(self, net: DeepMLP, norm: str, batch: jax.Array):
    self.net, self.norm = net, norm
    self.layout = (probe.layout(net, batch, train=True, mutable=["batch_stats"])
                   if norm == "batch" else probe.layout(net, batch))
    self.to_plain = from_weight_norm if norm == "weight" else (lambda p: p)

  def logits(self, variables, x):
    if self.norm == "batch":
      out, updates = self.net.apply(variables, x, train=True, mutable=["batch_stats"])
      return out, {"batch_stats": updates["batch_stats"]}
    return self.net.apply(variables, x), {}

  def loss(self, params, state, batch):
    out, state = self.logits({"params": self.to_plain(params), **state}, batch[0])
    return _cross_entropy(out, batch[1]), state

  def diagnose(self, params, state, perturbations, batch):
    """Weight-gradient norms and signal per layer (float64), float32's fraction of exact zeros.

    In float64: the gradients of a net this badly initialised are ~1e-25 and
    their squares underflow float32 (norms would read 0). What float32
    training sees is recorded separately: the fraction of exactly-zero entries.
    """
    zeros = zero_fraction(jax.grad(lambda p: self.loss(p, state, batch)[0])(params))
    params, state, perturbations, batch = jax.tree.map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
        (params, state, perturbations, batch))
    # One backward pass for the weight gradients and the backprop signal.
    grads, signal_grads = jax.grad(
        lambda p, h: _cross_entropy(
            self.logits({"params": self.to_plain(p), **state, "perturbations": h},
                        batch[0])[0], batch[1]),
        argnums=(0, 1))(params, perturbations)
    norms = diagnostics.layer_grad_norms(grads, weight_names=WEIGHT_NAMES, layout=self.layout)
    signal = diagnostics.signal_norms(signal_grads, layout=self.layout)
    return norms.stack(), signal.stack(), zeros


def _cross_entropy(out, y):
  return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()


def _train_and_diagnose(arm: _Arm, sample: Callable, optimizer, steps: int,
                        test: tuple[jax.Array, jax.Array], key: jax.Array) -> dict:
  """One seed: init, train, diagnose at init and at the end, test accuracy."""
  k_init, k_train, k_eval = jax.random.split(key, 3)
  batch = sample(k_eval)
  variables = arm.net.init(k_init, batch[0])
  params = variables["params"]
  params = to_weight_norm(params) if arm.norm == "weight" else params
  state = {"batch_stats": variables["batch_stats"]} if arm.norm == "batch" else {}
  result = train(arm.loss, params, optimizer, sample, steps, key=k_train, model_state=state)
  # Init and final state through one vmapped diagnosis: one copy to compile, not two.
  both = jax.tree.map(lambda a, b: jnp.stack([a, b]), (params, state),
                      (result.params, result.model_state))
  grads, signals, zeros = jax.vmap(
      lambda p, s: arm.diagnose(p, s, variables["perturbations"], batch))(*both)
  # BatchNorm: test-set batch statistics (the running averages, momentum 0.99,
  # still remember their init after 200 steps).
  test_logits, _ = arm.logits({"params": arm.to_plain(result.params), **result.model_state},
                              test[0])
  accuracy = jnp.mean(jnp.argmax(test_logits, -1) == test[1])
  return dict(grad_init=grads[0], grad_final=grads[1], signal_init=signals[0],
              signal_final=signals[1], zero_grad_fraction_init=zeros[0],
              zero_grad_fraction_final=zeros[1], loss=result.loss, test_accuracy=accuracy,
              diverged_at=result.diverged_at)


def measure(activation: str, norm: str, dataset: data.Dataset, *, depth: int, width: int,
            kernel_init: str, steps: int, learning_rate: float, batch: int, seeds: int,
            seed: int = 0) -> dict[str, np.ndarray]:
  """One arm, all seeds in one jitted vmap: train with Adam, diagnose at init and at the end.

  Args:
    activation, norm, depth, width, kernel_init: the network (:func:`model`).
    dataset: the classification task (10 classes), e.g. standardized MNIST-1D.
    steps, learning_rate, batch: Adam's steps, rate and batch (BatchNorm's too).
    seeds: runs; seed ``s`` uses ``jax.random.split(key(seed), seeds)[s]``.

  Returns:
    Per-seed numpy arrays: ``grad_init`` / ``grad_final`` (seeds, depth),
    per-layer weight-gradient norms on a fixed batch (``||dL/dv_l||`` for
    weight norm); ``signal_init`` / ``signal_final`` (seeds, depth), per-layer
    ``||dL/dz||``; ``loss`` (seeds, steps); ``test_accuracy`` (seeds,);
    ``diverged_at`` (seeds,); ``zero_grad_fraction_init`` / ``_final``
    (seeds,), the fraction of float32 weight-gradient entries exactly 0.
    Norms and signals are computed in float64 from the float32 parameters.
  """
  net = model(activation, norm, depth=depth, width=width, kernel_init=kernel_init)
  x_train, y_train = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  test = (jnp.asarray(dataset.x_test), jnp.asarray(dataset.y_test))
  sample = lambda key: data.sample_batch(key, x_train, y_train, batch)  # noqa: E731
  one = functools.partial(_train_and_diagnose, _Arm(net, norm, x_train[:batch]), sample,
                          make_optimizer(OptimizerConfig("adam", learning_rate)), steps, test)
  keys = jax.random.split(jax.random.key(seed), seeds)
  with jax.enable_x64(True):  # for diagnose's float64; training stays in float32
    return {k: np.asarray(v) for k, v in sweep(one, keys).items()}


def zero_fraction(grads) -> jax.Array:
  """Fraction of the weight-gradient entries (kernels, weight-norm directions) exactly 0."""
  leaves = [g for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]
            if str(getattr(path[-1], "key", "")) in WEIGHT_NAMES]
  return sum(jnp.sum(g == 0) for g in leaves) / sum(g.size for g in leaves)


def predicted_growth(activation: str, norm: str, kernel_init: str, width: int) -> float | None:
  r"""Mean-field growth of the squared backprop signal per hidden layer at init, toward the input.

  * ``none`` and ``weight`` (identical at init): :math:`\chi_1 = \sigma_w^2
    \mathbb E[\phi'(\sqrt{q^*} z)^2]` (:func:`jaxgrad.theory.chi1`, zero
    biases; Schoenholz et al. 2017), for the initializers in :data:`SIGMA_W2`
    (``width`` the fan-in), else None;
  * ``layer``: LayerNorm rescales the pre-activation to unit variance, and its
    backward pass divides by the same standard deviation
    :math:`\sigma_w \sqrt{\mathbb E h^2}`, so
    :math:`\chi = \mathbb E[\phi'(z)^2] / \mathbb E[\phi(z)^2]`, whatever
    the weight scale (1 for ReLU);
  * ``batch``: :data:`BN_RELU_GROWTH` for ReLU (Yang et al. 2019), else None.
  """
  if norm == "batch":
    return BN_RELU_GROWTH if activation == "relu" else None
  if norm == "layer":
    phi = activations.get(activation)
    return float(theory.derivative_moment(activation, 1.0)
                 / theory.gaussian_expectation(lambda u: phi(u) ** 2, 1.0))
  if kernel_init not in SIGMA_W2:
    return None
  return float(theory.chi1(activation, SIGMA_W2[kernel_init](width), 0.0))


def growth_per_layer(signal: np.ndarray) -> np.ndarray:
  r"""Geometric-mean growth of the squared signal per layer toward the input.

  Least-squares slope of :math:`\log \|dL/dz_l\|^2` against ``-l`` over the
  hidden layers (the first and the last layer excluded), per seed; NaN where a
  signal is 0 or not finite.

  Args:
    signal: ``(seeds, layers)``, input to output.

  Returns:
    ``(seeds,)``.
  """
  hidden = signal[:, 1:-1]
  if hidden.shape[1] < 2:
    return np.full(len(signal), np.nan)
  with np.errstate(all="ignore"):
    logs = np.log(hidden ** 2)
  layers = np.arange(hidden.shape[1])
  out = np.full(len(signal), np.nan)
  for i, row in enumerate(logs):
    if np.all(np.isfinite(row)):
      out[i] = np.exp(-np.polyfit(layers, row, 1)[0])
  return out
