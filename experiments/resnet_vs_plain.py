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

from experiments import _cli, _config

import numpy as np  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)

from jaxgrad import diagnostics, plotting  # noqa: E402
from jaxgrad.stats import quartiles  # noqa: E402
from jaxgrad.studies import resnet  # noqa: E402

STAGES = resnet.STAGES


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """ResNets against plain twins at init, with and without BatchNorm, per depth."""

  depths: tuple[int, ...] = _config.setting((18, 34), "network depths",
                                            choices=tuple(STAGES))
  width: int = _config.setting(16, "base channels (seed: 64)", at_least=1)
  image_size: int = _config.setting(32, at_least=1)
  batch: int = _config.setting(8, at_least=1)
  seeds: int = _config.setting(4, at_least=1)
  jacobian_size: int = _config.setting(8, "spatial size of the stage input for the Jacobian",
                                       at_least=1)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: ResNet-18 pair only, width 8, 3 seeds, about 55 s on 2 CPU cores."""
    return cls(depths=(18,), width=8, batch=4, seeds=3, jacobian_size=6)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: ResNet-10 and its twin, width 2, 8x8 images, 2 seeds."""
    return cls(depths=(10,), width=2, image_size=8, batch=2, seeds=2, jacobian_size=3)


def _name(depth: int, residual: bool) -> str:
  return f"{'ResNet' if residual else 'Plain'}-{depth}"


def _flow(config: Config, depth: int, residual: bool, norm: bool) -> dict:
  flow = resnet.gradient_flow(depth, residual, norm, width=config.width,
                              image_size=config.image_size, batch=config.batch,
                              seeds=config.seeds, seed=config.seed)
  signal = flow["block_signal"]
  return {
      "depth": depth, "residual": residual, "norm": norm,
      "block_signal": quartiles(signal),
      # ||dL/dz|| at the first block over the last: < 1 vanishing, > 1 exploding toward the input
      "first_over_last": quartiles(signal[:, 0] / signal[:, -1]),
      "stage_names": flow["stage_names"],
      "stage_grad_norm": quartiles(flow["stage_grad_norm"]),
      "layer_names": flow["layer_names"],
      "layer_grad_norm": quartiles(flow["layer_grad_norm"]),
      "initial_loss": quartiles(flow["loss"]),
  }


def _jacobian(config: Config, depth: int, residual: bool) -> dict:
  sv = resnet.stage_jacobian(depth, residual, width=config.width, size=config.jacobian_size,
                             batch=config.batch, seeds=config.seeds, seed=config.seed)
  stats = diagnostics.spectrum_stats(sv)
  return {
      "depth": depth, "residual": residual, "blocks": STAGES[depth][0],
      "singular_values": quartiles(np.sort(sv, axis=1)[:, ::-1]),
      **{k: quartiles(np.asarray(v)) for k, v in stats.items()},
      "zero_fraction": quartiles(resnet.zero_fraction(sv)),
      "median_s": quartiles(np.median(sv, axis=1)),
  }


def run(config: Config) -> dict:
  """Gradient flow at init of every network, then its first stage's Jacobian spectrum.

  For every depth, residual and plain, with and without BatchNorm: the backprop signal per
  block, the weight-gradient norm per stage and the loss; then, with BatchNorm, the singular
  values of the first stage's Jacobian for one example.

  Returns:
    ``config``; ``gradient_flow`` per network (e.g. ``"ResNet-18, BN"``) and ``jacobian``
    per ``"<network> stage 1"``, quartiles over seeds.
  """
  jobs = [(d, r, n) for n in (True, False) for d in config.depths for r in (True, False)]
  flows = {f"{_name(depth, residual)}, {'BN' if norm else 'no BN'}":
           _flow(config, depth, residual, norm)
           for depth, residual, norm in _cli.progress(jobs, desc="gradient flow")}
  jobs = [(d, r) for d in config.depths for r in (True, False)]
  jacobians = {f"{_name(depth, residual)} stage 1": _jacobian(config, depth, residual)
               for depth, residual in _cli.progress(jobs, desc="stage jacobians")}
  return {"config": config, "gradient_flow": flows, "jacobian": jacobians}


def _plot_grad_flow(flows: dict, out_dir: pathlib.Path) -> None:
  """Per-block signal (top) and per-stage weight-gradient norms (bottom), BN vs no BN."""
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


def _plot_jacobian(jacobians: dict, out_dir: pathlib.Path) -> None:
  """The stage-1 Jacobian's singular values against their rank, residual vs plain."""
  fig, axes = plotting.figure(1, 1, panel=(4.4, 3.0))
  ax = axes[0, 0]
  for i, (name, jac) in enumerate(jacobians.items()):
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


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``grad_flow.png`` and ``jacobian.png``.

  ``grad_flow.png``: ||dL/dz|| per block and ||dL/dW|| per stage, with and without
  BatchNorm, residual solid, plain dotted. ``jacobian.png``: the stage-1 Jacobian's singular
  values against their rank.
  """
  _plot_grad_flow(results["gradient_flow"], out_dir)
  _plot_jacobian(results["jacobian"], out_dir)


def summary(results: dict) -> str:
  """Two tables: gradient flow per network, and the stage Jacobians' spectra.

  Per network: median ||dL/dz|| at the first and last block, their ratio and the loss at
  init. Per stage Jacobian: median s_max, median s, mean s² and the fraction of zero
  singular values.
  """
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
