"""jaxgrad.studies.signal_propagation: vmapped arms = direct computation, underflow, mean field."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import diagnostics, probe
from jaxgrad.models import DeepMLP
from jaxgrad.studies import signal_propagation as sp
from tests import _tol


def test_switched_arms_equal_a_direct_per_arm_computation():
  """Switched initializers and activations = each arm drawn and measured alone."""
  depth, width, in_features, batch, seeds = 6, 8, 3, 4, 3
  make_model = functools.partial(DeepMLP, depth, width, 1)
  # One initializer under two activations (drawn together, switched apart) and a second one.
  names = (("tanh", "he_normal"), ("tanh", "normal_small"), ("relu", "he_normal"))
  arms = [(act, sp.kernel_init(init, act)) for act, init in names]
  key = jax.random.key(3, impl=sp.PRNG_IMPL)
  with jax.enable_x64(True):
    m = jax.device_get(sp.measure_arms(make_model, arms, key, seeds, batch, in_features))
    k_data, k_params = jax.random.split(key)
    x, t = sp.random_batches(k_data, seeds, batch, in_features)
    for a, (act, init) in enumerate(arms):
      model = make_model(activation=act, kernel_init=init)
      direct = jax.jit(lambda k, x, t, model=model: sp.gradient_profile(model, model.init(k, x), x, t))
      keys = jax.random.split(jax.random.fold_in(k_params, a), seeds)
      for s in range(seeds):
        one = direct(keys[s], x[s], t[s])
        for k in ("weight", "signal", "weight_f32", "signal_f32", "zero_entries"):
          np.testing.assert_allclose(m[k][a, s], one[k], **_tol.F32_REDUCED,
                                     err_msg=f"{names[a]} seed {s} {k}")
  # The arms really differ: N(0, 0.01^2) weights shrink the input layer's gradient.
  assert np.all(m["weight"][1, :, 0] < 1e-2 * m["weight"][0, :, 0])


def test_kernel_init_is_one_object_per_initializer():
  assert sp.kernel_init("orthogonal", "relu") is sp.kernel_init("orthogonal", "tanh")
  assert sp.kernel_init("he_normal", "relu") is sp.kernel_init("he_normal", "tanh")
  assert (sp.kernel_init("he_normal", "relu", "torch")
          is not sp.kernel_init("he_normal", "tanh", "torch"))


def test_float32_norm_underflows_but_the_gradient_does_not():
  """N(0, 1e-5^2) weights: first-layer gradient entries ~1e-23, squares 1e-46 < 1.2e-38."""
  model = DeepMLP(depth=6, width=8, out_features=1, activation="tanh",
                  kernel_init=("normal", {"stddev": 1e-5}))
  x = jax.random.normal(jax.random.key(0), (4, 3), jnp.float32)
  t = jax.random.normal(jax.random.key(1), (4, 1), jnp.float32)
  variables = model.init(jax.random.key(2), x)
  with jax.enable_x64(True):
    profile = jax.jit(functools.partial(sp.gradient_profile, model))(variables, x, t)
    grads = jax.grad(lambda p: jnp.mean((model.apply({**variables, "params": p}, x) - t) ** 2))(
        variables["params"])
    # Differentiated for alone, in float32 (safe_norm does not underflow).
    signal = diagnostics.backprop_signal(lambda v: jnp.mean((model.apply(v, x) - t) ** 2),
                                         variables, layout=probe.layout(model, x)).stack()
  first = np.asarray(grads["first"]["dense"]["kernel"], dtype=np.float64)
  assert first.dtype == np.float64 and np.all(first != 0)
  assert profile["weight_f32"][0] == 0.0
  np.testing.assert_allclose(profile["weight"][0], np.linalg.norm(first), **_tol.F32_REDUCED)
  assert int(profile["zero_entries"][0]) == 0
  # The one backward pass gives the same backprop signal as differentiating for it alone.
  np.testing.assert_allclose(profile["signal"], signal, **_tol.F32_REDUCED)
  assert np.all(np.asarray(profile["signal"]) > 0)


def test_predicted_signal_of_a_linear_network_is_the_product_of_the_weight_scales():
  s = [0.5, 2.0, 2.0, 3.0]
  expected = np.sqrt([2.0 * 2.0 * 3.0, 2.0 * 3.0, 3.0, 1.0])
  np.testing.assert_allclose(sp.predicted_signal("linear", s), expected, **_tol.F64)


def test_seed_kaiming_gain_for_tanh_is_five_thirds():
  assert sp.weight_variance("he_normal", 100, 100, "tanh", "torch") == pytest.approx(25 / 9 / 100)
  assert sp.weight_variance("he_normal", 100, 100, "tanh", "he") == pytest.approx(2 / 100)
  w = sp.kernel_init("he_normal", "tanh", "torch")(jax.random.key(0), (400, 400), jnp.float32)
  assert float(jnp.var(w)) == pytest.approx(25 / 9 / 400, rel=0.02)


def test_measured_signal_follows_mean_field_for_relu_he():
  """Width 64, depth 8, He + relu: s_1/s_L = 1 in theory; median over 16 seeds within 25%."""
  with jax.enable_x64(True):
    m = jax.device_get(sp.measure_arms(functools.partial(DeepMLP, 8, 64, 1),
                                       [("relu", sp.kernel_init("he_normal", "relu"))],
                                       jax.random.key(0, impl=sp.PRNG_IMPL), 16, 8, 8))
  ratio = np.median(m["signal"][0, :, 0] / m["signal"][0, :, -1])
  assert ratio == pytest.approx(1.0, rel=0.25)


def test_first_over_last_keeps_zero_divisions_as_nan_and_inf():
  per_seed = np.array([[2.0, 1.0, 4.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
  np.testing.assert_array_equal(sp.first_over_last(per_seed), [0.5, np.nan, np.inf])


def test_layer_sigma_w2_of_xavier_is_twice_fan_in_over_fan_sum():
  fans = sp.layer_fans(4, 100, 10)
  assert fans == [(10, 100), (100, 100), (100, 100), (100, 1)]
  np.testing.assert_allclose(sp.layer_sigma_w2("xavier_normal", "tanh", fans),
                             [20 / 110, 1.0, 1.0, 200 / 101], **_tol.F64)


def test_depths_in_one_program_equal_each_depth_alone():
  """measure_depths = measure_arms of DeepMLP(depth=D) with the same key; padded NaN.

  Checked at the masked depth (3 of the group's 5); the group's deepest runs unmasked.
  """
  depths, width, in_features, batch, seeds = (5, 3), 8, 3, 4, 2
  arms = [("tanh", sp.kernel_init("xavier_normal", "tanh")),
          ("relu", sp.kernel_init("he_normal", "relu"))]
  keys = jax.random.split(jax.random.key(5, impl=sp.PRNG_IMPL), len(depths))
  with jax.enable_x64(True):
    together = jax.device_get(sp.measure_depths(sp.seed_network(5, width), depths, arms, keys,
                                                seeds, batch, in_features))
    alone = jax.device_get(sp.measure_arms(sp.seed_network(3, width), arms, keys[1], seeds,
                                           batch, in_features))
    for k, v in alone.items():
      np.testing.assert_allclose(together[k][1, ..., :3], v, **_tol.F32_REDUCED, err_msg=k)
      padding = together[k][1, ..., 3:]
      assert np.all(np.isnan(padding)) if k != "zero_entries" else np.all(padding == -1)
      assert np.all(np.isfinite(together[k][0]))
  with pytest.raises(ValueError, match=r"depths must be in \[2, 5\]"):
    sp.measure_depths(sp.seed_network(5, width), (6,), arms, keys[:1], seeds, batch, in_features)


def test_depth_groups_pad_no_network_more_than_within_times():
  assert sp.depth_groups((5, 10, 20, 50, 100)) == [(100, 50), (20, 10, 5)]
  assert sp.depth_groups((3, 6)) == [(6, 3)]
  assert sp.depth_groups((5, 50)) == [(50,), (5,)]
  assert sp.depth_groups((2, 3, 4), within=1.0) == [(4,), (3,), (2,)]
