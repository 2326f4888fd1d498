"""mixed_precision experiment: smoke run, float32 has no underflow by definition, CLI errors."""


import numpy as np
import pytest

from experiments import mixed_precision as mpx
from jaxgrad.studies import mixed_precision as study
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(mpx)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(mpx)


def test_smoke_structure_and_figures(smoke):
  out, results = smoke
  config = mpx.Config.smoke()
  assert list(results["arms"]) == list(study.ARMS)
  assert len(results["layers"]) == config.depth
  for arm in results["arms"].values():
    assert np.shape(arm["loss"]) == (config.seeds, config.steps)
    for layer in results["layers"]:
      assert np.shape(arm["underflow"][layer]) == (config.seeds, config.steps)
  for name in ("loss.png", "underflow.png", "loss_scale.png"):
    assert (out / name).stat().st_size > 5_000


def test_float32_is_its_own_reference_and_the_scale_follows_the_rules(smoke):
  arms = smoke[1]["arms"]
  assert all(np.all(np.asarray(v) == 0) for v in arms["float32"]["underflow"].values())
  np.testing.assert_array_equal(arms["float32"]["loss_scale"], 1.0)
  scale = np.asarray(arms["float16+scaling"]["loss_scale"])
  config = mpx.Config.smoke()
  # Every change is a doubling (growth) or a halving (backoff), starting from init_scale.
  ratios = scale[:, 1:] / scale[:, :-1]
  assert set(np.unique(ratios)) <= {0.5, 1.0, 2.0}
  assert set(np.unique(scale[:, 0])) <= {config.init_scale, 2 * config.init_scale, config.init_scale / 2}


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "cifar"], "argument --dataset: 'cifar' is not allowed: must be one of ('digits', 'mnist1d')"),
    (["--depth", "1"], "argument --depth: 1 is not allowed: must be >= 2"),
])
def test_bad_flags(argv, message, capsys):
  with pytest.raises(SystemExit):
    mpx.main(argv)
  assert message in capsys.readouterr().err
