"""experiments.init_comparison: smoke run, vmapped arms = direct computation, underflow, theory."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import init_comparison as ic
from jaxgrad.models import DeepMLP
from tests import _tol


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  out = tmp_path_factory.mktemp("init_comparison")
  ic.run(ic.Config.smoke(), out)
  return out, json.loads((out / "results.json").read_text())


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
  config = ic.Config.smoke()
  make_model = functools.partial(DeepMLP, config.depth, config.width, 1, activation="tanh")
  names = ("he_normal", "orthogonal", "normal_small")
  inits = [ic.kernel_init(n, "tanh") for n in names]
  key = jax.random.key(3, impl=ic.PRNG_IMPL)
  model = make_model(kernel_init=inits[0])
  with jax.enable_x64(True):
    x, t = ic.random_batches(key, config.seeds, config.batch, config.in_features)
    variables = ic.init_arms(make_model, inits, key, x)
    m = ic.profile_arms(model, variables, x, t)
    direct_profile = jax.jit(functools.partial(ic.gradient_profile, model))
    for a in range(len(inits)):
      for s in range(config.seeds):
        one = jax.tree.map(lambda v: v[a, s], variables)
        direct = direct_profile(one, x[s], t[s])
        for k in ("weight", "signal", "weight_f32", "signal_f32"):
          np.testing.assert_allclose(m[k][a, s], direct[k], **_tol.F32_REDUCED,
                                     err_msg=f"{names[a]} seed {s} {k}")
  # Each arm drew from its own initializer: hidden kernels have the arm's variance.
  hidden = np.asarray(variables["params"]["hidden"]["layers"]["dense"]["kernel"])
  w = config.width
  for a, name in enumerate(names):
    expected = ic.weight_variance(name, w, w, "tanh")
    assert hidden[a].var() == pytest.approx(expected, rel=0.15), name


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
  first = np.asarray(grads["first"]["dense"]["kernel"], dtype=np.float64)
  assert first.dtype == np.float64 and np.all(first != 0)
  assert profile["weight_f32"][0] == 0.0
  np.testing.assert_allclose(profile["weight"][0], np.linalg.norm(first), **_tol.F32_REDUCED)
  assert int(profile["zero_entries"][0]) == 0


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
  with pytest.raises(ValueError, match="unknown init 'kaiming'; valid choices"):
    ic.Config(inits=("kaiming",))
  with pytest.raises(ValueError, match="unknown kaiming_gain 'x'; valid choices"):
    ic.Config(kaiming_gain="x")
  with pytest.raises(ValueError, match="depth must be an integer >= 2"):
    dataclasses.replace(ic.Config.smoke(), depth=1)
