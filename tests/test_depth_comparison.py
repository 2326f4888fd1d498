"""experiments.depth_comparison: smoke run, ratios, the chi_1 prediction."""

import functools

import jax
import numpy as np
import pytest

from jaxgrad import files
from experiments import depth_comparison as dc
from experiments import init_comparison as ic
from jaxgrad.models import DeepMLP
from tests import _tol
from tests.conftest import experiment_group

pytestmark = experiment_group("depth_comparison")


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


def test_measured_signal_follows_mean_field_for_relu_he():
  """Width 64, depth 8, He + relu: s_1/s_L = 1 in theory; median over 16 seeds within 25%."""
  with jax.enable_x64(True):
    m = ic.measure_arms(functools.partial(DeepMLP, 8, 64, 1),
                        [("relu", ic.kernel_init("he_normal", "relu"))],
                        jax.random.key(0, impl=ic.PRNG_IMPL), 16, 8, 8)
  ratio = np.median(m["signal"][0, :, 0] / m["signal"][0, :, -1])
  assert ratio == pytest.approx(1.0, rel=0.25)


def test_bad_config_is_a_clear_error():
  with pytest.raises(ValueError, match=r"activations=\('gelu',\): must be one of"):
    dc.Config(activations=("gelu",))
  with pytest.raises(ValueError, match=r"depths=\(10, 5\): must be strictly increasing"):
    dc.Config(depths=(10, 5))
