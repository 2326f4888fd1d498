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
   a linear warmup to the same rate (``optax.linear_schedule``'s ramp), pre-LN
   and post-LN, seeds vmapped, trained with ``jaxgrad.training.train``.

The studies behind them are in :mod:`jaxgrad.studies.layer_norm_position`.

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
import pathlib

from experiments import _cli, _config

import numpy as np  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)

from jaxgrad import initializers, plotting  # noqa: E402
from jaxgrad.models import transformer  # noqa: E402
from jaxgrad.studies import layer_norm_position as lnp  # noqa: E402

ACTIVATIONS = lnp.ACTIVATIONS
ABLATIONS = lnp.ABLATIONS
POSITIONS = transformer.NORM_POSITIONS


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


def _setting(config: Config) -> lnp.Setting:
  """The task and model hyperparameters of ``config`` (all but depth and norm position)."""
  return lnp.Setting(**{f.name: getattr(config, f.name) for f in dataclasses.fields(lnp.Setting)})


def run(config: Config) -> dict:
  setting = _setting(config)
  sizes = {"batch": config.batch, "seeds": config.seeds, "seed": config.seed}
  jobs = [(p, d) for p in POSITIONS for d in config.depths]
  grad_norms, stream = lnp.depth_sweep(setting, _cli.progress(jobs, desc="grad norms at init"),
                                       **sizes)
  depth_summary = lnp.depth_summary(config.depths, grad_norms, stream)
  ablation = lnp.profile_ablation(
      setting, _cli.progress(config.ablations, desc="profile ablation"), config.ablation_depth,
      **sizes)
  attention = lnp.attention_sweep(_cli.progress(config.head_dims, desc="attention scale"),
                                  seq_len=config.seq_len, **sizes)
  warmup = lnp.warmup_comparison(
      setting, config.train_depth, _cli.progress(POSITIONS, desc="training"), steps=config.steps,
      learning_rate=config.learning_rate, warmup_steps=config.warmup_steps, **sizes)
  return {"config": config, "grad_norms": grad_norms, "stream": stream, **depth_summary,
          "profile_ablation": ablation, "attention": attention, "warmup": warmup,
          "chance_loss": lnp.chance_loss(config.vocab)}


def _plot_profiles(ax, results: dict, position: str, depths: tuple[int, ...]) -> None:
  """Per-layer ||dL/dW2_l|| at every depth, one norm position."""
  cmap = plotting.plt.cm.viridis
  for i, depth in enumerate(depths):
    stats = results["grad_norms"][position][str(depth)]
    plotting.median_band(ax, np.arange(1, depth + 1), stats["per_seed"], label=f"L={depth}",
                         color=cmap(i / max(1, len(depths) - 1)))
  ax.set_yscale("log")
  ax.set_xscale("log")
  ax.set_title(f"{position}-LN: ||dL/dW2_l|| at init")
  ax.set_xlabel("layer l")


def _plot_last_vs_depth(ax, results: dict, config: Config) -> None:
  """The last layer's gradient norm against depth, next to 1/sqrt(L) and q_L^(-1/2)."""
  depths = np.asarray(config.depths, float)
  for position, color in zip(POSITIONS, ("C0", "C3")):
    samples = lnp.layer_across_depths(results["grad_norms"][position], config.depths, -1)
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


def _plot_grad_norms(results: dict, config: Config, out_dir: pathlib.Path) -> None:
  fig, axes = plotting.figure(1, 3, panel=(3.2, 2.7))
  for col, position in enumerate(POSITIONS):
    _plot_profiles(axes[0, col], results, position, config.depths)
  axes[0, 0].set_ylabel("gradient norm")
  axes[0, 0].legend()
  _plot_last_vs_depth(axes[0, 2], results, config)
  plotting.save(fig, out_dir / "grad_norms.png")


def _plot_stream_length(ax, results: dict, config: Config) -> None:
  """Pre-LN's q_L against depth, next to q_0 + L v and c_L."""
  theory = results["pre_ln_last_layer"]
  depths = np.asarray(config.depths, float)
  pre_q = {str(d): results["stream"]["pre"][str(d)]["q"] for d in config.depths}
  plotting.median_band(ax, depths, lnp.layer_across_depths(pre_q, config.depths, -1),
                       label="q_L measured", color="C0", marker="o")
  q_0, v_first = float(theory["q_0"][0]), float(theory["v"][0])
  plotting.theory_line(ax, depths, q_0 + depths * v_first, color="C0",
                       label=f"q_0 + L v, v = {v_first:.2f} (L={config.depths[0]})")
  ax.plot(depths, theory["c"], color="C3", marker="s", label="c_L = ||dL/dW2_L|| √q_L")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("depth L")
  ax.set_title("pre-LN: stream length q_L")
  ax.legend(fontsize=6)


def _plot_local_slopes(ax, results: dict, config: Config) -> None:
  """Local log-log slopes of the last layer: measured, from q_L, and the remainder c_L."""
  theory = results["pre_ln_last_layer"]
  slopes = theory["local_slopes"]
  for key, color, marker in (("measured", "C0", "o"), ("predicted", "C2", "^"),
                             ("residual", "C3", "s")):
    label = {"measured": "measured d log g / d log L",
             "predicted": "-½ d log q_L / d log L",
             "residual": "d log c_L / d log L"}[key]
    ax.plot(slopes["midpoints"], slopes[key], color=color, marker=marker, label=label)
  ax.plot(np.asarray(config.depths, float), theory["linear_growth_slope"], color="C2",
          linestyle=":", marker="x", label="-½ L v / (q_0 + L v)")
  ax.axhline(-0.5, color="k", linewidth=0.8, linestyle="--")
  ax.axhline(0.0, color="k", linewidth=0.5)
  ax.set_xscale("log")
  ax.set_xlabel("depth L (geometric midpoints)")
  ax.set_title("local slopes of the last layer")
  ax.legend(fontsize=6)


def _plot_token_cosine(ax, results: dict, config: Config) -> None:
  """The mean cosine between the tokens of a sequence after the last block, against depth."""
  depths = np.asarray(config.depths, float)
  for position, color in zip(POSITIONS, ("C0", "C3")):
    cosine = {str(d): results["stream"][position][str(d)]["token_cosine"]
              for d in config.depths}
    plotting.median_band(ax, depths, lnp.layer_across_depths(cosine, config.depths, -1),
                         label=f"{position}-LN", color=color, marker="o")
  ax.set_xscale("log")
  ax.set_xlabel("depth L")
  ax.set_title("token cosine in a sequence, x_L")
  ax.legend()


def _plot_last_layer(results: dict, config: Config, out_dir: pathlib.Path) -> None:
  """Pre-LN's last layer: q_L and c_L vs depth, local slopes, token similarity."""
  fig, axes = plotting.figure(1, 3, panel=(3.2, 2.7))
  _plot_stream_length(axes[0, 0], results, config)
  _plot_local_slopes(axes[0, 1], results, config)
  _plot_token_cosine(axes[0, 2], results, config)
  plotting.save(fig, out_dir / "last_layer.png")


def _plot_profile_ablation(results: dict, config: Config, out_dir: pathlib.Path) -> None:
  """Per-layer profiles, each divided by its first layer's median, for every ablation."""
  fig, axes = plotting.figure(1, 2, panel=(3.4, 2.7))
  layers = np.arange(1, config.ablation_depth + 1)
  for i, (name, arms) in enumerate(results["profile_ablation"].items()):
    for col, position in enumerate(POSITIONS):
      samples = np.asarray(arms[position]["grad_norm"]["per_seed"])
      ratio = arms[position]["last_over_first"]
      plotting.median_band(axes[0, col], layers,
                           samples / np.median(samples[:, 0]),
                           label=f"{name} ({ratio:.2f})", color=f"C{i}", marker="o")
  for col, position in enumerate(POSITIONS):
    axes[0, col].set_yscale("log")
    axes[0, col].set_xlabel("layer l")
    axes[0, col].set_title(f"{position}-LN, L={config.ablation_depth}: ||dL/dW2_l|| ÷ layer 1",
                           fontsize=9)
    axes[0, col].legend(fontsize=6)
  plotting.save(fig, out_dir / "profile_ablation.png")


def _plot_attention(results: dict, out_dir: pathlib.Path) -> None:
  """Logit std, row entropy and max probability against d_k, scaled vs unscaled."""
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


def _plot_warmup(results: dict, config: Config, out_dir: pathlib.Path) -> None:
  """Training loss and gradient norm per step, with and without warmup."""
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
  axes[0, 0].set_title(f"reversal task, depth {config.train_depth}, "
                       f"Adam lr {config.learning_rate:g}")
  axes[0, 0].set_ylabel("training loss (dashed: chance)")
  axes[0, 1].set_yscale("log")
  axes[0, 1].set_title("gradient norm")
  for ax in axes[0]:
    ax.set_xlabel("step")
  axes[0, 0].legend()
  plotting.save(fig, out_dir / "warmup.png")


def plot(results: dict, out_dir: pathlib.Path) -> None:
  config = results["config"]
  _plot_grad_norms(results, config, out_dir)
  if len(config.depths) > 1:
    _plot_last_layer(results, config, out_dir)
  _plot_profile_ablation(results, config, out_dir)
  _plot_attention(results, out_dir)
  _plot_warmup(results, config, out_dir)


def summary(results: dict) -> str:
  config = results["config"]
  depths = config.depths if dataclasses.is_dataclass(config) else config["depths"]
  lines = []
  rows = [[p, *[results["last_layer_median"][p][i] for i in range(len(depths))],
           "-" if results["last_layer_depth_exponent"] is None
           else results["last_layer_depth_exponent"][p]]
          for p in POSITIONS]
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


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
