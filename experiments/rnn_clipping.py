r"""Seed 000 §7.3: training a 3-layer vanilla RNN with and without gradient clipping.

The seed's setting, by default exactly: 1000 sine sequences of length 100
(frequency U[0.5, 2], phase U[0, 2 pi)), target the next value; a 3-layer
``tanh`` RNN of hidden size 64 with a Dense head on the last step, PyTorch's
default initialization U(+-1/sqrt(H)); MSE; Adam, lr 0.01; batch 64 shuffled
every epoch (15 batches of 64 and one of 40); 20 epochs. Arms:

* ``none``: no clipping (the seed's first model);
* ``clip_norm``: ``clip_by_global_norm(1.0)`` (the seed's second model,
  ``torch.nn.utils.clip_grad_norm_``);
* ``clip_value``: every gradient entry clipped to [-c, c] (seed §4.2);
* ``lstm``, ``gru``: the gated cells of seed §5.1, no clipping.

Every arm trains ``--seeds`` replicas (data set, initialization and shuffling
drawn from the seed; the three vanilla arms of one seed share all three) in one
``vmap``-ed, jitted ``lax.scan``. Recorded per step: the loss and the global
gradient norm *before* clipping (``optax.snapshot``); derived: the seed's epoch
loss (mean of the epoch's batch losses), the fraction of steps whose gradient
norm exceeds the clipping threshold, and the seeds that diverged (NaN/Inf loss).

    python -m experiments.rnn_clipping            # the seed's setting, 8 seeds, ~5-10 min on 2 cores
    python -m experiments.rnn_clipping --quick    # smaller, under a minute
    python -m experiments.rnn_clipping --arms none,clip_norm --seeds 16

Writes ``config.json``, ``results.json``, ``loss.png`` and ``grad_norm.png``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import numpy as np  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)

from jaxgrad import plotting, training  # noqa: E402
from jaxgrad.models.recurrent import RECURRENT_INITS  # noqa: E402
from jaxgrad.studies import recurrent  # noqa: E402

COLORS = {"none": "C0", "clip_norm": "C3", "clip_value": "C1", "lstm": "C2", "gru": "C4"}


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Every clipping arm and gated cell trained on the seed's sine task, ``seeds`` each.

  Every step's loss and gradient norm before clipping are recorded.
  """

  arms: tuple[str, ...] = _config.setting(recurrent.CLIPPING_ARMS, choices=recurrent.CLIPPING_ARMS)
  seeds: int = _config.setting(8, "replicas per arm", at_least=1)
  num_sequences: int = _config.setting(1000, at_least=1)
  length: int = _config.setting(100, "sequence length T", at_least=2)
  hidden: int = _config.setting(64, at_least=1)
  layers: int = _config.setting(3, at_least=1)
  learning_rate: float = _config.setting(0.01, above=0)
  batch_size: int = _config.setting(64, at_least=1)
  epochs: int = _config.setting(20, at_least=1)
  clip_norm: float = _config.setting(1.0, "clip_by_global_norm c", above=0)
  clip_value: float = _config.setting(0.1, "clip by value c", above=0)
  init: str = _config.setting("pytorch", "recurrent init",
                              choices=RECURRENT_INITS)
  rho: float = _config.setting(1.0, "spectral radius (not pytorch)", above=0)
  unroll: int = _config.setting(4, "time steps per scan iteration", at_least=1)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: 3 seeds, shorter and fewer sequences, about 35 s on 2 CPU cores."""
    return cls(seeds=3, num_sequences=256, length=50, hidden=32, layers=2, epochs=5)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: none and clip_norm, T = 6, H = 4, one layer, 2 epochs."""
    return cls(arms=("none", "clip_norm"), seeds=2, num_sequences=20, length=6,
               hidden=4, layers=1, batch_size=8, epochs=2, unroll=1)

  @property
  def steps_per_epoch(self) -> int:
    """Training steps per epoch: one per batch, the last one padded."""
    return recurrent.arm_steps_per_epoch(self)


def train_arm(config: Config, arm: str) -> training.TrainResult:
  """All seeds of one arm in one jitted, vmapped program: :func:`recurrent.train_arm_setting`."""
  return recurrent.train_arm_setting(config, arm)


def run(config: Config, checkpoint: _cli.Checkpoint = _cli.Checkpoint()) -> dict:
  """Trains every arm; ``results.json`` is rewritten after each (``results["settings"]``, by arm).

  A stopped run keeps every arm it finished, and a rerun of the same config
  into the same folder (through :func:`main`) trains only the others; the
  figures come at the end.
  """
  done = checkpoint.done
  settings = {}
  results = {"config": config, "steps_per_epoch": config.steps_per_epoch, "settings": settings}
  for arm in _cli.progress(config.arms, desc="rnn_clipping arms"):
    if arm in done:
      settings[arm] = done[arm]
      continue
    settings[arm] = _measure(config, arm, train_arm(config, arm))
    checkpoint.save(results)
  return results


def _measure(config: Config, arm: str, result: training.TrainResult) -> dict:
  """What one arm's training gives (:func:`recurrent.arm_measures`), with its cell and chain."""
  optimizer = recurrent.arm_optimizer(arm, config.learning_rate, config.clip_norm,
                                      config.clip_value)
  return {"cell": recurrent.ARM_CELL[arm], "optimizer": optimizer,
          **recurrent.arm_measures(result, epochs=config.epochs, clip_norm=config.clip_norm)}


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``loss.png`` and ``grad_norm.png``.

  ``loss.png``: the seed's epoch loss and every step's batch loss, per arm.
  ``grad_norm.png``: the global gradient norm before clipping, beside the threshold.
  """
  config = results["config"]
  config = config if isinstance(config, Config) else Config(**{
      k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
  title = (f"{config.layers}-layer RNN, H={config.hidden}, T={config.length}, Adam lr "
           f"{config.learning_rate:g}, {config.seeds} seeds (median, IQR band)")
  plot_loss(results["settings"], config, title, out_dir)
  plot_grad_norm(results["settings"], config, title, out_dir)


def plot_loss(settings: dict, config: Config, title: str, out_dir: pathlib.Path) -> None:
  """``loss.png``: the seed's epoch loss and every step's batch loss, per arm."""
  fig, axes = plotting.figure(1, 2, panel=(3.8, 2.9))
  epochs = np.arange(1, config.epochs + 1)
  for arm, r in settings.items():
    label = f"{arm} ({r['diverged']} diverged)" if r["diverged"] else arm
    plotting.median_band(axes[0, 0], epochs, r["epoch_loss"], label=label, color=COLORS[arm],
                         marker="o")
    steps = np.arange(1, np.shape(r["step_loss"])[1] + 1)
    plotting.median_band(axes[0, 1], steps, r["step_loss"], label=label, color=COLORS[arm])
  axes[0, 0].set(xlabel="epoch", ylabel="epoch loss (MSE)", yscale="log", title="seed's curve")
  axes[0, 1].set(xlabel="step", ylabel="batch loss (MSE)", yscale="log", title="every step")
  axes[0, 0].legend()
  fig.suptitle(title)
  plotting.save(fig, out_dir / "loss.png")


def plot_grad_norm(settings: dict, config: Config, title: str, out_dir: pathlib.Path) -> None:
  """``grad_norm.png``: the global gradient norm before clipping, beside the threshold."""
  fig, axes = plotting.figure(1, 1, panel=(6.4, 3.2))
  ax = axes[0, 0]
  for arm, r in settings.items():
    frac = np.median(r["fraction_above_clip_norm"])
    steps = np.arange(1, np.shape(r["grad_norm"])[1] + 1)
    plotting.median_band(ax, steps, r["grad_norm"], color=COLORS[arm],
                         label=f"{arm}: ‖g‖>{config.clip_norm:g} on {frac:.0%} of steps")
  ax.axhline(config.clip_norm, color="k", linestyle="--", linewidth=0.8)
  ax.set(xlabel="step", ylabel="global gradient norm before clipping", yscale="log")
  fig.suptitle(title)
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, out_dir / "grad_norm.png")


def summary(results: dict) -> str:
  """One row per arm: cell, final epoch loss and IQR, diverged, clipped steps, max ‖g‖.

  Clipped steps: the median fraction of steps with ‖g‖ above ``clip_norm``; max ‖g‖: the
  median over seeds of the largest finite one.
  """
  header = ["arm", "cell", "final epoch loss", "IQR", "diverged", "‖g‖>c steps", "max ‖g‖"]
  rows = []
  for arm, r in results["settings"].items():
    q = r["final_epoch_loss"]
    rows.append([arm, r["cell"], float(q["median"]), f"[{q['q25']:.3g}, {q['q75']:.3g}]",
                 f"{r['diverged']}/{len(r['diverged_at'])}",
                 f"{float(np.median(r['fraction_above_clip_norm'])):.1%}",
                 float(np.nanmedian(r["max_grad_norm"]))])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary,
                             settings=lambda config: list(config.arms))
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
