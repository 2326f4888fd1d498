"""jaxgrad.diagnostics against analytic ground truths and hand-written per-layer loops."""

import functools

import chex
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import activations, diagnostics, probe
from jaxgrad.models import DeepMLP, DenseStack
from tests import _tol

DEPTH, WIDTH, IN, OUT, BATCH = 6, 7, 5, 3, 4


def _data(dtype=jnp.float32):
  kx, ky = jax.random.split(jax.random.key(42))
  return (jax.random.normal(kx, (BATCH, IN), dtype), jax.random.normal(ky, (BATCH, OUT), dtype))


@functools.cache
def _mlp_and_variables(activation="tanh", dtype=jnp.float32):
  """The DeepMLP, its variables and a batch; made once per activation and shared (read-only)."""
  model = DeepMLP(depth=DEPTH, width=WIDTH, out_features=OUT, activation=activation,
                  bias_init=("normal", {"stddev": 0.1}), param_dtype=dtype)
  x, y = _data(dtype)
  return model, jax.jit(model.init)(jax.random.key(0), x), x, y


def _unstacked_weights(params):
  """[(W_l, b_l)] input to output, read out of DeepMLP's scanned parameter tree."""
  hidden = params["hidden"]["layers"]["dense"]
  return ([(params["first"]["dense"]["kernel"], params["first"]["dense"]["bias"])]
          + [(hidden["kernel"][i], hidden["bias"][i]) for i in range(DEPTH - 2)]
          + [(params["last"]["dense"]["kernel"], params["last"]["dense"]["bias"])])


def _loop_forward(layers, x, phi, shifts=None):
  """The same network as an explicit Python loop, with optional additive shifts on z_l."""
  h = x
  for l, (w, b) in enumerate(layers):
    z = h @ w + b[None] + (0 if shifts is None else shifts[l])
    h = z if l == len(layers) - 1 else phi(z)
  return h


def test_safe_norm_reduces_float32_in_float64_where_asked(x64):
  """Entries ~1e-30: float32 squares underflow; scaled, and summed in float64, the norm is exact."""
  g = np.geomspace(1e-30, 3e-30, 20_000).astype(np.float32)
  expected = np.linalg.norm(g.astype(np.float64))
  in_float32, in_float64 = jax.jit(lambda a: (diagnostics.safe_norm(a),
                                              diagnostics.safe_norm(a, jnp.float64)))(g)
  assert in_float32.dtype == jnp.float32 and in_float64.dtype == jnp.float64
  np.testing.assert_allclose(in_float64, expected, **_tol.F64)
  np.testing.assert_allclose(in_float32, expected, rtol=1e-5)
  assert float(jnp.linalg.norm(g)) == 0.0  # what safe_norm avoids


def test_layer_grad_norms_matches_a_hand_written_loop():
  model, v, x, y = _mlp_and_variables()
  loss = lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2)  # noqa: E731
  norms = diagnostics.layer_grad_norms(jax.grad(loss)(v["params"]), layout=probe.layout(model, x))

  layers = _unstacked_weights(v["params"])
  loop_loss = lambda ls: jnp.mean((_loop_forward(ls, x, jnp.tanh) - y) ** 2)  # noqa: E731
  by_hand = [jnp.linalg.norm(gw) for gw, _ in jax.jit(jax.grad(loop_loss))(layers)]

  assert list(norms) == (["first/dense"] + [f"hidden/layers_{i:03d}/dense" for i in range(DEPTH - 2)]
                         + ["last/dense"])
  chex.assert_trees_all_close(list(norms.values()), by_hand, **_tol.F32)


def test_backprop_signal_matches_a_hand_written_loop():
  model, v, x, y = _mlp_and_variables()
  loss = lambda vv: jnp.mean((model.apply(vv, x) - y) ** 2)  # noqa: E731
  signal = diagnostics.backprop_signal(loss, v, layout=probe.layout(model, x))

  layers = _unstacked_weights(v["params"])
  shifts = [jnp.zeros((BATCH, w.shape[1])) for w, _ in layers]
  loop_loss = lambda s: jnp.mean((_loop_forward(layers, x, jnp.tanh, s) - y) ** 2)  # noqa: E731
  grads = jax.jit(jax.grad(loop_loss))(shifts)
  by_hand = [jnp.mean(jnp.linalg.norm(g, axis=-1)) for g in grads]

  assert len(signal) == DEPTH
  chex.assert_trees_all_close(list(signal.values()), by_hand, **_tol.F32)


def test_backprop_signal_without_perturbations_is_a_clear_error():
  model, v, x, _ = _mlp_and_variables()
  with pytest.raises(ValueError, match="no 'perturbations' collection"):
    diagnostics.backprop_signal(lambda vv: model.apply(vv, x).sum(), {"params": v["params"]})


def test_without_a_layout_the_tree_order_is_kept_and_nothing_is_expanded():
  grads = {f"Dense_{i}": {"kernel": jnp.full((2, 2), float(i))} for i in (0, 10, 2, 1)}
  assert list(diagnostics.layer_grad_norms(grads)) == ["Dense_0", "Dense_10", "Dense_2", "Dense_1"]
  # A module called `layers` or `ScanBlock_0` is not a stack because of its name.
  named = {"layers": {"kernel": jnp.ones((4, 3, 3))}, "ScanBlock_0": {"kernel": jnp.ones((2, 3))}}
  assert list(diagnostics.layer_grad_norms(named)) == ["layers", "ScanBlock_0"]


def test_bad_trees_are_clear_errors():
  with pytest.raises(ValueError, match="no leaf named 'nope'"):
    diagnostics.layer_grad_norms({"d": {"kernel": jnp.ones(2)}}, weight_names="nope")
  with pytest.raises(ValueError, match="d/kernel is list"):
    diagnostics.layer_grad_norms({"d": {"kernel": [jnp.ones(2)]}})
  with pytest.raises(ValueError, match="nested mapping"):
    diagnostics.layer_grad_norms([jnp.ones(2)])


def _layout(modules, stacks):
  """A hand-written probe layout: module paths in the order they run, stack roots and lengths."""
  return probe.Trace(rows=(), modules=tuple(modules), stacks=tuple(stacks))


def _linear_stack(kernel_init, depth=5, width=6, dtype=jnp.float64):
  stack = DenseStack(depth=depth, features=width, activation="linear", kernel_init=kernel_init,
                     bias_init="zeros", param_dtype=dtype)
  x = jax.random.normal(jax.random.key(7), (width,), dtype)
  params = stack.init(jax.random.key(3), x)
  return stack, params, x


def test_linear_orthogonal_net_has_all_singular_values_one(x64):
  stack, params, x = _linear_stack("orthogonal", depth=20, width=16)
  s = diagnostics.singular_values(lambda v: stack.apply(params, v)[0], x)
  chex.assert_trees_all_close(s, jnp.ones(16), **_tol.F64)


def test_linear_net_jacobian_is_the_product_of_its_weights(x64):
  stack, params, x = _linear_stack("lecun_normal")
  jac = diagnostics.jacobian(lambda v: stack.apply(params, v)[0], x)
  kernels = params["params"]["layers"]["dense"]["kernel"]  # h_l = h_{l-1} @ W_l
  product = functools.reduce(jnp.matmul, kernels)
  chex.assert_trees_all_close(jac, product.T, **_tol.F64)


def test_singular_values_are_descending_and_match_numpy(x64):
  stack, params, x = _linear_stack("lecun_normal")
  f = lambda v: jnp.tanh(stack.apply(params, v)[0])  # noqa: E731
  s = diagnostics.singular_values(f, x)
  assert np.all(np.diff(np.asarray(s)) <= 0)
  expected = np.linalg.svd(np.asarray(diagnostics.jacobian(f, x)), compute_uv=False)
  chex.assert_trees_all_close(s, expected, **_tol.F64)


def test_spectrum_stats_on_known_values(x64):
  s = jnp.array([3.0, 2.0, 1.0])
  stats = diagnostics.spectrum_stats(s)
  chex.assert_trees_all_close(
      stats, {"mean_sq": 14 / 3, "var_sq": np.var([9.0, 4.0, 1.0]), "max": 3.0, "min": 1.0,
              "condition": 3.0}, **_tol.F64)
  batched = diagnostics.spectrum_stats(jnp.stack([s, 2 * s]))
  chex.assert_shape(batched["var_sq"], (2,))


@pytest.mark.parametrize("bad", [jnp.ones((2, 3)), jnp.float32(1.0)])
def test_singular_values_needs_one_vector(bad):
  with pytest.raises(ValueError, match=r"x must be one example vector of shape \(n,\), got shape"):
    diagnostics.singular_values(lambda v: v, bad)


def test_fn_must_return_a_vector():
  with pytest.raises(ValueError, match=r"fn\(x\) must be one example vector"):
    diagnostics.jacobian(lambda v: jnp.outer(v, v), jnp.ones(3))


class JitAgreement(parameterized.TestCase):
  """Every diagnostic gives the same numbers with and without jit (chex.variants)."""

  def setUp(self):
    super().setUp()
    self.model, self.v, self.x, self.y = _mlp_and_variables("relu")

  def _loss(self, variables):
    return jnp.mean((self.model.apply(variables, self.x) - self.y) ** 2)

  @chex.variants(with_jit=True, without_jit=True)
  def test_layer_grad_norms(self):
    grads = jax.grad(lambda p: self._loss({"params": p}))(self.v["params"])
    out = self.variant(diagnostics.layer_grad_norms)(grads)
    chex.assert_trees_all_close(out, diagnostics.layer_grad_norms(grads), **_tol.F32)
    chex.assert_tree_all_finite(out)

  @chex.variants(with_jit=True, without_jit=True)
  def test_backprop_signal(self):
    out = self.variant(functools.partial(diagnostics.backprop_signal, self._loss))(self.v)
    chex.assert_trees_all_close(out, diagnostics.backprop_signal(self._loss, self.v), **_tol.F32)

  @chex.variants(with_jit=True, without_jit=True)
  def test_singular_values_vmapped(self):
    f = lambda v: activations.get("relu")(self.model.apply(self.v, v[None])[0])  # noqa: E731
    sv = lambda xs: jax.vmap(lambda xi: diagnostics.singular_values(f, xi))(xs)  # noqa: E731
    out = self.variant(sv)(self.x)
    chex.assert_shape(out, (BATCH, OUT))
    expected = jnp.stack([jnp.linalg.svd(jax.jacfwd(f)(xi), compute_uv=False) for xi in self.x])
    chex.assert_trees_all_close(out, expected, **_tol.F32_REDUCED)


def test_stacks_with_sublayers_are_ordered_layer_first():
  grads = {"blocks": {"mlp": {"kernel": jnp.ones((2, 3, 3))}, "attn": {"kernel": jnp.ones((2, 3, 3))}}}
  layout = _layout([("blocks",), ("blocks", "attn"), ("blocks", "mlp")], [(("blocks",), 2)])
  assert list(diagnostics.layer_grad_norms(grads, layout=layout)) == [
      "blocks_000/attn", "blocks_000/mlp", "blocks_001/attn", "blocks_001/mlp"]


def test_layer_values_stack_and_reads_follow_the_layer_order_under_leading_axes():
  # Two stacked sublayers interleave with an unstacked layer: stack() must
  # permute groups into name order, and reads must find the layer axis behind
  # the leading (seed) axis that vmap adds.
  scale = jnp.arange(1.0, 3.0)[:, None, None]  # layer i's kernel is (i + 1) * ones
  grads = {"head": {"kernel": jnp.full((3, 3), 10.0)},
           "layers": {"attn": {"kernel": scale * jnp.ones((2, 3, 3))},
                      "mlp": {"kernel": 2 * scale * jnp.ones((2, 3, 3))}}}
  seeds = jnp.asarray([1.0, -1.0])
  layout = _layout([("head",), ("layers",), ("layers", "attn"), ("layers", "mlp")],
                   [(("layers",), 2)])
  norms = jax.vmap(lambda s: diagnostics.layer_grad_norms(jax.tree.map(lambda g: s * g, grads),
                                                          layout=layout))(seeds)
  assert list(norms) == ["head", "layers_000/attn", "layers_000/mlp", "layers_001/attn",
                         "layers_001/mlp"]
  expected = 3.0 * jnp.asarray([10.0, 1.0, 2.0, 2.0, 4.0])  # ||c * ones(3, 3)||_F = 3c
  chex.assert_trees_all_close(norms.stack(), jnp.stack([expected, expected]), **_tol.F32)
  chex.assert_trees_all_close(jnp.stack([norms[k] for k in norms], axis=-1), norms.stack(),
                              **_tol.F32)
  with pytest.raises(KeyError, match="no layer 'layers_002/attn'"):
    norms["layers_002/attn"]  # pylint: disable=pointless-statement


@pytest.mark.parametrize("depth", [4, 64])
def test_recording_per_layer_norms_costs_the_same_ops_at_any_depth(depth):
  # A scanned stack's norms are one vmapped reduction, not `depth` slices: the
  # traced program, hence compile time, does not grow with depth.
  def norms(grads, layers):
    layout = _layout([("first",), ("layers",)], [(("layers",), layers)])
    return diagnostics.layer_grad_norms(grads, layout=layout)

  grads = {"first": {"kernel": jnp.ones((3, 3))}, "layers": {"kernel": jnp.ones((depth, 3, 3))}}
  jaxpr = jax.make_jaxpr(lambda g: norms(g, depth))(grads)
  assert len(jaxpr.eqns) == len(jax.make_jaxpr(lambda g: norms(g, 2))(
      {"first": {"kernel": jnp.ones((3, 3))}, "layers": {"kernel": jnp.ones((2, 3, 3))}}).eqns)
  assert len(norms(grads, depth)) == depth + 1
