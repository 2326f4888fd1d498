r"""Backpropagation through time, measured: the signal :math:`\partial L/\partial h_t` of an RNN.

Every hidden state :math:`h_t` of a :class:`jaxgrad.models.recurrent.RecurrentNet`
is a ``perturb`` point that is also carried forward, so the gradient with respect
to the perturbations is the full BPTT signal at every time step, the quantity
whose decay over :math:`T - t` is the vanishing gradient of a recurrent network
(Pascanu et al. 2013).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxgrad.diagnostics.gradients import perturbation_grads
from jaxgrad.models.recurrent import PERTURB_NAME, RecurrentNet, layer_name


def time_grads(model: RecurrentNet, params: Any, x: jax.Array,
               loss_fn: Callable[[jax.Array], jax.Array]) -> jax.Array:
  r"""The BPTT signal :math:`\partial L/\partial h_t` of every layer.

  Args:
    model: the network.
    params: its ``'params'``.
    x: a batch ``(B, T, features)``.
    loss_fn: maps the model's output ``(B, out_features)`` to a scalar loss.

  Returns:
    Array ``(layers, B, T, H)``.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)["perturbations"]
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  grads = perturbation_grads(lambda v: loss_fn(model.apply(v, x)),
                             {"params": params, "perturbations": zeros})
  return jnp.stack([grads[layer_name(l)]["cell"][PERTURB_NAME] for l in range(model.layers)])
