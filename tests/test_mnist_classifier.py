"""mnist_classifier: smoke run, numbers against direct computation, monitor files, CLI errors."""


import numpy as np
import pytest

from experiments import mnist_classifier as mc
from jaxgrad import logs
from jaxgrad.studies import classifiers as study
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(mc)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(mc)


def test_smoke_writes_every_arm_and_figure(smoke):
  out, results = smoke
  config = mc.Config.smoke()
  assert len(results["arms"]["grid"]) == len(config.optimizers) * len(config.inits) * len(config.activations)
  assert set(results["arms"]["seed_nets"]) == {"digits/mlp/sgd_momentum/he_normal/relu",
                                               "digits/bn/adam/he_normal/relu"}
  for arm in [*results["arms"]["grid"].values(), *results["arms"]["seed_nets"].values()]:
    assert np.shape(arm["loss"]) == (config.seeds, config.steps)
    assert all(0.0 <= a <= 1.0 for a in arm["test_accuracy"])
    np.testing.assert_array_equal(arm["steps_to_target"],
                                  study.steps_to_target(np.asarray(arm["loss"]), config.target_loss))
  for name in ("grid.png", "seed_nets.png"):
    assert (out / name).stat().st_size > 5_000


def test_untrained_loss_is_log_of_the_class_count(smoke):
  """At step 0 a freshly initialised 10-class net sits near ln 10 (He init, tiny widths: loosely)."""
  arm = smoke[1]["arms"]["grid"]["digits/mlp/sgd_momentum/he_normal/relu"]
  assert abs(np.median(np.asarray(arm["loss"])[:, 0]) - np.log(10)) < 1.0


def test_monitored_run_metrics_read_back(smoke):
  out, results = smoke
  rows = logs.read_jsonl(out / "metrics.jsonl")
  assert [r["step"] for r in rows] == list(range(mc.Config.smoke().steps))
  assert {"loss", "accuracy", "grad_norm/layer_0/dense", "update_ratio/layer_1/dense",
          "dead/layer_0/dense"} <= set(rows[0])
  assert results["monitored_run"]["alarms"] == len(logs.read_jsonl(out / "alarms.jsonl"))


@pytest.mark.parametrize("argv, message", [
    (["--optimizers", "lbfgs"], "argument --optimizers: 'lbfgs' is not allowed: must be one of"),
    (["--grid-dataset", "cifar"], "argument --grid-dataset: 'cifar' is not allowed: must be one of"),
    (["--inits", "glorot"], "argument --inits: 'glorot' is not allowed: must be one of"),
])
def test_bad_flags(argv, message, capsys):
  with pytest.raises(SystemExit):
    mc.main(argv)
  assert message in capsys.readouterr().err
