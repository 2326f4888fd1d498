"""Tests for jaxgrad.models.layers: delta-orthogonal init, coupling inverse, conv variants."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad.models import layers
from tests import _tol


@pytest.mark.parametrize("shape", [(3, 4, 8), (4, 4, 2, 6)])
def test_delta_orthogonal_zero_off_centre_orthogonal_at_centre(shape):
  w = layers.delta_orthogonal(gain=2.0)(jax.random.key(0), shape)
  centre = tuple((k - 1) // 2 for k in shape[:-2])
  c = w[centre]
  chex.assert_trees_all_close(c @ c.T, 4.0 * jnp.eye(shape[-2]), **_tol.F32)
  off = w.at[centre].set(0.0)
  assert float(jnp.max(jnp.abs(off))) == 0.0


def test_delta_orthogonal_rejects_more_inputs_than_outputs():
  with pytest.raises(ValueError, match="C_in=8 > C_out=4"):
    layers.delta_orthogonal()(jax.random.key(0), (3, 3, 8, 4))
  with pytest.raises(ValueError, match="spatial"):
    layers.delta_orthogonal()(jax.random.key(0), (4, 4))


def test_delta_orthogonal_conv_is_an_isometry_with_circular_padding():
  conv = nn.Conv(6, (3, 3), padding="CIRCULAR", use_bias=False,
                 kernel_init=layers.delta_orthogonal())
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4))
  y = conv.apply(conv.init(jax.random.key(2), x), x)
  chex.assert_trees_all_close(jnp.linalg.norm(y.reshape(2, -1), axis=1),
                              jnp.linalg.norm(x.reshape(2, -1), axis=1), **_tol.F32)


@pytest.mark.parametrize("train", [False, True])
def test_coupling_inverse_reconstructs_input(train):
  model = layers.ReversibleCoupling()
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
  variables = model.init(jax.random.key(1), x)
  y, _ = model.apply(variables, x, train=train, mutable=["batch_stats"])
  x_back, _ = model.apply(variables, y, train=train, mutable=["batch_stats"],
                          method=model.inverse)
  chex.assert_trees_all_close(y[..., :2], x[..., :2], **_tol.F32)  # y1 = x1
  assert float(jnp.max(jnp.abs(y - x))) > 0.1  # F is not trivial
  chex.assert_trees_all_close(x_back, x, **_tol.F32)


def test_coupling_jacobian_has_unit_determinant():
  model = layers.ReversibleCoupling(kernel_size=3)
  x = jax.random.normal(jax.random.key(0), (1, 5, 2))
  variables = model.init(jax.random.key(1), x)
  jac = jax.jacfwd(lambda v: model.apply(variables, v.reshape(x.shape)).ravel())(x.ravel())
  sign, logdet = jnp.linalg.slogdet(jac)
  assert float(sign) == 1.0
  np.testing.assert_allclose(float(logdet), 0.0, atol=_tol.F32["atol"])


def test_coupling_rejects_odd_channels():
  with pytest.raises(ValueError, match="even number of channels, got 3"):
    layers.ReversibleCoupling().init(jax.random.key(0), jnp.ones((1, 4, 4, 3)))


def test_depthwise_separable_parameter_count_and_shape():
  model = layers.DepthwiseSeparableConv(features=8, strides=2)
  x = jnp.ones((2, 8, 8, 4))
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  assert shapes["depthwise"]["kernel"].shape == (3, 3, 1, 4)  # one 3x3 filter per channel
  assert shapes["pointwise"]["kernel"].shape == (1, 1, 4, 8)
  assert jax.eval_shape(model.apply, jax.eval_shape(model.init, jax.random.key(0), x),
                        x).shape == (2, 4, 4, 8)


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_dilated_conv_touches_exactly_the_dilated_taps(dilation):
  model = layers.DilatedConvBlock(features=1, dilation=dilation)
  x = jax.random.normal(jax.random.key(0), (1, 15, 1))
  variables = model.init(jax.random.key(1), x)
  # A large BatchNorm shift keeps the ReLU open, so only the conv decides the taps.
  variables["params"]["bn"]["bias"] = jnp.full((1,), 100.0)
  grad = jax.grad(lambda v: model.apply(variables, v)[0, 7, 0])(x)
  touched = np.flatnonzero(np.asarray(grad[0, :, 0]))
  np.testing.assert_array_equal(touched, [7 - dilation, 7, 7 + dilation])
  assert layers.receptive_field([dilation]) == 2 * dilation + 1


def test_dilated_conv_rejects_bad_dilation():
  with pytest.raises(ValueError, match="dilation must be an integer >= 1, got 0"):
    layers.DilatedConvBlock(features=2, dilation=0).init(jax.random.key(0), jnp.ones((1, 5, 1)))
