r"""The adding problem (Hochreiter & Schmidhuber 1997; Pascanu, Mikolov & Bengio 2013).

Input: ``T`` steps of (value ``U[0, 1]``, marker); two positions are marked,
one in the first 10% of the sequence and one in ``[10%, 50%)``; target: the sum
of the two marked values, read from the last step, at least ``T/2`` steps
after the second mark. Predicting the mean scores MSE ``Var(u_1 + u_2) = 1/6
~ 0.167``; a seed *solves* a setting when its test MSE (on fresh sequences) is
below 0.04. Pascanu et al.'s stricter per-sample criterion (squared error above
0.04 counts as an error) is reported as the error rate.

For every ``T`` in ``--lengths``, every cell (simple tanh RNN, LSTM, GRU; the
LSTM once per forget-gate bias in ``--forget-biases``) and with and without
``clip_by_global_norm(1.0)``, ``--seeds`` replicas train with
Adam on fresh batches, all seeds and both clipping arms of a setting in one ``vmap``-ed, jitted
``lax.scan``; the figure shows the fraction of seeds that solve each setting
and the median training curves.

The LSTM's forget gate. At initialisation the forget gate is about
:math:`\sigma(b_f)`, so the cell state carries the second marked value to the
read-out, at least T/2 steps later, with a factor of about
:math:`\sigma(b_f)^{T/2}`: :math:`0.5^{25} \approx 3\times10^{-8}` at
PyTorch's and Flax's :math:`b_f = 0` for T = 50, :math:`4\times10^{-4}` at
+1, 0.30 at +3 (:class:`jaxgrad.models.recurrent.ForgetBiasLSTMCell`; Gers et
al. 2000, Jozefowicz et al. 2015). ``forget_gate.png`` sets the fraction
solved against that predicted memory factor.

    python -m experiments.adding_problem            # T = 50, 100, 200; ~72 min on 2 idle cores
    python -m experiments.adding_problem --quick    # T = 10, 30; under a minute
    python -m experiments.adding_problem --lengths 50 --cells lstm --seeds 16

Writes ``config.json``, ``results.json``, ``success.png``, ``loss.png`` and
``forget_gate.png`` (with the LSTM).
"""

import dataclasses
import pathlib
from typing import Any

from experiments import _cli, _config

import matplotlib.pyplot as plt  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import plotting  # noqa: E402
from jaxgrad.models.recurrent import RECURRENT_INITS  # noqa: E402
from jaxgrad.studies import recurrent  # noqa: E402

CELLS = ("simple", "lstm", "gru")
CLIPPING = ("none", "clip_norm")
SOLVED_MSE = recurrent.ADDING_SOLVED_MSE
COLORS = {"simple": "C0", "lstm": "C2", "gru": "C4"}


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """Trains each (T, cell or LSTM forget bias, clipping) setting of the adding problem.

  ``seeds`` replicas per setting, Adam on fresh batches; a seed solves a setting when its
  test MSE is below 0.04.
  """

  lengths: tuple[int, ...] = _config.setting((50, 100, 200), "sequence lengths T", at_least=4)
  cells: tuple[str, ...] = _config.setting(CELLS, choices=CELLS)
  forget_biases: tuple[float, ...] = _config.setting(
      (0.0, 1.0, 3.0), "LSTM forget-gate biases at init, one LSTM arm each", increasing=True)
  clipping: tuple[str, ...] = _config.setting(CLIPPING, choices=CLIPPING)
  clip_norm: float = _config.setting(1.0, above=0)
  seeds: int = _config.setting(4, at_least=1)
  hidden: int = _config.setting(64, at_least=1)
  steps: int = _config.setting(1500, at_least=1)
  batch_size: int = _config.setting(64, at_least=1)
  learning_rate: float = _config.setting(2e-3, above=0)
  init: str = _config.setting("pytorch", "recurrent init", choices=RECURRENT_INITS)
  test_size: int = _config.setting(1000, "fresh test sequences", at_least=1)
  log_every: int = _config.setting(25, "steps per logged loss", at_least=1)
  unroll: int = _config.setting(4, at_least=1)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  def relations(self) -> dict[str, str]:
    """``steps`` must be a multiple of ``log_every``, the logged loss's interval."""
    if self.steps % self.log_every:
      return {"steps": f"must be a multiple of log_every={self.log_every}"}
    return {}

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: T = 10, 30, LSTM and GRU, H = 32, about 59 s on 2 CPU cores."""
    return cls(lengths=(10, 30), cells=("lstm", "gru"), forget_biases=(0.0, 3.0), seeds=2,
               hidden=32, steps=300, batch_size=32, test_size=500, unroll=1)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: one LSTM (b_f = 3) at T = 6, H = 4, 2 seeds, 4 steps."""
    return cls(lengths=(6,), cells=("lstm",), forget_biases=(3.0,), seeds=2, hidden=4,
               steps=4, batch_size=4, test_size=50, log_every=1, unroll=1)


def train_settings(config: Config, cell: str, length: int,
                   forget_bias: float = 0.0) -> dict[str, dict]:
  """Every clipping arm x seed of one (cell, forget bias, T) at ``config``.

  :func:`jaxgrad.studies.recurrent.train_adding_setting`, by this name so that
  tests can stand a fake trainer in for it.
  """
  return recurrent.train_adding_setting(config, cell, length, forget_bias)


def _arms(config: Config) -> list[tuple[str, float]]:
  return recurrent.adding_arms(config.cells, config.forget_biases)


def setting_name(arm: str, clipping: str, length: int) -> str:
  """The key of one setting in ``results["settings"]``, e.g. ``"lstm b_f=3/none/T=50"``."""
  return f"{arm}/{clipping}/T={length}"


def setting_names(config: Config) -> list[str]:
  """Every setting a run of ``config`` writes, in the order it writes them."""
  return [setting_name(recurrent.arm_name(*a), k, t) for t in config.lengths
          for a in _arms(config) for k in config.clipping]


def run(config: Config, checkpoint: _cli.Checkpoint = _cli.Checkpoint()) -> dict:
  """Trains every setting; ``results.json`` is rewritten after each (cell, T).

  A long run that is stopped (the default takes about 72 min on 2 cores) keeps every
  setting it finished, and a rerun of the same config into the same folder
  (through :func:`main`) trains only the others; the figures come at the end.
  """
  jobs = [(cell, b, t) for t in config.lengths for cell, b in _arms(config)]
  done = checkpoint.done
  settings = {}
  results = {"config": config, "solved_mse": SOLVED_MSE,
             "constant_mse": recurrent.ADDING_CONSTANT_MSE,
             "logged_steps": np.arange(1, config.steps // config.log_every + 1) * config.log_every,
             "settings": settings}
  for cell, forget_bias, length in _cli.progress(jobs, desc="adding problem"):
    arm = recurrent.arm_name(cell, forget_bias)
    names = [setting_name(arm, k, length) for k in config.clipping]
    if all(n in done for n in names):
      settings.update((n, done[n]) for n in names)
      continue
    for clipping, out in train_settings(config, cell, length, forget_bias).items():
      settings[setting_name(arm, clipping, length)] = {
          "cell": cell, "arm": arm, "forget_bias": forget_bias, "clipping": clipping,
          "length": length, "memory_factor": recurrent.memory_factor(forget_bias, length), **out}
    checkpoint.save(results)
  return results


STYLE = {"none": "-", "clip_norm": "--"}


def _colors(config: Config) -> dict[str, Any]:
  """One colour per arm: the LSTM's in greens, darker as the forget bias grows."""
  lstm = [recurrent.arm_name("lstm", b) for b in config.forget_biases]
  greens = {name: plt.cm.Greens(0.45 + 0.5 * i / max(1, len(lstm) - 1))
            for i, name in enumerate(lstm)}
  return {recurrent.arm_name(*a): greens.get(recurrent.arm_name(*a), COLORS[a[0]])
          for a in _arms(config)}


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``success.png``, ``loss.png`` and, with the LSTM, ``forget_gate.png``.

  ``success.png``: the fraction of seeds that solve each (arm, clipping) against T.
  ``loss.png``: median training curves per T, beside the mean predictor and the threshold.
  ``forget_gate.png``: the LSTM's fraction solved and its memory factor σ(b_f)^(T/2) at init
  against the forget-gate bias.
  """
  config = results["config"]
  plot_success(results["settings"], config, out_dir)
  plot_loss(results, config, out_dir)
  if "lstm" in config.cells:
    plot_forget_gate(results["settings"], config, out_dir)


def plot_success(settings: dict, config: Config, out_dir: pathlib.Path) -> None:
  """``success.png``: the fraction of seeds that solve each (arm, clipping) against T."""
  fig, axes = plotting.figure(1, 1, panel=(4.4, 3.0))
  ax = axes[0, 0]
  for arm, color in _colors(config).items():
    for clipping in config.clipping:
      frac = [settings[setting_name(arm, clipping, t)]["fraction_solved"] for t in config.lengths]
      ax.plot(config.lengths, frac, STYLE[clipping], marker="o", color=color,
              label=f"{arm}, {clipping}")
  ax.set(xlabel="sequence length T", ylabel=f"fraction solved (test MSE < {SOLVED_MSE})",
         ylim=(-0.05, 1.05), xticks=list(config.lengths))
  fig.suptitle(f"adding problem, H={config.hidden}, {config.steps} Adam steps, "
               f"{config.seeds} seeds")
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, out_dir / "success.png")


def plot_loss(results: dict, config: Config, out_dir: pathlib.Path) -> None:
  """``loss.png``: median training curves per T, beside the mean predictor and the threshold."""
  fig, axes = plotting.figure(1, len(config.lengths), panel=(3.0, 2.5))
  for ax, length in zip(axes[0], config.lengths):
    for arm, color in _colors(config).items():
      for clipping in config.clipping:
        r = results["settings"][setting_name(arm, clipping, length)]
        line = plotting.median_band(ax, results["logged_steps"], r["loss"], color=color,
                                    label=f"{arm}, {clipping}")
        line.set_linestyle(STYLE[clipping])
    ax.axhline(recurrent.ADDING_CONSTANT_MSE, color="k", linewidth=0.8, linestyle=":")
    ax.axhline(SOLVED_MSE, color="k", linewidth=0.8, linestyle="--")
    ax.set(xlabel="step", yscale="log", title=f"T = {length}")
  axes[0, 0].set_ylabel("training MSE")
  fig.suptitle("median over seeds; dotted: mean predictor, dashed: solved")
  axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, out_dir / "loss.png")


def plot_forget_gate(settings: dict, config: Config, out_dir: pathlib.Path) -> None:
  """``forget_gate.png``: the LSTM's fraction solved against b_f, beside sigma(b_f)^(T/2) at init."""
  fig, axes = plotting.figure(1, 2, panel=(3.6, 2.8))
  solved_ax, memory_ax = axes[0]
  biases = np.asarray(config.forget_biases)
  grid = np.linspace(biases.min(), biases.max(), 200)
  for i, length in enumerate(config.lengths):
    color = f"C{i}"
    for clipping in config.clipping:
      frac = [settings[setting_name(recurrent.arm_name("lstm", b), clipping, length)]
              ["fraction_solved"] for b in config.forget_biases]
      solved_ax.plot(biases, frac, STYLE[clipping], marker="o", color=color,
                     label=f"T = {length}, {clipping}")
    memory = [recurrent.memory_factor(b, length) for b in biases]
    memory_ax.plot(biases, memory, "o", color=color)
    plotting.theory_line(memory_ax, grid, [recurrent.memory_factor(b, length) for b in grid],
                         color=color, label=f"T = {length}")
  solved_ax.set(xlabel=r"forget-gate bias $b_f$ at init", ylim=(-0.05, 1.05),
                ylabel=f"fraction solved (test MSE < {SOLVED_MSE})")
  solved_ax.legend(fontsize=7)
  memory_ax.set(xlabel=r"forget-gate bias $b_f$ at init", yscale="log",
                ylabel=r"memory factor $\sigma(b_f)^{T/2}$ at init")
  memory_ax.legend(fontsize=7)
  fig.suptitle(f"LSTM, adding problem ({config.steps} Adam steps, {config.seeds} seeds)")
  plotting.save(fig, out_dir / "forget_gate.png")


def summary(results: dict) -> str:
  """One row per setting (arm, clipping, T): seeds solved, median test MSE and error rate.

  Then the seeds that diverged and the mean predictor's MSE (the test targets' variance).
  """
  header = ["arm", "clipping", "T", "solved", "median test MSE", "median error rate",
            "diverged", "mean predictor"]
  rows = []
  for r in results["settings"].values():
    n = len(r["solved"])
    rows.append([r["arm"], r["clipping"], r["length"], f"{int(np.sum(r['solved']))}/{n}",
                 float(np.median(r["test_mse"])), float(np.median(r["error_rate"])),
                 f"{r['diverged']}/{n}", float(np.mean(r["constant_mse"]))])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary,
                             settings=setting_names, fast_compile="quick")
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
