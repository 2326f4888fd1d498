r"""Pre-LN vs post-LN Transformers at initialization, attention scaling, and LR warmup.

Three measurements on a small synthetic task (reverse a random token sequence:
target[t] = token[T-1-t], cross-entropy per position):

1. **Gradient norms at init against depth** (Xiong et al. 2020, theory.md
   §1.6): ||dL/dW2_l||_F of every layer's second FFN weight, for depths
   6..192, post-LN vs pre-LN. Xiong: post-LN's gradients near the output are
   large and do not shrink with depth, pre-LN's scale like 1/sqrt(L). Measured
   beside them, from the same forward pass: the residual stream's
   q_l = mean ||x_l||^2 / d_model (l = 0 the embeddings), the variance
   v = (q_L - q_0) / L each block adds, and the mean cosine between the
   tokens of one sequence. Pre-LN's last block reaches the loss through the
   final LayerNorm, which divides by sqrt(q_L), so

       ||dL/dW2_L|| = c_L / sqrt(q_L),   q_L = q_0 + L v,

   whose local log-log slope is -0.5 L v / (q_0 + L v) (times d log(L v)/d log L
   where v changes with depth) if c_L is constant; c_L = ||dL/dW2_L|| sqrt(q_L)
   is reported to show how far it is.
2. **Per-layer profile ablation** at one depth: the default block, without
   attention, with a ReLU MLP, both, and the simplified model of Xiong's
   analysis (ReLU, d_ff = d_model, weights N(0, 1/fan_in), no attention);
   last layer over first layer, pre-LN and post-LN.
3. **Attention-logit scale**: one attention layer on unit-variance
   (LayerNormed) inputs, head size d_k, with and without the 1/sqrt(d_k)
   scale. A logit q.k sums d_k products of unit-variance entries, so its
   standard deviation within a row is sqrt(d_k) unscaled and 1 scaled (the
   dashed theory lines); unscaled, the softmax saturates (entropy -> 0,
   max probability -> 1) as d_k grows.
4. **Warmup**: Adam on the reversal task with a constant learning rate vs
   a linear warmup to the same rate (:func:`warmup_schedule`, ``optax.linear_schedule``'s ramp), pre-LN and
   post-LN, seeds vmapped, trained with ``jaxgrad.training.train``.

    python -m experiments.transformer_ln            # d_model 64, 8 seeds, depths 6..192,
                                                    # > 7 min on 2 busy cores (400 steps)
    python -m experiments.transformer_ln --quick    # d_model 32, 4 seeds, about a minute
    python -m experiments.transformer_ln --no-attention --ffn-activation relu --d-ff 64 \
        --kernel-init lecun_normal                  # Xiong's simplified model throughout

Writes ``config.json``, ``results.json`` (every plotted number),
``grad_norms.png``, ``last_layer.png``, ``profile_ablation.png``, ``attention.png``
and ``warmup.png`` under ``--out``.
"""

import dataclasses
import math
import pathlib

from experiments import _cli, _config

import flax.linen as nn  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgrad import diagnostics, initializers, plotting, probe, training  # noqa: E402
from jaxgrad.models import transformer  # noqa: E402
from jaxgrad.models.stack import STACK_NAME  # noqa: E402
from jaxgrad.sweep import sweep, sweep_grid  # noqa: E402

FFN_OUT = "mlp_out"
ACTIVATIONS = {"gelu": nn.gelu, "relu": nn.relu}  # nn.gelu: the tanh form the model always used
# Per-layer profile ablation: name -> overrides of (activation, d_ff, kernel_init, attention);
# None keeps the Config's value, "d_model" sets d_ff = d_model.
ABLATIONS = {
    "default": {},
    "no attention": {"attention": False},
    "ReLU": {"activation": "relu"},
    "ReLU, no attention": {"activation": "relu", "attention": False},
    "Xiong's simplified model": {"activation": "relu", "attention": False, "d_ff": "d_model",
                                 "kernel_init": "lecun_normal"},
}


def _key(seed: int) -> jax.Array:
  """RngBitGenerator keys: XLA's CPU compile of threefry for many tensors is ~8x slower."""
  return jax.random.key(seed, impl="rbg")


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  d_model: int = _config.setting(64, "residual width", at_least=1)
  num_heads: int = _config.setting(4, at_least=1)
  d_ff: int = _config.setting(256, at_least=1)
  depths: tuple[int, ...] = _config.setting((6, 12, 24, 48, 96, 192),
                                            "depths for the gradient-norm sweep",
                                            at_least=1, increasing=True)
  ffn_activation: str = _config.setting("gelu", "the MLP's nonlinearity",
                                        choices=tuple(ACTIVATIONS))
  attention: bool = _config.setting(True, "attention sublayers (off: MLP-only blocks)")
  kernel_init: str = _config.setting("xavier_uniform", "initializer of every Dense kernel",
                                     choices=initializers.names)
  ablation_depth: int = _config.setting(6, "depth of the per-layer profile ablation", at_least=1)
  ablations: tuple[str, ...] = _config.setting(tuple(ABLATIONS), "settings of the profile ablation",
                                               choices=tuple(ABLATIONS))
  seq_len: int = _config.setting(12, at_least=2)
  vocab: int = _config.setting(16, at_least=2)
  batch: int = _config.setting(32, at_least=1)
  seeds: int = _config.setting(8, "networks per case", at_least=1)
  head_dims: tuple[int, ...] = _config.setting((4, 16, 64, 256),
                                               "d_k values for the attention-scale sweep",
                                               at_least=1, increasing=True)
  train_depth: int = _config.setting(6, at_least=1)
  steps: int = _config.setting(400, at_least=1)
  learning_rate: float = _config.setting(3e-3, "peak Adam rate", above=0)
  warmup_steps: int = _config.setting(100, at_least=0)
  seed: int = 0

  def relations(self) -> dict[str, str]:
    broken = {}
    if self.d_model % self.num_heads:
      broken["num_heads"] = f"must divide d_model={self.d_model}"
    if self.warmup_steps > self.steps:
      broken["warmup_steps"] = f"must be <= steps={self.steps}"
    return broken

  @classmethod
  def quick(cls) -> "Config":
    return cls(d_model=32, d_ff=128, depths=(6, 24), seeds=4, batch=16, steps=200,
               warmup_steps=50, ablations=("no attention",))

  @classmethod
  def smoke(cls) -> "Config":
    return cls(d_model=8, num_heads=2, d_ff=16, depths=(2, 3), seq_len=6, vocab=5, batch=4,
               seeds=2, head_dims=(8,), train_depth=2, steps=4, warmup_steps=2,
               ablation_depth=2, ablations=("ReLU, no attention",))


def reversal_batch(key: jax.Array, config: Config) -> tuple[jax.Array, jax.Array]:
  """Random tokens ``(batch, T)`` and their reversal, the per-position targets."""
  tokens = jax.random.randint(key, (config.batch, config.seq_len), 0, config.vocab)
  return tokens, tokens[:, ::-1]


def make_model(config: Config, depth: int, norm_position: str) -> transformer.Transformer:
  return transformer.Transformer(
      vocab_size=config.vocab, max_len=config.seq_len, out_features=config.vocab,
      d_model=config.d_model, depth=depth, num_heads=config.num_heads, d_ff=config.d_ff,
      norm_position=norm_position, kernel_init=config.kernel_init,
      activation=ACTIVATIONS[config.ffn_activation], attention=config.attention)


def ablated(config: Config, name: str) -> Config:
  """``config`` with the overrides of ``ABLATIONS[name]``."""
  overrides = {{"activation": "ffn_activation"}.get(k, k): v
               for k, v in ABLATIONS[name].items()}
  if overrides.get("d_ff") == "d_model":
    overrides["d_ff"] = config.d_model
  return dataclasses.replace(config, **overrides)


def stream_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  r"""Length and token similarity of residual streams ``(..., batch, T, d)``.

  Returns:
    ``q = mean_{b,t} ||x_{bt}||^2 / d`` and the mean cosine between different
    tokens of one sequence, :math:`\overline{\cos(x_{bt}, x_{bs})}_{t \ne s}`,
    both of shape ``x.shape[:-3]``.
  """
  t = x.shape[-2]
  q = jnp.mean(jnp.mean(x * x, axis=-1), axis=(-2, -1))
  unit = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  gram = jnp.einsum("...td,...sd->...ts", unit, unit)
  cosine = (jnp.sum(gram, axis=(-2, -1)) - t) / (t * (t - 1))
  return q, jnp.mean(cosine, axis=-1)


def cross_entropy(model, params, batch) -> jax.Array:
  tokens, targets = batch
  logits = model.apply({"params": params}, tokens)
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def init_grad_norms(config: Config, depth: int, norm_position: str) -> dict[str, np.ndarray]:
  """At initialization, per seed: ``grad_norm`` ||dL/dW2_l|| ``(seeds, depth)``, and the
  residual stream's ``q`` and ``token_cosine`` (:func:`stream_stats`) ``(seeds, depth + 1)``,
  index 0 the embeddings entering the stack (pre-LN: before the final LayerNorm)."""
  model = make_model(config, depth, norm_position)
  layout = probe.layout(model, reversal_batch(jax.random.key(0), config)[0])

  def one(key):
    k_init, k_data = jax.random.split(key)
    tokens, targets = reversal_batch(k_data, config)
    params = model.init(k_init, tokens)["params"]

    def loss(p):
      logits, state = model.apply({"params": p}, tokens, mutable=[transformer.STREAM])
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
      return ce, state[transformer.STREAM]["hidden"]

    grads, stream = jax.grad(loss, has_aux=True)(params)
    norms = diagnostics.layer_grad_norms(grads, layout=layout)
    (x0,) = stream[transformer.STREAM_IN]
    (xs,) = stream[STACK_NAME][transformer.RESIDUAL]
    q, cosine = stream_stats(jnp.concatenate([x0[None], xs]))
    return {"grad_norm": jnp.stack([v for k, v in norms.items() if k.endswith(FFN_OUT)]),
            "q": q, "token_cosine": cosine}

  keys = jax.random.split(_key(config.seed), config.seeds)
  return jax.tree.map(np.asarray, sweep(one, keys))


def attention_stats(config: Config, head_dim: int) -> dict:
  """Logit std within a row, row entropy / log T and max probability, scaled vs unscaled.

  Both variants use the same parameters and inputs, so their logits differ by
  exactly the factor sqrt(d_k).
  """
  attn = {s: transformer.MultiHeadSelfAttention(num_heads=1, scale_attention=s)
          for s in (True, False)}

  def one(key):
    k_x, k_init = jax.random.split(key)
    x = jax.random.normal(k_x, (config.batch, config.seq_len, head_dim))
    x = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)  # LayerNormed input
    params = attn[True].init(k_init, x)["params"]
    out = {}
    for scaled, module in attn.items():
      _, state = module.apply({"params": params}, x, mutable=["intermediates"])
      (probs,) = state["intermediates"][transformer.ATTENTION]
      (logits,) = state["intermediates"][transformer.LOGITS]
      entropy = -jnp.sum(jnp.where(probs > 0, probs * jnp.log(probs), 0.0), axis=-1)
      out["scaled" if scaled else "unscaled"] = {
          "logit_std": jnp.mean(jnp.std(logits, axis=-1)),
          "entropy": jnp.mean(entropy) / math.log(config.seq_len),
          "max_prob": jnp.mean(jnp.max(probs, axis=-1)),
      }
    return out

  keys = jax.random.split(jax.random.fold_in(_key(config.seed), head_dim),
                          config.seeds)
  return jax.tree.map(np.asarray, sweep(one, keys))


def warmup_schedule(peak: float, warmup_steps: jax.Array) -> optax.Schedule:
  """``optax.linear_schedule(0, peak, warmup_steps)``, constant ``peak`` when ``warmup_steps`` is 0.

  ``warmup_steps`` may be traced, so both arms of the comparison share one program.
  """
  def schedule(count):
    ramp = jnp.minimum(count / jnp.maximum(warmup_steps, 1), 1.0)
    return peak * jnp.where(warmup_steps > 0, ramp, 1.0)
  return schedule


def train_arms(config: Config, norm_position: str) -> training.TrainResult:
  """Adam on the reversal task, without then with linear warmup: leading axes (2, seeds).

  Both arms and all seeds run in one vmapped program; seed s starts from the
  same parameters and draws the same batches in either arm.
  """
  model = make_model(config, config.train_depth, norm_position)
  loss_fn = lambda params, state, batch: (cross_entropy(model, params, batch), state)  # noqa: E731

  def one(key, warmup_steps):
    k_init, k_train = jax.random.split(key)
    params = model.init(k_init, reversal_batch(k_init, config)[0])["params"]
    optimizer = training.make_optimizer(training.OptimizerConfig(
        "adam", learning_rate=warmup_schedule(config.learning_rate, warmup_steps)))
    return training.train(loss_fn, params, optimizer, lambda k: reversal_batch(k, config),
                          config.steps, key=k_train)

  keys = jax.random.split(jax.random.fold_in(_key(config.seed), 1), config.seeds)
  out = sweep_grid(one, keys, jnp.asarray([0, config.warmup_steps]))
  return jax.tree.map(np.asarray, out)


def _quartiles(samples: np.ndarray) -> dict:
  with np.errstate(all="ignore"):
    q25, q50, q75 = np.nanpercentile(np.where(np.isfinite(samples), samples, np.nan),
                                     [25, 50, 75], axis=0)
  return {"median": q50, "q25": q25, "q75": q75, "per_seed": samples}


def _slope(x, y) -> float:
  """Least-squares slope of log y against log x."""
  return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def last_layer_theory(depths: tuple[int, ...], grad_last: np.ndarray, q_0: np.ndarray,
                      q_last: np.ndarray) -> dict:
  r"""Pre-LN's last-layer gradient against the final LayerNorm's 1/sqrt(q_L).

  The last block's output :math:`x_L` reaches the head through the final
  LayerNorm, whose Jacobian is :math:`(I - \tfrac{1}{d}\mathbf{1}\mathbf{1}^\top
  - \tfrac{1}{d}\hat x\hat x^\top)/\sigma(x_L)`, so

  .. math::

     \|\partial L/\partial W_2^L\| = c_L\, q_L^{-1/2}, \qquad q_L = q_0 + L v,
     \qquad \frac{d \log \|\partial L/\partial W_2^L\|}{d \log L}
     = -\frac{1}{2}\frac{L v}{q_0 + L v} + \frac{d \log c_L}{d \log L}
     \quad (v \text{ constant}).

  Args:
    depths: the depths L, increasing.
    grad_last: ||dL/dW2_L|| per seed and depth, ``(seeds, depths)``.
    q_0, q_last: the stream's q at the embeddings and after the last block, same shape.

  Returns:
    Medians over seeds per depth (``grad``, ``q_0``, ``q_L``, ``v`` = (q_L - q_0)/L,
    ``c`` = grad sqrt(q_L), ``linear_growth_slope`` = -L v / 2 (q_0 + L v)),
    ``predicted`` = grad at the first depth times sqrt(q_L(first) / q_L) (c constant),
    and between consecutive depths the local slopes ``measured``, ``predicted``
    (-0.5 d log q_L / d log L) and ``residual`` (d log c / d log L), with the
    ``midpoints`` (geometric) they belong to.
  """
  depths_f = np.asarray(depths, float)
  v = (q_last - q_0) / depths_f
  med = lambda a: np.median(a, axis=0)  # noqa: E731
  grad, q_l, c = med(grad_last), med(q_last), med(grad_last * np.sqrt(q_last))
  local = lambda y: np.diff(np.log(y)) / np.diff(np.log(depths_f))  # noqa: E731
  return {"depths": list(depths), "grad": grad, "q_0": med(q_0), "q_L": q_l, "v": med(v), "c": c,
          "linear_growth_slope": med(-0.5 * depths_f * v / (q_0 + depths_f * v)),
          "predicted": grad[0] * np.sqrt(q_l[0] / q_l),
          "local_slopes": {"midpoints": np.sqrt(depths_f[1:] * depths_f[:-1]),
                           "measured": local(grad), "predicted": -0.5 * local(q_l),
                           "residual": local(c)}}


def profile_ablation(config: Config) -> dict:
  """Per-layer ||dL/dW2_l|| at ``config.ablation_depth`` for each of ``config.ablations``.

  Returns:
    Per setting and norm position: the per-layer quartiles, ``last_over_first``
    (median over seeds of ||dL/dW2_L|| / ||dL/dW2_1||) and the stream's q quartiles.
  """
  out = {}
  for name in _cli.progress(config.ablations, desc="profile ablation"):
    setting = ablated(config, name)
    out[name] = {"overrides": ABLATIONS[name]}
    for position in transformer.NORM_POSITIONS:
      m = init_grad_norms(setting, config.ablation_depth, position)
      out[name][position] = {
          "grad_norm": _quartiles(m["grad_norm"]), "q": _quartiles(m["q"]),
          "last_over_first": float(np.median(m["grad_norm"][:, -1] / m["grad_norm"][:, 0]))}
  return out


def run(config: Config, out_dir: pathlib.Path) -> dict:
  positions = transformer.NORM_POSITIONS
  grad_norms = {p: {} for p in positions}
  stream = {p: {} for p in positions}
  jobs = [(p, d) for p in positions for d in config.depths]
  for position, depth in _cli.progress(jobs, desc="grad norms at init"):
    m = init_grad_norms(config, depth, position)
    grad_norms[position][str(depth)] = _quartiles(m["grad_norm"])
    stream[position][str(depth)] = {"q": _quartiles(m["q"]),
                                    "token_cosine": _quartiles(m["token_cosine"])}
  last_layer = {p: [float(grad_norms[p][str(d)]["median"][-1]) for d in config.depths]
                for p in positions}
  per_seed = lambda tree, i: np.stack(  # noqa: E731
      [np.asarray(tree[str(d)]["per_seed"])[:, i] for d in config.depths], axis=1)
  pre_q = {str(d): stream["pre"][str(d)]["q"] for d in config.depths}
  pre_theory = last_layer_theory(config.depths, per_seed(grad_norms["pre"], -1),
                                 per_seed(pre_q, 0), per_seed(pre_q, -1))
  mean_layer = {p: [float(np.median(np.mean(grad_norms[p][str(d)]["per_seed"], axis=1)))
                    for d in config.depths] for p in positions}
  depth_exponent = ({p: _slope(config.depths, last_layer[p]) for p in positions}
                    if len(config.depths) > 1 else None)

  attention = {"head_dims": config.head_dims, "scaled": {}, "unscaled": {},
               "theory_logit_std": {"scaled": [1.0] * len(config.head_dims),
                                    "unscaled": [math.sqrt(d) for d in config.head_dims]}}
  per_dim = [attention_stats(config, d) for d in _cli.progress(config.head_dims,
                                                                desc="attention scale")]
  for variant in ("scaled", "unscaled"):
    for stat in ("logit_std", "entropy", "max_prob"):
      samples = np.stack([s[variant][stat] for s in per_dim], axis=1)  # (seeds, dims)
      attention[variant][stat] = _quartiles(samples)
  attention["unscaled_over_scaled_logit_std"] = [
      float(np.median(s["unscaled"]["logit_std"] / s["scaled"]["logit_std"])) for s in per_dim]

  warmup = {}
  tail = max(1, config.steps // 10)
  for position in _cli.progress(positions, desc="training"):
    both = train_arms(config, position)
    for a, use_warmup in enumerate((False, True)):
      result = jax.tree.map(lambda x, a=a: x[a], both)
      name = f"{position}-LN, {'warmup' if use_warmup else 'no warmup'}"
      warmup[name] = {
          "norm_position": position, "warmup": use_warmup,
          "loss": _quartiles(result.loss), "grad_norm": _quartiles(result.grad_norm),
          "final_loss_per_seed": result.loss[:, -tail:].mean(axis=1),
          "diverged_at": result.diverged_at,
      }

  results = {"config": config, "grad_norms": grad_norms, "stream": stream,
             "last_layer_median": last_layer, "mean_layer_median": mean_layer,
             "last_layer_depth_exponent": depth_exponent, "pre_ln_last_layer": pre_theory,
             "profile_ablation": profile_ablation(config),
             "attention": attention, "warmup": warmup,
             "chance_loss": math.log(config.vocab)}
  _cli.write_json(out_dir / "results.json", results)
  plot(results, config, out_dir)
  return results


def plot(results: dict, config: Config, out_dir: pathlib.Path) -> None:
  positions = transformer.NORM_POSITIONS
  fig, axes = plotting.figure(1, 3, panel=(3.2, 2.7))
  cmap = plotting.plt.cm.viridis
  for col, position in enumerate(positions):
    ax = axes[0, col]
    for i, depth in enumerate(config.depths):
      stats = results["grad_norms"][position][str(depth)]
      layers = np.arange(1, depth + 1)
      plotting.median_band(ax, layers, stats["per_seed"], label=f"L={depth}",
                           color=cmap(i / max(1, len(config.depths) - 1)))
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_title(f"{position}-LN: ||dL/dW2_l|| at init")
    ax.set_xlabel("layer l")
  axes[0, 0].set_ylabel("gradient norm")
  axes[0, 0].legend()
  ax = axes[0, 2]
  depths = np.asarray(config.depths, float)
  for position, color in zip(positions, ("C0", "C3")):
    samples = np.stack([np.asarray(results["grad_norms"][position][str(d)]["per_seed"])[:, -1]
                        for d in config.depths], axis=1)
    plotting.median_band(ax, depths, samples, label=f"{position}-LN", color=color, marker="o")
  anchor = results["last_layer_median"]["pre"][0]
  plotting.theory_line(ax, depths, anchor * np.sqrt(depths[0] / depths), color="C0",
                       label="∝ 1/√L (Xiong)")
  ax.plot(depths, results["pre_ln_last_layer"]["predicted"], color="C2", linestyle="-.",
          label="∝ q_L^(-1/2) (measured q_L)")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xticks(depths, [str(d) for d in config.depths])
  ax.minorticks_off()
  ax.set_xlabel("depth L")
  ax.set_title("last layer's ||dL/dW2|| vs depth")
  ax.legend()
  plotting.save(fig, out_dir / "grad_norms.png")
  if len(config.depths) > 1:
    _plot_last_layer(results, config, out_dir)
  _plot_profile_ablation(results, config, out_dir)

  att = results["attention"]
  dims = np.asarray(att["head_dims"], float)
  fig, axes = plotting.figure(1, 3, panel=(3.0, 2.6))
  for variant, color in (("scaled", "C0"), ("unscaled", "C3")):
    for col, (stat, title) in enumerate((("logit_std", "logit std within a row"),
                                         ("entropy", "row entropy / log T"),
                                         ("max_prob", "max attention probability"))):
      ax = axes[0, col]
      plotting.median_band(ax, dims, att[variant][stat]["per_seed"], color=color, marker="o",
                           label=f"{variant} (1/√d_k)" if variant == "scaled" else variant)
      if stat == "logit_std":
        plotting.theory_line(ax, dims, att["theory_logit_std"][variant], color=color)
        ax.set_yscale("log")
      ax.set_xscale("log", base=2)
      ax.set_xlabel("head size d_k")
      ax.set_title(title)
  axes[0, 0].legend()
  plotting.save(fig, out_dir / "attention.png")

  fig, axes = plotting.figure(1, 2, panel=(3.4, 2.7))
  for name, arm in results["warmup"].items():
    color = "C0" if arm["norm_position"] == "pre" else "C3"
    style = "-" if arm["warmup"] else ":"
    steps = np.arange(len(arm["loss"]["median"]))
    for col, key in enumerate(("loss", "grad_norm")):
      line = plotting.median_band(axes[0, col], steps, arm[key]["per_seed"], label=name,
                                  color=color)
      line.set_linestyle(style)
  axes[0, 0].axhline(results["chance_loss"], color="k", linewidth=0.8, linestyle="--")
  axes[0, 0].set_title(f"reversal task, depth {config.train_depth}, Adam lr {config.learning_rate:g}")
  axes[0, 0].set_ylabel("training loss (dashed: chance)")
  axes[0, 1].set_yscale("log")
  axes[0, 1].set_title("gradient norm")
  for ax in axes[0]:
    ax.set_xlabel("step")
  axes[0, 0].legend()
  plotting.save(fig, out_dir / "warmup.png")


def _plot_last_layer(results: dict, config: Config, out_dir: pathlib.Path) -> None:
  """Pre-LN's last layer: q_L and c_L vs depth, local slopes, token similarity."""
  theory = results["pre_ln_last_layer"]
  depths = np.asarray(config.depths, float)
  fig, axes = plotting.figure(1, 3, panel=(3.2, 2.7))
  ax = axes[0, 0]
  q_last = np.stack([np.asarray(results["stream"]["pre"][str(d)]["q"]["per_seed"])[:, -1]
                     for d in config.depths], axis=1)
  plotting.median_band(ax, depths, q_last, label="q_L measured", color="C0", marker="o")
  q_0, v_first = float(theory["q_0"][0]), float(theory["v"][0])
  plotting.theory_line(ax, depths, q_0 + depths * v_first, color="C0",
                       label=f"q_0 + L v, v = {v_first:.2f} (L={config.depths[0]})")
  ax.plot(depths, theory["c"], color="C3", marker="s", label="c_L = ||dL/dW2_L|| √q_L")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("depth L")
  ax.set_title("pre-LN: stream length q_L")
  ax.legend(fontsize=6)
  ax = axes[0, 1]
  slopes = theory["local_slopes"]
  for key, color, marker in (("measured", "C0", "o"), ("predicted", "C2", "^"),
                             ("residual", "C3", "s")):
    label = {"measured": "measured d log g / d log L",
             "predicted": "-½ d log q_L / d log L",
             "residual": "d log c_L / d log L"}[key]
    ax.plot(slopes["midpoints"], slopes[key], color=color, marker=marker, label=label)
  ax.plot(depths, theory["linear_growth_slope"], color="C2", linestyle=":", marker="x",
          label="-½ L v / (q_0 + L v)")
  ax.axhline(-0.5, color="k", linewidth=0.8, linestyle="--")
  ax.axhline(0.0, color="k", linewidth=0.5)
  ax.set_xscale("log")
  ax.set_xlabel("depth L (geometric midpoints)")
  ax.set_title("local slopes of the last layer")
  ax.legend(fontsize=6)
  ax = axes[0, 2]
  for position, color in zip(transformer.NORM_POSITIONS, ("C0", "C3")):
    cos = np.stack([np.asarray(results["stream"][position][str(d)]["token_cosine"]["per_seed"])
                    [:, -1] for d in config.depths], axis=1)
    plotting.median_band(ax, depths, cos, label=f"{position}-LN", color=color, marker="o")
  ax.set_xscale("log")
  ax.set_xlabel("depth L")
  ax.set_title("token cosine in a sequence, x_L")
  ax.legend()
  plotting.save(fig, out_dir / "last_layer.png")


def _plot_profile_ablation(results: dict, config: Config, out_dir: pathlib.Path) -> None:
  """Per-layer profiles, each divided by its first layer's median, for every ablation."""
  fig, axes = plotting.figure(1, 2, panel=(3.4, 2.7))
  layers = np.arange(1, config.ablation_depth + 1)
  for i, (name, arms) in enumerate(results["profile_ablation"].items()):
    for col, position in enumerate(transformer.NORM_POSITIONS):
      samples = np.asarray(arms[position]["grad_norm"]["per_seed"])
      ratio = arms[position]["last_over_first"]
      plotting.median_band(axes[0, col], layers,
                           samples / np.median(samples[:, 0]),
                           label=f"{name} ({ratio:.2f})", color=f"C{i}", marker="o")
  for col, position in enumerate(transformer.NORM_POSITIONS):
    axes[0, col].set_yscale("log")
    axes[0, col].set_xlabel("layer l")
    axes[0, col].set_title(f"{position}-LN, L={config.ablation_depth}: ||dL/dW2_l|| ÷ layer 1", fontsize=9)
    axes[0, col].legend(fontsize=6)
  plotting.save(fig, out_dir / "profile_ablation.png")


def summary(results: dict) -> str:
  config = results["config"]
  depths = config.depths if dataclasses.is_dataclass(config) else config["depths"]
  lines = []
  rows = [[p, *[results["last_layer_median"][p][i] for i in range(len(depths))],
           "-" if results["last_layer_depth_exponent"] is None
           else results["last_layer_depth_exponent"][p]]
          for p in transformer.NORM_POSITIONS]
  lines.append(_cli.format_table(["last-layer ||dL/dW2||", *[f"L={d}" for d in depths],
                                  "slope log-log"], rows))
  theory = results["pre_ln_last_layer"]
  rows = [[d, theory["q_0"][i], theory["q_L"][i], theory["v"][i], theory["c"][i],
           theory["linear_growth_slope"][i]] for i, d in enumerate(depths)]
  lines.append(_cli.format_table(["pre-LN L", "q_0", "q_L", "v", "c_L", "-Lv/2(q0+Lv)"], rows))
  slopes = theory["local_slopes"]
  rows = [[f"{a}-{b}", slopes["measured"][i], slopes["predicted"][i], slopes["residual"][i]]
          for i, (a, b) in enumerate(zip(depths[:-1], depths[1:]))]
  if rows:
    lines.append(_cli.format_table(["depths", "local slope", "-½ dlog q_L", "dlog c_L"], rows))
  rows = [[name, arms["pre"]["last_over_first"], arms["post"]["last_over_first"]]
          for name, arms in results["profile_ablation"].items()]
  lines.append(_cli.format_table(["profile ablation", "pre L/1", "post L/1"], rows))
  att = results["attention"]
  rows = [[d, float(att["scaled"]["logit_std"]["median"][i]),
           float(att["unscaled"]["logit_std"]["median"][i]),
           float(att["scaled"]["entropy"]["median"][i]),
           float(att["unscaled"]["entropy"]["median"][i]),
           float(att["unscaled"]["max_prob"]["median"][i])]
          for i, d in enumerate(att["head_dims"])]
  lines.append(_cli.format_table(["d_k", "std scaled", "std unscaled", "H/logT scaled",
                                  "H/logT unscaled", "max p unscaled"], rows))
  rows = [[name, float(np.median(arm["final_loss_per_seed"])),
           int(np.sum(np.asarray(arm["diverged_at"]) >= 0))]
          for name, arm in results["warmup"].items()]
  lines.append(_cli.format_table(["arm", "final loss (median)", "diverged seeds"], rows))
  return "\n\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__)


if __name__ == "__main__":
  main()
