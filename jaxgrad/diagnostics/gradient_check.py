r"""Finite-difference check of ``jax.grad``, one verdict per parameter tensor (seed 000 §6.3).

For a parameter tensor :math:`\theta_i` and unit directions :math:`v_1..v_K`
(in that tensor only), the check compares the analytic directional
derivatives :math:`a_k = \langle \nabla_{\theta_i} L, v_k\rangle` with central
differences in float64 of :math:`g_k(t) = L(\theta + t v_k)`

.. math::

   n_k = D_\epsilon = \frac{g_k(\epsilon) - g_k(-\epsilon)}{2\epsilon},
   \qquad \text{error} = \frac{\|n - a\|_2}{\max(\|n\|_2, \|a\|_2, \mathrm{atol}/\mathrm{rtol})} .

(the floor ``atol / rtol`` keeps a tensor whose gradient is exactly zero, measured
as finite-difference noise, from reading as a 100% error).

A tensor with at most ``max_coordinates`` entries is checked along every
coordinate axis (``v_k = e_k``: the full numerical gradient, as the seed's
loop does); a larger one along ``num_directions`` random Gaussian directions.
The central difference has truncation error :math:`O(\epsilon^2 g''')` and
rounding error :math:`O(u\,|L|/\epsilon)`, :math:`u = 2^{-53}`: with
:math:`\epsilon = 10^{-6}` both are around 1e-10 for losses of order one, so a
correct gradient gives errors far below the default ``rtol = 1e-6`` while a
wrong one (a sign, a missing factor) gives errors of order one. A tensor
passes when :math:`\|n - a\| \le \mathrm{atol} + \mathrm{rtol}\max(\|n\|, \|a\|)`
over its *checked* directions (``atol`` covers tensors whose gradient is zero).

**Kinks.** ReLU, max-pooling and ``abs`` make :math:`g_k` non-differentiable
at isolated points, and unedited models sit on them exactly: the Flax ImageNet
ResNet initialises the last BatchNorm scale of each residual branch to zero,
so wherever the shortcut carries an exact zero (a max-pool window of
ReLU zeros) the block's ReLU sees exactly ``0 + 0``. There
:math:`g'(0^+) \ne g'(0^-)`, ``jax.grad`` returns one convention
(``relu'(0) = 0``), and :math:`D_\epsilon` returns the mean of the two sides
for every :math:`\epsilon`: a relative error near 0.5, whatever the step. Two
central differences at :math:`\epsilon` and :math:`\epsilon/r` therefore
*agree* at an exact kink; what betrays it is the gap between the one-sided
differences :math:`F_s = (g(s) - g(0))/s`, :math:`B_s = (g(0) - g(-s))/s`:

.. math::

   J_s = F_s - B_s = \frac{g(s) - 2 g(0) + g(-s)}{s}
       = \begin{cases} s\,g''(0) + O(s^3) & g \text{ smooth} \\
                       g'(0^+) - g'(0^-) + O(s) & \text{kink at } 0 ,\end{cases}

which shrinks like :math:`s` on a smooth function and stays put at a kink.
Each direction is evaluated at :math:`t \in \{\pm\epsilon, \pm\epsilon/r, 0\}`
(``r = 10``, the extra points cost no extra compile: one vmapped loss). A
direction whose central difference *fails* the per-direction test
:math:`|n_k - a_k| > \mathrm{atol} + \mathrm{rtol}\max(|n_k|, |a_k|)` is
reported as a kink, not checked, when either

(A) the gap does not shrink with the step and explains the miss:
    :math:`|J_{\epsilon/r}| \ge \max(|J_\epsilon|/\sqrt r,\ |n_k - a_k|,\ \eta)`.
    Smooth: ratio :math:`1/r`; kink at 0: ratio 1; one kink gives exactly
    :math:`|n_k - a_k| = |J|/2`; :math:`\eta = 4 \cdot 32 \cdot 2^{-52}\max|g| / (\epsilon/r)`
    is the rounding floor of :math:`J_{\epsilon/r}` (the loss taken as accurate to
    32 ulps). This covers exact kinks where ``jax.grad`` matches neither side
    (several ReLUs at zero with opposite slopes); or

(B) the gap at step :math:`\epsilon` explains the miss,
    :math:`|J_\epsilon| \ge \max(|n_k - a_k|, \eta/r)`, and ``jax.grad`` agrees with
    one one-sided difference at the small step to its truncation error, estimated
    by Richardson from the two steps:
    :math:`|S_{\epsilon/r} - a_k| \le \mathrm{tol}_k + 2|S_\epsilon - S_{\epsilon/r}|/(r-1)+\eta/2`
    for :math:`S = F` or :math:`S = B`. This covers a kink at or within
    :math:`\epsilon` of :math:`\theta` on one side, the other side being smooth.

Why this cannot hide a wrong gradient of a smooth loss: there (A) needs
:math:`|J_{\epsilon/r}| \approx \epsilon|g''|/r` to reach :math:`|J_\epsilon|/\sqrt r \approx
\epsilon|g''|/\sqrt r`, which only rounding noise below :math:`\eta` could do; and (B)
excuses an error :math:`\delta` only if :math:`\delta \le |J_\epsilon| \approx
\epsilon|g''|`, the one-sided truncation level of a step of 1e-6, while real
bugs are of order one. Directions that pass are never re-labelled. The price:
at an exact kink no finite difference can check the gradient, so a bug that sits
on a kink is not seen there. (This function sees only ``params -> loss``, not
the model's inputs, so it cannot look for pre-activations exactly at zero; the
rule detects their consequence on the loss. Two central differences at
:math:`\epsilon` and :math:`\epsilon/r` would not do: at an exact kink both equal the
mean of the two sides.)

The random directions of all tensors are drawn in one jitted program, and all
directions evaluated in one ``jax.lax.map``-ed, jitted program: the compile count
does not grow with the number of tensor shapes.
"""

from collections.abc import Callable
import dataclasses
import functools
import re
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

MAX_ENTRIES = 50_000_000  # directions x parameters held at once (400 MB in float64)
STEP_RATIO = 10.0  # r: the second step is epsilon / r
ROUNDING_ULPS = 32  # the loss is taken as accurate to this many ulps (the floor eta)
PRECISION_FIELDS = ("dtype", "param_dtype")  # Flax's computation and parameter dtypes


def _natural_key(path: str) -> list[Any]:
  """'Dense_10' sorts after 'Dense_9': digit runs compare as integers."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


class TensorCheck(NamedTuple):
  """The verdict for one parameter tensor; error, abs_error, grad_norm over checked directions."""

  error: float  # ||n - a|| / max(||n||, ||a||, atol / rtol)
  abs_error: float  # ||n - a||
  grad_norm: float  # max(||n||, ||a||)
  num_directions: int  # checked + kinks
  all_coordinates: bool  # True: every coordinate axis was looked at
  passed: bool  # the checked directions pass (True when every direction is a kink)
  kinks: int  # directions reported as "kink, not checked"


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _dtype_name(value: Any) -> str:
  if value is None:  # np.dtype(None) would read as float64
    return "None"
  try:
    return jnp.dtype(value).name
  except TypeError:
    return repr(value)


def precision_advice(model: Any = None) -> str:
  """How to make ``model`` compute in float64, naming its own precision knob.

  Flax modules expose ``dtype`` (the computation dtype; the ImageNet ResNet has
  only this one), ``param_dtype`` (the parameters' dtype, which some models also
  compute in, e.g. a recurrent carry), both, or neither.

  Args:
    model: a Flax module (any dataclass), or ``None`` when it is unknown.

  Returns:
    One sentence naming the dataclass fields to set to ``jnp.float64`` with their
    current values, or, without such a field, saying to cast the parameters after init.

  >>> import flax.linen as nn
  >>> print(precision_advice(nn.Dense(3)))  # doctest: +NORMALIZE_WHITESPACE
  build Dense with dtype=jnp.float64 and param_dtype=jnp.float64
  (now dtype=None, param_dtype=float32) and float64 inputs
  """
  if model is None:
    return ("build the model to compute in float64 (a Flax module's dtype and/or param_dtype "
            "field; pass model= to gradient_check to be told which) and feed float64 inputs")
  name = type(model).__name__
  fields = {f.name for f in dataclasses.fields(model)} if dataclasses.is_dataclass(model) else set()
  knobs = [k for k in PRECISION_FIELDS if k in fields]
  if not knobs:
    return (f"{name} has no dtype or param_dtype field: cast its parameters after init, "
            "jax.tree.map(lambda a: a.astype(jnp.float64), params), and feed float64 inputs; "
            "if the loss is still not float64, a submodule or the loss fixes its own dtype")
  now = ", ".join(f"{k}={_dtype_name(getattr(model, k))}" for k in knobs)
  wanted = " and ".join(f"{k}=jnp.float64" for k in knobs)
  return f"build {name} with {wanted} (now {now}) and float64 inputs"


def _check_arguments(epsilon: float, num_directions: int) -> None:
  if not jax.config.jax_enable_x64:
    raise ValueError(
        "gradient_check needs float64: run it under `with jax.enable_x64(True):`")
  if not epsilon > 0:
    raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
  if not isinstance(num_directions, int) or num_directions < 1:
    raise ValueError(f"num_directions must be an integer >= 1, got {num_directions!r}")


def _is_float(leaf) -> bool:
  return jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating)


def _gaussian_blocks(key: jax.Array, owners: list[int], sizes: list[int],
                     num_directions: int) -> list[np.ndarray]:
  """Per leaf ``owners[j]``, ``num_directions`` standard normal rows of length ``sizes[j]``.

  Row block ``j`` is ``jax.random.normal(fold_in(key, owners[j]), (num_directions, n_j))``,
  all drawn in one program: each is the first :math:`K n_j` entries of a flat draw of the
  longest block's length (under ``jax_threefry_partitionable``, JAX's default, threefry's
  bits are a function of the flat index; without it the blocks are still independent
  standard normals, but other ones), so leaves of any number of shapes cost one compile,
  not one each.
  """
  flat = np.asarray(_flat_normals(key, jnp.asarray(owners), num_directions * max(sizes)))
  return [flat[j, :num_directions * n].reshape(num_directions, n) for j, n in enumerate(sizes)]


@functools.partial(jax.jit, static_argnums=2)
def _flat_normals(key: jax.Array, owners: jax.Array, length: int) -> jax.Array:
  """``normal(fold_in(key, i), (length,))`` in float64 for each ``i`` of ``owners``; one program
  per (owner count, length), reused by later checks of the same model."""
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (length,),
                                              jnp.float64))(owners)


def _directions(leaves, size: int, key: jax.Array, num_directions: int,
                max_coordinates: int) -> tuple[np.ndarray, np.ndarray]:
  """Unit directions in the flat parameter vector, each inside one leaf, and their owners."""
  sizes = [int(np.size(leaf)) for _, leaf in leaves]
  offsets = np.cumsum([0, *sizes])
  checked = [i for i, (_, leaf) in enumerate(leaves) if sizes[i] and _is_float(leaf)]
  random = [i for i in checked if sizes[i] > max_coordinates]
  rows = {i: num_directions if i in random else sizes[i] for i in checked}
  total = sum(rows.values())
  if total * size > MAX_ENTRIES:
    raise ValueError(
        f"{total} directions x {size} parameters exceed {MAX_ENTRIES:.0e} "
        "entries; lower max_coordinates or num_directions, or check a smaller model")
  drawn = dict(zip(random, _gaussian_blocks(key, random, [sizes[i] for i in random],
                                            num_directions))) if random else {}
  directions, owner = np.zeros((total, size)), []
  for i in checked:  # ravel_pytree concatenates leaves in flatten order
    block = (drawn[i] / np.linalg.norm(drawn[i], axis=1, keepdims=True) if i in drawn
             else np.eye(sizes[i]))
    directions[len(owner):len(owner) + rows[i], offsets[i]:offsets[i + 1]] = block
    owner += [i] * rows[i]
  return directions, np.asarray(owner)


def _evaluate(f: Callable, theta: jax.Array, directions: np.ndarray,
              epsilon: float) -> tuple[np.ndarray, np.ndarray]:
  """``a_k = <grad f, v_k>`` and ``g_k(t)`` at ``t = (eps, -eps, eps/r, -eps/r, 0)``."""
  steps = jnp.asarray([1.0, -1.0, 1.0 / STEP_RATIO, -1.0 / STEP_RATIO, 0.0]) * epsilon

  @jax.jit
  def run(theta, vs):
    analytic = vs @ jax.grad(f)(theta)
    # One direction at a time, its 5 steps vmapped: vmapping over directions too
    # would batch the *weights*, which XLA:CPU's convolutions run many times
    # slower (a 76-direction ResNet check: 33 s with 32 directions at once, 1.5 s one by one).
    values = jax.lax.map(lambda v: jax.vmap(lambda t: f(theta + t * v))(steps), vs)
    return analytic, values

  analytic, values = run(theta, jnp.asarray(directions, jnp.float64))
  return np.asarray(analytic, np.float64), np.asarray(values, np.float64)


def _classify(analytic: np.ndarray, values: np.ndarray, epsilon: float, rtol: float,
              atol: float) -> tuple[np.ndarray, np.ndarray]:
  """Central differences ``n_k`` and the kink mask, by rules (A) and (B) of the module docstring."""
  r, small = STEP_RATIO, epsilon / STEP_RATIO
  g_p, g_m, s_p, s_m, g_0 = values.T
  a = analytic
  numeric = (g_p - g_m) / (2 * epsilon)
  forward = ((g_p - g_0) / epsilon, (s_p - g_0) / small)  # F at eps, eps / r
  backward = ((g_0 - g_m) / epsilon, (g_0 - s_m) / small)  # B at eps, eps / r
  gap, gap_small = forward[0] - backward[0], forward[1] - backward[1]  # J at eps, eps / r
  tol = atol + rtol * np.maximum(np.abs(numeric), np.abs(a))
  miss = np.abs(numeric - a)
  eta = 4 * ROUNDING_ULPS * 2.0**-52 * np.max(np.abs(values), axis=1) / small
  persistent = np.abs(gap_small) >= np.maximum.reduce([np.abs(gap) / np.sqrt(r), miss, eta])
  one_sided = np.zeros_like(persistent)
  for big, sml in (forward, backward):
    one_sided |= np.abs(sml - a) <= tol + 2 * np.abs(big - sml) / (r - 1) + eta / 2
  one_sided &= np.abs(gap) >= np.maximum(miss, eta / r)
  kink = (miss > tol) & (persistent | one_sided)
  return numeric, kink


def _tensor_check(a: np.ndarray, n: np.ndarray, kink: np.ndarray, all_coordinates: bool,
                  rtol: float, atol: float) -> TensorCheck:
  a, n = a[~kink], n[~kink]
  diff = float(np.linalg.norm(n - a))
  scale = float(max(np.linalg.norm(n), np.linalg.norm(a))) if a.size else 0.0
  error = diff / max(scale, atol / rtol)
  passed = bool(np.isfinite(diff) and diff <= atol + rtol * scale)
  return TensorCheck(error, diff, scale, int(kink.size), all_coordinates, passed,
                     int(kink.sum()))


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
    model: Any = None,
) -> dict[str, TensorCheck]:
  r"""Checks ``jax.grad(loss_fn)`` against float64 finite differences, per tensor.

  Args:
    loss_fn: ``params -> scalar``; anything else it needs (inputs, targets,
      BatchNorm state) is closed over.
    params: pytree of parameters; floating leaves are cast to float64 (Flax
      keeps ``float32`` parameters under x64 unless told otherwise), so the
      model computes in float64 as long as its inputs and its computation
      dtype are float64.
    key: PRNG key for the random directions.
    num_directions: random directions per tensor with more than
      ``max_coordinates`` entries.
    max_coordinates: tensors up to this size are checked along every coordinate.
    epsilon: finite-difference step (the kink test also uses ``epsilon / 10``).
    rtol, atol: pass criterion, see the module docstring.
    model: the Flax module behind ``loss_fn``, if any: only read to name its own
      precision knob (``dtype`` / ``param_dtype``) when the loss is not float64.

  Returns:
    ``{tensor path: TensorCheck}`` in natural order of the paths; directions at a
    kink (module docstring) are counted in ``kinks`` and left out of the verdict.

  Raises:
    ValueError: if float64 is not enabled (``with jax.enable_x64(True):``), if
      the loss comes out in another dtype than float64 (the message says which
      field of ``model`` to set), for a non-positive ``epsilon`` /
      ``num_directions``, or if ``params`` has no floating leaf.

  >>> import jax, jax.numpy as jnp
  >>> with jax.enable_x64(True):
  ...   checks = gradient_check(lambda p: jnp.sum(jax.nn.relu(p["w"])),
  ...                           {"w": jnp.array([-1.0, 0.0, 2.0])}, key=jax.random.key(0))
  >>> checks["w"].passed, checks["w"].kinks, checks["w"].num_directions
  (True, 1, 3)
  """
  _check_arguments(epsilon, num_directions)
  params = jax.tree.map(lambda a: jnp.asarray(a).astype(jnp.float64) if _is_float(a)
                        else jnp.asarray(a), params)
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  if not any(_is_float(leaf) for _, leaf in leaves):
    raise ValueError("params has no floating-point leaf to check")
  directions, owner = _directions(leaves, flat.size, key, num_directions, max_coordinates)

  f = lambda theta: loss_fn(unravel(theta))  # noqa: E731
  loss_dtype = jax.eval_shape(f, flat).dtype
  if loss_dtype != jnp.float64:
    raise ValueError(
        f"the loss is computed in {loss_dtype}, not float64, although the parameters were cast "
        f"to float64: the model casts internally; {precision_advice(model)}")

  analytic, values = _evaluate(f, flat, directions, epsilon)
  numeric, kink = _classify(analytic, values, epsilon, rtol, atol)
  out = {}
  for i, (path, leaf) in enumerate(leaves):
    rows = owner == i
    if rows.any():
      out[_path_name(path)] = _tensor_check(analytic[rows], numeric[rows], kink[rows],
                                            int(np.size(leaf)) <= max_coordinates, rtol, atol)
  return dict(sorted(out.items(), key=lambda kv: _natural_key(kv[0])))


def all_passed(checks: dict[str, TensorCheck]) -> bool:
  """True when every tensor passed (on its checked directions)."""
  return all(c.passed for c in checks.values())


def max_error(checks: dict[str, TensorCheck]) -> float:
  """The largest relative error over the tensors (checked directions only)."""
  return max(c.error for c in checks.values())


def num_kinks(checks: dict[str, TensorCheck]) -> int:
  """Directions reported as kinks, not checked, over all tensors."""
  return sum(c.kinks for c in checks.values())
