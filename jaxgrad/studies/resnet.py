r"""ResNet vs its plain twin at initialization: per-block gradients and a stage's Jacobian.

He et al. (2016) add shortcuts so that a block's Jacobian is
:math:`\partial z/\partial x = I + \partial F/\partial x`, "identity plus a
perturbation". This study measures, for CIFAR-style ResNets
(:class:`jaxgrad.models.resnet.ResNet`) and the same networks without shortcuts,
with and without BatchNorm, on random inputs and labels:

* :func:`gradient_flow`: the backprop signal :math:`\mathbb E_b \|dL/dz_l[b]\|` at
  every block's pre-activation and the per-stage weight-gradient norms;
* :func:`stage_jacobian`: the singular values of the first stage's per-example
  Jacobian :math:`dh_\text{out}/dh_\text{in}` (BatchNorm in train mode, so the
  Jacobian includes the example's effect on the batch statistics).

Keys use JAX's ``rbg`` PRNG (:func:`~jaxgrad.sweep.rbg_key`): XLA compiles the default threefry
generator for ~60 conv tensors about 8x slower on CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgrad import diagnostics, probe
from jaxgrad.models import resnet
from jaxgrad.sweep import rbg_key, sweep

STAGES = {10: (1, 1, 1, 1), 18: resnet.RESNET18, 34: resnet.RESNET34}
NUM_CLASSES = 10
# Singular values below ZERO_RTOL * s_max are zero up to float32 rounding.
ZERO_RTOL = 1e-5



def _stage_of(layer: str) -> str:
  """``stage2_block1/conv1`` -> ``stage2``."""
  return layer.split("/")[0].split("_")[0]


def stage_norms(layers: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
  r"""Per-stage weight-gradient norms :math:`\sqrt{\sum_{l \in \text{stage}} \|dL/dW_l\|_F^2}`.

  Args:
    layers: layer name -> per-seed norm ``(seeds,)``, names ``stage<k>...``.

  Returns:
    The stage names in order and their norms ``(seeds, stages)``.
  """
  names = list(layers)
  stages = sorted({_stage_of(n) for n in names}, key=lambda s: int(s[len("stage"):]))
  return stages, np.stack(
      [np.sqrt(sum(layers[n] ** 2 for n in names if _stage_of(n) == s)) for s in stages], axis=1)


def gradient_flow(depth: int, residual: bool, norm: bool, *, width: int, image_size: int,
                  batch: int, seeds: int, seed: int = 0) -> dict:
  """Per-block backprop signal and per-stage weight-gradient norms at init, per seed.

  Each seed draws a network (He-normal convolutions; BatchNorm in train mode,
  batch statistics), inputs :math:`\\mathcal N(0, 1)` of shape
  ``(batch, image_size, image_size, 3)`` and uniform random labels, and takes
  one backward pass of the softmax cross-entropy.

  Args:
    depth: a key of :data:`STAGES` (10, 18 or 34).
    residual: with shortcuts (ResNet) or without (the plain twin).
    norm: BatchNorm after every convolution.
    width: base channels (the seed's ResNet-18: 64).
    image_size, batch: the input's spatial size and batch.
    seeds: random networks; seed ``seed`` roots the keys (:func:`jaxgrad.sweep.rbg_key`).

  Returns:
    ``block_signal`` (seeds, blocks), ``stage_names``, ``stage_grad_norm``
    (seeds, stages) (:func:`stage_norms`), ``layer_names``, ``layer_grad_norm``
    (seeds, layers) and the initial ``loss`` (seeds,).
  """
  model = resnet.ResNet(STAGES[depth], width=width, num_classes=NUM_CLASSES,
                        residual=residual, norm=norm)
  shape = (batch, image_size, image_size, 3)
  layout = probe.layout(model, jax.ShapeDtypeStruct(shape, jnp.float32), train=True,
                        mutable=["batch_stats"])

  def one(k):
    k_x, k_y, k_init = jax.random.split(k, 3)
    x = jax.random.normal(k_x, shape)
    y = jax.random.randint(k_y, (batch,), 0, NUM_CLASSES)
    variables = model.init(k_init, x)

    def loss(params, perturbations):
      logits, _ = model.apply({**variables, "params": params, "perturbations": perturbations},
                              x, train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    # One backward pass for the weight gradients and the backprop signal.
    value, (grads, signal_grads) = jax.value_and_grad(loss, argnums=(0, 1))(
        variables["params"], variables["perturbations"])
    signal = diagnostics.signal_norms(signal_grads, layout=layout)
    layer_norms = diagnostics.layer_grad_norms(grads, layout=layout)
    return {"signal": signal.stack(), "layers": layer_norms, "loss": value}

  out = jax.tree.map(np.asarray, sweep(one, jax.random.split(rbg_key(seed), seeds)))
  stages, per_stage = stage_norms(out["layers"])
  names = list(out["layers"])
  return {"block_signal": out["signal"], "stage_names": stages, "stage_grad_norm": per_stage,
          "layer_names": names, "layer_grad_norm": np.stack([out["layers"][n] for n in names], 1),
          "loss": out["loss"]}


def stage_jacobian(depth: int, residual: bool, *, width: int, size: int, batch: int,
                   seeds: int, seed: int = 0) -> np.ndarray:
  r"""Singular values of the first stage's per-example Jacobian, shape ``(seeds, n)``.

  The stage (BatchNorm in train mode) sees a batch of
  :math:`h = \mathrm{relu}(\mathcal N(0, 1))` of shape
  ``(max(2, batch), size, size, width)``, standing in for the stem's output; the
  Jacobian is that of the first example's output with respect to its input,
  :math:`n = \text{size}^2 \cdot \text{width}`.

  Args:
    depth: a key of :data:`STAGES`; the first stage has ``STAGES[depth][0]`` blocks.
    residual: with shortcuts or without.
    width, size, batch: the stage input's channels, spatial size and batch.
    seeds: random draws, keyed by ``fold_in(rbg_key(seed), depth)``.
  """
  stage = resnet.ResNetStage(width, STAGES[depth][0], residual=residual, norm=True)
  shape = (max(2, batch), size, size, width)

  def one(k):
    k_h, k_init = jax.random.split(k)
    h = jax.nn.relu(jax.random.normal(k_h, shape))
    variables = stage.init(k_init, h)

    def first_example(x0):
      out, _ = stage.apply(variables, h.at[0].set(x0.reshape(shape[1:])), train=True,
                           mutable=["batch_stats"])
      return out[0].ravel()

    return diagnostics.singular_values(first_example, h[0].ravel())

  keys = jax.random.split(jax.random.fold_in(rbg_key(seed), depth), seeds)
  return np.asarray(sweep(one, keys))


def zero_fraction(sv: np.ndarray) -> np.ndarray:
  """Per seed, the fraction of singular values ``sv`` (seeds, n) below ``ZERO_RTOL * s_max``:
  zero up to float32 rounding (output units whose ReLU is closed)."""
  return np.mean(sv < ZERO_RTOL * sv.max(axis=1, keepdims=True), axis=1)
