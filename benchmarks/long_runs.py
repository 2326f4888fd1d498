r"""The two longest default runs, ``adding_problem`` and ``rnn_clipping``, against their floors.

    python -m benchmarks.long_runs [--fraction 0.05] [--only adding_problem rnn_clipping]
                                   [--quick] [--json FILE]

For each experiment at its default config (read from its command line,
``python -m experiments.<name> --print-config``: :mod:`benchmarks._configs`)
this process

1. counts the run's matmul flops from the config (:func:`adding_flops`,
   :func:`clipping_flops`): per example, time step and layer a cell with
   :math:`g` gates (1 simple, 3 GRU, 4 LSTM) multiplies
   :math:`[x_t, h_{t-1}]` of width :math:`n_\mathrm{in} + H` by
   :math:`g H` columns, :math:`2 (n_\mathrm{in} + H)\, g H` flops forward; the
   Dense head on the last step adds :math:`2 H`; training costs 3 forward
   passes (forward + backward), a test-set evaluation 1; summed over every
   step, seed, arm and sequence length the default run trains;
2. measures the float32 matmul rate at each of those product shapes, vmapped
   over the replicas (seeds x arms) that one program of the run vmaps
   (:func:`benchmarks._timing.matmul_flops_per_second`), and divides: the
   *flop floor*;
3. times the study each experiment's ``run`` calls
   (:func:`jaxgrad.studies.recurrent.train_adding_setting`,
   :func:`jaxgrad.studies.recurrent.train_arm_setting`, at the experiment's config) once per cell,
   at the default shapes but ``--fraction`` of the steps (and of the adding
   problem's test set), compile time (JAX's trace, lowering and XLA compile,
   read from ``jax.monitoring``; no persistent cache, as in a first run) apart
   from run time, and extrapolates to the full run: run time is linear in the
   steps and, for the adding problem (timed at the middle of ``lengths``), in
   the sequence length T; every (arm, T) program compiles once.

Where the rest goes, per timed program:

* *issued shapes*: Flax's cells issue one ``(B, n_in) @ (n_in, H)`` and one
  ``(B, H) @ (H, H)`` product per gate, not one fused
  ``(B, n_in + H) @ (n_in + H, g H)``; the same flops at the rates of those
  smaller shapes give a second, higher floor;
* *latency*: the same program at ``hidden = 1``, batch 1 (and 1 test
  sequence), whose flops are negligible, takes the time its sequential steps
  (``steps x T x layers`` forward and backward, each a chain of small XLA
  ops, plus the optimizer) cost at any width;
* *other*: the measured run time minus both.

Timings are printed, never asserted. Expected run time of the default
(``--fraction 0.05``) on 2 idle cores: about 5 minutes (an estimate from the
experiments' own figures, not yet measured), half of it the 12 compiles (6
programs at the default shapes, 6 at width 1). ``--quick`` runs the
experiments' ``--quick`` configs (a check of this script, not a measurement).
"""

import argparse
import dataclasses
import functools
import pathlib
import time
from collections.abc import Callable

from benchmarks import _timing

import jax  # noqa: E402

from benchmarks import _configs  # noqa: E402
from benchmarks._configs import ExperimentConfig  # noqa: E402
from jaxgrad.studies import recurrent  # noqa: E402

GATES = {"simple": 1, "gru": 3, "lstm": 4}
SINE_FEATURES = 1
COMPILE_EVENTS = frozenset({
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
})
EXPERIMENTS = ("adding_problem", "rnn_clipping")


@dataclasses.dataclass(frozen=True)
class Matmul:
  r"""``count`` products ``(batch, k) @ (k, n)``, each vmapped over ``replicas``.

  Flops: :math:`2 \cdot \mathrm{replicas} \cdot \mathrm{batch} \cdot k n \cdot \mathrm{count}`.
  """

  replicas: int
  batch: int
  k: int
  n: int
  count: float

  @property
  def rate(self) -> float:
    """The measured flop/s of this shape, forward and backward as a scan runs them (cached)."""
    return _timing.matmul_flops_per_second(self.n, batch=self.batch, k=self.k,
                                           replicas=self.replicas)

  @property
  def flops(self) -> float:
    return 2.0 * self.replicas * self.batch * self.k * self.n * self.count


def network_matmuls(cell: str, *, replicas: int, batch: int, features: int, hidden: int,
                    layers: int, length: int, passes: float,
                    per_gate: bool = False) -> list[Matmul]:
  r"""The products of ``passes`` forward passes of a ``RecurrentNet`` over ``batch`` sequences.

  Layer :math:`l` reads :math:`n_l` features (``features`` for the first,
  ``hidden`` after it); per time step it computes
  :math:`[x_t, h_{t-1}] W_l` with :math:`W_l` of shape
  :math:`(n_l + H) \times g H`, :math:`2 (n_l + H) g H` flops per example;
  the head reads :math:`h_T`, :math:`2 H` flops. A training step is
  ``passes = 3`` (the backward pass's two products per forward product,
  :math:`\partial x = \partial y\, W^\top` and :math:`\partial W = x^\top \partial y`).

  Args:
    cell: ``"simple"``, ``"gru"`` or ``"lstm"``.
    replicas: networks vmapped in one program (seeds x arms).
    batch: sequences per pass.
    features: input features of the first layer.
    hidden: hidden size H.
    layers: stacked recurrent layers.
    length: time steps T.
    passes: forward-pass equivalents.
    per_gate: the shapes Flax's cells issue, ``g`` products ``(B, n_l) @ (n_l, H)``
      and ``g`` products ``(B, H) @ (H, H)``, instead of one fused product (the
      same flops).

  Returns:
    One :class:`Matmul` per product shape.
  """
  g = GATES[cell]
  steps = passes * length
  out = []
  for n_in in [features] + [hidden] * (layers - 1):
    if per_gate:
      out += [Matmul(replicas, batch, n_in, hidden, g * steps),
              Matmul(replicas, batch, hidden, hidden, g * steps)]
    else:
      out.append(Matmul(replicas, batch, n_in + hidden, g * hidden, steps))
  return out + [Matmul(replicas, batch, hidden, 1, passes)]


def adding_matmuls(config: ExperimentConfig, cell: str, length: int, *,
                   per_gate: bool = False) -> list[Matmul]:
  """One ``train_adding_setting`` program: ``config.steps`` training steps and one test pass.

  Its replicas are every clipping arm x every seed (one vmap); the test pass
  runs the trained network once on ``config.test_size`` sequences.
  """
  net = dict(replicas=len(config.clipping) * config.seeds, features=recurrent.ADDING_FEATURES,
             hidden=config.hidden, layers=1, length=length, per_gate=per_gate)
  return (network_matmuls(cell, batch=config.batch_size, passes=3 * config.steps, **net)
          + network_matmuls(cell, batch=config.test_size, passes=1, **net))


def clipping_matmuls(config: ExperimentConfig, arm: str, *,
                     per_gate: bool = False) -> list[Matmul]:
  """One ``train_arm_setting`` program: ``config.seeds`` seeds vmapped, all ``epochs``' steps.

  Every step computes a full batch of ``config.batch_size`` (an epoch's short
  last batch is padded with weight-0 examples, which cost the same).
  """
  steps = config.epochs * recurrent.arm_steps_per_epoch(config)
  return network_matmuls(recurrent.ARM_CELL[arm], replicas=config.seeds,
                         batch=config.batch_size, features=SINE_FEATURES, hidden=config.hidden,
                         layers=config.layers, length=config.length, passes=3 * steps,
                         per_gate=per_gate)


def adding_run_matmuls(config: ExperimentConfig, *,
                       per_gate: bool = False) -> list[Matmul]:
  """Every product of ``adding_problem.run(config)``: :func:`adding_matmuls` of each (arm, T)."""
  return [m for length in config.lengths
          for cell, _ in recurrent.adding_arms(config.cells, config.forget_biases)
          for m in adding_matmuls(config, cell, length, per_gate=per_gate)]


def clipping_run_matmuls(config: ExperimentConfig, *,
                         per_gate: bool = False) -> list[Matmul]:
  """Every product of ``rnn_clipping.run(config)``: each arm's :func:`clipping_matmuls`."""
  return [m for arm in config.arms for m in clipping_matmuls(config, arm, per_gate=per_gate)]


def adding_flops(config: ExperimentConfig) -> float:
  """Matmul flops of ``adding_problem.run(config)``."""
  return sum(m.flops for m in adding_run_matmuls(config))


def clipping_flops(config: ExperimentConfig) -> float:
  """Matmul flops of ``rnn_clipping.run(config)``."""
  return sum(m.flops for m in clipping_run_matmuls(config))


def floor_seconds(matmuls: list[Matmul]) -> float:
  r""":math:`\sum_m \mathrm{flops}_m / \mathrm{rate}(\mathrm{shape}_m)`, rates measured here."""
  return sum(m.flops / m.rate for m in matmuls)


def timed(fn) -> tuple[float, float]:
  """``(compile seconds, run seconds)`` of one call of ``fn`` (which blocks on its results).

  Compile seconds: the union of the time spans JAX reports to
  ``jax.monitoring`` for tracing, lowering to MLIR and XLA's compile during
  the call (nested spans counted once); run seconds: the rest of its wall time.
  """
  spans = []

  def listener(event: str, start: float, end: float, **kwargs) -> None:
    del kwargs
    if event in COMPILE_EVENTS:
      spans.append((start, end))

  jax.monitoring.register_event_time_span_listener(listener)
  try:
    start = time.time()
    fn()
    wall = time.time() - start
  finally:
    jax.monitoring.unregister_event_time_span_listener(listener)
  compile_s, reach = 0.0, float("-inf")
  for lo, hi in sorted(spans):
    compile_s += max(0.0, hi - max(lo, reach))
    reach = max(reach, hi)
  return compile_s, wall - compile_s


@dataclasses.dataclass(frozen=True)
class Program:
  """One program of a run, timed at a fraction of its steps, and how it extrapolates.

  Attributes:
    experiment: the experiment's name.
    label: what was timed.
    train: trains it at the default shapes, ``fraction`` of the steps.
    tiny: the same at hidden 1, batch 1.
    fraction: the timed steps over the full run's steps.
    scale: the run time of all the programs it stands for over its own at
      the full steps: the arms of its cell (times the sum of T over its T, for
      the adding problem).
    programs: how many programs of the full run it stands for (compiles).
    matmuls: its products at the timed fraction (fused shapes).
    issued: the same at the shapes the cells issue.
  """

  experiment: str
  label: str
  train: Callable[[], object]
  tiny: Callable[[], object]
  fraction: float
  scale: float
  programs: int
  matmuls: list[Matmul]
  issued: list[Matmul]


def adding_programs(config: ExperimentConfig, fraction: float) -> list[Program]:
  """One program per cell at the middle of ``config.lengths``, a fraction of steps and tests."""
  steps = max(config.log_every,
              round(fraction * config.steps / config.log_every) * config.log_every)
  done = steps / config.steps
  part = _configs.replace(config, steps=steps, test_size=max(1, round(done * config.test_size)))
  tiny = _configs.replace(part, hidden=1, batch_size=1, test_size=1)
  length = sorted(config.lengths)[len(config.lengths) // 2]
  out = []
  for cell in config.cells:
    biases = [b for c, b in recurrent.adding_arms(config.cells, config.forget_biases)
              if c == cell]
    out.append(Program(
        "adding_problem", f"{cell}, T={length}, {len(config.clipping) * config.seeds} replicas, "
                          f"{steps}/{config.steps} steps",
        functools.partial(recurrent.train_adding_setting, part, cell, length, biases[0]),
        functools.partial(recurrent.train_adding_setting, tiny, cell, length, biases[0]),
        done, len(biases) * sum(config.lengths) / length, len(biases) * len(config.lengths),
        adding_matmuls(part, cell, length), adding_matmuls(part, cell, length, per_gate=True)))
  return out


def clipping_programs(config: ExperimentConfig, fraction: float) -> list[Program]:
  """One program per cell (its first arm), ``fraction`` of the epochs (at least one)."""
  epochs = max(1, round(fraction * config.epochs))
  per_epoch = recurrent.arm_steps_per_epoch(config)
  part = _configs.replace(config, epochs=epochs)
  tiny = _configs.replace(part, hidden=1, batch_size=1, num_sequences=per_epoch)
  out = []
  for cell in dict.fromkeys(recurrent.ARM_CELL[a] for a in config.arms):
    arms = [a for a in config.arms if recurrent.ARM_CELL[a] == cell]
    out.append(Program(
        "rnn_clipping", f"{arms[0]} ({cell}), {config.seeds} seeds, "
                        f"{epochs * per_epoch}/{config.epochs * per_epoch} steps",
        functools.partial(recurrent.train_arm_setting, part, arms[0]),
        functools.partial(recurrent.train_arm_setting, tiny, arms[0]),
        epochs / config.epochs, len(arms), len(arms),
        clipping_matmuls(part, arms[0]), clipping_matmuls(part, arms[0], per_gate=True)))
  return out


def measure(program: Program) -> dict:
  """Its floors at the timed fraction (first: the rates warm XLA's runtime), then its times.

  Times ``program`` at the default shapes and at width 1.
  """
  floors = {"flops": sum(m.flops for m in program.matmuls),
            "floor_seconds": floor_seconds(program.matmuls),
            "issued_floor_seconds": floor_seconds(program.issued)}
  compile_s, run_s = timed(program.train)
  tiny_compile_s, latency_s = timed(program.tiny)
  return {"experiment": program.experiment, "program": program.label,
          "fraction": program.fraction, "scale": program.scale, "programs": program.programs,
          "compile_seconds": compile_s, "run_seconds": run_s,
          "tiny_compile_seconds": tiny_compile_s, "latency_seconds": latency_s, **floors}


def full_run(name: str, matmuls: list[Matmul], issued: list[Matmul],
             programs: list[dict]) -> dict:
  r"""The full run: floors from all its products; times extrapolated from the timed programs.

  Run and latency seconds: :math:`\sum_p t_p \cdot \mathrm{scale}_p / \mathrm{fraction}_p`
  over the timed programs; compile seconds: each timed compile times the
  number of programs it stands for.
  """
  full = lambda key: sum(p[key] * p["scale"] / p["fraction"] for p in programs)  # noqa: E731
  return {"experiment": name, "flops": sum(m.flops for m in matmuls),
          "fraction": min(p["fraction"] for p in programs),
          "run_seconds": full("run_seconds"), "latency_seconds": full("latency_seconds"),
          "compile_seconds": sum(p["compile_seconds"] * p["programs"] for p in programs),
          "floor_seconds": floor_seconds(matmuls), "issued_floor_seconds": floor_seconds(issued)}


def run(fraction: float = 0.05, only: tuple[str, ...] = EXPERIMENTS,
        quick: bool = False) -> dict:
  """Every timed program and the extrapolated full runs (see the module docstring)."""
  experiments = {"adding_problem": (adding_programs, adding_run_matmuls),
                 "rnn_clipping": (clipping_programs, clipping_run_matmuls)}
  programs, runs, configs = [], [], {}
  for name in only:
    build, run_matmuls = experiments[name]
    config = _configs.experiment_config(name, *(["--quick"] if quick else []))
    measured = [measure(p) for p in build(config, fraction)]
    programs += measured
    runs.append(full_run(name, run_matmuls(config), run_matmuls(config, per_gate=True), measured))
    configs[name] = vars(config)
  return {"machine": _timing.machine(), "fraction": fraction, "quick": quick,
          "configs": configs, "programs": programs, "runs": runs}


def _seconds(s: float) -> str:
  if abs(s) >= 600:
    return f"{s / 60:.1f} min"
  return f"{s:.2f} s" if abs(s) >= 1 else f"{s * 1e3:.3g} ms"


def _flops(flops: float) -> str:
  return f"{flops / 1e12:.4g} TFLOP" if flops >= 1e12 else f"{flops / 1e9:.3g} GFLOP"


def program_table(programs: list[dict]) -> str:
  """Per timed program: run time = flop floor + issued-shape loss + latency + other."""
  header = ("experiment", "program", "compile", "run", "flop floor", "+shapes", "+latency",
            "other", "run/floor", "run/(floor+shapes+latency)")
  cells = [header]
  for p in programs:
    explained = p["issued_floor_seconds"] + p["latency_seconds"]
    cells.append((p["experiment"], p["program"], _seconds(p["compile_seconds"]),
                  _seconds(p["run_seconds"]), _seconds(p["floor_seconds"]),
                  _seconds(p["issued_floor_seconds"] - p["floor_seconds"]),
                  _seconds(p["latency_seconds"]), _seconds(p["run_seconds"] - explained),
                  f"{p['run_seconds'] / p['floor_seconds']:.2f}x",
                  f"{p['run_seconds'] / explained:.2f}x"))
  widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
  lines = ["  ".join(v.ljust(w) for v, w in zip(c, widths)) for c in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def rows(r: dict) -> list[dict]:
  out = []
  for run_ in r["runs"]:
    name, floor = run_["experiment"], run_["floor_seconds"]
    measured = f"{_seconds(run_['run_seconds'])} (+ {_seconds(run_['compile_seconds'])} compile)"
    out.append({"benchmark": "long_runs",
                "figure": (f"{name} default run, extrapolated from "
                           f"{100 * run_['fraction']:.3g}% of its steps"),
                "measured": measured,
                "baseline": (f"flop floor {_flops(run_['flops'])} at the measured rates "
                             f"of its shapes: {_seconds(floor)}"),
                "ratio": run_["run_seconds"] / floor})
    explained = run_["issued_floor_seconds"] + run_["latency_seconds"]
    out.append({"benchmark": "long_runs",
                "figure": f"{name}: against the cells' own product shapes + the width-1 latency",
                "measured": _seconds(run_["run_seconds"]),
                "baseline": (f"{_seconds(run_['issued_floor_seconds'])} + "
                             f"{_seconds(run_['latency_seconds'])} = {_seconds(explained)}"),
                "ratio": run_["run_seconds"] / explained})
  return out


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.long_runs", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--fraction", type=float, default=0.05,
                      help="fraction of each program's steps to time (default 0.05)")
  parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS))
  parser.add_argument("--quick", action="store_true",
                      help="the experiments' --quick configs: checks this script, measures nothing")
  parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
  args = parser.parse_args(argv)
  if not 0 < args.fraction <= 1:
    parser.error(f"--fraction must be in (0, 1], got {args.fraction}")
  r = run(args.fraction, tuple(args.only), args.quick)
  print(program_table(r["programs"]) + "\n")
  return _timing.report(r, rows(r), args.json)


if __name__ == "__main__":
  main()
