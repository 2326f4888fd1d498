"""jaxgrad.studies.layer_norm_position: warmup, the pre-LN stream's growth, the depth and
attention sweeps and their summaries, last-layer theory."""

import math

import jax
import numpy as np
import optax
import pytest

from jaxgrad.stats import quartiles
from jaxgrad.studies import layer_norm_position as lnp
from jaxgrad.sweep import rbg_key
from tests import _tol

TINY = lnp.Setting(vocab=5, seq_len=6, d_model=8, num_heads=2, d_ff=16)


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


def test_depth_sweep_measures_each_blocks_w2_gradient_norm():
  """Keys, shapes and quartiles of depth_sweep; its grad_norm[s, l] = ||dL/dW2_l||_F, recomputed
  here for seed 0 from the study's own draws."""
  batch, seeds = 4, 2
  cases = iter([("post", 3)])  # consumed once, as a progress bar is (both positions: the smoke run)
  grad_norms, stream = lnp.depth_sweep(TINY, cases, batch=batch, seeds=seeds)
  assert {p: list(d) for p, d in grad_norms.items()} == {"post": ["3"]}
  assert grad_norms.keys() == stream.keys()
  g = grad_norms["post"]["3"]
  assert np.asarray(g["per_seed"]).shape == (seeds, 3)
  np.testing.assert_allclose(g["median"], np.median(g["per_seed"], axis=0), **_tol.F32)
  assert np.asarray(stream["post"]["3"]["q"]["per_seed"]).shape == (seeds, 4)
  assert np.asarray(stream["post"]["3"]["token_cosine"]["per_seed"]).shape == (seeds, 4)

  model = lnp.make_model(TINY, 3, "post")
  k_init, k_data = jax.random.split(jax.random.split(rbg_key(0), seeds)[0])
  tokens, targets = lnp.reversal_batch(k_data, TINY, batch)
  params = jax.jit(model.init)(k_init, tokens)["params"]
  grads = jax.jit(jax.grad(lambda p: lnp.cross_entropy(model, p, (tokens, targets))))(params)
  w2 = np.asarray(grads["hidden"]["layers"]["mlp_out"]["kernel"])  # (depth, d_ff, d_model)
  np.testing.assert_allclose(np.asarray(g["per_seed"])[0], np.linalg.norm(w2, axis=(1, 2)),
                             **_tol.F32_REDUCED)


def _sweep(per_layer: dict[int, np.ndarray]) -> dict:
  """``{str(depth): quartiles}`` of given per-seed samples."""
  return {str(d): quartiles(a) for d, a in per_layer.items()}


def test_layer_across_depths_picks_one_layer_of_every_depth():
  sweep = _sweep({2: np.array([[1.0, 2.0], [3.0, 4.0]]), 3: np.array([[5.0, 6.0, 7.0],
                                                                     [8.0, 9.0, 10.0]])})
  np.testing.assert_array_equal(lnp.layer_across_depths(sweep, (2, 3), -1), [[2, 7], [4, 10]])
  np.testing.assert_array_equal(lnp.layer_across_depths(sweep, (3, 2), 0), [[5, 1], [8, 3]])


def test_depth_summary_of_an_exact_power_law():
  """Pre-LN's last layer 2 / sqrt(q_L) with q_L = 1 + L/2, post-LN's constant: known numbers."""
  depths = (4, 16, 64)
  seeds = np.array([[0.9], [1.0], [1.1]])  # (seeds, 1): the median seed is the factor 1
  pre = {d: seeds * np.full(d, 2.0 / math.sqrt(1 + d / 2)) for d in depths}
  post = {d: seeds * np.linspace(1.0, 3.0, d) for d in depths}
  q = {d: np.broadcast_to(1.0 + np.arange(d + 1) / 2, (3, d + 1)) for d in depths}
  grad_norms = {"pre": _sweep(pre), "post": _sweep(post)}
  stream = {"pre": {str(d): {"q": quartiles(q[d])} for d in depths}}
  out = lnp.depth_summary(depths, grad_norms, stream)
  pre_last = [2.0 / math.sqrt(1 + d / 2) for d in depths]
  np.testing.assert_allclose(out["last_layer_median"]["pre"], pre_last, **_tol.F64)
  np.testing.assert_allclose(out["last_layer_median"]["post"], 3.0, **_tol.F64)
  np.testing.assert_allclose(out["mean_layer_median"]["post"], 2.0, **_tol.F64)
  assert out["last_layer_depth_exponent"]["post"] == pytest.approx(0.0, abs=1e-12)
  assert out["last_layer_depth_exponent"]["pre"] == pytest.approx(
      lnp.loglog_slope(depths, pre_last), abs=1e-12)
  theory = out["pre_ln_last_layer"]
  np.testing.assert_allclose(theory["v"], 0.5, **_tol.F64)
  np.testing.assert_allclose(theory["c"], 2.0, **_tol.F64)  # c_L = grad sqrt(q_L), constant
  np.testing.assert_allclose(theory["local_slopes"]["residual"], 0.0, atol=1e-12)
  one = lnp.depth_summary((4,), grad_norms, stream)
  assert one["last_layer_depth_exponent"] is None


def test_attention_sweep_theory_and_the_exact_sqrt_dk_ratio():
  head_dims = (4, 16)
  out = lnp.attention_sweep(iter(head_dims), batch=2, seq_len=4, seeds=3)
  assert out["head_dims"] == head_dims
  assert out["theory_logit_std"] == {"scaled": [1.0, 1.0], "unscaled": [2.0, 4.0]}
  np.testing.assert_allclose(out["unscaled_over_scaled_logit_std"], [2.0, 4.0],
                             **_tol.F32_REDUCED)
  for variant in ("scaled", "unscaled"):
    for stat in ("logit_std", "entropy", "max_prob"):
      assert np.asarray(out[variant][stat]["per_seed"]).shape == (3, 2)
  d16 = lnp.attention_stats(16, batch=2, seq_len=4, seeds=3)  # the sweep's column for d_k = 16
  np.testing.assert_array_equal(out["unscaled"]["max_prob"]["per_seed"][:, 1],
                                d16["unscaled"]["max_prob"])


def test_chance_loss_is_log_vocab():
  assert lnp.chance_loss(16) == pytest.approx(math.log(16), abs=1e-15)
