"""The curated public face: every name in ``__all__`` imports, and ``import jaxgrad`` stays light."""

import importlib
import subprocess
import sys

import pytest

import jaxgrad

PACKAGES = ["jaxgrad", "jaxgrad.data", "jaxgrad.diagnostics", "jaxgrad.models"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_imports(package):
  module = importlib.import_module(package)
  assert sorted(module.__all__) == module.__all__
  for name in module.__all__:
    assert getattr(module, name) is not None, f"{package}.{name}"


def test_entry_points_are_the_modules_own():
  assert jaxgrad.train is jaxgrad.training.train
  assert jaxgrad.make_optimizer is jaxgrad.optimizers.make_optimizer
  assert jaxgrad.Monitor is jaxgrad.logs.Monitor
  assert jaxgrad.diagnose is jaxgrad.diagnostics.diagnose


def test_import_leaves_optional_heavy_packages_alone():
  code = ("import sys, jaxgrad; print(sorted({m.split('.')[0] for m in sys.modules} & "
          "{'matplotlib', 'tensorboardX', 'torch', 'sklearn', 'mnist1d'}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"
