"""The library's public functions reject nonsense at the boundary, naming the argument and the value."""

import jax
import jax.numpy as jnp
import pytest

from jaxgrad import data, initializers, theory, training
from jaxgrad.diagnostics import spectrum_stats


@pytest.mark.parametrize("call, message", [
    (lambda: theory.q_star("tanh", -1.0, 0.05), "sigma_w2 must be finite and > 0, got -1.0"),
    (lambda: theory.q_star("tanh", 1.0, 0.05, -2.0), "q0 must be finite and > 0, got -2.0"),
    (lambda: theory.chi1("relu", 2.0, -0.1), "sigma_b2 must be finite and >= 0, got -0.1"),
    (lambda: theory.depth_scale("tanh", float("nan"), 0.05), "sigma_w2 must be finite and > 0"),
    (lambda: initializers.get("gaussian", sigma_w2=float("inf")),
     "initializer 'gaussian': sigma_w2 must be finite, got inf"),
    (lambda: initializers.get("orthogonal", gain=float("nan")),
     "initializer 'orthogonal': gain must be finite, got nan"),
    (lambda: training.OptimizerConfig("sgd", float("inf")),
     "learning_rate must be finite and > 0, got inf"),
    (lambda: training.OptimizerConfig("adamw", 1e-3, weight_decay=-1.0),
     "weight_decay must be finite and >= 0, got -1.0"),
    (lambda: training.OptimizerConfig("adam", 1e-3, end_lr_fraction=-1.0),
     "end_lr_fraction must be in [0, 1], got -1.0"),
    (lambda: data.digits(test_fraction=1.5), "test_fraction must be in (0, 1), got 1.5"),
    (lambda: data.sample_batch(jax.random.key(0), jnp.ones((4, 2)), jnp.ones(4), -1),
     "batch_size must be an integer >= 1, got -1"),
    (lambda: spectrum_stats(jnp.zeros((3, 0))), "at least one singular value"),
])
def test_bad_arguments_are_clear_errors(call, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                     .replace("[", r"\[").replace("]", r"\]")):
    call()


def test_good_arguments_still_work():
  assert float(theory.chi1("tanh", 1.0, 0.05)) == pytest.approx(0.759, abs=1e-3)
  assert float(theory.chi1("relu", 2.0, 0.0)) == pytest.approx(1.0, rel=1e-6)
  assert spectrum_stats(jnp.ones(3))["condition"] == 1.0
  # Under jit the variances are traced, and only concrete values are checked.
  assert jnp.isfinite(jax.jit(lambda s: theory.chi1("tanh", s, 0.05))(1.0))
