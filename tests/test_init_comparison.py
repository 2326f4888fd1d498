"""experiments.init_comparison: smoke run, the mean-field line, config errors (science: test_studies_signal_propagation)."""

import dataclasses

import numpy as np
import pytest

from experiments import init_comparison as ic
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(ic)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(ic)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = ic.Config.smoke()
  assert list(results["activations"]) == list(config.activations)
  for arms in results["activations"].values():
    assert list(arms) == list(config.inits)
    for arm in arms.values():
      for key in ("weight", "signal"):
        assert np.shape(arm[key]["per_seed"]) == (config.seeds, config.depth)
      assert len(arm["theory_signal"]) == config.depth
  for act in config.activations:
    assert (out / f"gradients_{act}.png").stat().st_size > 10_000


def test_theory_is_anchored_at_the_output_and_he_relu_is_flat(smoke):
  relu = smoke[1]["activations"]["relu"]
  he = relu["he_normal"]
  # He + relu: every backward factor sigma_w^2 mu_1 = 2 * 1/2 = 1.
  np.testing.assert_allclose(he["theory_signal"], he["signal"]["median"][-1], **_tol.F64)


def test_bad_config_is_a_clear_error():
  with pytest.raises(ValueError, match=r"inits=\('kaiming',\): must be one of"):
    ic.Config(inits=("kaiming",))
  with pytest.raises(ValueError, match="kaiming_gain='x': must be one of"):
    ic.Config(kaiming_gain="x")
  with pytest.raises(ValueError, match="depth=1: must be >= 2"):
    dataclasses.replace(ic.Config.smoke(), depth=1)
