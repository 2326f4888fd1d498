"""gradient_sources: the four claims' measurements at smoke size, against their exact values."""

import numpy as np
import pytest

from experiments import gradient_sources as gs
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(gs)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(gs)


def test_relu_path_products_are_exactly_zero_or_one(smoke):
  paths = smoke[1]["relu_paths"]
  assert set(paths["product_values"]) <= {0.0, 1.0}
  config = gs.Config.smoke()
  n = config.seeds * config.paths
  for measured, theory in zip(paths["fraction_one"], paths["fraction_one_theory"]):
    # Units of one layer share an input, so paths are not independent: a loose binomial bound.
    assert abs(measured - theory) < 6 * np.sqrt(theory * (1 - theory) / n) + 0.05 * theory
  assert paths["chi1"] == 1.0


def test_softmax_jacobian_norm_lies_between_its_bounds_and_decays_exponentially(smoke):
  soft = smoke[1]["softmax"]
  norm, low, high = (np.asarray(soft[k]) for k in ("jacobian_norm", "lower_bound", "upper_bound"))
  finite = norm > 1e-30
  assert np.all(norm[finite] >= low[finite] * (1 - 1e-4))
  assert np.all(norm[finite] <= high[finite] * (1 + 1e-4))
  assert soft["log_norm_slope"] == pytest.approx(-1.0, abs=0.1)


def test_exploding_comes_with_max_derivative_one(smoke):
  for case in smoke[1]["exploding"].values():
    assert case["max_derivative"] == pytest.approx(1.0, abs=1e-6)
    assert case["chi1"] > 1.0
  linear = smoke[1]["exploding"]["linear sigma_w2=1.2"]
  assert linear["chi1"] == pytest.approx(1.2)


def test_clipping_never_enlarges_a_gradient(smoke):
  clip = smoke[1]["clipping"]
  before = np.asarray(clip["norm_before"])
  np.testing.assert_allclose(clip["norm_after_clip_norm"], clip["expected_clip_norm"], rtol=1e-5)
  assert np.all(np.asarray(clip["norm_after_clip_value"]) <= before * (1 + 1e-5))
  small = before < gs.Config.smoke().clip_value
  np.testing.assert_allclose(np.asarray(clip["norm_after_clip_value"])[small], before[small],
                             rtol=1e-5)
  assert (smoke[0] / "sources.png").stat().st_size > 10_000
