r"""Log singular values of very deep Jacobian products, by repeated QR.

For :math:`J = J_L \cdots J_1`, :math:`J_l = \partial h_l / \partial h_{l-1}`,
the singular values span hundreds of orders of magnitude at depth 10,000;
forming :math:`J` overflows in any precision. Instead (Benettin et al. 1980;
the standard algorithm for Lyapunov spectra) a frame :math:`Q_0` is pushed
through the layers and re-orthonormalised after each one,

.. math::

   J_l Q_{l-1} = Q_l R_l \quad\Rightarrow\quad J Q_0 = Q_L\, R_L \cdots R_1,

so that :math:`\sum_l \ln |\mathrm{diag}\, R_l|` holds the logs of the
diagonal of the triangular factor :math:`R = R_L \cdots R_1` of :math:`J Q_0`;
their values divided by L converge to the Lyapunov exponents. The product
:math:`R` itself is tracked too, row-scaled by those sums so that nothing
overflows, and its singular values are read off by zero-shift QR steps on
that small :math:`k \times k` matrix (:func:`_zero_shift_qr`), which keep
float32's relative accuracy for each :math:`\sigma_i` however far below
:math:`\sigma_{\max}` it lies. With a full frame (k = n) :math:`J = Q_L R
Q_0^\top` exactly, so one sweep gives the singular values. With k < n the
frame must first find the top-k subspace, so the sweep alternates direction:
a backward sweep through :math:`J_l^\top` starting from the forward sweep's
final frame :math:`Q_L` is one step of subspace iteration on
:math:`J J^\top`, which converges like :math:`(\sigma_{k+1}/\sigma_k)^2`
per pair of sweeps: fast for the exponentially separated spectra of deep
products. ``J_l`` is never formed either: each step applies ``jax.jvp``
(forward) or ``jax.vjp`` (backward) to the k columns of the frame. Memory:
the L layer inputs (``L x n``) and one ``n x k`` frame.
"""

from collections.abc import Callable
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

LayerFn = Callable[[Any, jax.Array], jax.Array]
# Zero-shift QR steps on the tracked k x k product. Off-diagonal entries shrink by
# sigma_j / sigma_i per step, so 64 steps settle every pair whose ln s are more than
# 0.25 apart to float32 precision (e^-16), 0.56 to float64's; closer pairs near the
# top come from the SVD instead (see _combine).
QR_STEPS = 64


def _qr_log_diag(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  q, r = jnp.linalg.qr(z)
  d = jnp.diagonal(r)
  return q, r, jnp.log(jnp.abs(d))


def _row_scaled(r: jax.Array, logs: jax.Array, limit: float) -> jax.Array:
  r"""Upper-triangular ``r`` as a factor of a row-scaled product :math:`\mathrm{diag}(e^\ell) N`.

  Returns :math:`(\mathrm{diag}(|r_{ii}|)^{-1} r) \odot e^{\min(\ell_j - \ell_i,
  \mathrm{limit})}` on and above the diagonal, 0 below it and wherever the
  grade is not finite (:math:`e^{-\infty} = 0`: a direction already exactly
  singular). A zero :math:`r_{ii}` (an exactly singular layer, dead ReLU
  units) is divided by 1.
  """
  d = jnp.abs(jnp.diagonal(r))
  d = jnp.where(d > 0, d, 1.0)
  grade = jnp.minimum(logs[None, :] - logs[:, None], limit)
  upper = jnp.triu(jnp.ones(r.shape, bool))
  return jnp.where(upper & jnp.isfinite(grade), r / d[:, None] * jnp.exp(grade), 0.0)


def _sorted_descending(logs: jax.Array, n: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Reorders the row-scaled product by ``logs``, descending; its singular values stay."""
  order = jnp.argsort(-logs)
  return logs[order], n[order][:, order]


def _sweep(apply_j: Callable, frame: jax.Array, xs: Any, *, reverse: bool, track: bool):
  r"""One QR sweep; ``apply_j(x, frame) -> (J_l frame, carry_out)`` for layer input ``x``.

  With ``track``, also the triangular product :math:`P = R_L \cdots R_1`, held
  row-scaled as :math:`P = \mathrm{diag}(e^{\ell}) N` with :math:`\ell` the
  summed log-diagonal: the update :math:`N \leftarrow (\mathrm{diag}(R)^{-1} R)
  \odot e^{\ell_j - \ell_i} N` has entries of order :math:`\sigma_j/\sigma_i
  \le 1` above the diagonal (ones on it), so it neither overflows nor underflows
  where it matters.
  """
  k = frame.shape[1]
  dtype = frame.dtype
  limit = 0.25 * math.log(float(jnp.finfo(dtype).max))

  def step(carry, x):
    q, logs, lost, n = carry
    z, out = apply_j(x, q)
    q, r, log_r = _qr_log_diag(z)
    if track:
      n = _row_scaled(r, logs, limit) @ n
    logs, lost = _compensated_add(logs, lost, log_r)
    return (q, logs, lost, n), out

  zeros = jnp.zeros((k,), dtype)
  init = (frame, zeros, zeros, jnp.eye(k, dtype=dtype))
  (q, logs, _, n), out = jax.lax.scan(step, init, xs, reverse=reverse)
  return (q, logs, n), out


def _compensated_add(total: jax.Array, lost: jax.Array, term: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
  r"""Kahan summation step: ``total + term``, carrying the rounding error in ``lost``.

  A plain float32 running sum of L = 10,000 log-diagonals of size ~1 drifts by
  up to :math:`L \cdot \mathrm{ulp}(\sum)`, about 1e-2 at sums of ~100;
  compensated, the error stays at a few ulp of the sum. Infinite terms (an
  exactly singular layer) pass through as -inf.
  """
  y = term - lost
  t = total + y
  lost = jnp.where(jnp.isfinite(t), (t - total) - y, 0.0)
  return t, lost


def _zero_shift_qr(logs: jax.Array, n: jax.Array, steps: int) -> tuple[jax.Array, jax.Array]:
  r"""Zero-shift QR steps on the k x k product :math:`P = \mathrm{diag}(e^\ell) N`, never forming it.

  One step factors :math:`P^\top = \tilde Q \tilde R` and continues with
  :math:`\tilde R`, which has the singular values of :math:`P` and a diagonal
  closer to them (off-diagonal entries shrink by :math:`\sigma_j/\sigma_i`).
  Since :math:`P^\top = N^\top \mathrm{diag}(e^\ell)` and Householder QR
  commutes with column scaling, :math:`\tilde R = T\, \mathrm{diag}(e^\ell)`
  with :math:`N^\top = \tilde Q T`: only the well-scaled :math:`N` is
  factored, so each column of :math:`\tilde R` keeps float32's relative
  accuracy however small :math:`e^{\ell_j}` is (an SVD of :math:`P` resolves
  only :math:`\sigma_i > \epsilon\,\sigma_{\max}`). Rows are kept sorted by
  :math:`\ell`, descending, so the rescaled upper triangle
  :math:`T_{ij} e^{\ell_j - \ell_i} / |T_{ii}|` never grows.
  """
  def step(carry, _):
    logs, n = _sorted_descending(*carry)
    _, t, log_t = _qr_log_diag(n.T)
    # Sorted, so l_j - l_i <= 0 above the diagonal: the cap 0 never binds.
    return (logs + log_t, _row_scaled(t, logs, 0.0)), None

  (logs, n), _ = jax.lax.scan(step, (logs, n), None, length=steps)
  return logs, n


def _combine(logs: jax.Array, n: jax.Array) -> jax.Array:
  r"""Per index, the better of two estimates of :math:`\ln\sigma_i` of :math:`P = \mathrm{diag}(e^\ell) N`.

  After :func:`_zero_shift_qr`, the diagonal :math:`\ell_i` errs by about the
  size of the off-diagonal entries left in row and column i of N (relative
  perturbation theory: :math:`P = \mathrm{diag}(e^\ell)(I + E)` moves each
  :math:`\ln\sigma_i` by at most :math:`\|E\|`); the SVD of
  :math:`\mathrm{diag}(e^{\ell - \max\ell}) N` by about
  :math:`\epsilon\,\sigma_{\max}/\sigma_i`. Clusters of nearly equal singular
  values (near isometry), where the QR steps converge slowly, come from the
  SVD; the graded tail from the diagonal.
  """
  logs, n = _sorted_descending(logs, n)
  top = logs[0]
  finite = jnp.isfinite(logs)
  scale = jnp.where(finite, jnp.exp(logs - top), 0.0)
  log_svd = jnp.log(jnp.linalg.svd(scale[:, None] * jnp.where(finite[:, None], n, 0.0),
                                   compute_uv=False)) + top
  tiny = jnp.finfo(logs.dtype).tiny
  off = jnp.where(jnp.eye(n.shape[0], dtype=bool), 0.0, jnp.abs(n))
  log_err_diag = jnp.log(jnp.maximum(jnp.maximum(off.max(0), off.max(1)), tiny))
  log_err_svd = jnp.log(jnp.finfo(logs.dtype).eps) + (top - logs)
  use_svd = finite & (log_err_svd < log_err_diag) & jnp.all(jnp.isfinite(n))
  return jnp.where(use_svd, log_svd, logs)


def log_singular_values(
    layer_fn: LayerFn, params: Any, h0: jax.Array, *, k: int | None = None,
    sweeps: int | None = None,
) -> jax.Array:
  r"""The k largest :math:`\ln\sigma_i` of :math:`\partial h_L/\partial h_0`, descending.

  Args:
    layer_fn: ``(p, h) -> h_next``, one layer, mapping a vector of width n to
      a vector of width n (e.g. ``lambda p, h: DenseBlock(n, "tanh").apply(
      {"params": p}, h)``, or one that draws its weights from a PRNG key).
    params: pytree whose leaves carry a leading layer axis of length L (the
      ``layers`` subtree of a scanned stack, or ``jax.random.split(key, L)``).
    h0: the input, shape ``(n,)``; its dtype sets the precision (float32 or
      float64).
    k: how many singular values (default n).
    sweeps: QR sweeps through the layers, alternating forward and backward.
      Default: 1 for a full frame (k = n), which represents the product
      exactly; 2 for k < n, whose frame must first turn towards the top-k
      singular subspace (error of order :math:`(\sigma_{k+1}/\sigma_k)^2`).

  Returns:
    ``(k,)`` log singular values, descending; ``-inf`` for an exact 0 (a dead
    ReLU unit). The Lyapunov exponents are this divided by L.

  Raises:
    ValueError: for ``sweeps < 1``, ``k`` outside ``[1, n]``, ``h0`` not a
      vector, or ``params`` without one leading layer axis shared by every
      leaf on which ``layer_fn`` maps ``(n,)`` to ``(n,)`` (unstacked
      parameters, for instance, fail here, not inside the scan).
  """
  if h0.ndim != 1:
    raise ValueError(f"h0 must be one example vector of shape (n,), got shape {h0.shape}")
  _check_layers(layer_fn, params, h0)
  n = h0.shape[0]
  k = n if k is None else k
  if not 1 <= k <= n:
    raise ValueError(f"k must be in [1, {n}], got {k}")
  sweeps = (1 if k == n else 2) if sweeps is None else sweeps
  if sweeps < 1:
    raise ValueError(f"sweeps must be >= 1, got {sweeps}")
  return _log_singular_values(layer_fn, params, h0, k, sweeps)


def _check_layers(layer_fn: LayerFn, params: Any, h0: jax.Array) -> None:
  """Raises ``ValueError`` unless ``params`` is a stack of layers on which ``layer_fn`` keeps ``h0``'s shape."""
  shapes = jax.tree.map(jnp.shape, params)
  leaves = jax.tree.leaves(params)
  lengths = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
  if not leaves or None in lengths or len(lengths) != 1:
    raise ValueError("params must carry one leading layer axis (length L) on every leaf, as a "
                     f"scanned stack's 'layers' subtree does; got leaf shapes {shapes}")
  one_layer = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), params)
  try:
    out = jax.eval_shape(layer_fn, one_layer, h0)
  except Exception as e:  # noqa: BLE001  (any failure of the user's function, reported with shapes)
    raise ValueError(f"layer_fn fails on one layer of params (leaf shapes without the layer axis: "
                     f"{jax.tree.map(lambda s: s.shape, one_layer)}) and h0 of shape {h0.shape}: "
                     f"{type(e).__name__}: {e}. Are params stacked, with a leading layer axis?"
                     ) from e
  if getattr(out, "shape", None) != h0.shape:
    raise ValueError(f"layer_fn must map h0's shape {h0.shape} to itself, got "
                     f"{jax.tree.map(lambda s: s.shape, out)}")


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _log_singular_values(layer_fn: LayerFn, params: Any, h0: jax.Array, k: int,
                         sweeps: int) -> jax.Array:
  frame = jnp.eye(h0.shape[0], k, dtype=h0.dtype)

  def layer_fn_at(p, h):
    return lambda x: layer_fn(p, x)

  def apply_forward(x, q):
    p, h = x
    return jax.vmap(lambda v: jax.jvp(layer_fn_at(p, h), (h,), (v,))[1],
                    in_axes=1, out_axes=1)(q), None

  def apply_backward(x, u):
    p, h = x
    _, vjp = jax.vjp(layer_fn_at(p, h), h)
    return jax.vmap(lambda v: vjp(v)[0], in_axes=1, out_axes=1)(u), None

  # The inputs h_0..h_{L-1} of every layer, once (one forward pass).
  def propagate(h, p):
    return layer_fn(p, h), h

  _, inputs = jax.lax.scan(propagate, h0, params)
  for sweep in range(sweeps):
    backward = sweep % 2 == 1
    (frame, logs, n), _ = _sweep(apply_backward if backward else apply_forward, frame,
                                 (params, inputs), reverse=backward, track=sweep == sweeps - 1)
  logs, n = _zero_shift_qr(logs, n, QR_STEPS)
  return _combine(logs, n)
