r"""An activation's derivative: its maximum, and the product of L of them.

Backpropagation through L layers multiplies L derivatives :math:`\phi'(z_l)`
(times the weights). Even in the best case, every unit sitting exactly where
:math:`|\phi'|` is largest, the activation alone contributes a factor

.. math::

   \prod_{l=1}^{L} \phi'(z_l) \;\le\; \big(\max_z |\phi'(z)|\big)^L,
   \qquad \text{sigmoid: } 0.25^L ,

which falls below the smallest normal float32 at a depth this module computes.
The typical factor is mean-field theory's
:math:`\sqrt{\mu_1} = \sqrt{\mathbb E_{z\sim N(0,1)}[\phi'(z)^2]}` per layer at unit
pre-activation variance (Poole et al. 2016; Schoenholz et al. 2017). Everything
is computed in float64, the derivative by ``jax.grad`` (:mod:`jaxgrad.activations`).

Example:
  >>> from jaxgrad.studies import activations as study
  >>> study.underflow_depth(0.25)
  64
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import activations, theory

FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32, 1.18e-38
ATTAINED_ATOL = 1e-12  # |phi'(x)| within this of the maximum counts as attaining it


def grid(x_max: float, step: float) -> np.ndarray:
  """Symmetric float64 grid on ``[-x_max, x_max]`` with spacing ``step`` that contains 0 exactly.

  Args:
    x_max: the half-width of the grid (rounded to a whole number of steps).
    step: the spacing.

  Returns:
    ``(2n + 1,)`` float64 points ``k * step`` for ``k = -n..n``, ``n = round(x_max / step)``.
  """
  n = int(round(x_max / step))
  return np.arange(-n, n + 1, dtype=np.float64) * step


def derivative_maximum(name: str, x: np.ndarray) -> dict:
  r""":math:`\max |\phi'|` on the grid ``x`` (float64), where it is attained, :math:`\phi'(0)`.

  Args:
    name: an activation of :mod:`jaxgrad.activations`.
    x: the grid, e.g. from :func:`grid`.

  Returns:
    ``max_abs_derivative``; ``argmax``: the first grid point attaining it;
    ``attained_on``: ``[lo, hi]``, the smallest and largest grid points within
    :data:`ATTAINED_ATOL` of the maximum (a point for sigmoid, a half-line
    cut at the grid's end for relu); ``derivative_at_0``.
  """
  with jax.enable_x64(True):
    d = np.abs(np.asarray(activations.derivative(name)(jnp.asarray(x))))
    at0 = float(activations.derivative(name)(jnp.asarray(0.0)))
  best = float(d.max())
  hit = np.flatnonzero(d >= best - ATTAINED_ATOL)
  return {"max_abs_derivative": best, "argmax": float(x[hit[0]]),
          "attained_on": [float(x[hit[0]]), float(x[hit[-1]])], "derivative_at_0": at0}


def underflow_depth(max_derivative: float) -> int | None:
  r"""Smallest L with :math:`m^L` below the smallest normal float32; None if :math:`m \ge 1`.

  Args:
    max_derivative: :math:`m = \max|\phi'|`.

  Returns:
    The depth L, found exactly (a logarithm's estimate, then corrected by
    powers). Sigmoid: :math:`0.25^{63} = 2^{-126}` is exactly the smallest
    normal, so L = 64.
  """
  if max_derivative >= 1.0:
    return None
  depth = max(1, math.floor(math.log(FLOAT32_TINY) / math.log(max_derivative)))
  while max_derivative**depth >= FLOAT32_TINY:
    depth += 1
  while depth > 1 and max_derivative ** (depth - 1) < FLOAT32_TINY:
    depth -= 1
  return depth


def profile(name: str, x: np.ndarray, x_plot: np.ndarray, depths: np.ndarray) -> dict:
  r"""One activation's derivative maximum, curves and products of derivatives against depth.

  Args:
    name: an activation of :mod:`jaxgrad.activations`.
    x: the fine grid the maximum is found on (:func:`grid`).
    x_plot: where to evaluate :math:`\phi` and :math:`\phi'` for drawing.
    depths: the depths L of the products.

  Returns:
    :func:`derivative_maximum`'s entries and ``rms_derivative_q1``
    (:math:`\sqrt{\mu_1}` at :math:`q = 1`, :func:`jaxgrad.theory.derivative_moment`),
    ``underflow_depth`` (:func:`underflow_depth`), ``phi`` and ``derivative`` at
    ``x_plot``, ``max_product`` :math:`(\max|\phi'|)^L` and ``rms_product``
    :math:`\mu_1^{L/2}` at ``depths``.
  """
  stats = derivative_maximum(name, x)
  with jax.enable_x64(True):
    phi = np.asarray(activations.get(name)(jnp.asarray(x_plot)))
    dphi = np.asarray(activations.derivative(name)(jnp.asarray(x_plot)))
    rms = math.sqrt(float(theory.derivative_moment(name, jnp.asarray(1.0))))
  best = stats["max_abs_derivative"]
  return {
      **stats,
      "rms_derivative_q1": rms,
      "underflow_depth": underflow_depth(best),
      "phi": phi,
      "derivative": dphi,
      "max_product": best ** depths.astype(np.float64),
      "rms_product": rms ** depths.astype(np.float64),
  }
