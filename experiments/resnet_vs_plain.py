r"""ResNet vs its plain twin at initialization: per-block gradients and a stage's Jacobian.

For CIFAR-style ResNet-18 / ResNet-34 and the same networks without shortcuts
(:class:`jaxgrad.models.PlainNet`), with and without BatchNorm, on random
32x32x3 inputs with random labels (initialization statistics need no data):

1. **Backprop signal per block**, E_b ||dL/dz_l[b]||, where z_l is block l's
   pre-activation (residual sum before the last ReLU), and **per-stage weight
   gradient norms** sqrt(sum over the stage's convs of ||dL/dW||_F^2), BatchNorm
   in train mode (batch statistics), He-normal convolutions, median and
   interquartile band over seeds.
2. **Singular values of the first stage's Jacobian** dh_out/dh_in for one
   example (BatchNorm in train mode over the batch; the Jacobian includes the
   example's effect on the batch statistics), on a ``jacobian_size`` x
   ``jacobian_size`` x width input h = relu(N(0, 1)) standing in for the stem's
   output. Seed 002 says the shortcut makes dz/dx = I + dF/dx, "identity plus a
   perturbation", so gradients pass "without attenuation"; the spectrum shows
   how far from 1 the singular values actually are, residual vs plain.

    python -m experiments.resnet_vs_plain            # width 16, 4 seeds, a few minutes
    python -m experiments.resnet_vs_plain --quick    # the ResNet-18 pair only, width 8, 3 seeds
    python -m experiments.resnet_vs_plain --width 64 --seeds 2   # the seed's ResNet-18

Writes ``config.json``, ``results.json``, ``grad_flow.png`` and
``jacobian.png`` under ``--out``. Keys use JAX's ``rbg`` PRNG: XLA compiles the
default threefry generator for ~60 conv tensors about 8x slower on CPU.
"""

import dataclasses
import pathlib
import warnings

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgrad import diagnostics, plotting, probe  # noqa: E402
from jaxgrad.models import resnet  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

STAGES = {10: (1, 1, 1, 1), 18: resnet.RESNET18, 34: resnet.RESNET34}
NUM_CLASSES = 10
ZERO_RTOL = 1e-5


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl="rbg")


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  depths: tuple[int, ...] = _config.setting((18, 34), "network depths",
                                            choices=tuple(STAGES))
  width: int = _config.setting(16, "base channels (seed: 64)", at_least=1)
  image_size: int = _config.setting(32, at_least=1)
  batch: int = _config.setting(8, at_least=1)
  seeds: int = _config.setting(4, at_least=1)
  jacobian_size: int = _config.setting(8, "spatial size of the stage input for the Jacobian",
                                       at_least=1)
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(depths=(18,), width=8, batch=4, seeds=3, jacobian_size=6)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(depths=(10,), width=2, image_size=8, batch=2, seeds=2, jacobian_size=3)


def _name(depth: int, residual: bool) -> str:
  return f"{'ResNet' if residual else 'Plain'}-{depth}"


def gradient_flow(config: Config, depth: int, residual: bool, norm: bool) -> dict:
  """Per-block backprop signal and per-stage weight-gradient norms, per seed."""
  model = resnet.ResNet(STAGES[depth], width=config.width, num_classes=NUM_CLASSES,
                        residual=residual, norm=norm)
  shape = (config.batch, config.image_size, config.image_size, 3)
  layout = probe.layout(model, jax.ShapeDtypeStruct(shape, jnp.float32), train=True,
                        mutable=["batch_stats"])

  def one(key):
    k_x, k_y, k_init = jax.random.split(key, 3)
    x = jax.random.normal(k_x, shape)
    y = jax.random.randint(k_y, (config.batch,), 0, NUM_CLASSES)
    variables = model.init(k_init, x)

    def loss(params, perturbations):
      logits, _ = model.apply({**variables, "params": params, "perturbations": perturbations},
                              x, train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    # One backward pass for the weight gradients and the backprop signal.
    value, (grads, signal_grads) = jax.value_and_grad(loss, argnums=(0, 1))(
        variables["params"], variables["perturbations"])
    signal = diagnostics.signal_norms(signal_grads, layout=layout)
    layer_norms = diagnostics.layer_grad_norms(grads, layout=layout)
    return {"signal": signal.stack(), "layers": layer_norms, "loss": value}

  keys = jax.random.split(_key(config.seed), config.seeds)
  out = jax.tree.map(np.asarray, sweep(one, keys))
  names = list(out["layers"])
  stages = sorted({n.split("/")[0].split("_")[0] for n in names},
                  key=lambda s: int(s[len("stage"):]))
  stage_norms = np.stack(
      [np.sqrt(sum(out["layers"][n] ** 2 for n in names if n.split("/")[0].split("_")[0] == s))
       for s in stages], axis=1)
  return {"block_signal": out["signal"], "stage_names": stages, "stage_grad_norm": stage_norms,
          "layer_names": names, "layer_grad_norm": np.stack([out["layers"][n] for n in names], 1),
          "loss": out["loss"]}


def stage_jacobian(config: Config, depth: int, residual: bool) -> np.ndarray:
  """Singular values of the first stage's per-example Jacobian, shape (seeds, n)."""
  c, s = config.width, config.jacobian_size
  stage = resnet.ResNetStage(c, STAGES[depth][0], residual=residual, norm=True)
  shape = (max(2, config.batch), s, s, c)

  def one(key):
    k_h, k_init = jax.random.split(key)
    h = jax.nn.relu(jax.random.normal(k_h, shape))
    variables = stage.init(k_init, h)

    def first_example(x0):
      out, _ = stage.apply(variables, h.at[0].set(x0.reshape(shape[1:])), train=True,
                           mutable=["batch_stats"])
      return out[0].ravel()

    return diagnostics.singular_values(first_example, h[0].ravel())

  keys = jax.random.split(jax.random.fold_in(_key(config.seed), depth), config.seeds)
  return np.asarray(sweep(one, keys))


def _quartiles(samples: np.ndarray) -> dict:
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # e.g. an infinite condition number
    q25, q50, q75 = np.nanpercentile(np.where(np.isfinite(samples), samples, np.nan),
                                     [25, 50, 75], axis=0)
  return {"median": q50, "q25": q25, "q75": q75, "per_seed": samples}


def run(config: Config) -> dict:
  flows = {}
  jobs = [(d, r, n) for n in (True, False) for d in config.depths for r in (True, False)]
  for depth, residual, norm in _cli.progress(jobs, desc="gradient flow"):
    flow = gradient_flow(config, depth, residual, norm)
    signal = flow["block_signal"]
    flows[f"{_name(depth, residual)}, {'BN' if norm else 'no BN'}"] = {
        "depth": depth, "residual": residual, "norm": norm,
        "block_signal": _quartiles(signal),
        # ||dL/dz|| at the first block over the last: < 1 vanishing, > 1 exploding toward the input
        "first_over_last": _quartiles(signal[:, 0] / signal[:, -1]),
        "stage_names": flow["stage_names"],
        "stage_grad_norm": _quartiles(flow["stage_grad_norm"]),
        "layer_names": flow["layer_names"],
        "layer_grad_norm": _quartiles(flow["layer_grad_norm"]),
        "initial_loss": _quartiles(flow["loss"]),
    }
  jacobians = {}
  jobs = [(d, r) for d in config.depths for r in (True, False)]
  for depth, residual in _cli.progress(jobs, desc="stage jacobians"):
    sv = stage_jacobian(config, depth, residual)
    stats = diagnostics.spectrum_stats(sv)
    jacobians[f"{_name(depth, residual)} stage 1"] = {
        "depth": depth, "residual": residual, "blocks": STAGES[depth][0],
        "singular_values": _quartiles(np.sort(sv, axis=1)[:, ::-1]),
        **{k: _quartiles(np.asarray(v)) for k, v in stats.items()},
        # Singular values below ZERO_RTOL * s_max are zero up to float32 rounding:
        # output units whose ReLU is closed.
        "zero_fraction": _quartiles(np.mean(sv < ZERO_RTOL * sv.max(axis=1, keepdims=True),
                                            axis=1)),
        "median_s": _quartiles(np.median(sv, axis=1)),
    }
  results = {"config": config, "gradient_flow": flows, "jacobian": jacobians}
  return results


def plot(results: dict, out_dir: pathlib.Path) -> None:
  flows = results["gradient_flow"]
  fig, axes = plotting.figure(2, 2, panel=(3.6, 2.6))
  colors = {}
  for name, flow in flows.items():
    col = 0 if flow["norm"] else 1
    arch = name.split(",")[0]
    color = colors.setdefault(arch, f"C{len(colors)}")
    style = "-" if flow["residual"] else ":"
    signal = np.asarray(flow["block_signal"]["per_seed"])
    line = plotting.median_band(axes[0, col], np.arange(1, signal.shape[1] + 1), signal,
                                label=arch, color=color, marker="o")
    line.set_linestyle(style)
    stage = np.asarray(flow["stage_grad_norm"]["per_seed"])
    line = plotting.median_band(axes[1, col], np.arange(stage.shape[1]), stage, label=arch,
                                color=color, marker="o")
    line.set_linestyle(style)
  for col, title in enumerate(("with BatchNorm", "without BatchNorm")):
    axes[0, col].set_title(f"{title}: ||dL/dz|| per block")
    axes[0, col].set_xlabel("block (input → output)")
    axes[1, col].set_title(f"{title}: ||dL/dW|| per stage")
    axes[1, col].set_xlabel("stage (0 = stem, last = head)")
    for row in range(2):
      axes[row, col].set_yscale("log")
  axes[0, 0].legend()
  plotting.save(fig, out_dir / "grad_flow.png")

  fig, axes = plotting.figure(1, 1, panel=(4.4, 3.0))
  ax = axes[0, 0]
  for i, (name, jac) in enumerate(results["jacobian"].items()):
    sv = np.asarray(jac["singular_values"]["per_seed"])
    rank = np.arange(1, sv.shape[1] + 1) / sv.shape[1]
    line = plotting.median_band(ax, rank, sv, label=f"{name} ({jac['blocks']} blocks)",
                                color=f"C{i // 2}")
    line.set_linestyle("-" if jac["residual"] else ":")
  ax.axhline(1.0, color="k", linewidth=0.8)
  ax.set_yscale("log")
  ax.set_ylim(bottom=1e-6)  # below: zeros up to float32 rounding (closed ReLUs)
  ax.set_xlabel("rank / n (singular values, descending)")
  ax.set_ylabel("singular value of dh_out/dh_in")
  ax.set_title("stage-1 Jacobian (BN, one example)")
  ax.legend()
  plotting.save(fig, out_dir / "jacobian.png")


def summary(results: dict) -> str:
  rows = []
  for name, flow in results["gradient_flow"].items():
    sig = flow["block_signal"]["median"]
    rows.append([name, float(sig[0]), float(sig[-1]), float(flow["first_over_last"]["median"]),
                 float(flow["initial_loss"]["median"])])
  table = _cli.format_table(["network", "||dL/dz|| first block", "last block", "first/last",
                             "loss at init"], rows)
  rows = [[name, float(j["max"]["median"]), float(j["median_s"]["median"]),
           float(j["mean_sq"]["median"]), float(j["zero_fraction"]["median"])]
          for name, j in results["jacobian"].items()]
  jac = _cli.format_table(["stage Jacobian", "s_max", "median s", "mean s²", "fraction s = 0"],
                          rows)
  return table + "\n\n" + jac


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
