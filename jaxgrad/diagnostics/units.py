r"""Dead and saturated units, from a layer's activations.

A unit is *dead* when :math:`\phi'(a) = 0` on every example of the batch (its
weights get no gradient); an activation entry is *saturated* when
:math:`\phi'(a)/\max\phi'` is below :data:`jaxgrad.probe.SATURATION_THRESHOLD`,
for the activations that saturate (tanh, sigmoid, hard-tanh, elu; seed 000
§3.1's "激活值分布过于集中于饱和区域"). Both are read from the activation's
output :math:`h = \phi(a)`, so they hold behind a norm layer too. Pure and
jit-able; :func:`jaxgrad.metrics.recorder` and :class:`jaxgrad.logs.Monitor`
record them during training.
"""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from jaxgrad.probe import SATURATION_THRESHOLD

# phi'(a) / max phi', written as a function of the output h = phi(a), for the
# activations where that is possible (so it holds behind a norm layer too).
_DERIVATIVE_FROM_OUTPUT: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": lambda h: (h > 0).astype(h.dtype),
    "leaky_relu": lambda h: jnp.where(h > 0, 1.0, 0.01).astype(h.dtype),
    "elu": lambda h: jnp.where(h > 0, 1.0, h + 1.0).astype(h.dtype),
    "tanh": lambda h: 1.0 - h**2,
    "sigmoid": lambda h: 4.0 * h * (1.0 - h),
    "hard_tanh": lambda h: (jnp.abs(h) < 1).astype(h.dtype),
    "linear": jnp.ones_like,
}
UNIT_STAT_ACTIVATIONS = tuple(_DERIVATIVE_FROM_OUTPUT)
# Activations with a flat, saturating regime; relu's zero side is "dead", not saturated.
SATURATING = ("tanh", "sigmoid", "hard_tanh", "elu")


def relative_derivative(activation: str, h: jax.Array) -> jax.Array:
  r""":math:`\phi'(a)/\max\phi'` from the activation's output :math:`h = \phi(a)`.

  Raises:
    ValueError: for an activation not in :data:`UNIT_STAT_ACTIVATIONS`.
  """
  if activation not in _DERIVATIVE_FROM_OUTPUT:
    raise ValueError(f"unit statistics need an activation whose derivative is a function of "
                     f"its output; got {activation!r}, valid choices: {UNIT_STAT_ACTIVATIONS}")
  return _DERIVATIVE_FROM_OUTPUT[activation](h)


def unit_fractions(outputs: Mapping[str, jax.Array], activation: str,
                   threshold: float = SATURATION_THRESHOLD) -> dict[str, dict[str, jax.Array]]:
  r"""Per layer, the fraction of dead units and of saturated activations.

  Args:
    outputs: layer -> activations ``(batch, units)``.
    activation: name of :math:`\phi`.
    threshold: an activation entry is saturated when :math:`\phi'(a)/\max\phi'`
      is below it (units already dead are not counted again); only for
      :data:`SATURATING` activations, 0 for the others.

  Returns:
    ``{"dead": {layer: fraction of units}, "saturated": {layer: fraction of entries}}``.
  """
  dead, saturated = {}, {}
  for name, h in outputs.items():
    d = relative_derivative(activation, h.reshape(-1, h.shape[-1]).astype(jnp.float32))
    is_dead = jnp.all(d == 0, axis=0)
    dead[name] = jnp.mean(is_dead.astype(jnp.float32))
    flat = (d < threshold) & ~is_dead[None] if activation in SATURATING else jnp.zeros_like(d, bool)
    saturated[name] = jnp.mean(flat.astype(jnp.float32))
  return {"dead": dead, "saturated": saturated}
