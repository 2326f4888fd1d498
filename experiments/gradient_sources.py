r"""Where vanishing and exploding gradients come from: four of the tutorials' claims, measured.

1. "Sigmoid, tanh and ReLU vanish by exponential growth of the activation"
   (seed 001). ReLU's derivative is exactly 0 or 1, so the product of
   derivatives along a path through L layers is exactly 0 or 1: it cannot
   shrink geometrically. In a He-initialised ReLU net the fraction of paths
   whose product is 1 is :math:`2^{-L}` and the squared backprop signal keeps
   its size, :math:`\chi_1 = \sigma_w^2/2 = 1` per layer.
2. "Softmax / exponential activations have no vanishing" (seed 001). The
   softmax Jacobian :math:`J = \mathrm{diag}(p) - pp^\top` saturates: with
   :math:`p_1` the largest probability, :math:`p_1(1-p_1) \le \|J\|_2 \le
   2(1-p_1)`, and :math:`1 - p_1 \approx \sum_{j>1} e^{-(z_1 - z_j)}` is
   exponentially small in the logit gap.
3. "Exploding comes from the activation's exponential decay" (seed 001). It
   comes from the weights: a tanh net (:math:`|\tanh'| \le 1`) at
   :math:`\sigma_w^2 = 4` and a linear net (:math:`\phi' \equiv 1`) at
   :math:`\sigma_w^2 = 1.2` both explode, each layer multiplying the squared
   signal by mean-field theory's :math:`\chi_1 = \sigma_w^2\,\mathbb
   E[\phi'(h)^2]` (Poole et al. 2016; Schoenholz et al. 2017).
4. "Gradient clipping also cures vanishing gradients" (seed 004 §5). Clipping
   only shrinks: by norm the result has norm :math:`\min(\|g\|, c)`, by
   value every entry keeps its size below the threshold, so a vanishing
   gradient leaves either unchanged.

    python -m experiments.gradient_sources            # a few seconds
    python -m experiments.gradient_sources --quick

Writes ``config.json``, ``results.json`` (every plotted number) and
``sources.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgrad import activations, plotting, theory  # noqa: E402

EXPLODING = (("tanh", 4.0, 0.05), ("linear", 1.2, 0.0))  # (activation, sigma_w2, sigma_b2)


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  width: int = _config.setting(256, "network width N", at_least=2)
  depths: tuple[int, ...] = _config.setting((1, 2, 4, 8, 12, 16), "ReLU path lengths L",
                                            at_least=1, increasing=True)
  paths: int = _config.setting(100_000, "random paths per ReLU net", at_least=1)
  depth: int = _config.setting(30, "depth of the exploding nets", at_least=2)
  classes: int = _config.setting(10, "softmax classes K", at_least=2)
  logit_scales: int = _config.setting(40, "logit scales from 0.1 to 100", at_least=2)
  clip_norm: float = _config.setting(1.0, "clip_by_global_norm threshold", above=0)
  clip_value: float = _config.setting(0.1, "clip-by-value threshold", above=0)
  seeds: int = _config.setting(8, "networks (and logit draws) per case", at_least=1)
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(width=128, paths=20_000, seeds=4)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(width=16, depths=(1, 2, 3), paths=2_000, depth=4, classes=3, logit_scales=5,
               seeds=2)


def _backprop_signal(key, activation: str, sigma_w2: float, sigma_b2: float, width: int,
                     depth: int) -> tuple[jax.Array, jax.Array]:
  r"""Masks ``phi'(z_l)`` and the squared signals ``||dL/dh_l||^2``, layer 1 (input side) first.

  The net :math:`h_l = \phi(W_l h_{l-1} + b_l)` starts at its fixed point
  (input :math:`\sim N(0, q^*)`, :math:`q^*` from theory where finite, else 1)
  and the loss is a random projection of the output.
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


def relu_paths(config: Config, key: jax.Array) -> dict:
  """Products of ReLU' along random paths (one unit per layer) of He-ReLU nets, and the signal's factor."""
  depth = max(config.depths)
  nets = jax.random.split(key, config.seeds)
  slopes, signal = jax.vmap(lambda k: _backprop_signal(k, "relu", 2.0, 0.0, config.width,
                                                       depth))(nets)
  units = jax.random.randint(jax.random.fold_in(key, 1), (config.seeds, config.paths, depth), 0,
                             config.width)
  along = jnp.take_along_axis(slopes[:, None, :, :], units[..., None], axis=-1)[..., 0]
  products = jnp.cumprod(along, axis=-1)  # (seeds, paths, depth): the first l layers' product
  values = np.unique(np.asarray(products))
  alive = np.asarray(products[..., jnp.asarray(config.depths) - 1]).mean(axis=(0, 1))
  factor = float(np.mean(np.asarray(signal[:, :-1] / signal[:, 1:])))
  return {"depths": config.depths, "product_values": values, "fraction_one": alive,
          "fraction_one_theory": 0.5 ** np.asarray(config.depths),
          "signal_factor": factor, "chi1": float(theory.chi1("relu", 2.0, 0.0))}


def softmax_saturation(config: Config, key: jax.Array) -> dict:
  r"""Spectral norm of the softmax Jacobian against the logit gap, with its two bounds.

  Also the slope of :math:`\ln\|J\|_2` against the gap where the gap exceeds 5
  (and the norm is not 0 in float32): about -1, the exponential saturation.
  """
  scales = np.logspace(-1, 2, config.logit_scales)
  logits = jax.random.normal(key, (config.seeds, config.classes))

  def norm(z):
    (top, second), (first, _) = jax.lax.top_k(z, 2)
    p = jax.nn.softmax(z)
    rest = jnp.sum(jnp.where(jnp.arange(z.shape[0]) == first, 0.0, p))  # 1 - p_1, no cancellation
    jacobian = jax.jacfwd(jax.nn.softmax)(z)
    return jnp.linalg.norm(jacobian, 2), top - second, p[first], rest

  norms, gaps, p_max, rest = (np.asarray(a) for a in jax.vmap(jax.vmap(norm))(
      jnp.asarray(scales, jnp.float32)[None, :, None] * logits[:, None, :]))
  gap, log_norm = gaps[norms > 0], np.log(norms[norms > 0])
  large = gap > 5
  slope = float(np.polyfit(gap[large], log_norm[large], 1)[0]) if large.sum() > 1 else np.nan
  return {"scales": scales, "jacobian_norm": norms, "logit_gap": gaps,
          "lower_bound": p_max * rest, "upper_bound": 2 * rest, "log_norm_slope": slope}


def exploding_from_weights(config: Config, key: jax.Array) -> dict:
  r"""Measured per-layer growth of the squared signal against chi_1, for each (activation, sigma_w2).

  The growth is the mean over seeds and layers of
  :math:`\|\partial L/\partial h_{l-1}\|^2 / \|\partial L/\partial h_l\|^2`, whose
  expectation is :math:`\chi_1` at infinite width.
  """
  out = {}
  for activation, sigma_w2, sigma_b2 in EXPLODING:
    nets = jax.random.split(jax.random.fold_in(key, len(out)), config.seeds)
    _, signal = jax.vmap(lambda k: _backprop_signal(k, activation, sigma_w2, sigma_b2,
                                                    config.width, config.depth))(nets)
    signal = np.asarray(signal)  # (seeds, depth), input side first
    growth = float(np.mean(signal[:, :-1] / signal[:, 1:]))
    derivative_max = float(jnp.max(jnp.abs(activations.derivative(activation)(
        jnp.linspace(-10.0, 10.0, 20_001)))))
    out[f"{activation} sigma_w2={sigma_w2:g}"] = {
        "activation": activation, "sigma_w2": sigma_w2, "sigma_b2": sigma_b2,
        "signal": signal, "growth": growth, "max_derivative": derivative_max,
        "chi1": float(theory.chi1(activation, sigma_w2, sigma_b2))}
  return out


def clipping_a_vanishing_gradient(config: Config, key: jax.Array) -> dict:
  """Norms before and after clipping by norm and by value, for gradients from 1e-12 to 1e2."""
  direction = jax.random.normal(key, (config.width,))
  norms = np.logspace(-12, 2, 15)
  grads = jnp.asarray(norms)[:, None] * (direction / jnp.linalg.norm(direction))[None, :]
  by_norm, by_value = optax.clip_by_global_norm(config.clip_norm), optax.clip(config.clip_value)
  after = {name: np.asarray(jax.jit(jax.vmap(
               lambda g, tx=tx: optax.tree.norm(tx.update(g, tx.init(g))[0])))(grads))
           for name, tx in (("clip_norm", by_norm), ("clip_value", by_value))}
  return {"norm_before": norms, "norm_after_clip_norm": after["clip_norm"],
          "norm_after_clip_value": after["clip_value"],
          "expected_clip_norm": np.minimum(norms, config.clip_norm)}


def run(config: Config) -> dict:
  keys = jax.random.split(jax.random.key(config.seed), 4)
  results = {"config": config,
             "relu_paths": relu_paths(config, keys[0]),
             "softmax": softmax_saturation(config, keys[1]),
             "exploding": exploding_from_weights(config, keys[2]),
             "clipping": clipping_a_vanishing_gradient(config, keys[3])}
  return results


def plot(results: dict, out_dir: pathlib.Path) -> None:
  fig, axes = plotting.figure(1, 4, panel=(3.3, 2.7))
  ax = axes[0, 0]
  paths = results["relu_paths"]
  ax.plot(paths["depths"], paths["fraction_one"], "o", label="measured")
  plotting.theory_line(ax, paths["depths"], paths["fraction_one_theory"], label="$2^{-L}$")
  ax.set(xlabel="path length L", ylabel=r"fraction of paths with $\prod \phi' = 1$",
         yscale="log", title=r"ReLU: $\prod\phi' \in \{0, 1\}$ along a path")
  ax.legend()

  ax = axes[0, 1]
  soft = results["softmax"]
  gap, norm = np.ravel(soft["logit_gap"]), np.ravel(soft["jacobian_norm"])
  order = np.argsort(gap)
  order = order[norm[order] > 0]
  ax.plot(gap[order], norm[order], ".", markersize=3, label="measured")
  for bound, label in (("lower_bound", "$p_1(1-p_1)$"), ("upper_bound", "$2(1-p_1)$")):
    plotting.theory_line(ax, gap[order], np.ravel(soft[bound])[order], label=label)
  ax.set(xlabel="logit gap $z_1 - z_2$", ylabel="softmax Jacobian norm", yscale="log",
         title=f"softmax: ln‖J‖ slope {soft['log_norm_slope']:.2f}")
  ax.legend()

  ax = axes[0, 2]
  for i, (name, case) in enumerate(results["exploding"].items()):
    signal = np.asarray(case["signal"])
    layers = np.arange(signal.shape[1])[::-1]  # layers below the output
    plotting.median_band(ax, layers, signal, color=f"C{i}",
                         label=f"{name}: max|φ'| = {case['max_derivative']:.2g}")
    plotting.theory_line(ax, layers, np.median(signal[:, -1]) * case["chi1"] ** layers,
                         color=f"C{i}")
  ax.set(xlabel="layers below the output", ylabel=r"$\|\partial L/\partial h\|^2$",
         yscale="log", title=r"exploding: $\chi_1^l$ (dashed)")
  ax.legend(fontsize=6)

  ax = axes[0, 3]
  clip = results["clipping"]
  ax.plot(clip["norm_before"], clip["norm_after_clip_norm"], "o", label="clip_by_global_norm")
  ax.plot(clip["norm_before"], clip["norm_after_clip_value"], "x", label="clip by value")
  plotting.theory_line(ax, clip["norm_before"], clip["expected_clip_norm"],
                       label=r"$\min(\|g\|, c)$")
  ax.set(xscale="log", yscale="log", xlabel="‖g‖ before", ylabel="‖g‖ after",
         title="clipping only shrinks")
  ax.legend(fontsize=7)
  plotting.save(fig, out_dir / "sources.png")


def summary(results: dict) -> str:
  paths, soft, clip = results["relu_paths"], results["softmax"], results["clipping"]
  rows = [["ReLU path products take the values", ", ".join(f"{v:g}" for v in
                                                            paths["product_values"])],
          ["He-ReLU squared signal per layer (chi_1 = 1)", f"{paths['signal_factor']:.4f}"],
          ["softmax: slope of ln ||J|| against the logit gap (gap > 5)",
           f"{soft['log_norm_slope']:.3f}"]]
  rows += [[f"{name}: growth per layer (chi_1 = {case['chi1']:.3f}, max|phi'| = "
            f"{case['max_derivative']:.3g})", f"{case['growth']:.4f}"]
           for name, case in results["exploding"].items()]
  rows.append(["clipping a gradient of norm 1e-12: norm after (by norm, by value)",
               f"{clip['norm_after_clip_norm'][0]:.3g}, {clip['norm_after_clip_value'][0]:.3g}"])
  return _cli.format_table(["measurement", "value"], rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
