r"""Input-output Jacobians and their singular-value spectra.

For a network :math:`f: \mathbb{R}^{n} \to \mathbb{R}^{m}`, the Jacobian
:math:`J = \partial f / \partial x` is computed with ``jax.jacfwd`` (forward
mode pushes ``n`` tangents; for square ``J`` it beats reverse mode in memory,
jax-ml/jax#215). The squared singular values of ``J`` are the eigenvalues of
:math:`J J^\top`, whose mean and variance mean-field theory predicts.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _check_vector(x: jax.Array, what: str) -> None:
  if jnp.ndim(x) != 1:
    raise ValueError(
        f"{what} must be one example vector of shape (n,), got shape "
        f"{jnp.shape(x)}; use jax.vmap for a batch."
    )


def jacobian(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """The Jacobian ``d fn / dx`` at ``x``, shape ``(m, n)``, by ``jax.jacfwd``.

  Args:
    fn: maps one example vector of shape ``(n,)`` to a vector ``(m,)``.
    x: the point, shape ``(n,)``; its dtype sets the computation's precision.
  """
  _check_vector(x, "x")
  _check_vector(jax.eval_shape(fn, x), "fn(x)")
  return jax.jacfwd(fn)(x)


def singular_values(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """Singular values of ``jacobian(fn, x)``, descending."""
  return jnp.linalg.svd(jacobian(fn, x), compute_uv=False)


def spectrum_stats(s: jax.Array) -> dict[str, jax.Array]:
  r"""Summary of singular values ``s`` (last axis; leading axes are batched).

  Returns:
    ``mean_sq`` and ``var_sq``, the mean and (population) variance of
    :math:`s_i^2`, i.e. of the eigenvalues of :math:`JJ^\top`; ``max``, ``min``
    and ``condition = max / min`` (``inf`` when ``min`` is 0).

  Raises:
    ValueError: for ``s`` without singular values (a scalar or an empty last axis).
  """
  if jnp.ndim(s) < 1 or jnp.shape(s)[-1] == 0:
    raise ValueError(f"spectrum_stats needs at least one singular value on the last axis, "
                     f"got shape {jnp.shape(s)}")
  s2 = jnp.square(s)
  smax, smin = jnp.max(s, axis=-1), jnp.min(s, axis=-1)
  return {
      "mean_sq": jnp.mean(s2, axis=-1),
      "var_sq": jnp.var(s2, axis=-1),
      "max": smax,
      "min": smin,
      "condition": smax / smin,
  }


def resolvable(s2: np.ndarray) -> np.ndarray:
  """Mask of squared singular values above the SVD's resolution.

  An SVD in precision eps resolves s only down to about ``n * eps * s_max``;
  below that (e.g. the exact zeros that ReLU's dead units and hard-tanh's
  saturated units put into J) it returns rounding noise. Shape (..., n).
  """
  n = s2.shape[-1]
  floor = (n * np.finfo(s2.dtype).eps) ** 2 * s2.max(axis=-1, keepdims=True)
  return s2 > floor
