"""jaxgrad.models.DeepMLP / DenseStack: shapes, scan structure, norms, bad input, gradients."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import pytest

from jaxgrad.models import DeepMLP, DenseBlock, DenseStack
from tests import _programs, _tol

X = jnp.ones((3, 5))


def _init(model, x=X, key=0):
  return model.init(jax.random.key(key), x)


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
@pytest.mark.parametrize("residual", [False, True])
def test_shapes(norm, residual):
  model = DeepMLP(depth=5, width=8, out_features=2, norm=norm, residual=residual)
  variables = _init(model)
  y = model.apply(variables, X, train=False)
  chex.assert_shape(y, (3, 2))
  params = variables["params"]
  chex.assert_shape(params["first"]["dense"]["kernel"], (5, 8))
  chex.assert_shape(params["hidden"]["layers"]["dense"]["kernel"], (3, 8, 8))
  chex.assert_shape(params["last"]["dense"]["kernel"], (8, 2))
  assert ("norm" in params["first"]) == (norm is not None)


def test_depth_two_has_no_hidden_stack():
  params = _init(DeepMLP(depth=2, width=4, out_features=1))["params"]
  assert set(params) == {"first", "last"}


def test_parameter_tree_does_not_grow_with_depth():
  shallow = jax.eval_shape(lambda: _init(DeepMLP(depth=3, width=4, out_features=1)))
  deep = jax.eval_shape(lambda: _init(DeepMLP(depth=300, width=4, out_features=1)))
  assert jax.tree.structure(shallow) == jax.tree.structure(deep)
  chex.assert_shape(deep["params"]["hidden"]["layers"]["dense"]["kernel"], (298, 4, 4))


def test_jaxpr_does_not_grow_with_depth():
  """Compile time is flat in depth because the traced program is: one scan."""
  def size(depth):
    model = DeepMLP(depth=depth, width=4, out_features=1)
    v = jax.eval_shape(lambda: _init(model))
    return len(jax.make_jaxpr(lambda v: model.apply(v, X))(v).jaxpr.eqns)
  assert size(10) == size(1000)


def test_hidden_layers_get_different_weights():
  k = _init(DeepMLP(depth=6, width=8, out_features=1))["params"]["hidden"]["layers"]["dense"]["kernel"]
  assert not jnp.allclose(k[0], k[1])


def test_residual_adds_identity_shortcut():
  """With zero weights and biases every hidden block is the identity when residual."""
  model = DeepMLP(depth=4, width=5, out_features=5, activation="linear",
                  kernel_init="zeros", residual=True)
  v = _init(model)
  h = jax.random.normal(jax.random.key(1), (3, 5))
  hidden = DenseStack(depth=2, features=5, activation="tanh", kernel_init="zeros", residual=True)
  vs = hidden.init(jax.random.key(0), h)
  chex.assert_trees_all_equal(hidden.apply(vs, h)[0], h)
  chex.assert_shape(model.apply(v, X), (3, 5))


def test_batch_norm_train_mode_updates_batch_stats():
  model = DeepMLP(depth=3, width=4, out_features=1, norm="batch")
  x = jax.random.normal(jax.random.key(0), (16, 5))
  v = _init(model, x)
  _, updates = model.apply(v, x, train=True, mutable=["batch_stats"])
  before = v["batch_stats"]["first"]["norm"]["mean"]
  assert not jnp.allclose(updates["batch_stats"]["first"]["norm"]["mean"], before)


def test_dense_stack_returns_every_layer():
  stack = DenseStack(depth=4, features=6, activation="tanh")
  v = stack.init(jax.random.key(0), jnp.ones(6))
  h, hs = stack.apply(v, jnp.ones(6))
  chex.assert_shape(hs, (4, 6))
  chex.assert_trees_all_equal(hs[-1], h)


@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=1, width=4, out_features=1), "depth must be an integer >= 2, got 1"),
    (dict(depth=3, width=0, out_features=1), "width must be an integer >= 1, got 0"),
    (dict(depth=3, width=4, out_features=1, norm="group"), r"unknown norm 'group'.*'batch', 'layer'"),
    (dict(depth=3, width=4, out_features=1, activation="relu6"), r"unknown activation 'relu6'.*sigmoid"),
    (dict(depth=3, width=4, out_features=1, kernel_init="kaiming"), r"unknown initializer 'kaiming'.*he_normal"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _init(DeepMLP(**kwargs))


@pytest.mark.parametrize("activation, norm", [("tanh", None), ("relu", "layer"), ("sigmoid", "batch")])
def test_gradients_match_float64_finite_differences(x64, activation, norm):
  model = DeepMLP(depth=4, width=6, out_features=2, activation=activation, norm=norm,
                  residual=norm is None, param_dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(0), (4, 5), jnp.float64)
  v = _init(model, x)
  rest = {k: c for k, c in v.items() if k != "params"}

  @jax.jit
  def loss(params):
    out = model.apply({**rest, "params": params}, x, train=True, mutable=["batch_stats"])[0]
    return jnp.mean(jnp.sin(out))

  chex.assert_trees_all_equal_dtypes(v["params"], jax.tree.map(lambda a: a.astype(jnp.float64), v["params"]))
  check_grads(loss, (v["params"],), order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-6)


def test_remat_changes_memory_not_gradients(x64):
  """remat=True rematerialises the hidden layers: a checkpoint in the gradient's program, less
  scratch memory (every layer's tanh and LayerNorm intermediates are no longer kept), same gradients."""
  x = jax.random.normal(jax.random.key(0), (64, 128), jnp.float64)

  def grad_and_params(remat):
    model = DeepMLP(depth=34, width=128, out_features=1, activation="tanh", norm="layer",
                    param_dtype=jnp.float64, remat=remat)
    params = jax.jit(model.init)(jax.random.key(1), x)["params"]
    return jax.grad(lambda p: jnp.mean(model.apply({"params": p}, x) ** 2)), params

  (remat, params), (plain, _) = grad_and_params(True), grad_and_params(False)
  assert _programs.has_remat(remat, params) and not _programs.has_remat(plain, params)
  assert _programs.temp_bytes(remat, params) < 0.5 * _programs.temp_bytes(plain, params)
  chex.assert_trees_all_close(jax.jit(remat)(params), jax.jit(plain)(params), **_tol.F64)


def test_norm_may_be_a_module_constructor():
  """``norm="layer"`` is resolved to the constructor ``partial(nn.LayerNorm, ...)``; passing one
  directly builds the same submodule ``norm``, and any other constructor is used as given."""
  x = jax.random.normal(jax.random.key(1), (4, 6))
  by_name = DenseBlock(6, norm="layer")
  by_constructor = DenseBlock(6, norm=functools.partial(nn.LayerNorm, param_dtype=jnp.float32))
  v = by_name.init(jax.random.key(0), x)
  chex.assert_trees_all_equal(v, by_constructor.init(jax.random.key(0), x))
  chex.assert_trees_all_equal(by_name.apply(v, x), by_constructor.apply(v, x))
  rms = DenseStack(2, 6, norm=nn.RMSNorm).init(jax.random.key(0), x)["params"]
  assert set(rms["layers"]["norm"]) == {"scale"}
