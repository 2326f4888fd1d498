r"""Finite-difference check of ``jax.grad``, one verdict per parameter tensor (seed 000 §6.3).

For a parameter tensor :math:`\theta_i` and unit directions :math:`v_1..v_K`
(in that tensor only), the check compares the analytic directional
derivatives :math:`a_k = \langle \nabla_{\theta_i} L, v_k\rangle` with central
differences in float64

.. math::

   n_k = \frac{L(\theta + \epsilon v_k) - L(\theta - \epsilon v_k)}{2\epsilon},
   \qquad \text{error} = \frac{\|n - a\|_2}{\max(\|n\|_2, \|a\|_2, \mathrm{atol}/\mathrm{rtol})} .

(the floor ``atol / rtol`` keeps a tensor whose gradient is exactly zero, measured
as finite-difference noise, from reading as a 100% error).

A tensor with at most ``max_coordinates`` entries is checked along every
coordinate axis (``v_k = e_k``: the full numerical gradient, as the seed's
loop does); a larger one along ``num_directions`` random Gaussian directions.
The central difference has truncation error :math:`O(\epsilon^2 L''')` and
rounding error :math:`O(u\,|L|/\epsilon)`, :math:`u = 2^{-53}`: with
:math:`\epsilon = 10^{-6}` both are around 1e-10 for losses of order one, so a
correct gradient gives errors far below the default ``rtol = 1e-6`` while a
wrong one (a sign, a missing factor) gives errors of order one. A tensor
passes when :math:`\|n - a\| \le \mathrm{atol} + \mathrm{rtol}\max(\|n\|, \|a\|)`
(``atol`` covers tensors whose gradient is zero, e.g. the mean of a loss
that does not depend on them).

All directions of all tensors are evaluated in one ``jax.vmap``-ed, jitted
program. ReLU-like kinks within ``epsilon`` of a pre-activation would break
the finite difference; at ``epsilon = 1e-6`` and continuous inputs they are
vanishingly rare.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from jaxgrad.diagnostics._tree import _natural_key


MAX_ENTRIES = 50_000_000  # directions x parameters held at once (400 MB in float64)
BATCH = 64  # directions evaluated together (jax.lax.map batch size)


class TensorCheck(NamedTuple):
  """The verdict for one parameter tensor."""

  error: float  # ||n - a|| / max(||n||, ||a||, atol / rtol)
  abs_error: float  # ||n - a||
  grad_norm: float  # max(||n||, ||a||)
  num_directions: int
  all_coordinates: bool  # True: every coordinate axis was checked
  passed: bool


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def gradient_check(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    *,
    key: jax.Array,
    num_directions: int = 4,
    max_coordinates: int = 32,
    epsilon: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-9,
) -> dict[str, TensorCheck]:
  r"""Checks ``jax.grad(loss_fn)`` against float64 central differences, per tensor.

  Args:
    loss_fn: ``params -> scalar``; anything else it needs (inputs, targets,
      BatchNorm state) is closed over.
    params: pytree of parameters; floating leaves are cast to float64 (Flax
      keeps ``float32`` parameters under x64 unless told otherwise), so the
      model computes in float64 as long as its inputs are float64.
    key: PRNG key for the random directions.
    num_directions: random directions per tensor with more than
      ``max_coordinates`` entries.
    max_coordinates: tensors up to this size are checked along every coordinate.
    epsilon: finite-difference step.
    rtol, atol: pass criterion, see the module docstring.

  Returns:
    ``{tensor path: TensorCheck}`` in natural order of the paths.

  Raises:
    ValueError: if float64 is not enabled (``with jax.enable_x64(True):``), if
      the loss comes out in another dtype than float64, or
      for a non-positive ``epsilon`` / ``num_directions``, or if ``params``
      has no floating leaf.

  >>> import jax, jax.numpy as jnp
  >>> with jax.enable_x64(True):
  ...   checks = gradient_check(lambda p: jnp.sum(jnp.sin(p["w"])), {"w": jnp.ones(3)},
  ...                           key=jax.random.key(0))
  >>> checks["w"].passed, checks["w"].all_coordinates
  (True, True)
  """
  if not jax.config.jax_enable_x64:
    raise ValueError(
        "gradient_check needs float64: run it under `with jax.enable_x64(True):`")
  if not epsilon > 0:
    raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
  if not isinstance(num_directions, int) or num_directions < 1:
    raise ValueError(f"num_directions must be an integer >= 1, got {num_directions!r}")

  def to64(a):
    a = jnp.asarray(a)
    return a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a

  params = jax.tree.map(to64, params)
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  # Offsets of each leaf in the flat vector (ravel_pytree concatenates leaves
  # in tree_flatten order).
  offsets, start = [], 0
  for _, leaf in leaves:
    offsets.append(start)
    start += int(np.size(leaf))
  if not any(jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating) for _, leaf in leaves):
    raise ValueError("params has no floating-point leaf to check")

  directions, owner = [], []
  for i, ((path, leaf), offset) in enumerate(zip(leaves, offsets)):
    size = int(np.size(leaf))
    if size == 0 or not jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
      continue
    if size <= max_coordinates:
      block = np.eye(size)
    else:
      block = np.array(jax.random.normal(jax.random.fold_in(key, i),
                                          (num_directions, size), jnp.float64))
      block /= np.linalg.norm(block, axis=1, keepdims=True)
    full = np.zeros((block.shape[0], flat.size))
    full[:, offset:offset + size] = block
    directions.append(full)
    owner += [i] * block.shape[0]
  directions = np.concatenate(directions)
  if directions.size > MAX_ENTRIES:
    raise ValueError(
        f"{directions.shape[0]} directions x {flat.size} parameters exceed {MAX_ENTRIES:.0e} "
        "entries; lower max_coordinates or num_directions, or check a smaller model")
  directions = jnp.asarray(directions, jnp.float64)
  owner = np.asarray(owner)

  f = lambda theta: loss_fn(unravel(theta))  # noqa: E731
  loss_dtype = jax.eval_shape(f, flat).dtype
  if loss_dtype != jnp.float64:
    raise ValueError(
        f"the loss is computed in {loss_dtype}, not float64, although the parameters were cast "
        "to float64: the model casts internally (e.g. a carry or a computation dtype taken from "
        "param_dtype); build it with param_dtype=jnp.float64 and float64 inputs")

  @jax.jit
  def both(theta, vs):
    grad = jax.grad(f)(theta)
    analytic = vs @ grad
    numeric = jax.lax.map(
        lambda v: (f(theta + epsilon * v) - f(theta - epsilon * v)) / (2 * epsilon),
        vs, batch_size=BATCH)
    return analytic, numeric

  analytic, numeric = (np.asarray(a, np.float64) for a in both(flat, directions))
  out = {}
  for i, (path, leaf) in enumerate(leaves):
    rows = owner == i
    if not rows.any():
      continue
    a, n = analytic[rows], numeric[rows]
    diff = float(np.linalg.norm(n - a))
    scale = float(max(np.linalg.norm(n), np.linalg.norm(a)))
    error = diff / max(scale, atol / rtol)
    passed = bool(np.isfinite(diff) and diff <= atol + rtol * scale)
    out[_path_name(path)] = TensorCheck(error, diff, scale, int(rows.sum()),
                                        int(np.size(leaf)) <= max_coordinates, passed)
  return dict(sorted(out.items(), key=lambda kv: _natural_key(kv[0])))


def all_passed(checks: dict[str, TensorCheck]) -> bool:
  """True when every tensor passed."""
  return all(c.passed for c in checks.values())


def max_error(checks: dict[str, TensorCheck]) -> float:
  """The largest relative error over the tensors."""
  return max(c.error for c in checks.values())
