r"""Pre-LN vs post-LN Transformers at initialization, attention scaling, and LR warmup.

Three measurements on a small synthetic task (reverse a random token sequence:
target[t] = token[T-1-t], cross-entropy per position):

1. **Gradient norms at init against depth** (Xiong et al. 2020, theory.md
   §1.6): ||dL/dW2_l||_F of every layer's second FFN weight, for depths
   6..48, post-LN vs pre-LN. Xiong: post-LN's gradients near the output are
   large and do not shrink with depth, pre-LN's scale like 1/sqrt(L).
2. **Attention-logit scale**: one attention layer on unit-variance
   (LayerNormed) inputs, head size d_k, with and without the 1/sqrt(d_k)
   scale. A logit q.k sums d_k products of unit-variance entries, so its
   standard deviation within a row is sqrt(d_k) unscaled and 1 scaled (the
   dashed theory lines); unscaled, the softmax saturates (entropy -> 0,
   max probability -> 1) as d_k grows.
3. **Warmup**: Adam on the reversal task with a constant learning rate vs
   a linear warmup to the same rate (:func:`warmup_schedule`, ``optax.linear_schedule``'s ramp), pre-LN and
   post-LN, seeds vmapped, trained with ``jaxgrad.training.train``.

    python -m experiments.transformer_ln            # d_model 64, 8 seeds, ~3 min on 2 cores
    python -m experiments.transformer_ln --quick    # d_model 32, 4 seeds, under a minute
    python -m experiments.transformer_ln --depths 6,12,24,48,96

Writes ``config.json``, ``results.json`` (every plotted number),
``grad_norms.png``, ``attention.png`` and ``warmup.png`` under ``--out``.
"""

import dataclasses
import math
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgrad import diagnostics, plotting, probe, training  # noqa: E402
from jaxgrad.models import transformer  # noqa: E402
from jaxgrad.sweep import sweep, sweep_grid  # noqa: E402

FFN_OUT = "mlp_out"


def _key(seed: int) -> jax.Array:
  """RngBitGenerator keys: XLA's CPU compile of threefry for many tensors is ~8x slower."""
  return jax.random.key(seed, impl="rbg")


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  d_model: int = _config.setting(64, "residual width", at_least=1)
  num_heads: int = _config.setting(4, at_least=1)
  d_ff: int = _config.setting(256, at_least=1)
  depths: tuple[int, ...] = _config.setting((6, 12, 24, 48), "depths for the gradient-norm sweep",
                                            at_least=1, increasing=True)
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
               warmup_steps=50)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(d_model=8, num_heads=2, d_ff=16, depths=(2,), seq_len=6, vocab=5, batch=4,
               seeds=2, head_dims=(8,), train_depth=2, steps=4, warmup_steps=2)


def reversal_batch(key: jax.Array, config: Config) -> tuple[jax.Array, jax.Array]:
  """Random tokens ``(batch, T)`` and their reversal, the per-position targets."""
  tokens = jax.random.randint(key, (config.batch, config.seq_len), 0, config.vocab)
  return tokens, tokens[:, ::-1]


def make_model(config: Config, depth: int, norm_position: str) -> transformer.Transformer:
  return transformer.Transformer(
      vocab_size=config.vocab, max_len=config.seq_len, out_features=config.vocab,
      d_model=config.d_model, depth=depth, num_heads=config.num_heads, d_ff=config.d_ff,
      norm_position=norm_position)


def cross_entropy(model, params, batch) -> jax.Array:
  tokens, targets = batch
  logits = model.apply({"params": params}, tokens)
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def init_grad_norms(config: Config, depth: int, norm_position: str) -> np.ndarray:
  """||dL/dW2_l|| per seed and layer at initialization, shape (seeds, depth)."""
  model = make_model(config, depth, norm_position)
  layout = probe.layout(model, reversal_batch(jax.random.key(0), config)[0])

  def one(key):
    k_init, k_data = jax.random.split(key)
    batch = reversal_batch(k_data, config)
    params = model.init(k_init, batch[0])["params"]
    grads = jax.grad(lambda p: cross_entropy(model, p, batch))(params)
    norms = diagnostics.layer_grad_norms(grads, layout=layout)
    return jnp.stack([v for k, v in norms.items() if k.endswith(FFN_OUT)])

  keys = jax.random.split(_key(config.seed), config.seeds)
  return np.asarray(sweep(one, keys))


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


def run(config: Config, out_dir: pathlib.Path) -> dict:
  positions = transformer.NORM_POSITIONS
  grad_norms = {p: {} for p in positions}
  jobs = [(p, d) for p in positions for d in config.depths]
  for position, depth in _cli.progress(jobs, desc="grad norms at init"):
    grad_norms[position][str(depth)] = _quartiles(init_grad_norms(config, depth, position))
  last_layer = {p: [float(grad_norms[p][str(d)]["median"][-1]) for d in config.depths]
                for p in positions}
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

  results = {"config": config, "grad_norms": grad_norms, "last_layer_median": last_layer,
             "mean_layer_median": mean_layer, "last_layer_depth_exponent": depth_exponent,
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
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xticks(depths, [str(d) for d in config.depths])
  ax.minorticks_off()
  ax.set_xlabel("depth L")
  ax.set_title("last layer's ||dL/dW2|| vs depth")
  ax.legend()
  plotting.save(fig, out_dir / "grad_norms.png")

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
