"""Smoke test of experiments.transformer_ln: structure and the exact sqrt(d_k) logit ratio."""

import math

import numpy as np
import optax
import pytest

from jaxgrad import files
from experiments import transformer_ln
from tests import _tol
from tests.conftest import experiment_group

pytestmark = experiment_group("transformer_ln")


def test_smoke_run_writes_results_and_figures(smoke_run):
  config = transformer_ln.Config.smoke()
  tmp_path, results = smoke_run(transformer_ln)
  for name in ("grad_norms.png", "last_layer.png", "profile_ablation.png", "attention.png",
               "warmup.png"):
    assert (tmp_path / name).stat().st_size > 0
  for position in ("pre", "post"):
    for depth in config.depths:
      per_seed = np.asarray(results["grad_norms"][position][str(depth)]["per_seed"])
      assert per_seed.shape == (config.seeds, depth)
      assert np.all(np.isfinite(per_seed)) and np.all(per_seed > 0)
      q = np.asarray(results["stream"][position][str(depth)]["q"]["per_seed"])
      assert q.shape == (config.seeds, depth + 1)
  assert len(results["pre_ln_last_layer"]["local_slopes"]["measured"]) == len(config.depths) - 1
  for arms in results["profile_ablation"].values():
    assert np.asarray(arms["post"]["grad_norm"]["per_seed"]).shape == (config.seeds,
                                                                      config.ablation_depth)
  att = results["attention"]
  # Same parameters with and without the scale: logits differ by exactly sqrt(d_k).
  np.testing.assert_allclose(att["unscaled_over_scaled_logit_std"],
                             [math.sqrt(d) for d in config.head_dims], **_tol.F32_REDUCED)
  for variant in ("scaled", "unscaled"):
    entropy = np.asarray(att[variant]["entropy"]["per_seed"])
    assert np.all((entropy >= 0) & (entropy <= 1 + 1e-6))
  assert len(results["warmup"]) == 4
  for arm in results["warmup"].values():
    assert len(arm["loss"]["median"]) == config.steps
  print(transformer_ln.summary(results))


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match="num_heads=3: must divide d_model=8"):
    transformer_ln.Config(d_model=8, num_heads=3)
  with pytest.raises(ValueError, match="warmup_steps=20: must be <= steps=10"):
    transformer_ln.Config(steps=10, warmup_steps=20)


def test_warmup_schedule_is_optax_linear_schedule_and_constant_without_warmup():
  steps = np.arange(0, 12)
  np.testing.assert_allclose(transformer_ln.warmup_schedule(0.5, 8)(steps),
                             optax.linear_schedule(0.0, 0.5, 8)(steps), **_tol.F32)
  np.testing.assert_allclose(transformer_ln.warmup_schedule(0.5, 0)(steps), 0.5, **_tol.F32)


def test_pre_ln_stream_grows_by_the_mlp_variance_per_block():
  r"""Without attention and with ReLU, each pre-LN block adds exactly v = d_ff s2 (d s1) / 2.

  A block adds :math:`W_2\,\mathrm{relu}(W_1 u)` of its LayerNormed input (:math:`\|u\|^2 = d`),
  so for weight variances :math:`s_1, s_2` (Xavier: :math:`2/(d + d_{ff})`) the stream's
  :math:`q_L = \overline{x_L^2}` has expectation :math:`q_0 + L v` (no cross term: :math:`W_2`
  has mean 0), :math:`v = d_{ff} s_2 \cdot d s_1 / 2`. Tolerance: 4 Monte-Carlo standard errors.
  """
  config = transformer_ln.Config(d_model=16, num_heads=2, d_ff=32, seq_len=6, vocab=5, batch=8,
                                 seeds=16, attention=False, ffn_activation="relu")
  s = 2.0 / (config.d_model + config.d_ff)
  v = config.d_ff * s * config.d_model * s / 2.0  # 0.444
  depth = 8
  q = transformer_ln.init_grad_norms(config, depth, "pre")["q"]  # (seeds, depth + 1)
  predicted = q[:, :1] + np.arange(depth + 1) * v
  error = np.std(q - predicted, axis=0) / math.sqrt(config.seeds)
  np.testing.assert_array_less(np.abs(np.mean(q - predicted, axis=0)), 4 * error + 1e-6)
  assert abs(np.mean(q[:, -1]) - np.mean(predicted[:, -1])) < 0.1 * np.mean(predicted[:, -1])


def test_last_layer_theory_slopes():
  """Local slopes from medians; a gradient exactly c / sqrt(q_L) has zero residual slope."""
  depths = (4, 16)
  q_0 = np.ones((3, 2))
  q_last = q_0 + np.asarray(depths) * 0.5
  grad = 2.0 / np.sqrt(q_last)
  theory = transformer_ln.last_layer_theory(depths, grad, q_0, q_last)
  np.testing.assert_allclose(theory["v"], 0.5, **_tol.F32)
  np.testing.assert_allclose(theory["predicted"], theory["grad"], **_tol.F32)
  np.testing.assert_allclose(theory["local_slopes"]["residual"], 0.0, atol=1e-12)
  expected = -0.5 * math.log(9.0 / 3.0) / math.log(4.0)
  np.testing.assert_allclose(theory["local_slopes"]["measured"], expected, **_tol.F32)
  np.testing.assert_allclose(theory["linear_growth_slope"], [-0.5 * 2 / 3, -0.5 * 8 / 9],
                             **_tol.F32)
