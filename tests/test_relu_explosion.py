"""experiments.relu_explosion: smoke run, gradients = weight products, the wrong init (science: test_studies_relu_chains)."""

import numpy as np
import pytest

from experiments import relu_explosion as exp
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(exp)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(exp)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = exp.Config.smoke()
  assert set(results["cases"]) == set(config.inits)
  for per_depth in results["cases"].values():
    assert list(per_depth) == [str(d) for d in config.depths]
    for d, c in per_depth.items():
      assert len(c["nonzero_fraction_per_layer"]) == int(d)
  for name in ("gradients.png", "exactness.png", "survival.png"):
    assert (out / name).stat().st_size > 10_000


def test_perturb_gradients_equal_the_weight_products_to_float32_precision(smoke):
  for init, per_depth in smoke[1]["cases"].items():
    for d, c in per_depth.items():
      assert c["zero_mismatches"] == 0 and c["nonfinite"] == 0, (init, d)
      # One float32 rounding per layer on the path: |error| <= (L - l) 2^-24.
      assert c["max_rel_error_over_bound"] <= 1.0, (init, d)


def test_wrong_init_never_dies_and_grows_like_the_weight_product(smoke):
  c = smoke[1]["cases"]["wrong"]["6"]
  assert c["reaches_input"] == exp.Config.smoke().seeds
  measured = np.asarray(c["scatter"]["measured"])
  exact = np.asarray(c["scatter"]["exact"])
  np.testing.assert_allclose(measured, exact, rtol=6 * 2.0**-24, atol=0)


def test_bad_config_is_a_clear_error():
  with pytest.raises(ValueError, match=r"inits=\('xavier',\): must be one of"):
    exp.Config(inits=("xavier",))
  with pytest.raises(ValueError, match="input=-1.0: must be > 0"):
    exp.Config(input=-1.0)
