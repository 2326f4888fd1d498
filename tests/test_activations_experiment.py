"""experiments.activations: smoke run, the seeds' maxima of phi', the depth bound."""


import numpy as np
import pytest

from experiments import activations as exp
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(exp)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(exp)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = exp.Config.smoke()
  assert list(results["activations"]) == list(config.activations)
  for a in results["activations"].values():
    assert len(a["phi"]) == len(a["derivative"]) == len(results["x"])
    assert len(a["max_product"]) == config.max_depth
  for name in ("functions.png", "product.png"):
    assert (out / name).stat().st_size > 10_000


def test_seed_claims_sigmoid_quarter_tanh_one_at_zero(smoke):
  acts = smoke[1]["activations"]
  assert acts["sigmoid"]["max_abs_derivative"] == pytest.approx(0.25, abs=1e-15)
  assert acts["sigmoid"]["attained_on"] == [0.0, 0.0]
  assert acts["tanh"]["max_abs_derivative"] == pytest.approx(1.0, abs=1e-15)
  assert acts["tanh"]["attained_on"] == [0.0, 0.0]
  # relu: 1 on the whole positive half-line (jax's relu'(0) = 0).
  assert acts["relu"]["max_abs_derivative"] == 1.0
  assert acts["relu"]["attained_on"][0] > 0 and acts["relu"]["derivative_at_0"] == 0.0


def test_product_of_maxima_and_float32_underflow_depth(smoke):
  sigmoid = smoke[1]["activations"]["sigmoid"]
  depths = np.arange(1, exp.Config.smoke().max_depth + 1)
  np.testing.assert_allclose(sigmoid["max_product"], 0.25**depths, **_tol.F64)
  # 0.25^L = 2^-2L < 2^-126 (the smallest normal float32) first at L = 64.
  L = sigmoid["underflow_depth"]
  assert L == 64
  assert 0.25**L < np.finfo(np.float32).tiny <= 0.25 ** (L - 1)
  assert smoke[1]["activations"]["tanh"]["underflow_depth"] is None


def test_bad_config_is_a_clear_error():
  with pytest.raises(ValueError, match=r"activations=\('softmax',\): must be one of"):
    exp.Config(activations=("softmax",))
  with pytest.raises(ValueError, match="step=0.0: must be > 0"):
    exp.Config(step=0.0)
