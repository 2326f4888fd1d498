"""experiments.init_comparison: smoke run, vmapped arms = direct computation, underflow, theory."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import init_comparison as ic
from jaxgrad import diagnostics, files, probe
from jaxgrad.models import DeepMLP
from tests import _tol
from tests.conftest import experiment_group

pytestmark = experiment_group("init_comparison")


@pytest.fixture(scope="module")
def smoke(smoke_run):
  return smoke_run(ic)


def test_smoke_writes_results_and_figures(smoke):
  out, results = smoke
  config = ic.Config.smoke()
  assert list(results["activations"]) == list(config.activations)
  for arms in results["activations"].values():
    assert list(arms) == list(config.inits)
    for arm in arms.values():
      for key in ("weight", "signal"):
        assert np.shape(arm[key]["per_seed"]) == (config.seeds, config.depth)
      assert len(arm["theory_signal"]) == config.depth
  for act in config.activations:
    assert (out / f"gradients_{act}.png").stat().st_size > 10_000


def test_theory_is_anchored_at_the_output_and_he_relu_is_flat(smoke):
  relu = smoke[1]["activations"]["relu"]
  he = relu["he_normal"]
  # He + relu: every backward factor sigma_w^2 mu_1 = 2 * 1/2 = 1.
  np.testing.assert_allclose(he["theory_signal"], he["signal"]["median"][-1], **_tol.F64)


def test_vmapped_arms_equal_a_direct_per_arm_computation():
  """Grouped draws and switched activations = each arm drawn and measured alone."""
  config = ic.Config.smoke()
  make_model = functools.partial(DeepMLP, config.depth, config.width, 1)
  # One initializer under two activations (drawn together, switched apart) and a second one.
  names = (("tanh", "he_normal"), ("tanh", "normal_small"), ("relu", "he_normal"))
  arms = [(act, ic.kernel_init(init, act)) for act, init in names]
  key = jax.random.key(3, impl=ic.PRNG_IMPL)
  with jax.enable_x64(True):
    m = ic.measure_arms(make_model, arms, key, config.seeds, config.batch, config.in_features)
    k_data, k_params = jax.random.split(key)
    x, t = ic.random_batches(k_data, config.seeds, config.batch, config.in_features)
    for a, (act, init) in enumerate(arms):
      model = make_model(activation=act, kernel_init=init)
      direct = jax.jit(lambda k, x, t, model=model: ic.gradient_profile(model, model.init(k, x), x, t))
      keys = jax.random.split(jax.random.fold_in(k_params, a), config.seeds)
      for s in range(config.seeds):
        one = direct(keys[s], x[s], t[s])
        for k in ("weight", "signal", "weight_f32", "signal_f32", "zero_entries"):
          np.testing.assert_allclose(m[k][a, s], one[k], **_tol.F32_REDUCED,
                                     err_msg=f"{names[a]} seed {s} {k}")
  # The arms really differ: N(0, 0.01^2) weights shrink the input layer's gradient.
  assert np.all(m["weight"][1, :, 0] < 1e-2 * m["weight"][0, :, 0])


def test_kernel_init_is_one_object_per_initializer():
  assert ic.kernel_init("orthogonal", "relu") is ic.kernel_init("orthogonal", "tanh")
  assert ic.kernel_init("he_normal", "relu") is ic.kernel_init("he_normal", "tanh")
  assert (ic.kernel_init("he_normal", "relu", "torch")
          is not ic.kernel_init("he_normal", "tanh", "torch"))


def test_float32_norm_underflows_but_the_gradient_does_not():
  """N(0, 1e-5^2) weights: first-layer gradient entries ~1e-23, squares 1e-46 < 1.2e-38."""
  model = DeepMLP(depth=6, width=8, out_features=1, activation="tanh",
                  kernel_init=("normal", {"stddev": 1e-5}))
  x = jax.random.normal(jax.random.key(0), (4, 3), jnp.float32)
  t = jax.random.normal(jax.random.key(1), (4, 1), jnp.float32)
  variables = model.init(jax.random.key(2), x)
  with jax.enable_x64(True):
    profile = jax.jit(functools.partial(ic.gradient_profile, model))(variables, x, t)
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
  np.testing.assert_allclose(ic.predicted_signal("linear", s), expected, **_tol.F64)


def test_seed_kaiming_gain_for_tanh_is_five_thirds():
  assert ic.weight_variance("he_normal", 100, 100, "tanh", "torch") == pytest.approx(25 / 9 / 100)
  assert ic.weight_variance("he_normal", 100, 100, "tanh", "he") == pytest.approx(2 / 100)
  w = ic.kernel_init("he_normal", "tanh", "torch")(jax.random.key(0), (400, 400), jnp.float32)
  assert float(jnp.var(w)) == pytest.approx(25 / 9 / 400, rel=0.02)


def test_bad_config_is_a_clear_error():
  with pytest.raises(ValueError, match=r"inits=\('kaiming',\): must be one of"):
    ic.Config(inits=("kaiming",))
  with pytest.raises(ValueError, match="kaiming_gain='x': must be one of"):
    ic.Config(kaiming_gain="x")
  with pytest.raises(ValueError, match="depth=1: must be >= 2"):
    dataclasses.replace(ic.Config.smoke(), depth=1)
