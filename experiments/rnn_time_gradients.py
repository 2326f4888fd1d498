r"""Gradients through time: ||dL/dh_t|| against t, Pascanu's condition, and gated cells.

Part 1, Pascanu, Mikolov & Bengio (2013). A one-layer RNN
``h_t = phi(W_rec h_{t-1} + W_in x_t + b)`` with ``W_rec = rho Q`` (``Q``
Haar-orthogonal, so every singular value is ``rho``), random inputs
``x_t ~ N(0, 1)``, loss ``||y||^2 / 2`` on the head's output at ``t = T``. Then

.. math::

   \frac{\partial L}{\partial h_t} = W_{rec}^\top D_{t+1} \frac{\partial L}{\partial h_{t+1}},
   \qquad D_s = \operatorname{diag}\phi'(z_s),

so the per-step ratio ``||dL/dh_t|| / ||dL/dh_{t+1}||`` is exactly ``rho`` for
the linear cell (``D = I``, ``W`` a scaled isometry) and at most ``rho * gamma``
with ``gamma = max tanh' = 1`` for tanh: ``rho < 1/gamma`` is sufficient for
vanishing, ``rho > 1/gamma`` necessary for exploding. Measured in float64 over
``T = 200`` steps (rho^200 spans 10^-60 .. 10^35), every rho and seed in one
``vmap`` (the recurrent kernel is drawn once and scaled by each rho).

Part 2, seed 000 §5.1 and seed 002: ``||dL/dh_t||`` of simple (tanh), LSTM and
GRU networks (one layer, PyTorch's default init) on the seed's sine task, at
initialization and after Adam training, median and IQR over seeds.

    python -m experiments.rnn_time_gradients            # ~3 min on 2 cores
    python -m experiments.rnn_time_gradients --quick    # under a minute

Writes ``config.json``, ``results.json``, ``pascanu.png``, ``rate.png`` and
``cells.png``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import plotting, stats  # noqa: E402
from jaxgrad.models.recurrent import RECURRENT_INITS, RecurrentNet  # noqa: E402
from jaxgrad.studies import recurrent  # noqa: E402

PASCANU_CELLS = ("linear", "simple")
TRAINED_CELLS = ("simple", "lstm", "gru")


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """||dL/dh_t|| against T - t: Pascanu's test for W_rec = ρQ, then gated cells.

  Pascanu's test with linear and tanh cells; then simple, LSTM and GRU nets on the sine task
  at init and after Adam training.
  """

  rhos: tuple[float, ...] = _config.setting((0.5, 0.9, 1.0, 1.1, 1.5), "spectral radii of W_rec",
                                            above=0, increasing=True)
  length: int = _config.setting(200, "T for Pascanu's test", at_least=3)
  hidden: int = _config.setting(64, at_least=1)
  batch: int = _config.setting(16, "sequences per measurement", at_least=1)
  seeds: int = _config.setting(8, at_least=1)
  cells: tuple[str, ...] = _config.setting(TRAINED_CELLS, "trained cells",
                                           choices=TRAINED_CELLS)
  train_length: int = _config.setting(100, "sine sequence length", at_least=2)
  num_sequences: int = _config.setting(1000, at_least=1)
  train_steps: int = _config.setting(320, at_least=1)
  learning_rate: float = _config.setting(0.01, above=0)
  train_batch: int = _config.setting(64, at_least=1)
  init: str = _config.setting("pytorch", "trained nets' init",
                              choices=RECURRENT_INITS)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: H = 32, 4 seeds, shorter training, about 26 s on 2 CPU cores."""
    return cls(hidden=32, seeds=4, train_length=50, num_sequences=256, train_steps=100)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: ρ = 0.5, 1.5 at T = 12, H = 4; the GRU trained 3 steps."""
    return cls(rhos=(0.5, 1.5), length=12, hidden=4, batch=2, seeds=2, cells=("gru",),
               train_length=6, num_sequences=16, train_steps=3, train_batch=4)


def run(config: Config) -> dict:
  """Pascanu's measurement of every cell (seeds from ``config.seed``), then the trained cells'."""
  jobs = [("pascanu", c) for c in PASCANU_CELLS] + [("trained", c) for c in config.cells]
  results = {"config": config, "pascanu": {}, "trained": {}}
  for part, cell in _cli.progress(jobs, desc="rnn_time_gradients"):
    if part == "pascanu":
      results["pascanu"][cell] = recurrent.pascanu_signal(
          cell, config.rhos, length=config.length, hidden=config.hidden, batch=config.batch,
          seeds=config.seeds, key=jax.random.key(config.seed))
    else:
      results["trained"][cell] = recurrent.trained_signal(
          RecurrentNet(cell=cell, hidden=config.hidden, recurrent_init=config.init),
          length=config.train_length, num_sequences=config.num_sequences,
          steps=config.train_steps, learning_rate=config.learning_rate,
          batch=config.train_batch, seeds=config.seeds, key=jax.random.key(config.seed + 1))
  return results


def _cell_label(cell: str) -> str:
  return "linear" if cell == "linear" else "tanh"


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``pascanu.png``, ``rate.png`` and ``cells.png``.

  ``pascanu.png``: log10 ||dL/dh_t|| against T - t per ρ, beside ρ^(T-t). ``rate.png``:
  the fitted per-step rate against ρ, beside ρ·γ. ``cells.png``: each trained cell's
  ||dL/dh_t|| at init and after training.
  """
  plot_pascanu(results, out_dir)
  plot_rate(results, out_dir)
  plot_cells(results, out_dir)


def plot_pascanu(results: dict, out_dir: pathlib.Path) -> None:
  """``pascanu.png``: log10 ||dL/dh_t|| against T - t per rho, beside rho^(T-t)."""
  config = results["config"]
  rhos = config.rhos
  steps_back = np.arange(config.length - 1, -1, -1)
  colors = {rho: plotting.plt.cm.coolwarm(i / max(len(rhos) - 1, 1)) for i, rho in enumerate(rhos)}
  fig, axes = plotting.figure(1, 2, panel=(3.4, 2.8))
  for ax, cell in zip(axes[0], PASCANU_CELLS):
    r = results["pascanu"][cell]
    for i, rho in enumerate(rhos):
      plotting.median_band(ax, steps_back, r["log10_signal"][i], color=colors[rho],
                           label=f"ρ={rho:g}")
      plotting.theory_line(ax, steps_back, steps_back * np.log10(rho), color=colors[rho])
    ax.set(xlabel="steps back T − t", ylabel="log10 ‖dL/dh_t‖ / ‖dL/dh_T‖",
           title=f"{_cell_label(cell)} cell, W_rec = ρQ, T={config.length}")
  axes[0, 0].legend()
  fig.suptitle("dashed: ρ^(T−t), exact for linear, an upper bound for tanh (γ = max tanh' = 1)")
  plotting.save(fig, out_dir / "pascanu.png")


def plot_rate(results: dict, out_dir: pathlib.Path) -> None:
  """``rate.png``: the fitted per-step rate against rho, beside rho * gamma."""
  rhos = results["config"].rhos
  fig, axes = plotting.figure(1, 1, panel=(4.2, 3.2))
  ax = axes[0, 0]
  for cell, marker in zip(PASCANU_CELLS, ("o", "s")):
    plotting.median_band(ax, rhos, np.asarray(results["pascanu"][cell]["rate"]).T, marker=marker,
                         label=f"{_cell_label(cell)}: fitted rate")
  plotting.theory_line(ax, rhos, rhos, color="k", label="ρ·γ (γ = 1)")
  ax.axhline(1.0, color="grey", linewidth=0.6)
  ax.set(xlabel="spectral radius ρ of W_rec", ylabel="per-step growth of ‖dL/dh_t‖ backwards",
         xscale="log", yscale="log", title="ρ < 1/γ: vanishing (rate < 1)")
  ax.legend()
  plotting.save(fig, out_dir / "rate.png")


def plot_cells(results: dict, out_dir: pathlib.Path) -> None:
  """``cells.png``: ||dL/dh_t|| of each trained cell at init and after training."""
  config = results["config"]
  cells = list(results["trained"])
  fig, axes = plotting.figure(1, len(cells), panel=(2.8, 2.5))
  t = np.arange(1, config.train_length + 1)
  for ax, cell in zip(axes[0], cells):
    r = results["trained"][cell]
    plotting.median_band(ax, t, r["init"], label="at init", color="C0")
    plotting.median_band(ax, t, r["trained"], label=f"after {config.train_steps} Adam steps",
                         color="C3")
    ax.set(xlabel="time step t", yscale="log", title=f"{cell} ({config.init} init)")
  axes[0, 0].set_ylabel("‖dL/dh_t‖ (sine task)")
  axes[0, 0].legend()
  plotting.save(fig, out_dir / "cells.png")


def summary(results: dict) -> str:
  """Two tables: Pascanu's rate per (cell, ρ), then the trained cells.

  A row per (cell, ρ): the fitted rate (median, IQR), the largest step ratio and the bound
  ρ·γ. A row per trained cell: ||dL/dh_1|| / ||dL/dh_T|| at init and after training, and
  the final training loss (medians over seeds).
  """
  config = results["config"]
  header = ["cell", "ρ", "fitted rate", "IQR", "max step ratio", "bound ρ·γ"]
  rows = []
  for cell, r in results["pascanu"].items():
    rate = np.asarray(r["rate"])
    for i, rho in enumerate(config.rhos):
      q = stats.quartiles(rate[i], keep_samples=False)
      rows.append([_cell_label(cell), float(rho), float(q["median"]),
                   f"[{q['q25']:.4g}, {q['q75']:.4g}]", float(np.max(r["max_step_ratio"][i])),
                   float(rho * r["gamma"])])
  table = _cli.format_table(header, rows)
  header = ["cell", "‖dL/dh_1‖/‖dL/dh_T‖ init", "trained", "final train loss"]
  rows = []
  for cell, r in results["trained"].items():
    ratio = lambda a: float(np.median(np.asarray(a)[:, 0] / np.asarray(a)[:, -1]))  # noqa: E731
    rows.append([cell, ratio(r["init"]), ratio(r["trained"]),
                 float(np.median(np.asarray(r["train_loss"])[:, -10:]))])
  return table + "\n\n" + _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
