r"""Residual MLP vs its plain twin of equal depth: backprop signal and Jacobian spectrum.

Seed 002 says a residual block's Jacobian ``I + dF/dx`` gives the gradient an
identity "highway", so it cannot vanish; seed 004 builds the block
(``ResNetBlock``: Linear, ReLU, Linear, ``+ x``). This experiment draws
``--seeds`` random networks per case, :class:`jaxgrad.models.ResidualMLP`
with ``--blocks`` blocks and :class:`jaxgrad.models.DeepMLP` with the same
number of Dense layers (``2 * blocks + 2``), for every activation (ReLU with He
init, tanh with Xavier init) and norm (none, LayerNorm), and measures at
initialization, on random data with an MSE loss:

* the backprop signal ``||dL/dh||`` at every block input (residual) or
  pre-activation (plain), relative to ``||dL/dy||`` at the output;
* the residual stream's second moment ``q_k`` after every block;
* the singular values of the Jacobian ``dh_k/dh_0`` of the hidden stack, from
  its input ``h_0`` (the first layer's output) to its output after ``k``
  blocks (``2k`` Dense layers, for both nets), for every ``k``, from one
  forward-mode pass per network;

next to the mean-field predictions (:mod:`jaxgrad.studies.residual`, from
:func:`jaxgrad.theory.residual_signal` and :mod:`jaxgrad.theory`). The
identity path does stop vanishing, but without normalization the same product
``prod (I + dF/dx)`` makes the gradient *explode*, by a factor ``1 + chi_F``
per block (3 for He-init ReLU), as fast as the stream's variance grows;
LayerNorm in the branch turns that into polynomial growth.

    python -m experiments.residual_vs_plain            # width 64, 100 blocks, 16 seeds, ~2 min on 2 cores
    python -m experiments.residual_vs_plain --quick    # width 32, 100 blocks, 4 seeds, about a minute
    python -m experiments.residual_vs_plain --no-float64 --blocks 100   # float32 overflows: NaN recorded

Writes ``config.json``, ``results.json`` (every plotted number), ``signal.png``,
``spectrum.png`` and ``stream.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import plotting  # noqa: E402
from jaxgrad.stats import quartiles  # noqa: E402
from jaxgrad.studies import residual  # noqa: E402

ACTIVATIONS = ("relu", "tanh")
NORMS = ("none", "layer")
ARCHS = residual.ARCHS
COLORS = {"residual": "C0", "plain": "C3"}


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """ResidualMLP against its plain twin at init, against mean field, per activation and norm.

  Backprop signal, the residual stream's second moment and the stack's Jacobian spectrum.
  """

  width: int = _config.setting(64, "width N of every layer", at_least=1)
  blocks: int = _config.setting(
      100, "residual blocks B (the plain net has 2B+2 Dense layers)", at_least=1)
  seeds: int = _config.setting(16, "random networks per case", at_least=1)
  activations: tuple[str, ...] = _config.setting(ACTIVATIONS, choices=ACTIVATIONS)
  norms: tuple[str, ...] = _config.setting(NORMS, "normalizations", choices=NORMS)
  batch: int = _config.setting(32, "examples in the loss", at_least=1)
  float64: bool = _config.setting(
      True, "compute in float64 (the unnormalised residual net's "
      "activations reach ~3^B, beyond float32 at B > 80)")
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: width 32, 4 seeds, about 39 s on 2 CPU cores."""
    return cls(width=32, seeds=4)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: ReLU, width 8, 3 blocks, batch 4, 2 seeds."""
    return cls(width=8, blocks=3, seeds=2, activations=("relu",), batch=4)


SPECTRUM = ("mean_sq", "var_sq", "max", "min", "condition", "min_resolved")


def _case(config: Config, activation: str, norm: str, arch: str) -> dict:
  """One case's quartiles over seeds, next to its mean-field prediction."""
  m = residual.measure(arch, activation, norm, width=config.width, blocks=config.blocks,
                       batch=config.batch, seeds=config.seeds, seed=config.seed,
                       float64=config.float64)
  sq = residual.block_signal(m["signal"], arch, config.blocks) ** 2
  return {
      "activation": activation, "norm": norm, "arch": arch,
      "signal_at": residual.positions(arch, config.blocks), "signal": quartiles(m["signal"]),
      "growth_per_block": quartiles(residual.growth_per_block(sq[:, 0], sq[:, -1],
                                                              config.blocks - 1)),
      "q": quartiles(m["q"]),
      "depth_layers": 2 + 2 * np.arange(config.blocks),
      **{k: quartiles(m[k]) for k in SPECTRUM},
      "nonfinite_fraction": float(1 - np.isfinite(m["s"]).mean()),
      "unresolved_fraction": quartiles(m["unresolved_fraction"]),
      "theory": residual.predicted(arch, activation, norm, config.blocks),
  }


def run(config: Config) -> dict:
  """Measures every case; the results dict of every plotted number."""
  jobs = [(a, n, arch) for a in config.activations for n in config.norms for arch in ARCHS]
  with jax.enable_x64(config.float64):  # the theory in the same precision as the measurement
    cases = {f"{activation}/{norm}/{arch}": _case(config, activation, norm, arch)
             for activation, norm, arch in _cli.progress(jobs, desc="residual vs plain")}
  return {"config": config, "cases": cases}


def _grid(results: dict):
  acts = list(dict.fromkeys(c["activation"] for c in results["cases"].values()))
  norms = list(dict.fromkeys(c["norm"] for c in results["cases"].values()))
  fig, axes = plotting.figure(len(norms), len(acts), panel=(3.4, 2.6))
  for c in results["cases"].values():
    yield c, axes[norms.index(c["norm"]), acts.index(c["activation"])]
  yield fig, axes


def _panels(results: dict, out_dir: pathlib.Path, name: str, draw, ylabel: str, xlabel: str):
  *items, (fig, axes) = list(_grid(results))
  for case, ax in items:
    draw(ax, case)
    ax.set_title(f"{case['activation']}, norm: {case['norm']}")
    ax.set_yscale("log")
  for ax in axes[-1]:
    ax.set_xlabel(xlabel)
  for ax in axes[:, 0]:
    ax.set_ylabel(ylabel)
  axes[0, 0].legend()
  plotting.save(fig, out_dir / name)


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``signal.png``, ``spectrum.png`` and ``stream.png``, a panel per case.

  ``signal.png``: ||dL/dh|| / ||dL/dy|| along the net. ``spectrum.png``: s_max and resolved
  s_min of dh_k/dh_0 against depth. ``stream.png``: the stream's second moment. Residual vs
  plain, mean field dashed.
  """
  def signal(ax, case):
    color = COLORS[case["arch"]]
    plotting.median_band(ax, case["signal_at"], case["signal"]["per_seed"], color=color,
                         label=case["arch"])
    if case["theory"] is not None:
      plotting.theory_line(ax, case["theory"]["signal_at"], np.sqrt(case["theory"]["signal_sq"]),
                           color=color, label=f"{case['arch']}, mean field")

  def spectrum(ax, case):
    color = COLORS[case["arch"]]
    x = case["depth_layers"]
    plotting.median_band(ax, x, case["max"]["per_seed"], color=color, label=f"{case['arch']} s_max")
    s_min = np.asarray(case["min_resolved"]["per_seed"], dtype=float)
    line = plotting.median_band(ax, x, np.where(s_min > 0, s_min, np.nan), color=color,
                                label=f"{case['arch']} s_min (resolved)")
    line.set_linestyle(":")
    if case["theory"] is not None:
      plotting.theory_line(ax, x, np.sqrt(case["theory"]["mean_sq"]), color=color,
                           label=f"{case['arch']} rms s, mean field")

  def stream(ax, case):
    color = COLORS[case["arch"]]
    plotting.median_band(ax, case["depth_layers"], case["q"]["per_seed"], color=color,
                         label=case["arch"])
    if case["theory"] is not None:
      plotting.theory_line(ax, case["depth_layers"], case["theory"]["q"], color=color,
                           label=f"{case['arch']}, mean field")

  _panels(results, out_dir, "signal.png", signal, "||dL/dh|| / ||dL/dy||",
          "Dense layers from the input")
  stack = "Dense layers in the stack (2 per block)"
  _panels(results, out_dir, "spectrum.png", spectrum, "singular value of dh_k/dh_0", stack)
  _panels(results, out_dir, "stream.png", stream, "second moment of h_k", stack)


def _resolved(value) -> float:
  """The value, or 0 where it is below the SVD's resolution (0 or NaN)."""
  value = float(value)
  return value if np.isfinite(value) and value > 0 else 0.0


def summary(results: dict) -> str:
  """One row per case (activation/norm/arch), medians over seeds.

  Columns: the squared signal's growth per block and its prediction, the signal at the first
  block over the output's and its prediction, and s_max, s_min and the condition number of
  the whole stack's Jacobian.
  """
  header = ["case", "growth²/block", "predicted", "||dL/dx₀||/||dL/dy||", "predicted",
            "s_max (deepest)", "s_min", "cond"]
  rows = []
  for name, c in results["cases"].items():
    t = c["theory"]
    first_block = 1  # entry 0 is the first layer's pre-activation
    rows.append([
        name, float(c["growth_per_block"]["median"]),
        "-" if t is None else float(t["growth_per_block"]),
        float(c["signal"]["median"][first_block]),
        "-" if t is None else float(np.sqrt(t["signal_sq"][
            np.searchsorted(t["signal_at"], c["signal_at"][first_block])])),
        float(c["max"]["median"][-1]), _resolved(c["min_resolved"]["median"][-1]),
        float(c["condition"]["median"][-1]) if _resolved(c["min_resolved"]["median"][-1]) != 0
        else "inf"])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
