"""Smoke test of experiments.transformer_ln: structure and the exact sqrt(d_k) logit ratio."""

import math

import numpy as np
import pytest

from experiments import transformer_ln
from tests import _tol
from tests import _contract

test_smoke_run_keeps_the_harness_contract = _contract.harness_test(transformer_ln)


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


def test_warmup_arms_are_named_paired_and_end_on_the_last_tenth(smoke_run):
  """Each arm's last-tenth loss; seed s starts from the same parameters and batch in either arm."""
  config = transformer_ln.Config.smoke()
  _, results = smoke_run(transformer_ln)
  warmup = results["warmup"]
  assert list(warmup) == ["pre-LN, no warmup", "pre-LN, warmup", "post-LN, no warmup",
                          "post-LN, warmup"]
  for position in ("pre", "post"):
    constant, warm = warmup[f"{position}-LN, no warmup"], warmup[f"{position}-LN, warmup"]
    assert (constant["warmup"], warm["warmup"], warm["norm_position"]) == (False, True, position)
    loss = np.asarray(constant["loss"]["per_seed"], dtype=float)
    assert loss.shape == (config.seeds, config.steps)
    tail = max(1, config.steps // 10)
    np.testing.assert_allclose(constant["final_loss_per_seed"], loss[:, -tail:].mean(axis=1),
                               **_tol.F32)
    np.testing.assert_array_equal(np.asarray(constant["loss"]["per_seed"])[:, 0],
                                  np.asarray(warm["loss"]["per_seed"])[:, 0])


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match="num_heads=3: must divide d_model=8"):
    transformer_ln.Config(d_model=8, num_heads=3)
  with pytest.raises(ValueError, match="warmup_steps=20: must be <= steps=10"):
    transformer_ln.Config(steps=10, warmup_steps=20)
