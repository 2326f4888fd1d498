"""experiments.depth_comparison: smoke run, ratios, the chi_1 prediction (science: test_studies_signal_propagation)."""

import numpy as np
import pytest

from experiments import depth_comparison as dc
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(dc)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(dc)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = dc.Config.smoke()
  for act in config.activations:
    assert list(results["cases"][act]) == [str(d) for d in config.depths]
    for d, case in results["cases"][act].items():
      assert np.shape(case["weight"]["per_seed"]) == (config.seeds, int(d))
      assert case["position"][0] == 0.0 and case["position"][-1] == 1.0
  for name in ("profiles.png", "ratio.png"):
    assert (out / name).stat().st_size > 10_000


def test_ratios_are_first_over_last_layer(smoke):
  case = smoke[1]["cases"]["tanh"]["6"]
  w = np.asarray(case["weight"]["per_seed"])
  np.testing.assert_allclose(case["weight_ratio"]["per_seed"], w[:, 0] / w[:, -1], **_tol.F64)


def test_relu_he_prediction_is_one_and_sigmoid_is_chi1_power(smoke):
  cases = smoke[1]["cases"]
  for d in cases["relu"]:
    assert cases["relu"][d]["theory_signal_ratio"] == pytest.approx(1.0, abs=1e-9)
  # Sigmoid, Xavier, square hidden layers (sigma_w^2 = 1): the hidden factors are
  # mu_1(q_l); each is at most phi'(0)^2 = 1/16, so the ratio falls at least 4x per layer.
  ratio = [cases["sigmoid"][d]["theory_signal_ratio"] for d in ("3", "6")]
  assert ratio[1] / ratio[0] < 0.25**3


def test_bad_config_is_a_clear_error():
  with pytest.raises(ValueError, match=r"activations=\('gelu',\): must be one of"):
    dc.Config(activations=("gelu",))
  with pytest.raises(ValueError, match=r"depths=\(10, 5\): must be strictly increasing"):
    dc.Config(depths=(10, 5))
