"""jaxgrad.models.ResidualMLP: block Jacobian = I + dF/dx, shapes, scan structure, theory."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import diagnostics, probe, theory
from jaxgrad.models import DeepMLP, ResidualBlock, ResidualMLP
from jaxgrad.models.residual import ResidualBranch
from tests import _tol

WIDTH = 8


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("norm", [None, "layer"])
def test_block_jacobian_is_identity_plus_branch_jacobian(x64, activation, norm):
  block = ResidualBlock(activation=activation, norm=norm, param_dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(1), (WIDTH,), jnp.float64)
  params = block.init(jax.random.key(0), x)["params"]
  j_block = jax.jacfwd(lambda v: block.apply({"params": params}, v))(x)
  branch = ResidualBranch(activation=activation, norm=norm, param_dtype=jnp.float64)
  j_branch = jax.jacfwd(lambda v: branch.apply({"params": params["branch"]}, v))(x)
  assert j_block.dtype == jnp.float64
  chex.assert_trees_all_close(j_block, jnp.eye(WIDTH) + j_branch, **_tol.F64)
  # The branch is not negligible, so the identity is a real check.
  assert float(jnp.linalg.norm(j_branch)) > 0.5


def test_branch_jacobian_is_the_product_of_its_layers(x64):
  """No norm: dF/dx = W2^T diag(phi'(W1^T x + b1)) W1^T (Flax kernels are (in, out))."""
  branch = ResidualBranch(activation="tanh", bias_init=("normal", {"stddev": 0.3}),
                          param_dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(1), (WIDTH,), jnp.float64)
  p = branch.init(jax.random.key(0), x)["params"]
  w1, b1, w2 = p["dense1"]["kernel"], p["dense1"]["bias"], p["dense2"]["kernel"]
  d = 1.0 - jnp.tanh(x @ w1 + b1) ** 2
  expected = w2.T @ (d[:, None] * w1.T)
  measured = jax.jacfwd(lambda v: branch.apply({"params": p}, v))(x)
  chex.assert_trees_all_close(measured, expected, **_tol.F64)


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_shapes_and_names(norm):
  model = ResidualMLP(num_blocks=3, width=WIDTH, out_features=2, norm=norm)
  x = jnp.ones((4, 5))
  variables = model.init(jax.random.key(0), x)
  chex.assert_shape(model.apply(variables, x), (4, 2))
  params = variables["params"]
  chex.assert_shape(params["first"]["dense"]["kernel"], (5, WIDTH))
  for dense in ("dense1", "dense2"):
    chex.assert_shape(params["hidden"]["layers"]["branch"][dense]["kernel"], (3, WIDTH, WIDTH))
  chex.assert_shape(params["last"]["dense"]["kernel"], (WIDTH, 2))
  assert ("norm" in params["hidden"]["layers"]["branch"]) == (norm is not None)


def test_same_number_of_dense_layers_as_its_plain_twin():
  count = lambda m: sum(  # noqa: E731
      np.prod(k.shape[:-2]) for k in jax.tree.leaves(
          jax.tree_util.tree_map_with_path(
              lambda p, a: a if str(p[-1].key) == "kernel" else None,
              jax.eval_shape(m.init, jax.random.key(0), jnp.ones((2, 5)))["params"])))
  assert count(ResidualMLP(num_blocks=4, width=WIDTH, out_features=1)) == 10
  assert count(DeepMLP(depth=10, width=WIDTH, out_features=1)) == 10


def test_parameter_tree_does_not_grow_with_depth():
  shape = lambda b: jax.eval_shape(  # noqa: E731
      ResidualMLP(num_blocks=b, width=4, out_features=1).init, jax.random.key(0), jnp.ones((2, 3)))
  assert jax.tree.structure(shape(2)) == jax.tree.structure(shape(300))
  assert shape(300)["params"]["hidden"]["layers"]["branch"]["dense1"]["kernel"].shape == (300, 4, 4)


def test_blocks_get_different_weights():
  params = ResidualMLP(num_blocks=3, width=4, out_features=1).init(
      jax.random.key(0), jnp.ones((2, 3)))["params"]
  k = params["hidden"]["layers"]["branch"]["dense1"]["kernel"]
  assert not np.allclose(k[0], k[1])


def test_backprop_signal_has_one_entry_per_block():
  model = ResidualMLP(num_blocks=3, width=WIDTH, out_features=1)
  x = jax.random.normal(jax.random.key(1), (4, 5))
  variables = model.init(jax.random.key(0), x)
  signal = diagnostics.backprop_signal(lambda v: jnp.mean(model.apply(v, x) ** 2), variables,
                                       layout=probe.layout(model, x))
  assert list(signal) == ["first", "hidden/layers_000", "hidden/layers_001", "hidden/layers_002",
                          "last"]
  chex.assert_tree_all_finite(signal)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_blocks=0), "num_blocks must be an integer >= 1, got 0"),
    (dict(norm="group"), "unknown norm 'group'; valid choices"),
    (dict(activation="softmax"), "unknown activation 'softmax'"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
  model = ResidualMLP(**{**dict(num_blocks=2, width=4, out_features=1), **kwargs})
  with pytest.raises(ValueError, match=message):
    model.init(jax.random.key(0), jnp.ones((2, 3)))


def test_measured_growth_matches_mean_field_theory():
  """E||dL/dx_0||^2 / E||dL/dx_B||^2 over 256 random He-ReLU nets of width 16 vs 3^B."""
  blocks, width = 3, 16
  model = ResidualMLP(num_blocks=blocks, width=width, out_features=width)

  def ratio(key):
    k_init, k_x, k_r = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (8, width))
    r = jax.random.normal(k_r, (8, width))
    variables = model.init(k_init, x)
    grads = diagnostics.perturbation_grads(lambda v: jnp.sum(model.apply(v, x) * r), variables)
    g = grads["hidden"]["layers"]["preact"]  # (blocks, batch, width)
    return jnp.sum(g ** 2, axis=(1, 2))

  sq = jax.jit(jax.vmap(ratio))(jax.random.split(jax.random.key(0), 256)).mean(0)
  measured = sq[0] / sq[-1]
  predicted = theory.residual_signal("relu", 2.0, 2.0, 1.0, blocks)["signal_sq"][0] / 3.0
  assert measured == pytest.approx(predicted, rel=0.2)
