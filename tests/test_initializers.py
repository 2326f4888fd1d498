"""jaxgrad.initializers: each formula against the empirical variance of a large draw."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import initializers

FAN_IN, FAN_OUT = 400, 300
# (name, kwargs, variance formula for a (fan_in, fan_out) kernel)
CASES = [
    ("xavier_uniform", {}, 2 / (FAN_IN + FAN_OUT)),
    ("xavier_normal", {}, 2 / (FAN_IN + FAN_OUT)),
    ("xavier_normal", {"gain": 5 / 3}, (5 / 3) ** 2 * 2 / (FAN_IN + FAN_OUT)),
    ("he_uniform", {}, 2 / FAN_IN),
    ("he_normal", {}, 2 / FAN_IN),
    ("lecun_normal", {}, 1 / FAN_IN),
    ("gaussian", {"sigma_w2": 1.76}, 1.76 / FAN_IN),
    ("orthogonal", {"gain": 2.0}, 4.0 / max(FAN_IN, FAN_OUT)),
    ("uniform_small", {}, 0.01**2 / 3),
    ("normal_small", {}, 0.01**2),
    ("normal", {"stddev": 0.1, "mean": 1.5}, 0.1**2),
]


@pytest.mark.parametrize("name, kwargs, variance", CASES,
                         ids=[f"{c[0]}{c[1] or ''}" for c in CASES])
def test_empirical_variance_matches_formula(name, kwargs, variance):
  w = np.asarray(initializers.get(name, **kwargs)(jax.random.key(0), (FAN_IN, FAN_OUT)))
  # 120,000 entries: the sample variance's relative standard error is
  # sqrt(2 / n) ~ 0.4% for a normal, less for a uniform; 2% is > 4 sigma.
  assert w.var() == pytest.approx(variance, rel=0.02)


def test_he_normal_is_not_truncated():
  """Untruncated, as PyTorch's kaiming_normal_: some entries beyond 2 standard deviations."""
  w = np.asarray(initializers.get("he_normal")(jax.random.key(1), (FAN_IN, FAN_OUT)))
  std = np.sqrt(2 / FAN_IN)
  assert np.mean(np.abs(w) > 2 * std) == pytest.approx(0.0455, abs=0.003)


def test_uniform_bounds():
  w = np.asarray(initializers.get("he_uniform")(jax.random.key(2), (FAN_IN, FAN_OUT)))
  assert np.abs(w).max() <= np.sqrt(6 / FAN_IN)
  w = np.asarray(initializers.get("uniform_small")(jax.random.key(2), (FAN_IN, FAN_OUT)))
  assert np.abs(w).max() <= 0.01


@pytest.mark.parametrize("shape", [(64, 64), (64, 32), (32, 64)])
def test_orthogonal_is_orthogonal(shape, x64):
  gain = 1.3
  w = initializers.get("orthogonal", gain=gain)(jax.random.key(3), shape, jnp.float64)
  w = np.asarray(w) / gain
  small = min(shape)
  gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
  np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


def test_constant_and_zeros():
  assert np.all(np.asarray(initializers.get("constant", value=0.01)(jax.random.key(0), (5,))) == np.float32(0.01))
  assert not np.any(np.asarray(initializers.get("zeros")(jax.random.key(0), (5,))))


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match=r"unknown initializer 'kaiming'.*he_normal.*orthogonal"):
    initializers.get("kaiming")


def test_bad_kwargs_name_the_accepted_ones():
  with pytest.raises(ValueError, match=r"'orthogonal' takes arguments \(gain\)"):
    initializers.get("orthogonal", scale=2.0)
  with pytest.raises(ValueError, match="sigma_w2 must be > 0"):
    initializers.get("gaussian", sigma_w2=-1.0)


def test_resolve_forms():
  assert callable(initializers.resolve("he_normal"))
  assert callable(initializers.resolve(("gaussian", {"sigma_w2": 2.0})))
  f = jax.nn.initializers.zeros
  assert initializers.resolve(f) is f
