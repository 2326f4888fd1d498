"""jaxgrad.models.Stack / scan_layers: the scan is the unrolled loop, remat, collections, paths."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxgrad.models import DeepMLP, DenseBlock, Stack
from tests import _programs, _tol

DEPTH, WIDTH = 4, 6


def _block(norm=None, dtype=jnp.float32):
  return functools.partial(DenseBlock, WIDTH, activation="tanh", norm=norm, residual=True,
                           param_dtype=dtype)


class _Tagged(nn.Module):
  """``h -> tanh(W h)``, sowing its output into a collection no stack of ours names."""

  @nn.compact
  def __call__(self, h):
    h = jnp.tanh(nn.Dense(h.shape[-1], name="dense")(h))
    self.sow("custom", "out", h)
    return self.perturb("out", h)


@pytest.mark.parametrize("norm", [None, "layer", "batch"])
def test_scan_equals_unrolled_loop_on_the_same_params(x64, norm):
  """Layer l of the scan is the block applied with slice l of every variable.

  ``train=True``: BatchNorm normalises with the batch's float64 statistics (its
  running averages are float32 in Flax).
  """
  stack = Stack(_block(norm, jnp.float64), DEPTH)
  h0 = jax.random.normal(jax.random.key(1), (5, WIDTH), jnp.float64)
  variables = stack.init(jax.random.key(0), h0)
  (h, hs), _ = stack.apply(variables, h0, True, mutable=["batch_stats"])
  layer = _block(norm, jnp.float64)()
  outs, x = [], h0
  for i in range(DEPTH):
    sliced = {c: jax.tree.map(lambda a: a[i], v["layers"]) for c, v in variables.items()
              if c != "perturbations"}
    x, _ = layer.apply(sliced, x, True, mutable=["batch_stats"])
    outs.append(x)
  chex.assert_trees_all_close(hs, jnp.stack(outs), **_tol.F64)
  chex.assert_trees_all_close(h, outs[-1], **_tol.F64)


def test_block_variables_sit_directly_under_layers():
  variables = Stack(_block("batch"), DEPTH).init(jax.random.key(0), jnp.ones((3, WIDTH)))
  assert set(variables["params"]) == {"layers"}
  assert set(variables["params"]["layers"]) == {"dense", "norm"}
  chex.assert_shape(variables["params"]["layers"]["dense"]["kernel"], (DEPTH, WIDTH, WIDTH))
  chex.assert_shape(variables["batch_stats"]["layers"]["norm"]["mean"], (DEPTH, WIDTH))
  kernel = variables["params"]["layers"]["dense"]["kernel"]
  assert not jnp.allclose(kernel[0], kernel[1])  # the params PRNG is split per layer


def test_extra_arguments_reach_every_layer():
  """``train=True`` (after ``h``) makes every layer's BatchNorm use batch statistics."""
  stack = Stack(_block("batch"), DEPTH)
  x = jax.random.normal(jax.random.key(1), (16, WIDTH))
  variables = stack.init(jax.random.key(0), x)
  _, updates = stack.apply(variables, x, True, mutable=["batch_stats"])
  moved = jnp.any(updates["batch_stats"]["layers"]["norm"]["mean"] != 0, axis=-1)
  assert bool(jnp.all(moved))


def test_remat_changes_the_program_not_the_gradients():
  x = jax.random.normal(jax.random.key(1), (5, WIDTH))

  def grad_and_params(remat):
    stack = Stack(_block("layer"), DEPTH, remat=remat)
    params = stack.init(jax.random.key(0), x)["params"]
    return jax.grad(lambda p: jnp.sum(stack.apply({"params": p}, x)[0] ** 2)), params

  (remat, params), (plain, _) = grad_and_params(True), grad_and_params(False)
  assert _programs.has_remat(remat, params) and not _programs.has_remat(plain, params)
  chex.assert_trees_all_close(jax.jit(remat)(params), jax.jit(plain)(params), **_tol.F32)


def test_perturbations_and_sown_collections_are_stacked_not_dropped():
  """Every collection gets the layer axis, so ``dL/d eps_l`` is the backprop signal at layer l."""
  stack = Stack(_Tagged, DEPTH)
  x = jax.random.normal(jax.random.key(1), (5, WIDTH))
  variables = stack.init(jax.random.key(0), x)
  chex.assert_shape(variables["perturbations"]["layers"]["out"], (DEPTH, 5, WIDTH))
  (h, _), sown = stack.apply(variables, x, mutable=["custom"])
  chex.assert_shape(sown["custom"]["layers"]["out"][0], (DEPTH, 5, WIDTH))

  def loss(perturbations):
    return 0.5 * jnp.sum(stack.apply({**variables, "perturbations": perturbations}, x)[0] ** 2)

  signal = jax.grad(loss)(variables["perturbations"])["layers"]["out"]
  chex.assert_trees_all_close(signal[-1], h, **_tol.F32)  # dL/dh_L = h_L
  assert bool(jnp.all(jnp.linalg.norm(signal, axis=(1, 2)) > 0))


@pytest.mark.parametrize("depth", [0, 2.0, True])
def test_bad_depth_is_a_clear_error(depth):
  with pytest.raises(ValueError, match=f"depth must be an integer >= 1, got {depth!r}"):
    Stack(_block(), depth).init(jax.random.key(0), jnp.ones((2, WIDTH)))


# --- active layers: a traced depth ------------------------------------------------------------


def test_active_depth_is_the_shallower_network_same_draws_same_gradients(x64):
  """DeepMLP(M, active_depth=D) = DeepMLP(D): its params, outputs and gradients, in float64.

  The padded hidden layers hold zero parameters (never drawn) and get zero gradients; with the
  depth traced, one program (``lax.map`` over D) gives every depth's draws, outputs and gradients.
  """
  full, depths = 6, (2, 4)
  x = jax.random.normal(jax.random.key(1), (5, 3), jnp.float64)
  make = functools.partial(DeepMLP, width=WIDTH, out_features=2, activation="tanh",
                           param_dtype=jnp.float64)

  def drawn(model):  # variables, outputs and gradients from key 0
    variables = model.init(jax.random.key(0), x)
    grads = jax.grad(lambda v: jnp.sum(jnp.sin(model.apply(v, x))))(variables)
    return variables["params"], model.apply(variables, x), grads["params"]

  padded = jax.jit(lambda d: jax.lax.map(lambda a: drawn(make(full, active_depth=a)), d))(
      jnp.asarray(depths))
  shallow = jax.jit(lambda: [drawn(make(d)) for d in depths])()  # one program for both depths
  for i, (depth, (ps, ys, gs)) in enumerate(zip(depths, shallow)):
    pp, yp, gp = jax.tree.map(lambda a, i=i: a[i], padded)
    for name in ("first", "last"):  # the same draws, bit for bit
      chex.assert_trees_all_equal(ps[name], pp[name])
      chex.assert_trees_all_close(gp[name], gs[name], **_tol.F64)
    hidden, g_hidden = pp["hidden"]["layers"]["dense"], gp["hidden"]["layers"]["dense"]
    if depth > 2:
      chex.assert_trees_all_equal(ps["hidden"]["layers"]["dense"],
                                  jax.tree.map(lambda a: a[:depth - 2], hidden))
      chex.assert_trees_all_close(gs["hidden"]["layers"]["dense"],
                                  jax.tree.map(lambda a: a[:depth - 2], g_hidden), **_tol.F64)
    for tree in (hidden, g_hidden):
      assert not any(jnp.any(a[depth - 2:]) for a in jax.tree.leaves(tree))
    chex.assert_trees_all_close(yp, ys, **_tol.F64)


@pytest.mark.parametrize("active", [-1, DEPTH + 1])
def test_active_outside_the_stack_is_a_clear_error(active):
  with pytest.raises(ValueError, match=rf"active must be in \[0, depth={DEPTH}\], got {active}"):
    Stack(_block(), DEPTH, active=active).init(jax.random.key(0), jnp.ones((2, WIDTH)))
  with pytest.raises(ValueError, match=r"active_depth must be in \[2, depth=5\], got 6"):
    DeepMLP(5, WIDTH, 1, active_depth=6).init(jax.random.key(0), jnp.ones((2, 3)))
