"""rnn_clipping: smoke run, recorded numbers against an independent recomputation, CLI errors."""

import dataclasses
import types

import jax
import numpy as np
import optax
import pytest

from benchmarks import rnn as rnn_benchmark
from jaxgrad import files
from experiments import rnn_clipping as rc
from jaxgrad.models.recurrent import RecurrentNet
from jaxgrad.studies import recurrent
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(rc)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(rc)


def test_smoke_structure_and_figures(smoke):
  out, results = smoke
  config = rc.Config.smoke()
  steps = config.epochs * config.steps_per_epoch
  assert results["steps_per_epoch"] == 3  # 20 sequences, batch 8: 8, 8 and a short 4
  assert list(results["settings"]) == list(config.arms)
  for arm in results["settings"].values():
    loss, norm = np.asarray(arm["step_loss"]), np.asarray(arm["grad_norm"])
    assert loss.shape == norm.shape == (config.seeds, steps)
    np.testing.assert_allclose(arm["epoch_loss"], loss.reshape(config.seeds, config.epochs, -1)
                               .mean(-1), **_tol.F32)
    np.testing.assert_allclose(arm["fraction_above_clip_norm"], (norm > config.clip_norm).mean(1))
    assert arm["diverged"] == int(np.sum(~np.isfinite(loss).all(1)))
  for name in ("loss.png", "grad_norm.png"):
    assert (out / name).stat().st_size > 10_000


def test_first_step_matches_an_independent_gradient(smoke):
  """Step 0 of seed 0: loss and pre-clip norm equal jax.grad on the sampler's first batch."""
  config = rc.Config.smoke()
  key = jax.random.split(jax.random.key(config.seed), config.seeds)[0]
  net = RecurrentNet(cell="simple", hidden=config.hidden, layers=config.layers,
                     recurrent_init=config.init, rho=config.rho, unroll=config.unroll)
  params, loss_fn, sample, k_train = recurrent.sine_replica(
      net, key, num_sequences=config.num_sequences, length=config.length,
      batch_size=config.batch_size, epochs=config.epochs)
  batch = sample(jax.random.fold_in(k_train, 0))
  assert float(batch.weight.sum()) == config.batch_size
  (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, {}, batch)
  for arm in ("none", "clip_norm"):  # same data, init and batches: same first step
    recorded = smoke[1]["settings"][arm]
    np.testing.assert_allclose(recorded["step_loss"][0][0], loss, **_tol.F32)
    np.testing.assert_allclose(recorded["grad_norm"][0][0], optax.tree.norm(grads), **_tol.F32)


def test_a_stopped_run_resumes_from_the_arms_it_kept(smoke, tmp_path, monkeypatch):
  """A folder holding the config and the first arm: the rerun trains the others, same file."""
  out, full = smoke
  config = rc.Config.smoke()
  files.write_json(tmp_path / "config.json", config)
  first = config.arms[0]
  files.write_json(tmp_path / "results.json",
                   {**full, "settings": {first: full["settings"][first]}})
  trained, train_arm = [], rc.train_arm
  monkeypatch.setattr(rc, "train_arm", lambda c, arm: trained.append(arm) or train_arm(c, arm))
  rc.EXPERIMENT.execute(config, tmp_path)
  assert trained == list(config.arms[1:])
  assert (tmp_path / "results.json").read_text() == (out / "results.json").read_text()


def test_clipping_changes_the_trajectory(smoke):
  arms = smoke[1]["settings"]
  assert not np.allclose(arms["none"]["step_loss"], arms["clip_norm"]["step_loss"])


@pytest.mark.parametrize("argv, message", [
    (["--arms", "none,clip_all"],
     "argument --arms: 'none,clip_all' is not allowed: every item must be one of"),
    (["--init", "xavier"], "argument --init: 'xavier' is not allowed: must be one of"),
    (["--clip-norm", "0"], "argument --clip-norm: 0.0 is not allowed: must be > 0"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
  with pytest.raises(SystemExit):
    rc.main(argv)
  assert message in capsys.readouterr().err


def test_every_config_field_but_the_arms_reaches_the_study():
  """A new Config field the study does not take would be silently ignored: this names it."""
  config = rc.Config.smoke()
  kwargs = {**recurrent.study_kwargs(recurrent.train_arm, config),
            **recurrent.study_kwargs(recurrent.arm_program, config)}
  assert set(kwargs) == set(dataclasses.asdict(config)) - {"arms", "seed"} | {"key"}
  assert (kwargs["seeds"], kwargs["epochs"], kwargs["layers"]) == (2, 2, 1)


def test_the_benchmark_times_the_experiments_program(smoke):
  """benchmarks.rnn's program at the config's fields (no Config) gives the smoke run's numbers."""
  config = types.SimpleNamespace(**dataclasses.asdict(rc.Config.smoke()))
  one, keys = rnn_benchmark.arm_program(config, "clip_norm")
  result = jax.jit(jax.vmap(one))(keys)
  recorded = smoke[1]["settings"]["clip_norm"]
  np.testing.assert_allclose(result.loss, recorded["step_loss"], **_tol.F32)
  np.testing.assert_allclose(result.grad_norm, recorded["grad_norm"], **_tol.F32)
