"""The public-style models of :mod:`tests.foreign_models` in the doctor's factory protocol.

``python -m jaxgrad.doctor --model tests.doctor_factories:vit`` (or ``resnet``, ``cnn``,
``sequential_mlp``, ``scan_mlp``, ``sigmoid_mlp``) diagnoses each as written; the docs
page on diagnosing any model shows their reports.
"""

import jax
import jax.numpy as jnp

from tests import foreign_models as fm


def _loss(out):
  """Cross-entropy against class 0 (any fixed labels do at initialisation)."""
  return jnp.mean(jax.nn.logsumexp(out, -1) - out[:, 0])


def _protocol(factory, batch=None, **kwargs):
  model, variables, x, apply_kwargs = factory(jax.random.key(0), **kwargs)
  if batch is not None:  # "dead on every example" needs enough examples to mean it
    x = jax.random.normal(jax.random.key(1), (batch, *x.shape[1:]), x.dtype)
  return {"model": model, "variables": variables, "x": x, "loss_fn": _loss,
          "apply_kwargs": apply_kwargs}


def vit():
  return _protocol(fm.make_vit)


def resnet():
  return _protocol(fm.make_resnet)


def cnn():
  return _protocol(fm.make_cnn, batch=64)


def sequential_mlp():
  return _protocol(fm.make_sequential_mlp, batch=128)


def scan_mlp():
  return _protocol(fm.make_scan_res_mlp, named=True)


def sigmoid_mlp():
  return _protocol(fm.make_small_sigmoid_mlp, batch=128)
