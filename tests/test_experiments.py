"""The registry walk: every experiment that ``python -m experiments`` lists is held to the harness.

Each experiment's contract test (:func:`tests._contract.harness_test`) lives in
its own test file, beside its numeric checks against theory, so that the smoke
run is made once per test session on one worker; here the registry is walked
to find that every listed experiment has one and is listed with its purpose.
"""

import functools
import importlib
import pathlib
import subprocess
import sys

import pytest

from experiments import __main__ as registry

NAMES = list(registry.experiments())
TESTS = pathlib.Path(__file__).parent
THIS = pathlib.Path(__file__).name


@functools.cache
def _contract_tests() -> dict[str, str]:
  """Experiment module name -> the test module that checks its harness contract."""
  found = {}
  for path in sorted(TESTS.glob("test_*.py")):
    if path.name != THIS and "= _contract.harness_test(" in path.read_text():
      test = importlib.import_module(f"tests.{path.stem}").test_smoke_run_keeps_the_harness_contract
      found[test.experiment] = path.stem
  return found


def test_the_registry_lists_every_experiment_with_its_purpose():
  listing = subprocess.run([sys.executable, "-m", "experiments"], capture_output=True, text=True,
                           check=True).stdout
  for name, purpose in registry.experiments().items():
    assert purpose, f"{name} has no one-line purpose"
    assert f"{name}" in listing and purpose in listing


@pytest.mark.parametrize("name", NAMES)
def test_every_listed_experiment_has_its_contract_test(name):
  module = importlib.import_module(f"experiments.{name}")
  assert module.EXPERIMENT.config is module.Config
  assert module.__name__ in _contract_tests()
