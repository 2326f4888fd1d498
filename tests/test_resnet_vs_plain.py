"""Smoke test of experiments.resnet_vs_plain."""


import numpy as np
import pytest

from experiments import resnet_vs_plain
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(resnet_vs_plain)


def test_smoke_run_writes_results_and_figures(smoke_run):
  config = resnet_vs_plain.Config.smoke()
  tmp_path, results = smoke_run(resnet_vs_plain)
  assert (tmp_path / "grad_flow.png").stat().st_size > 0
  assert (tmp_path / "jacobian.png").stat().st_size > 0
  blocks = sum(resnet_vs_plain.STAGES[config.depths[0]])
  assert len(results["gradient_flow"]) == 4  # residual/plain x BN/no BN
  for flow in results["gradient_flow"].values():
    signal = np.asarray(flow["block_signal"]["per_seed"])
    assert signal.shape == (config.seeds, blocks) and np.all(signal > 0)
    # Each stage's norm is the root sum of squares of its layers' norms.
    layers = np.asarray(flow["layer_grad_norm"]["per_seed"])
    stage_of = [n.split("/")[0].split("_")[0] for n in flow["layer_names"]]
    expected = np.stack([np.sqrt(np.sum(layers[:, [s == st for s in stage_of]] ** 2, axis=1))
                         for st in flow["stage_names"]], axis=1)
    np.testing.assert_allclose(flow["stage_grad_norm"]["per_seed"], expected,
                               **_tol.F32_REDUCED)
  n = config.jacobian_size**2 * config.width
  for jac in results["jacobian"].values():
    sv = np.asarray(jac["singular_values"]["per_seed"])
    assert sv.shape == (config.seeds, n) and np.all(np.diff(sv, axis=1) <= 0)
    np.testing.assert_allclose(jac["mean_sq"]["per_seed"], np.mean(sv**2, axis=1),
                               **_tol.F32_REDUCED)


def test_config_rejects_unknown_depth():
  with pytest.raises(ValueError, match=r"depths=\(50,\): must be one of \(10, 18, 34\)"):
    resnet_vs_plain.Config(depths=(50,))
