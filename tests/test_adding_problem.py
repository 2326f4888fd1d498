"""adding_problem: smoke run, the mean predictor's MSE, solved = test MSE < 0.04, CLI errors."""

import dataclasses

import numpy as np
import pytest

from jaxgrad import files
from experiments import adding_problem as ap
from jaxgrad.studies import recurrent
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(ap)


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(ap)


def test_smoke_structure_and_figures(smoke):
  out, results = smoke
  config = ap.Config.smoke()
  names = {ap.setting_name(f"lstm b_f={b:g}", k, t) for t in config.lengths
           for b in config.forget_biases for k in config.clipping}
  assert set(results["settings"]) == names == set(ap.setting_names(config))
  logged = config.steps // config.log_every
  assert results["logged_steps"] == [config.log_every * (i + 1) for i in range(logged)]
  for r in results["settings"].values():
    assert np.shape(r["loss"]) == np.shape(r["grad_norm"]) == (config.seeds, logged)
    assert np.shape(r["test_mse"]) == (config.seeds,)
    solved = np.asarray(r["test_mse"]) < ap.SOLVED_MSE
    np.testing.assert_array_equal(r["solved"], solved)
    assert r["fraction_solved"] == pytest.approx(solved.mean())
    assert 0 <= min(r["error_rate"]) and max(r["error_rate"]) <= 1
  for r in results["settings"].values():
    assert r["memory_factor"] == pytest.approx((1 / (1 + np.exp(-r["forget_bias"]))) ** (r["length"] / 2))
  for name in ("success.png", "loss.png", "forget_gate.png"):
    assert (out / name).stat().st_size > 10_000


def test_mean_predictor_scores_one_sixth(smoke):
  """Var(u1 + u2) = 2/12 on the test sets (50 sequences per seed: a loose bound)."""
  for r in smoke[1]["settings"].values():
    assert np.mean(r["constant_mse"]) == pytest.approx(1 / 6, rel=0.3)
  assert smoke[1]["constant_mse"] == pytest.approx(1 / 6)


def test_clipping_arms_share_the_first_step(smoke):
  """Same seeds, init and batches: step 1's loss and pre-clip norm agree; later steps differ."""
  config = ap.Config.smoke()
  assert config.log_every == 1
  r = smoke[1]["settings"]
  arm = recurrent.arm_name("lstm", config.forget_biases[0])
  a = r[ap.setting_name(arm, "none", config.lengths[0])]
  b = r[ap.setting_name(arm, "clip_norm", config.lengths[0])]
  np.testing.assert_allclose(np.asarray(a["loss"])[:, 0], np.asarray(b["loss"])[:, 0], **_tol.F32)
  np.testing.assert_allclose(np.asarray(a["grad_norm"])[:, 0], np.asarray(b["grad_norm"])[:, 0],
                             **_tol.F32)


def test_a_stopped_run_keeps_the_settings_it_finished(tmp_path, monkeypatch):
  """results.json is rewritten after every (cell, T): stop in the second, the first is there."""
  finished = []

  def train_settings(config, cell, length, forget_bias):
    if finished:
      raise KeyboardInterrupt
    finished.append((cell, length))
    return {"none": {"test_mse": np.array([0.01, 0.1])}}

  monkeypatch.setattr(ap, "train_settings", train_settings)
  config = ap.Config(lengths=(6, 8), cells=("lstm",), forget_biases=(0.0,), clipping=("none",),
                     steps=4, log_every=2)
  with pytest.raises(KeyboardInterrupt):
    ap.EXPERIMENT.execute(config, tmp_path)
  settings = files.read_json(tmp_path / "results.json")["settings"]
  assert list(settings) == [ap.setting_name("lstm b_f=0", "none", 6)]
  assert settings[ap.setting_name("lstm b_f=0", "none", 6)]["test_mse"] == [0.01, 0.1]


@pytest.mark.parametrize("argv, message", [
    (["--lengths", "3"], "argument --lengths: '3' is not allowed: must be >= 4"),
    (["--cells", "rnn"], "argument --cells: 'rnn' is not allowed: must be one of"),
    (["--steps", "10", "--log-every", "3"],
     "argument --steps: 10 is not allowed: must be a multiple of log_every=3"),
])
def test_bad_flags_are_clear_errors(argv, message, capsys):
  with pytest.raises(SystemExit):
    ap.main(argv)
  assert message in capsys.readouterr().err


def test_every_config_field_but_the_grid_reaches_the_study():
  """A new Config field the study does not take would be silently ignored: this names it."""
  config = ap.Config.smoke()
  kwargs = recurrent.study_kwargs(recurrent.train_adding, config)
  grid = {"lengths", "cells", "forget_biases"}  # run's loop; seed becomes the key
  assert set(kwargs) == set(dataclasses.asdict(config)) - grid - {"seed"} | {"key"}
  assert (kwargs["hidden"], kwargs["steps"], kwargs["clipping"]) == (4, 4, ("none", "clip_norm"))
