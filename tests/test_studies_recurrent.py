"""jaxgrad.studies.recurrent: memory factors, arms, fitted rates, measures, settings by hand.

The training studies themselves run in the experiments' smoke tests
(test_adding_problem, test_rnn_clipping, test_rnn_time_gradients).
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import training
from jaxgrad.studies import recurrent
from tests import _tol


def test_memory_factor_is_sigmoid_of_the_bias_to_the_half_length():
  assert recurrent.memory_factor(0.0, 50) == pytest.approx(0.5**25)
  assert recurrent.memory_factor(3.0, 50) == pytest.approx((1 / (1 + np.exp(-3.0))) ** 25)
  assert recurrent.memory_factor(3.0, 50) == pytest.approx(0.30, abs=0.005)  # as documented


def test_adding_arms_repeat_only_the_lstm():
  arms = recurrent.adding_arms(("simple", "lstm", "gru"), (0.0, 3.0))
  assert arms == [("simple", 0.0), ("lstm", 0.0), ("lstm", 3.0), ("gru", 0.0)]
  assert [recurrent.arm_name(*a) for a in arms] == ["simple", "lstm b_f=0", "lstm b_f=3", "gru"]


def test_arm_optimizer_clips_only_in_its_arm():
  norm = recurrent.arm_optimizer("clip_norm", 0.01, 1.0, 0.1)
  value = recurrent.arm_optimizer("clip_value", 0.01, 1.0, 0.1)
  gru = recurrent.arm_optimizer("gru", 0.01, 1.0, 0.1)
  assert (norm.clip_norm, norm.clip_value) == (1.0, None)
  assert (value.clip_norm, value.clip_value) == (None, 0.1)
  assert (gru.clip_norm, gru.clip_value) == (None, None)
  assert set(recurrent.ARM_CELL) == set(recurrent.CLIPPING_ARMS)


def test_fitted_rate_recovers_geometric_decay():
  rhos = np.array([0.5, 1.0, 1.5])
  steps_back = np.arange(9, -1, -1)
  log_signal = np.log10(rhos)[:, None, None] * steps_back  # (rhos, seeds=1, T)
  np.testing.assert_allclose(recurrent.fitted_rate(log_signal), rhos[:, None], **_tol.F64)


def test_arm_measures_by_hand():
  # 2 seeds, 2 epochs of 2 steps; seed 1 diverges at its last step.
  loss = jnp.array([[4.0, 2.0, 1.0, 3.0], [1.0, 1.0, 1.0, jnp.nan]])
  norm = jnp.array([[0.5, 2.0, 3.0, 0.1], [1.5, 0.2, 0.3, jnp.inf]])
  result = training.TrainResult(params=None, model_state=None, loss=loss, grad_norm=norm,
                                diverged_at=jnp.array([-1, 3]))
  m = recurrent.arm_measures(result, epochs=2, clip_norm=1.0)
  np.testing.assert_allclose(m["epoch_loss"], [[3.0, 2.0], [1.0, np.nan]])
  np.testing.assert_allclose(m["fraction_above_clip_norm"], [0.5, 0.5])
  np.testing.assert_allclose(m["max_grad_norm"], [3.0, 1.5])
  assert m["diverged"] == 1
  q = m["final_epoch_loss"]  # over the finite seed only
  assert (float(q["q25"]), float(q["median"]), float(q["q75"])) == (2.0, 2.0, 2.0)


def _study(cell, *, hidden, steps, key, forget_bias=0.0):
  del cell
  return hidden, steps, key, forget_bias


@pytest.mark.parametrize("wrap", [dict, lambda d: types.SimpleNamespace(**d)],
                         ids=["mapping", "object"])
def test_study_kwargs_selects_the_keyword_arguments_and_seeds_the_key(wrap):
  settings = wrap({"hidden": 3, "steps": 5, "lengths": (4, 8), "cell": "gru", "seed": 7})
  kwargs = recurrent.study_kwargs(_study, settings)
  # Not the positional ``cell``, not the experiment's ``lengths``, no ``forget_bias`` to give.
  assert sorted(kwargs) == ["hidden", "key", "steps"]
  assert (kwargs["hidden"], kwargs["steps"]) == (3, 5)
  np.testing.assert_array_equal(jax.random.key_data(kwargs["key"]),
                                jax.random.key_data(jax.random.key(7)))
  assert _study("simple", **kwargs)[3] == 0.0  # the study's default stands


def test_study_kwargs_prefers_a_given_key_and_leaves_missing_ones_to_the_study():
  key = jax.random.key(3)
  assert recurrent.study_kwargs(_study, {"key": key, "seed": 7, "forget_bias": 1.0}) == {
      "key": key, "forget_bias": 1.0}
  with pytest.raises(TypeError, match="hidden"):
    _study("lstm", **recurrent.study_kwargs(_study, {"steps": 1, "seed": 0}))


def test_arm_steps_per_epoch_counts_the_short_last_batch():
  assert recurrent.arm_steps_per_epoch({"num_sequences": 1000, "batch_size": 64}) == 16
  assert recurrent.arm_steps_per_epoch(types.SimpleNamespace(num_sequences=20, batch_size=8)) == 3
  assert recurrent.arm_steps_per_epoch({"num_sequences": 16, "batch_size": 8}) == 2
