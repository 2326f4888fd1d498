r"""Where vanishing and exploding gradients come from: four of the tutorials' claims, measured.

1. ReLU paths (:func:`relu_paths`). ReLU's derivative is exactly 0 or 1, so
   the product of derivatives along a path through L layers is 0 or 1: it
   cannot shrink geometrically. In a He-initialised net a path survives with
   probability :math:`2^{-L}` and the squared backprop signal keeps its size,
   :math:`\chi_1 = \sigma_w^2/2 = 1` per layer (He et al. 2015).
2. Softmax saturation (:func:`softmax_saturation`). The Jacobian
   :math:`J = \mathrm{diag}(p) - pp^\top` obeys
   :math:`p_1(1-p_1) \le \|J\|_2 \le 2(1-p_1)`, with
   :math:`1 - p_1 \approx \sum_{j>1} e^{-(z_1 - z_j)}` exponentially small in the logit gap.
3. Exploding from the weights (:func:`exploding_from_weights`). Each layer
   multiplies the squared signal by :math:`\chi_1 = \sigma_w^2\,\mathbb E[\phi'(h)^2]`
   (Poole et al. 2016; Schoenholz et al. 2017), > 1 for tanh at
   :math:`\sigma_w^2 = 4` and linear at 1.2 although :math:`\max|\phi'| = 1`.
4. Clipping a vanishing gradient (:func:`clipping_a_vanishing_gradient`).
   Clipping only shrinks: by norm to :math:`\min(\|g\|, c)`, by value entry by
   entry, so a vanishing gradient leaves either unchanged (Pascanu et al. 2013).

Example:
  >>> import jax
  >>> from jaxgrad.studies import gradient_sources as study
  >>> paths = study.relu_paths(jax.random.key(0), width=16, depths=(1, 2), paths=100, seeds=2)
  >>> sorted(set(paths["product_values"].tolist()))
  [0.0, 1.0]
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgrad import activations, theory

EXPLODING = (("tanh", 4.0, 0.05), ("linear", 1.2, 0.0))  # (activation, sigma_w2, sigma_b2)


def backprop_signal(key: jax.Array, activation: str, sigma_w2: float, sigma_b2: float,
                    width: int, depth: int) -> tuple[jax.Array, jax.Array]:
  r"""Masks :math:`\phi'(z_l)` and squared signals :math:`\|\partial L/\partial h_{l-1}\|^2`.

  The net :math:`h_l = \phi(W_l h_{l-1} + b_l)`, :math:`W_{ij} \sim N(0, \sigma_w^2/N)`,
  :math:`b_i \sim N(0, \sigma_b^2)`, starts at its fixed point (input
  :math:`\sim N(0, q^*)`, :math:`q^*` from :func:`jaxgrad.theory.q_star` where
  finite, else 1); the loss is a random projection of the output.

  Args:
    key: draws the input, the weights, the biases and the projection.
    activation: a name of :mod:`jaxgrad.activations`.
    sigma_w2: weight variance times fan-in.
    sigma_b2: bias variance.
    width: N.
    depth: L, the number of layers.

  Returns:
    ``slopes`` (depth, width) and ``signal`` (depth,), layer 1 (input side) first.
  """
  phi, dphi = activations.get(activation), activations.derivative(activation)
  q = theory.q_star(activation, sigma_w2, sigma_b2)
  q = jnp.where(jnp.isfinite(q) & (q > 0), q, 1.0)
  k_x, k_w, k_b, k_out = jax.random.split(key, 4)
  weights = jax.random.normal(k_w, (depth, width, width)) * jnp.sqrt(sigma_w2 / width)
  biases = jax.random.normal(k_b, (depth, width)) * jnp.sqrt(sigma_b2)
  h = jax.random.normal(k_x, (width,)) * jnp.sqrt(q)

  def forward(h, layer):
    w, b = layer
    z = w @ h + b
    return phi(z), dphi(z)

  _, slopes = jax.lax.scan(forward, h, (weights, biases))

  def backward(delta, layer):
    w, slope = layer
    delta = w.T @ (delta * slope)  # dL/dh_{l-1} from dL/dh_l
    return delta, jnp.sum(delta**2)

  delta = jax.random.normal(k_out, (width,))
  _, signal = jax.lax.scan(backward, delta, (weights, slopes), reverse=True)
  return slopes, signal


def relu_paths(key: jax.Array, *, width: int, depths: tuple[int, ...], paths: int,
               seeds: int) -> dict:
  r"""Products of ReLU' along random paths (a unit per layer) of He-ReLU nets; the signal's factor.

  Args:
    key: draws the nets and the paths.
    width: N.
    depths: the path lengths L (increasing); the nets have ``max(depths)`` layers.
    paths: random paths per net.
    seeds: nets.

  Returns:
    ``depths``; ``product_values``: the distinct products met (0 and 1);
    ``fraction_one`` at each depth against ``fraction_one_theory``
    :math:`2^{-L}`; ``signal_factor``: the mean per-layer ratio of squared
    signals, against ``chi1`` = 1.
  """
  depth = max(depths)
  nets = jax.random.split(key, seeds)
  slopes, signal = jax.vmap(lambda k: backprop_signal(k, "relu", 2.0, 0.0, width, depth))(nets)
  units = jax.random.randint(jax.random.fold_in(key, 1), (seeds, paths, depth), 0, width)
  along = jnp.take_along_axis(slopes[:, None, :, :], units[..., None], axis=-1)[..., 0]
  products = jnp.cumprod(along, axis=-1)  # (seeds, paths, depth): the first l layers' product
  values = np.unique(np.asarray(products))
  alive = np.asarray(products[..., jnp.asarray(depths) - 1]).mean(axis=(0, 1))
  factor = float(np.mean(np.asarray(signal[:, :-1] / signal[:, 1:])))
  return {"depths": depths, "product_values": values, "fraction_one": alive,
          "fraction_one_theory": 0.5 ** np.asarray(depths),
          "signal_factor": factor, "chi1": float(theory.chi1("relu", 2.0, 0.0))}


def _softmax_jacobian_norm(z: jax.Array) -> tuple[jax.Array, ...]:
  """||J||_2, the gap z_1 - z_2, p_1 and 1 - p_1 (summed, no cancellation) of one logit vector."""
  (top, second), (first, _) = jax.lax.top_k(z, 2)
  p = jax.nn.softmax(z)
  rest = jnp.sum(jnp.where(jnp.arange(z.shape[0]) == first, 0.0, p))
  jacobian = jax.jacfwd(jax.nn.softmax)(z)
  return jnp.linalg.norm(jacobian, 2), top - second, p[first], rest


def softmax_saturation(key: jax.Array, *, classes: int, logit_scales: int, seeds: int) -> dict:
  r"""Spectral norm of the softmax Jacobian against the logit gap, with its two bounds.

  Args:
    key: draws ``seeds`` standard normal logit vectors of ``classes`` entries.
    classes: K.
    logit_scales: how many scales from 0.1 to 100 (log-spaced) multiply each vector.
    seeds: logit vectors.

  Returns:
    ``scales``; per (seed, scale): ``jacobian_norm``, ``logit_gap``,
    ``lower_bound`` :math:`p_1(1-p_1)` and ``upper_bound`` :math:`2(1-p_1)`;
    ``log_norm_slope``: the slope of :math:`\ln\|J\|_2` against the gap where
    the gap exceeds 5 (and the norm is not 0 in float32), about -1.
  """
  scales = np.logspace(-1, 2, logit_scales)
  logits = jax.random.normal(key, (seeds, classes))
  norms, gaps, p_max, rest = (np.asarray(a) for a in jax.vmap(jax.vmap(_softmax_jacobian_norm))(
      jnp.asarray(scales, jnp.float32)[None, :, None] * logits[:, None, :]))
  gap, log_norm = gaps[norms > 0], np.log(norms[norms > 0])
  large = gap > 5
  slope = float(np.polyfit(gap[large], log_norm[large], 1)[0]) if large.sum() > 1 else np.nan
  return {"scales": scales, "jacobian_norm": norms, "logit_gap": gaps,
          "lower_bound": p_max * rest, "upper_bound": 2 * rest, "log_norm_slope": slope}


def exploding_from_weights(key: jax.Array, *, width: int, depth: int, seeds: int,
                           cases: tuple[tuple[str, float, float], ...] = EXPLODING) -> dict:
  r"""Measured per-layer growth of the squared signal against :math:`\chi_1`, per case.

  The growth is the mean over seeds and layers of
  :math:`\|\partial L/\partial h_{l-1}\|^2 / \|\partial L/\partial h_l\|^2`, whose
  expectation is :math:`\chi_1` at infinite width.

  Args:
    key: case i's nets are drawn from ``fold_in(key, i)``.
    width: N.
    depth: layers per net.
    seeds: nets per case.
    cases: ``(activation, sigma_w2, sigma_b2)`` triples.

  Returns:
    ``"<activation> sigma_w2=<v>"`` -> ``activation``, ``sigma_w2``,
    ``sigma_b2``, ``signal`` (seeds, depth; input side first), ``growth``,
    ``max_derivative`` (:math:`\max|\phi'|` on [-10, 10]) and ``chi1``.
  """
  out = {}
  for activation, sigma_w2, sigma_b2 in cases:
    nets = jax.random.split(jax.random.fold_in(key, len(out)), seeds)
    _, signal = jax.vmap(lambda k: backprop_signal(k, activation, sigma_w2, sigma_b2,
                                                   width, depth))(nets)
    signal = np.asarray(signal)
    growth = float(np.mean(signal[:, :-1] / signal[:, 1:]))
    derivative_max = float(jnp.max(jnp.abs(activations.derivative(activation)(
        jnp.linspace(-10.0, 10.0, 20_001)))))
    out[f"{activation} sigma_w2={sigma_w2:g}"] = {
        "activation": activation, "sigma_w2": sigma_w2, "sigma_b2": sigma_b2,
        "signal": signal, "growth": growth, "max_derivative": derivative_max,
        "chi1": float(theory.chi1(activation, sigma_w2, sigma_b2))}
  return out


def clipping_a_vanishing_gradient(key: jax.Array, *, width: int, clip_norm: float,
                                  clip_value: float) -> dict:
  r"""Norms before and after clipping by norm and by value, for gradients from 1e-12 to 1e2.

  Args:
    key: draws the gradients' common direction.
    width: entries per gradient.
    clip_norm: ``optax.clip_by_global_norm``'s threshold c.
    clip_value: ``optax.clip``'s threshold.

  Returns:
    ``norm_before`` (15 norms), ``norm_after_clip_norm``,
    ``norm_after_clip_value`` and ``expected_clip_norm`` :math:`\min(\|g\|, c)`.
  """
  direction = jax.random.normal(key, (width,))
  norms = np.logspace(-12, 2, 15)
  grads = jnp.asarray(norms)[:, None] * (direction / jnp.linalg.norm(direction))[None, :]
  by_norm, by_value = optax.clip_by_global_norm(clip_norm), optax.clip(clip_value)
  after = {name: np.asarray(jax.jit(jax.vmap(
               lambda g, tx=tx: optax.tree.norm(tx.update(g, tx.init(g))[0])))(grads))
           for name, tx in (("clip_norm", by_norm), ("clip_value", by_value))}
  return {"norm_before": norms, "norm_after_clip_norm": after["clip_norm"],
          "norm_after_clip_value": after["clip_value"],
          "expected_clip_norm": np.minimum(norms, clip_norm)}
