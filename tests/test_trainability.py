"""trainability experiment: smoke run, the 6 xi_c overlay against theory, the separation score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import trainability as tr
from jaxgrad import data, files, optimizers
from jaxgrad.models import DeepMLP
from jaxgrad.studies import trainability
from jaxgrad.studies.mean_field import unit_inits
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(tr)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(tr)


def test_smoke_writes_results_and_figure(smoke):
  out, results = smoke
  config = tr.Config.smoke()
  shape = (len(config.budgets), len(config.sigma_w2), config.seeds)
  for depth in config.depths:
    setting = results["settings"][tr.depth_name(depth)]
    for split in ("train_accuracy", "test_accuracy"):
      acc = np.asarray(setting[split])
      assert acc.shape == shape and np.all((acc >= 0) & (acc <= 1))
    assert np.shape(setting["final_loss"]) == shape[1:]
  maps = (len(config.budgets), len(config.depths), len(config.sigma_w2))
  assert np.shape(results["train_accuracy_median"]) == np.shape(results["test_accuracy_median"]) == maps
  assert len(results["separation"]) == len(config.budgets)
  assert results["chance"] == pytest.approx(0.1)
  assert (out / "phase_diagram.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def sgd_runs():
  """Three ``train_many`` programs, one network trained twice per program at SGD with momentum.

  ``"chunked"``: lr 0.01, read at 2 and 6 steps, step scales 1 and 2 in one
  program; ``"lr"`` and ``"2lr"``: lr 0.01 and 0.02, each read at 6 steps in
  one go. The two runs of a program share their initialisation and batches.
  """
  dataset = data.standardize(data.digits())
  model = DeepMLP(depth=3, width=8, out_features=dataset.num_classes, **unit_inits())
  grid = np.asarray([1.5, 1.5], np.float32)
  keys = jnp.concatenate([jax.random.split(jax.random.key(1), 1)] * 2)
  run = lambda lr, budgets, **kw: trainability.train_many(  # noqa: E731
      model, dataset, optimizers.OptimizerConfig("sgd", lr, momentum=0.9), grid,
      np.full_like(grid, 0.05), keys, budgets=budgets, batch=4, eval_examples=32, **kw)
  return {"chunked": run(0.01, (2, 6), step_scale=np.asarray([1.0, 2.0], np.float32)),
          "lr": run(0.01, (6,)), "2lr": run(0.02, (6,))}


def test_chunks_at_the_budgets_are_one_uninterrupted_run(sgd_runs):
  """Reading the accuracy at 2 and 6 steps trains the run that 6 steps in one go would."""
  chunked, whole = sgd_runs["chunked"], sgd_runs["lr"]
  np.testing.assert_allclose(chunked["loss"][0], whole["loss"][0], rtol=1e-6)
  np.testing.assert_array_equal(chunked["train_accuracy"][0, -1], whole["train_accuracy"][0, 0])
  np.testing.assert_array_equal(chunked["test_accuracy"][0, -1], whole["test_accuracy"][0, 0])


def test_a_step_scale_is_that_multiple_of_the_learning_rate(sgd_runs):
  """Runs at scales 1 and 2 in one program equal runs at lr and 2 lr, each in its own."""
  scaled = sgd_runs["chunked"]["loss"]
  np.testing.assert_allclose(scaled[0], sgd_runs["lr"]["loss"][0], rtol=1e-6)
  np.testing.assert_allclose(scaled[1], sgd_runs["2lr"]["loss"][1], rtol=1e-5)
  assert not np.allclose(scaled[0], scaled[1], rtol=1e-3)


def test_the_learning_rate_is_divided_by_the_depth():
  config = tr.Config()
  assert config.optimizer_config(100).learning_rate == pytest.approx(3e-4)
  assert config.optimizer_config(10).momentum == 0.9
  fixed = tr.Config(scale_by_depth=False, learning_rate=0.01)
  assert fixed.optimizer_config(100).learning_rate == 0.01


def test_a_stopped_run_resumes_from_the_depths_it_kept(smoke, tmp_path, monkeypatch):
  out, full = smoke
  config = tr.Config.smoke()
  files.write_json(tmp_path / "config.json", config)
  files.write_json(tmp_path / "results.json", {"settings": full["settings"]})
  monkeypatch.setattr(trainability, "train_depth",
                      lambda *a, **kw: pytest.fail("trained a finished depth"))
  tr.EXPERIMENT.execute(config, tmp_path)
  assert (tmp_path / "results.json").read_text() == (out / "results.json").read_text()


def test_overlay_is_six_xi_c_from_the_notes_table(smoke):
  """theory.md §1.1 (tanh, sigma_b^2 = 0.05): 6 xi_c = 21.8 at sigma_w^2 = 1, 41.9 at 4."""
  theory_ = smoke[1]["theory"]
  np.testing.assert_allclose(np.asarray(theory_["six_xi_c_on_grid"])[[0, -1]], [21.8, 41.9],
                             atol=0.05)
  assert theory_["critical_sigma_w2"] == pytest.approx(1.761, abs=5e-4)
  # The curve peaks at the grid point nearest the critical point (xi_c diverges there).
  fine = np.asarray(theory_["sigma_w2"])
  nearest = fine[np.argmin(np.abs(fine - theory_["critical_sigma_w2"]))]
  assert fine[np.argmax(theory_["six_xi_c"])] == nearest


def test_separation_counts_agreement():
  depths, grid = (10, 100), (1.0, 1.75, 4.0)
  # 6 xi_c: 21.8, ~1000s, 41.9 -> predicted trainable: depth 10 everywhere, depth 100 at 1.75 only.
  accuracy = np.array([[0.9, 0.9, 0.9], [0.1, 0.9, 0.9]])
  sep = trainability.separation(accuracy, depths, grid, "tanh", 0.05)
  assert sep["threshold"] == pytest.approx(0.5)
  assert sep["false_untrainable"] == 1 and sep["false_trainable"] == 0
  assert sep["agreement"] == pytest.approx(5 / 6)


@pytest.mark.parametrize("argv, message", [
    (["--budgets", "300,100"], "argument --budgets: '300,100' is not allowed: must be strictly increasing"),
    (["--depths", "10,5"], "argument --depths: '10,5' is not allowed: must be strictly increasing"),
    (["--optimizer", "lbfgs"], "argument --optimizer: 'lbfgs' is not allowed: must be one of"),
    (["--sigma-w2", "-1"], "argument --sigma-w2: '-1.0' is not allowed: must be > 0"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    tr.main(argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err
