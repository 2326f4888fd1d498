"""jaxgrad.studies.layer_norm_position: warmup, the pre-LN stream's growth, last-layer theory."""

import math

import numpy as np
import optax
import pytest

from jaxgrad.studies import layer_norm_position as lnp
from tests import _tol


def test_warmup_schedule_is_optax_linear_schedule_and_constant_without_warmup():
  steps = np.arange(0, 12)
  np.testing.assert_allclose(lnp.warmup_schedule(0.5, 8)(steps),
                             optax.linear_schedule(0.0, 0.5, 8)(steps), **_tol.F32)
  np.testing.assert_allclose(lnp.warmup_schedule(0.5, 0)(steps), 0.5, **_tol.F32)


def test_ablated_applies_the_overrides():
  setting = lnp.Setting(vocab=5, seq_len=6, d_model=16, num_heads=2, d_ff=32)
  xiong = lnp.ablated(setting, "Xiong's simplified model")
  assert (xiong.ffn_activation, xiong.attention, xiong.d_ff, xiong.kernel_init) == (
      "relu", False, 16, "lecun_normal")
  assert lnp.ablated(setting, "default") == setting


def test_pre_ln_stream_grows_by_the_mlp_variance_per_block():
  r"""Without attention and with ReLU, each pre-LN block adds exactly v = d_ff s2 (d s1) / 2.

  A block adds :math:`W_2\,\mathrm{relu}(W_1 u)` of its LayerNormed input (:math:`\|u\|^2 = d`),
  so for weight variances :math:`s_1, s_2` (Xavier: :math:`2/(d + d_{ff})`) the stream's
  :math:`q_L = \overline{x_L^2}` has expectation :math:`q_0 + L v` (no cross term: :math:`W_2`
  has mean 0), :math:`v = d_{ff} s_2 \cdot d s_1 / 2`. Tolerance: 4 Monte-Carlo standard errors.
  """
  setting = lnp.Setting(vocab=5, seq_len=6, d_model=16, num_heads=2, d_ff=32,
                        ffn_activation="relu", attention=False)
  seeds = 16
  s = 2.0 / (setting.d_model + setting.d_ff)
  v = setting.d_ff * s * setting.d_model * s / 2.0  # 0.444
  depth = 8
  q = lnp.init_grad_norms(setting, depth, "pre", batch=8, seeds=seeds)["q"]  # (seeds, depth + 1)
  predicted = q[:, :1] + np.arange(depth + 1) * v
  error = np.std(q - predicted, axis=0) / math.sqrt(seeds)
  np.testing.assert_array_less(np.abs(np.mean(q - predicted, axis=0)), 4 * error + 1e-6)
  assert abs(np.mean(q[:, -1]) - np.mean(predicted[:, -1])) < 0.1 * np.mean(predicted[:, -1])


def test_last_layer_theory_slopes():
  """Local slopes from medians; a gradient exactly c / sqrt(q_L) has zero residual slope."""
  depths = (4, 16)
  q_0 = np.ones((3, 2))
  q_last = q_0 + np.asarray(depths) * 0.5
  grad = 2.0 / np.sqrt(q_last)
  theory = lnp.last_layer_theory(depths, grad, q_0, q_last)
  np.testing.assert_allclose(theory["v"], 0.5, **_tol.F32)
  np.testing.assert_allclose(theory["predicted"], theory["grad"], **_tol.F32)
  np.testing.assert_allclose(theory["local_slopes"]["residual"], 0.0, atol=1e-12)
  expected = -0.5 * math.log(9.0 / 3.0) / math.log(4.0)
  np.testing.assert_allclose(theory["local_slopes"]["measured"], expected, **_tol.F32)
  np.testing.assert_allclose(theory["linear_growth_slope"], [-0.5 * 2 / 3, -0.5 * 8 / 9],
                             **_tol.F32)


def test_loglog_slope_of_a_power_law():
  x = np.array([2.0, 4.0, 8.0])
  assert lnp.loglog_slope(x, 3.0 * x ** -0.5) == pytest.approx(-0.5, abs=1e-12)
