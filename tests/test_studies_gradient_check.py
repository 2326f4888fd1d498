"""jaxgrad.studies.gradient_check: the zoo's names, the planted bug's wrong-sign VJP."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad.studies import gradient_check as study
from tests import _tol


def test_zoo_names_are_the_model_names_and_only_the_bug_should_fail():
  with jax.enable_x64(True):
    zoo = study.zoo()
  assert set(zoo) <= set(study.MODEL_NAMES)
  assert {"mlp_tanh", "resnet", "transformer_post_ln", "planted_bug"} <= set(zoo)
  assert [name for name, (_, expected) in zoo.items() if not expected] == ["planted_bug"]


def test_planted_bug_is_tanh_forward_and_minus_its_derivative_backward():
  x = jnp.linspace(-2.0, 2.0, 9)
  np.testing.assert_allclose(study.tanh_wrong_sign(x), jnp.tanh(x), **_tol.F32)
  np.testing.assert_allclose(jax.vmap(jax.grad(study.tanh_wrong_sign))(x),
                             -(1.0 - jnp.tanh(x) ** 2), **_tol.F32)
