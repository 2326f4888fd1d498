r"""The mean-field variances of one dense layer's drawn parameters, for both probes' reports."""

import jax
import jax.numpy as jnp

from jaxgrad import theory


def dense_variances(kernel: jax.Array, bias: jax.Array | None) -> dict[str, jax.Array]:
  r"""The :math:`\sigma_w^2` and :math:`\sigma_b^2` of a dense layer :math:`y = xW + b`.

  For a ``(fan_in, fan_out)`` kernel and a ``(fan_out,)`` bias, the variances
  of the mean-field draw :math:`W_{ij} \sim N(0, \sigma_w^2/\mathrm{fan\_in})`,
  :math:`b_j \sim N(0, \sigma_b^2)` that the layer's values stand for:

  .. math::

     \sigma_w^2 = \mathrm{fan\_in}\,\overline{W^2}, \qquad
     \sigma_b^2 = \overline{b^2} \quad (0 \text{ without a bias}).

  For a scanned stack of layers, ``jax.vmap`` it over the layer axis.

  Args:
    kernel: the layer's kernel.
    bias: its bias, or None for a layer without one.

  Returns:
    ``{"sigma_w2": ..., "sigma_b2": ...}``, float32 scalars.

  >>> v = dense_variances(jnp.full((4, 3), 0.5), jnp.full((3,), 0.1))
  >>> round(float(v["sigma_w2"]), 6), round(float(v["sigma_b2"]), 6)
  (1.0, 0.01)
  """
  return {"sigma_w2": theory.weight_variance(kernel),
          "sigma_b2": jnp.zeros(()) if bias is None else jnp.mean(bias.astype(jnp.float32) ** 2)}
