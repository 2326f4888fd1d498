r"""Finite-difference gradient check of every model in jaxgrad (seed 000 §6.3).

For each model of :mod:`jaxgrad.studies.gradient_check` (tiny widths, float64, a fixed random
batch and a squared-error or cross-entropy loss),
:func:`jaxgrad.diagnostics.gradient_check.gradient_check` compares
``jax.grad`` with central differences, tensor by tensor: along every
coordinate for tensors of at most ``--max-coordinates`` entries, along
``--num-directions`` random unit directions otherwise. A negative control, a
DeepMLP whose tanh has a hand-written VJP with the wrong sign (``jax.custom_vjp``),
must fail; every real model must pass with a relative error far below 1e-6.
Directions whose finite difference straddles a ReLU-like kink cannot be checked
by any finite difference; they are counted (``kinks``), not failed (the rule is
in :mod:`jaxgrad.diagnostics.gradient_check`).

The seed's checker loops over every scalar parameter with two forward passes
each; here all directions of all tensors run in one jitted program.

    python -m experiments.gradient_check            # every model, ~1-2 min on 2 cores
    python -m experiments.gradient_check --quick    # fewer directions
    python -m experiments.gradient_check --models mlp_tanh,planted_bug

Writes ``config.json``, ``results.json`` (every tensor's error) and
``errors.png`` under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import numpy as np  # noqa: E402

from jaxgrad import plotting, sweep  # noqa: E402
from jaxgrad.studies import gradient_check as study  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  """``jax.grad`` of every chosen model against float64 central differences, per tensor."""

  models: tuple[str, ...] = _config.setting(study.MODEL_NAMES, "models to check",
                                            choices=study.MODEL_NAMES)
  num_directions: int = _config.setting(4, at_least=1)
  max_coordinates: int = _config.setting(16, at_least=0)
  epsilon: float = _config.setting(1e-6, above=0)
  seed: int = _config.setting(0, "PRNG seed", at_least=0)

  @classmethod
  def quick(cls) -> "Config":
    """The ``--quick`` preset: 2 directions, max_coordinates 8, about 31 s on 2 CPU cores."""
    return cls(num_directions=2, max_coordinates=8)

  @classmethod
  def smoke(cls) -> "Config":
    """The tests' smallest run: mlp_tanh, reversible_coupling and planted_bug, 2 directions."""
    return cls(models=("mlp_tanh", "reversible_coupling", "planted_bug"), num_directions=2,
               max_coordinates=4)


def run(config: Config) -> dict:
  """:func:`jaxgrad.studies.gradient_check.check` of each model in this checkout, in float64."""
  cases = {}
  with jax.enable_x64(True):
    available = study.zoo()
    todo = [m for m in config.models if m in available]
    for i, name in enumerate(_cli.progress(todo, desc="gradient checks")):
      cases[name] = study.check(
          *available[name], key=sweep.rbg_key(config.seed + i),
          check_key=jax.random.key(config.seed), num_directions=config.num_directions,
          max_coordinates=config.max_coordinates, epsilon=config.epsilon)
  return {"config": config, "cases": cases,
          "skipped": [m for m in config.models if m not in cases],
          "all_as_expected": all(c["as_expected"] for c in cases.values())}


def plot(results: dict, out_dir: pathlib.Path) -> None:
  """Writes ``errors.png``: each tensor's relative error, a row per model.

  Finite differences (float64) against ``jax.grad``, the planted wrong-sign VJP in red,
  beside the 1e-6 tolerance.
  """
  cases = results["cases"]
  fig, axes = plotting.figure(1, 1, panel=(6.0, 0.28 * len(cases) + 1.2))
  ax = axes[0, 0]
  for row, (name, case) in enumerate(cases.items()):
    errors = np.asarray([t["error"] for t in case["tensors"].values()], float)
    errors = np.maximum(errors, 1e-16)
    color = "C0" if case["expected_to_pass"] else "C3"
    ax.scatter(errors, np.full(errors.shape, row), s=10, color=color, alpha=0.7)
  ax.axvline(1e-6, color="k", linestyle="--", linewidth=0.8, label="rtol 1e-6")
  ax.set_yticks(range(len(cases)), list(cases))
  ax.invert_yaxis()
  ax.set_xscale("log")
  ax.set_xlabel("relative error per tensor (checked directions), FD (float64) vs jax.grad")
  ax.set_title("gradient check (red: planted wrong-sign VJP)")
  ax.legend()
  plotting.save(fig, out_dir / "errors.png")


def summary(results: dict) -> str:
  """One row per model: parameters, tensors, max relative error, kinks, verdict, expected.

  ``kinks``: directions across a ReLU-like kink, left unchecked. A last line names the models
  not in this checkout.
  """
  rows = [[name, c["num_parameters"], len(c["tensors"]), c["max_error"], c["kinks"],
           "pass" if c["passed"] else "FAIL", "yes" if c["as_expected"] else "NO"]
          for name, c in results["cases"].items()]
  table = _cli.format_table(["model", "params", "tensors", "max rel error", "kinks (unchecked)",
                             "verdict", "as expected"], rows)
  if results["skipped"]:
    table += f"\n(not in this checkout: {', '.join(results['skipped'])})"
  return table


# Compile time dominates these small programs on CPU (notes in docs/architectures.md).
EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary, fast_compile="always")
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
