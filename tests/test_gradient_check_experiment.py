"""Smoke test of experiments.gradient_check: real models pass, the planted bug fails."""


import pytest

from experiments import gradient_check
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(gradient_check)


def test_smoke_run_passes_real_models_and_fails_planted_bug(smoke_run):
  config = gradient_check.Config.smoke()
  tmp_path, results = smoke_run(gradient_check)
  assert (tmp_path / "errors.png").stat().st_size > 0
  cases = results["cases"]
  assert list(cases) == list(config.models)
  assert results["all_as_expected"]
  for name, case in cases.items():
    if name == "planted_bug":
      assert not case["passed"] and case["max_error"] > 0.1
    else:
      assert case["passed"] and case["max_error"] < _tol.F64_FINITE_DIFFERENCE["rtol"]


def test_config_rejects_unknown_model():
  with pytest.raises(ValueError, match=r"models=\('vgg',\): must be one of"):
    gradient_check.Config(models=("vgg",))
