"""An experiment's config as its command line gives it, read without importing the experiment.

A benchmark that times an experiment's run needs that run's settings, and the
experiment's ``Config`` is their one source. The benchmark reads them the way
a user would, from ``python -m experiments.<name> [flags] --print-config``
(the harness prints the config as ``config.json`` holds it and exits before
any JAX work), so the benchmarks depend on the experiments' command lines, not
on their modules.
"""

import subprocess
import sys
import types
from typing import Any

from jaxgrad import files

# An experiment's settings by field name: its ``Config``, or the namespace
# :func:`experiment_config` returns.
ExperimentConfig = Any


def experiment_config(name: str, *flags: str) -> types.SimpleNamespace:
  """The config ``python -m experiments.<name> *flags`` would run.

  Args:
    name: the experiment, e.g. ``"rnn_clipping"``.
    *flags: its command-line flags, e.g. ``"--seeds", "1"`` or ``"--quick"``;
      checked by the experiment's own ``Config``.

  Returns:
    The config's fields as attributes (lists as tuples, as in ``Config``).

  Raises:
    ValueError: the experiment refused the flags (its message included).
  """
  command = [sys.executable, "-m", f"experiments.{name}", *flags, "--print-config"]
  proc = subprocess.run(command, capture_output=True, text=True)
  if proc.returncode != 0:
    raise ValueError(f"{' '.join(command[1:])} refused: {proc.stderr.strip().splitlines()[-1]}")
  fields = files.loads(proc.stdout)
  return types.SimpleNamespace(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in fields.items()})


def replace(config: ExperimentConfig, **changes) -> types.SimpleNamespace:
  """``config`` (a ``Config`` or what :func:`experiment_config` returns) with ``changes``."""
  return types.SimpleNamespace(**{**vars(config), **changes})
