r"""Residual MLP vs its plain twin: backprop signal, Jacobian spectrum and stream at init.

A residual block's Jacobian is :math:`I + \partial F/\partial x` (He et al.
2016): the identity path keeps the gradient from vanishing, but without
normalization the product :math:`\prod_k (I + \partial F_k/\partial x)` makes
it grow by :math:`1 + \chi_F` per block (3 for He-init ReLU), as fast as the
stream's second moment :math:`q_k`; LayerNorm in the branch turns that into
polynomial growth (Yang & Schoenholz 2017, "Mean field residual networks").

The study draws :class:`jaxgrad.models.ResidualMLP` with ``blocks`` blocks and
:class:`jaxgrad.models.DeepMLP` with the same number of Dense layers
(``2 * blocks + 2``), measures them at initialization on random data with an MSE
loss (:func:`measure`), and predicts the same quantities by mean-field theory
(:func:`predicted`).

Example:
  >>> from jaxgrad.studies import residual
  >>> m = residual.measure("residual", "relu", "none", width=8, blocks=3, batch=4, seeds=2)
  >>> m["signal"].shape, m["s"].shape
  ((2, 5), (2, 3, 8))
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import activations, diagnostics, probe, theory
from jaxgrad.models import DeepMLP, DenseStack, ResidualBlock, ResidualMLP, Stack
from jaxgrad.sweep import sweep

ARCHS = ("residual", "plain")
# Each activation with its customary init, and that init's sigma_w^2 at fan_in = fan_out.
KERNEL_INIT = {"relu": ("he_normal", 2.0), "tanh": ("xavier_normal", 1.0)}


def model(arch: str, activation: str, norm: str, *, width: int, blocks: int,
          dtype=jnp.float32) -> ResidualMLP | DeepMLP:
  """The residual net of ``blocks`` blocks, or its plain twin of ``2 * blocks + 2`` Dense layers.

  Args:
    arch: ``"residual"`` or ``"plain"``.
    activation: ``"relu"`` (He-normal kernels) or ``"tanh"`` (Xavier-normal).
    norm: ``"none"`` or ``"layer"`` (LayerNorm in every branch / after every hidden Dense).
    width: every layer's width N (input and output included).
    blocks: residual blocks B.
    dtype: the parameters' dtype.
  """
  common = dict(width=width, out_features=width, activation=activation,
                kernel_init=KERNEL_INIT[activation][0], bias_init="zeros",
                norm=None if norm == "none" else norm, param_dtype=dtype)
  if arch == "residual":
    return ResidualMLP(num_blocks=blocks, **common)
  return DeepMLP(depth=2 * blocks + 2, **common)


def stack(arch: str, activation: str, norm: str, *, width: int, blocks: int,
          dtype=jnp.float32) -> Stack | DenseStack:
  """The :func:`model`'s scanned ``hidden`` stack on its own (same parameters, ``params['hidden']``)."""
  common = dict(activation=activation, kernel_init=KERNEL_INIT[activation][0], bias_init="zeros",
                norm=None if norm == "none" else norm, param_dtype=dtype)
  if arch == "residual":
    return Stack(functools.partial(ResidualBlock, **common), blocks)
  return DenseStack(2 * blocks, width, **common)


def _per_block(hs: jax.Array, arch: str) -> jax.Array:
  """Stack outputs after each block (the plain stack's every second layer)."""
  return hs if arch == "residual" else hs[1::2]


def _draw(arch: str, activation: str, norm: str, *, width: int, blocks: int, batch: int,
          dtype):
  """``one(key) -> (signal, q, s)`` for one random network and batch (see :func:`measure`)."""
  net = model(arch, activation, norm, width=width, blocks=blocks, dtype=dtype)
  hidden = stack(arch, activation, norm, width=width, blocks=blocks, dtype=dtype)
  capture = lambda mdl, method: mdl.name in ("first", "hidden") and method == "__call__"  # noqa: E731
  layout = probe.layout(net, jax.ShapeDtypeStruct((batch, width), dtype))

  def one(key):
    k_init, k_x, k_t = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (batch, width), dtype)
    target = jax.random.normal(k_t, (batch, width), dtype)
    variables = net.init(k_init, x)
    loss = lambda v: jnp.mean(jnp.sum((net.apply(v, x) - target) ** 2, -1))  # noqa: E731
    signal = diagnostics.backprop_signal(loss, variables, layout=layout).stack()
    _, state = net.apply({"params": variables["params"]}, x, capture_intermediates=capture,
                         mutable=["intermediates"])
    (h0,) = state["intermediates"]["first"]["__call__"]
    ((_, hs),) = state["intermediates"]["hidden"]["__call__"]
    q = jnp.mean(_per_block(hs, arch) ** 2, axis=(1, 2))
    stack_params = {"params": variables["params"]["hidden"]}
    every_block = lambda h: _per_block(hidden.apply(stack_params, h[None])[1], arch).reshape(-1)  # noqa: E731
    jac = diagnostics.jacobian(every_block, h0[0]).reshape(blocks, width, width)
    return signal / signal[-1], q, jnp.linalg.svd(jac, compute_uv=False)

  return one


def measure(arch: str, activation: str, norm: str, *, width: int, blocks: int, batch: int,
            seeds: int, seed: int = 0, float64: bool = True) -> dict[str, np.ndarray]:
  r"""One case at initialization, all seeds in one jitted vmap.

  Each seed draws a network (:func:`model`), inputs and targets
  :math:`\mathcal N(0, 1)` of shape ``(batch, width)``, and the MSE loss
  :math:`L = \overline{\|f(x) - t\|^2}`.

  Args:
    arch, activation, norm, width, blocks: the network (:func:`model`).
    batch: examples in the loss.
    seeds: random networks; seed ``s`` uses ``jax.random.split(key(seed), seeds)[s]``.
    seed: the root seed.
    float64: compute in float64 (the unnormalised residual net's activations
      reach :math:`\sim 3^B`, beyond float32 at B > 80).

  Returns:
    Per-seed arrays: ``signal`` (seeds, entries), :math:`\|dL/dh\| / \|dL/dy\|`
    for every perturbed intermediate, input to output (:func:`positions`);
    ``q`` (seeds, B), the second moment of the representation after each
    block; ``s`` (seeds, B, N), the singular values of :math:`dh_k/dh_0`, the
    stack's Jacobian from its input :math:`h_0` (the first layer's output,
    one example) to its output after ``k + 1`` blocks; and their statistics
    (:func:`jaxgrad.diagnostics.spectrum_stats`) ``mean_sq``, ``var_sq``,
    ``max``, ``min``, ``condition``, (seeds, B), with ``min_resolved``
    (:math:`s_\min`, 0 where below the SVD's resolution) and
    ``unresolved_fraction`` (the fraction of unresolved singular values).
  """
  with jax.enable_x64(float64):
    one = _draw(arch, activation, norm, width=width, blocks=blocks, batch=batch,
                dtype=jnp.float64 if float64 else jnp.float32)
    signal, q, s = map(np.asarray, sweep(one, jax.random.split(jax.random.key(seed), seeds)))
    stats = {k: np.asarray(v) for k, v in diagnostics.spectrum_stats(s).items()}
  with np.errstate(all="ignore"):
    resolved = diagnostics.resolvable(s ** 2)  # (seeds, B, N); s is descending
  return {"signal": signal, "q": q, "s": s, **stats,
          "min_resolved": np.where(resolved[..., -1], s[..., -1], 0.0),
          "unresolved_fraction": 1 - resolved.mean(-1)}


def positions(arch: str, blocks: int) -> np.ndarray:
  """Dense layers from the input at each backprop-signal entry (input to output).

  Residual: ``first`` (layer 1), the input of block k (after layer 1 + 2k),
  ``last`` (2B + 2). Plain: the pre-activation of every layer 1 .. 2B + 2.
  """
  if arch == "residual":
    return np.concatenate([[1], 1 + 2 * np.arange(blocks), [2 * blocks + 2]])
  return np.arange(1, 2 * blocks + 3)


def block_signal(signal: np.ndarray, arch: str, blocks: int) -> np.ndarray:
  """The entries of ``signal`` (seeds, entries) at the residual block inputs, or the plain
  net's pre-activations at the same Dense-layer positions 1, 3, ..., 2B - 1: (seeds, B)."""
  blocks_at = 1 + 2 * np.arange(blocks)
  return signal[:, 1 + np.arange(blocks) if arch == "residual" else blocks_at - 1]


def growth_per_block(signal_sq_first: np.ndarray, signal_sq_last: np.ndarray,
                     steps: int) -> np.ndarray:
  r"""Geometric-mean growth per block, :math:`(\|g_\text{first}\|^2 / \|g_\text{last}\|^2)^{1/\text{steps}}`."""
  with np.errstate(all="ignore"):
    return (signal_sq_first / signal_sq_last) ** (1.0 / max(steps, 1))


def _residual_theory(activation: str, norm: str, blocks: int) -> dict:
  sigma_w2 = KERNEL_INIT[activation][1]
  q0 = (float(theory.gaussian_expectation(lambda u: activations.get(activation)(u) ** 2, 1.0))
        if norm == "layer" else float(theory.length_map(activation, q=sigma_w2, sigma_w2=1.0,
                                                        sigma_b2=0.0)))
  t = theory.residual_signal(activation, sigma_w2, sigma_w2, q0, blocks,
                             norm=None if norm == "none" else norm)
  return {"signal_at": positions("residual", blocks)[1:-1],
          "signal_sq": sigma_w2 * t["signal_sq"][:-1],
          "mean_sq": np.cumprod(t["chi"]),
          "q": t["q"][1:]}


def _plain_theory(activation: str, blocks: int) -> dict:
  sigma_w2 = KERNEL_INIT[activation][1]
  depth = 2 * blocks + 2
  q = np.asarray(theory.length_map_iterates(activation, sigma_w2, sigma_w2, 0.0, depth - 1))
  chi = sigma_w2 * np.asarray(theory.derivative_moment(activation, q))  # layer l = 1 .. depth-1
  signal_sq = np.append(np.cumprod(chi[::-1])[::-1], 1.0)  # at pre-activations 1 .. depth
  mean_sq = np.cumprod(chi[1:])[1::2]  # from h_1 to h after layers 3, 5, ..., 2B + 1
  phi = activations.get(activation)
  post = np.asarray(theory.gaussian_expectation(lambda u: phi(u) ** 2, q))[2::2]
  return {"signal_at": positions("plain", blocks), "signal_sq": signal_sq, "mean_sq": mean_sq,
          "q": post}


def predicted(arch: str, activation: str, norm: str, blocks: int) -> dict | None:
  r"""Mean-field predictions for one case (zero biases, the :data:`KERNEL_INIT` scales).

  Residual: :func:`jaxgrad.theory.residual_signal`; plain: the length map
  :math:`q_{l+1} = \sigma_w^2 \mathbb E[\phi(\sqrt{q_l} z)^2]` and
  :math:`\chi_l = \sigma_w^2 \mathbb E[\phi'(\sqrt{q_l} z)^2]` (Poole et al. 2016,
  Schoenholz et al. 2017).

  Returns:
    ``signal_at`` (the signal entries that theory covers), ``signal_sq``
    (squared signal over :math:`\|dL/dy\|^2` there), ``mean_sq`` (mean squared
    singular value of :math:`dh_k/dh_0` for every k), ``q`` (second moment of
    :math:`h_k`) and ``growth_per_block`` (:func:`growth_per_block` from the
    first to the last block); ``None`` for the plain net with LayerNorm (no
    closed form here).
  """
  if arch == "plain" and norm == "layer":
    return None
  t = _residual_theory(activation, norm, blocks) if arch == "residual" else _plain_theory(
      activation, blocks)
  blocks_at = 1 + 2 * np.arange(blocks)
  at = lambda layer: t["signal_sq"][np.searchsorted(t["signal_at"], layer)]  # noqa: E731
  return {**t, "growth_per_block": float(growth_per_block(at(1), at(blocks_at[-1]), blocks - 1))}
