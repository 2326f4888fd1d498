"""RecurrentNet: shapes and carries, exact BPTT decay of a linear RNN, bounds for tanh."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad.diagnostics import time_grads
from jaxgrad.models import recurrent
from jaxgrad.models.recurrent import RecurrentNet
from tests import _tol

B, T, H = 3, 12, 8


@pytest.mark.parametrize("cell", recurrent.CELLS)
def test_shapes_and_perturbations(cell):
  model = RecurrentNet(cell=cell, hidden=H, layers=2, out_features=2)
  x = jnp.ones((B, T, 1))
  variables = model.init(jax.random.key(0), x)
  chex.assert_shape(model.apply(variables, x), (B, 2))
  for layer in ("rnn_0", "rnn_1"):
    chex.assert_shape(variables["perturbations"][layer]["cell"]["h"], (B, T, H))
  grads = time_grads(model, variables["params"], x, lambda y: jnp.sum(y**2))
  chex.assert_shape(grads, (2, B, T, H))
  chex.assert_tree_all_finite(grads)


@pytest.mark.parametrize("cell, carry_shapes", [
    ("simple", (B, H)), ("linear", (B, H)), ("gru", (B, H)), ("lstm", ((B, H), (B, H)))])
def test_carries(cell, carry_shapes):
  model = RecurrentNet(cell=cell, hidden=H)
  wrapped = recurrent.PerturbedCell(model._make_cell(), parent=None)
  carry = wrapped.initialize_carry(jax.random.key(0), (B, 5))
  assert jax.tree.map(jnp.shape, carry) == carry_shapes
  variables = wrapped.init(jax.random.key(1), carry, jnp.ones((B, 5)))
  new_carry, h = wrapped.apply(variables, carry, jnp.ones((B, 5)))
  assert jax.tree.map(jnp.shape, new_carry) == carry_shapes
  # The output is the carried hidden state (h of LSTM's (c, h)).
  np.testing.assert_array_equal(h, new_carry[1] if cell == "lstm" else new_carry)


def test_last_step_signal_is_the_head_kernel():
  """For L = sum(y), dL/dh_T of the top layer is the head's kernel column, dL/dh_t = 0 beyond."""
  model = RecurrentNet(cell="gru", hidden=H, layers=2)
  x = jax.random.normal(jax.random.key(2), (B, T, 1))
  params = model.init(jax.random.key(3), x)["params"]
  grads = time_grads(model, params, x, jnp.sum)
  head = params["head"]["kernel"][:, 0]
  np.testing.assert_allclose(grads[1, :, -1], jnp.broadcast_to(head, (B, H)), **_tol.F32)


@pytest.mark.parametrize("rho", [0.7, 1.0, 1.3])
def test_linear_rnn_signal_decays_exactly_as_rho_power(x64, rho):
  """Linear cell, W_rec = rho Q: ||dL/dh_t|| = rho^(T-t) ||dL/dh_T|| per example (Pascanu 2013)."""
  model = RecurrentNet(cell="linear", hidden=H, recurrent_init="orthogonal", rho=rho,
                       param_dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(4), (B, T, 1), jnp.float64)
  params = model.init(jax.random.key(5), x)["params"]
  w_rec = params["rnn_0"]["cell"]["cell"]["h"]["kernel"]
  np.testing.assert_allclose(np.linalg.svd(w_rec, compute_uv=False), rho, **_tol.F64)
  grads = time_grads(model, params, x, lambda y: jnp.sum(y**2))[0]
  norms = jnp.linalg.norm(grads, axis=-1)  # (B, T)
  expected = norms[:, -1:] * rho ** jnp.arange(T - 1, -1, -1)[None, :]
  np.testing.assert_allclose(norms, expected, **_tol.F64)


@pytest.mark.parametrize("rho", [0.9, 1.5])
def test_tanh_signal_is_bounded_by_rho_power(x64, rho):
  """tanh' <= 1, so ||dL/dh_t|| <= rho^(T-t) ||dL/dh_T||, with strict decay for rho < 1."""
  model = RecurrentNet(cell="simple", hidden=H, rho=rho, param_dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(6), (B, T, 1), jnp.float64)
  params = model.init(jax.random.key(7), x)["params"]
  norms = jnp.linalg.norm(time_grads(model, params, x, jnp.sum)[0], axis=-1)
  bound = norms[:, -1:] * rho ** jnp.arange(T - 1, -1, -1)[None, :]
  assert np.all(norms <= bound * (1 + _tol.F64["rtol"]))
  assert np.all(norms[:, :-1] < bound[:, :-1])


def test_recurrent_inits():
  x = jnp.ones((1, 4, 1))
  ident = RecurrentNet(cell="simple", hidden=H, recurrent_init="identity", rho=0.5)
  p = ident.init(jax.random.key(0), x)["params"]
  np.testing.assert_array_equal(p["rnn_0"]["cell"]["cell"]["h"]["kernel"], 0.5 * np.eye(H))
  torch_like = RecurrentNet(cell="lstm", hidden=16, recurrent_init="pytorch")
  leaves = jax.tree.leaves(torch_like.init(jax.random.key(0), x)["params"])
  assert max(float(jnp.max(jnp.abs(a))) for a in leaves) <= 1 / 4


@pytest.mark.parametrize("kwargs, message", [
    (dict(cell="rnn"), "unknown cell 'rnn'; valid choices"),
    (dict(recurrent_init="xavier"), "unknown recurrent_init 'xavier'; valid choices"),
    (dict(rho=0.0), "rho must be > 0"),
    (dict(layers=0), "layers must be an integer >= 1"),
])
def test_bad_configuration_is_a_clear_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    RecurrentNet(**kwargs).init(jax.random.key(0), jnp.ones((1, 4, 1)))


def test_scanned_step_traces_once():
  model = RecurrentNet(cell="simple", hidden=4)
  x = jnp.ones((2, 5, 1))
  params = model.init(jax.random.key(0), x)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def apply(p, x):
    return model.apply(p, x)

  apply(params, x)
  apply(params, x + 1)
  assert isinstance(model._make_cell(), nn.SimpleCell)


def test_forget_bias_zero_is_flaxs_lstm_cell_and_shifts_only_the_forget_gate():
  x, key = jnp.ones((B, 3)), jax.random.key(0)
  carry = nn.LSTMCell(H, parent=None).initialize_carry(key, x.shape)
  flax_cell = nn.LSTMCell(H, bias_init=nn.initializers.normal(0.1), parent=None)
  flax_params = flax_cell.init(key, carry, x)["params"]
  for forget_bias in (0.0, 3.0):
    cell = recurrent.ForgetBiasLSTMCell(H, bias_init=nn.initializers.normal(0.1),
                                        forget_bias=forget_bias, parent=None)
    params = cell.init(key, carry, x)["params"]
    shifted = jax.tree_util.tree_map_with_path(
        lambda path, v: v + forget_bias if jax.tree_util.keystr(path) == "['hf']['bias']" else v,
        flax_params)
    chex.assert_trees_all_equal(params, shifted)
    # The update is Flax's: the same parameters give the same step in both cells.
    chex.assert_trees_all_equal(cell.apply({"params": params}, carry, x),
                                flax_cell.apply({"params": params}, carry, x))


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 3.0])
def test_cell_state_memory_is_sigmoid_of_the_forget_bias_per_step(forget_bias):
  """Recurrent and input kernels at 0: f_t = sigma(b_f) exactly, so dc_T/dc_0 = sigma(b_f)^T."""
  steps = 25
  cell = recurrent.ForgetBiasLSTMCell(H, kernel_init=nn.initializers.zeros,
                                      recurrent_kernel_init=nn.initializers.zeros,
                                      forget_bias=forget_bias, parent=None)
  x = jnp.zeros((1, 1))
  params = cell.init(jax.random.key(0), (jnp.zeros((1, H)), jnp.zeros((1, H))), x)["params"]

  def c_after(c0):
    carry = (c0, jnp.zeros((1, H)))
    for _ in range(steps):
      carry, _ = cell.apply({"params": params}, carry, x)
    return carry[0]

  memory = jax.jacfwd(lambda c: c_after(c[None])[0])(jnp.zeros(H))
  np.testing.assert_allclose(memory, jax.nn.sigmoid(forget_bias) ** steps * jnp.eye(H),
                             rtol=1e-5, atol=1e-12)


def test_forget_bias_is_refused_for_other_cells():
  with pytest.raises(ValueError, match="applies to the LSTM only, not to cell='gru'"):
    RecurrentNet(cell="gru", hidden=H, forget_bias=1.0).init(jax.random.key(0), jnp.ones((B, T, 1)))
