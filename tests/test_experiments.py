"""The registry walk: every experiment that ``python -m experiments`` lists, at its smoke size.

Each run is the one its own test file checks against theory (the session's
``smoke_run``); here every experiment is held to the harness's contract:
strict JSON, the config it ran, figures that are PNG files, a summary table, and a ``run`` that takes a checkpoint exactly when the
experiment resumes by settings.
"""

import importlib
import inspect
import json
import subprocess
import sys

import pytest

from experiments import __main__ as registry
from jaxgrad import files
from tests.conftest import experiment_group

NAMES = list(registry.experiments())
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _strict(text: str):
  """``json.loads`` refusing the non-standard constants ``NaN`` and ``Infinity``."""
  def refuse(constant):
    raise ValueError(f"non-standard JSON constant {constant}")

  return json.loads(text, parse_constant=refuse)


def test_the_registry_lists_every_experiment_with_its_purpose():
  listing = subprocess.run([sys.executable, "-m", "experiments"], capture_output=True, text=True,
                           check=True).stdout
  for name, purpose in registry.experiments().items():
    assert purpose, f"{name} has no one-line purpose"
    assert f"{name}" in listing and purpose in listing


@pytest.mark.parametrize("name", [pytest.param(n, marks=experiment_group(n)) for n in NAMES])
def test_smoke_run_keeps_the_harness_contract(name, smoke_run, smoke_returned):
  module = importlib.import_module(f"experiments.{name}")
  experiment = module.EXPERIMENT
  assert experiment.config is module.Config and experiment.name == module.__name__
  out, results = smoke_run(module)
  assert _strict((out / "config.json").read_text()) == _strict(files.to_json(module.Config.smoke()))
  assert isinstance(_strict((out / "results.json").read_text()), dict)
  figures = sorted(out.rglob("*.png"))
  assert figures, f"{name} drew no figure"
  for figure in figures:
    assert figure.read_bytes()[:8] == PNG_MAGIC, figure
  table = experiment.summary(smoke_returned(module))
  assert isinstance(table, str) and len(table.splitlines()) >= 3
  takes_checkpoint = "checkpoint" in inspect.signature(experiment.run).parameters
  assert takes_checkpoint == (experiment.settings is not None)
