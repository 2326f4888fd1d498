"""The library's public functions reject nonsense at the boundary, naming the argument and the value."""

import re

import jax
import jax.numpy as jnp
import pytest

from jaxgrad import data, initializers, optimizers, theory
from jaxgrad.diagnostics import log_singular_values, spectrum_stats
from jaxgrad.models import DenseBlock, DenseStack


def _dense_layer(p, h):
  return DenseBlock(4, "tanh").apply({"params": p}, h)


def _unstacked():
  return DenseBlock(4, "tanh").init(jax.random.key(0), jnp.ones(4))["params"]


@pytest.mark.parametrize("call, message", [
    (lambda: theory.q_star("tanh", -1.0, 0.05), "sigma_w2 must be finite and > 0, got -1.0"),
    (lambda: theory.q_star("tanh", 1.0, 0.05, -2.0), "q0 must be finite and > 0, got -2.0"),
    (lambda: theory.chi1("relu", 2.0, -0.1), "sigma_b2 must be finite and >= 0, got -0.1"),
    (lambda: theory.depth_scale("tanh", float("nan"), 0.05), "sigma_w2 must be finite and > 0"),
    (lambda: initializers.get("gaussian", sigma_w2=float("inf")),
     "initializer 'gaussian': sigma_w2 must be finite, got inf"),
    (lambda: initializers.get("orthogonal", gain=float("nan")),
     "initializer 'orthogonal': gain must be finite, got nan"),
    (lambda: optimizers.OptimizerConfig("sgd", float("inf")),
     "learning_rate must be finite and > 0, got inf"),
    (lambda: optimizers.OptimizerConfig("adamw", 1e-3, weight_decay=-1.0),
     "weight_decay must be finite and >= 0, got -1.0"),
    (lambda: optimizers.OptimizerConfig("adam", 1e-3, end_lr_fraction=-1.0),
     "end_lr_fraction must be in [0, 1], got -1.0"),
    (lambda: data.digits(test_fraction=1.5), "test_fraction must be in (0, 1), got 1.5"),
    (lambda: data.sample_batch(jax.random.key(0), jnp.ones((4, 2)), jnp.ones(4), -1),
     "batch_size must be an integer >= 1, got -1"),
    (lambda: spectrum_stats(jnp.zeros((3, 0))), "at least one singular value"),
    (lambda: theory.q_star("tanh", "1.0", 0.05), "sigma_w2 must be a real number, got '1.0'"),
    (lambda: optimizers.OptimizerConfig("sgd", "0.1"), "learning_rate must be a real number, got '0.1'"),
    (lambda: data.digits(test_fraction="0.2"), "test_fraction must be a real number, got '0.2'"),
    (lambda: initializers.get("gaussian", sigma_w2="2"),
     "initializer 'gaussian': sigma_w2 must be a real number, got '2'"),
    (lambda: DenseStack(3, 4).init(jax.random.key(0), jnp.ones(5)),
     "the input width 5 must equal it"),
    (lambda: DenseBlock(4, residual=True).init(jax.random.key(0), jnp.ones(5)),
     "the input width 5 must equal features=4"),
    (lambda: log_singular_values(_dense_layer, _unstacked(), jnp.ones(4)),
     "layer_fn fails on one layer of params"),
    (lambda: log_singular_values(_dense_layer, {"kernel": jnp.ones((2, 4, 4)), "bias": jnp.ones(4)},
                                 jnp.ones(4)),
     "one leading layer axis"),
    (lambda: log_singular_values(lambda p, h: h[:2], jnp.ones((3, 1)), jnp.ones(4)),
     "layer_fn must map h0's shape"),
])
def test_bad_arguments_are_clear_errors(call, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    call()


def test_good_arguments_still_work():
  assert float(theory.chi1("tanh", 1.0, 0.05)) == pytest.approx(0.759, abs=1e-3)
  assert float(theory.chi1("relu", 2.0, 0.0)) == pytest.approx(1.0, rel=1e-6)
  assert spectrum_stats(jnp.ones(3))["condition"] == 1.0
  # Under jit the variances are traced, and only concrete values are checked.
  assert jnp.isfinite(jax.jit(lambda s: theory.chi1("tanh", s, 0.05))(1.0))
