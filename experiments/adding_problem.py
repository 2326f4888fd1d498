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
+1, 0.28 at +3 (:class:`jaxgrad.models.recurrent.ForgetBiasLSTMCell`; Gers et
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

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import data, optimizers, plotting, training  # noqa: E402
from jaxgrad.models.recurrent import RECURRENT_INITS, RecurrentNet  # noqa: E402
from jaxgrad.sweep import sweep_grid  # noqa: E402

CELLS = ("simple", "lstm", "gru")
CLIPPING = ("none", "clip_norm")
SOLVED_MSE = 0.04  # Pascanu et al.'s per-sample threshold, applied to the test MSE
CONSTANT_MSE = 1 / 6  # Var(u1 + u2), u ~ U[0, 1]
COLORS = {"simple": "C0", "lstm": "C2", "gru": "C4"}


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
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
  seed: int = 0

  def relations(self) -> dict[str, str]:
    if self.steps % self.log_every:
      return {"steps": f"must be a multiple of log_every={self.log_every}"}
    return {}

  @classmethod
  def quick(cls) -> "Config":
    return cls(lengths=(10, 30), cells=("lstm", "gru"), forget_biases=(0.0, 3.0), seeds=2,
               hidden=32, steps=300, batch_size=32, test_size=500, unroll=1)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(lengths=(6,), cells=("lstm",), forget_biases=(3.0,), seeds=2, hidden=4,
               steps=4, batch_size=4, test_size=50, log_every=1, unroll=1)


def arms(config: Config) -> list[tuple[str, float]]:
  """``(cell, forget_bias)`` of every network the config trains: the LSTM once per forget bias."""
  return [(cell, b) for cell in config.cells
          for b in (config.forget_biases if cell == "lstm" else (0.0,))]


def arm_name(cell: str, forget_bias: float) -> str:
  """``"gru"``, or ``"lstm b_f=1"`` for the LSTM."""
  return f"lstm b_f={forget_bias:g}" if cell == "lstm" else cell


def memory_factor(forget_bias: float, length: int) -> float:
  r"""The cell state's factor :math:`\sigma(b_f)^{T/2}` over the T/2 steps after the second mark, at init."""
  return float((1.0 / (1.0 + np.exp(-forget_bias))) ** (length / 2))


def train_settings(config: Config, cell: str, length: int,
                   forget_bias: float = 0.0) -> dict[str, dict]:
  """Every clipping arm x every seed of one (cell, forget bias, T) in one jitted, vmapped program.

  The arms differ only in the clipping threshold, traced (``inf`` for none);
  seed s starts from the same parameters and batches in every arm.
  """
  net = RecurrentNet(cell=cell, hidden=config.hidden, recurrent_init=config.init,
                     unroll=config.unroll, forget_bias=forget_bias)

  def loss_fn(params, state, batch):
    x, y = batch.x, batch.y
    return jnp.mean((net.apply({"params": params}, x) - y) ** 2), state

  def one(key, clip_norm):
    k_init, k_train, k_test = jax.random.split(key, 3)
    params = net.init(k_init, jnp.zeros((1, length, 2)))["params"]
    tx = optimizers.make_optimizer(optimizers.OptimizerConfig(
        "adam", config.learning_rate, clip_norm=clip_norm))
    sample = lambda k: data.as_batch(*data.adding_problem(k, config.batch_size, length))  # noqa: E731
    result = training.train(loss_fn, params, tx, sample, config.steps, key=k_train)
    x_test, y_test = data.adding_problem(k_test, config.test_size, length)
    sq_err = (net.apply({"params": result.params}, x_test) - y_test)[:, 0] ** 2
    return {"loss": result.loss.reshape(-1, config.log_every).mean(-1),
            "grad_norm": result.grad_norm.reshape(-1, config.log_every).mean(-1),
            "test_mse": jnp.mean(sq_err), "error_rate": jnp.mean(sq_err > SOLVED_MSE),
            "constant_mse": jnp.var(y_test), "diverged_at": result.diverged_at}

  keys = jax.random.split(jax.random.key(config.seed), config.seeds)
  arms = config.clipping
  thresholds = jnp.asarray([config.clip_norm if a == "clip_norm" else jnp.inf for a in arms])
  out = sweep_grid(one, keys, thresholds)
  settings = {}
  for a, arm in enumerate(arms):
    o = {k: np.asarray(v[a]) for k, v in out.items()}
    finite = np.isfinite(o["test_mse"])
    o["solved"] = finite & (o["test_mse"] < SOLVED_MSE)
    o["fraction_solved"] = float(o["solved"].mean())
    o["diverged"] = int((o["diverged_at"] >= 0).sum())
    settings[arm] = o
  return settings


def setting_name(arm: str, clipping: str, length: int) -> str:
  return f"{arm}/{clipping}/T={length}"


def setting_names(config: Config) -> list[str]:
  """Every setting a run of ``config`` writes, in the order it writes them."""
  return [setting_name(arm_name(*a), k, t) for t in config.lengths for a in arms(config)
          for k in config.clipping]


def run(config: Config, out_dir: pathlib.Path) -> dict:
  """Trains every setting; ``results.json`` is rewritten after each (cell, T).

  A long run that is stopped (the default takes about 72 min on 2 cores) keeps every
  setting it finished, and a rerun of the same config into the same folder
  (through :func:`main`) trains only the others; the figures come at the end.
  """
  jobs = [(cell, b, t) for t in config.lengths for cell, b in arms(config)]
  done = _cli.finished_settings(out_dir, config)
  settings = {}
  results = {"config": config, "solved_mse": SOLVED_MSE, "constant_mse": CONSTANT_MSE,
             "logged_steps": np.arange(1, config.steps // config.log_every + 1) * config.log_every,
             "settings": settings}
  for cell, forget_bias, length in _cli.progress(jobs, desc="adding problem"):
    arm = arm_name(cell, forget_bias)
    names = [setting_name(arm, k, length) for k in config.clipping]
    if all(n in done for n in names):
      settings.update((n, done[n]) for n in names)
      continue
    for clipping, out in train_settings(config, cell, length, forget_bias).items():
      settings[setting_name(arm, clipping, length)] = {
          "cell": cell, "arm": arm, "forget_bias": forget_bias, "clipping": clipping,
          "length": length, "memory_factor": memory_factor(forget_bias, length), **out}
    _cli.write_json(out_dir / "results.json", results)
  plot(results, config, out_dir)
  return results


def _colors(config: Config) -> dict[str, Any]:
  """One colour per arm: the LSTM's in greens, darker as the forget bias grows."""
  lstm = [arm_name("lstm", b) for b in config.forget_biases]
  greens = {name: plt.cm.Greens(0.45 + 0.5 * i / max(1, len(lstm) - 1))
            for i, name in enumerate(lstm)}
  return {arm_name(*a): greens.get(arm_name(*a), COLORS[a[0]]) for a in arms(config)}


def plot(results: dict, config: Config, out_dir: pathlib.Path) -> None:
  settings = results["settings"]
  style = {"none": "-", "clip_norm": "--"}
  colors = _colors(config)
  fig, axes = plotting.figure(1, 1, panel=(4.4, 3.0))
  ax = axes[0, 0]
  for arm in colors:
    for clipping in config.clipping:
      frac = [settings[setting_name(arm, clipping, t)]["fraction_solved"] for t in config.lengths]
      ax.plot(config.lengths, frac, style[clipping], marker="o", color=colors[arm],
              label=f"{arm}, {clipping}")
  ax.set(xlabel="sequence length T", ylabel=f"fraction solved (test MSE < {SOLVED_MSE})",
         ylim=(-0.05, 1.05), xticks=list(config.lengths))
  fig.suptitle(f"adding problem, H={config.hidden}, {config.steps} Adam steps, "
               f"{config.seeds} seeds")
  ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, out_dir / "success.png")

  fig, axes = plotting.figure(1, len(config.lengths), panel=(3.0, 2.5))
  steps = results["logged_steps"]
  for ax, length in zip(axes[0], config.lengths):
    for arm in colors:
      for clipping in config.clipping:
        r = settings[setting_name(arm, clipping, length)]
        line = plotting.median_band(ax, steps, r["loss"], color=colors[arm],
                                    label=f"{arm}, {clipping}")
        line.set_linestyle(style[clipping])
    ax.axhline(CONSTANT_MSE, color="k", linewidth=0.8, linestyle=":")
    ax.axhline(SOLVED_MSE, color="k", linewidth=0.8, linestyle="--")
    ax.set(xlabel="step", yscale="log", title=f"T = {length}")
  axes[0, 0].set_ylabel("training MSE")
  fig.suptitle("median over seeds; dotted: mean predictor, dashed: solved")
  axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
  plotting.save(fig, out_dir / "loss.png")
  if "lstm" in config.cells:
    plot_forget_gate(settings, config, out_dir)


def plot_forget_gate(settings: dict, config: Config, out_dir: pathlib.Path) -> None:
  """``forget_gate.png``: the LSTM's fraction solved against b_f, beside sigma(b_f)^(T/2) at init."""
  fig, axes = plotting.figure(1, 2, panel=(3.6, 2.8))
  solved_ax, memory_ax = axes[0]
  biases = np.asarray(config.forget_biases)
  grid = np.linspace(biases.min(), biases.max(), 200)
  for i, length in enumerate(config.lengths):
    color = f"C{i}"
    for clipping in config.clipping:
      frac = [settings[setting_name(arm_name("lstm", b), clipping, length)]["fraction_solved"]
              for b in config.forget_biases]
      solved_ax.plot(biases, frac, {"none": "-", "clip_norm": "--"}[clipping], marker="o",
                     color=color, label=f"T = {length}, {clipping}")
    memory_ax.plot(biases, [memory_factor(b, length) for b in biases], "o", color=color)
    plotting.theory_line(memory_ax, grid, [memory_factor(b, length) for b in grid], color=color,
                         label=f"T = {length}")
  solved_ax.set(xlabel=r"forget-gate bias $b_f$ at init", ylim=(-0.05, 1.05),
                ylabel=f"fraction solved (test MSE < {SOLVED_MSE})")
  solved_ax.legend(fontsize=7)
  memory_ax.set(xlabel=r"forget-gate bias $b_f$ at init", yscale="log",
                ylabel=r"memory factor $\sigma(b_f)^{T/2}$ at init")
  memory_ax.legend(fontsize=7)
  fig.suptitle(f"LSTM, adding problem ({config.steps} Adam steps, {config.seeds} seeds)")
  plotting.save(fig, out_dir / "forget_gate.png")


def summary(results: dict) -> str:
  header = ["arm", "clipping", "T", "solved", "median test MSE", "median error rate",
            "diverged", "mean predictor"]
  rows = []
  for r in results["settings"].values():
    n = len(r["solved"])
    rows.append([r["arm"], r["clipping"], r["length"], f"{int(np.sum(r['solved']))}/{n}",
                 float(np.median(r["test_mse"])), float(np.median(r["error_rate"])),
                 f"{r['diverged']}/{n}", float(np.mean(r["constant_mse"]))])
  return _cli.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__, quick_compiles_fast=True,
                   settings=setting_names)


if __name__ == "__main__":
  main()
