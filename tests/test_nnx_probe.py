"""jaxgrad.diagnose on nnx models as written: order, verdicts, signals against hand computations."""

from collections.abc import Callable, Sequence
from typing import NamedTuple
import warnings

import chex
from flax import nnx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import diagnose, theory
from jaxgrad.diagnostics import _dense, nnx_probe
from jaxgrad.diagnostics.diagnose import report_from_values
from jaxgrad.diagnostics.report import Report
from tests import _tol

KEY = jax.random.key(0)
HE_NORMAL = nnx.initializers.he_normal()  # truncated normal, Var W = 2 / fan_in: critical ReLU
SMALL_NORMAL = nnx.initializers.normal(stddev=0.01)  # N(0, 0.01^2): vanishing
F32_RTOL = dict(rtol=1e-5, atol=0)  # float32, computed two ways, at any scale


def _xent(out: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.logsumexp(out, -1) - out[:, 0])


class MLP(nnx.Module):
  """``x -> head(act(... act(first(x))))``; ``self.layers`` holds the Linears in REVERSE call order.

  ``layers[-1]`` runs first and ``layers[0]`` (the head) last, so the graph's
  order (``layers/0``, ``layers/1``, …) is the opposite of the execution order.
  """

  def __init__(self, widths: Sequence[int], activation: Callable[[jax.Array], jax.Array],
               kernel_init: Callable, rngs: nnx.Rngs):
    pairs = list(zip(widths[:-1], widths[1:]))
    self.layers = nnx.List([nnx.Linear(i, o, kernel_init=kernel_init, rngs=rngs)
                            for i, o in reversed(pairs)])
    self.activation = activation

  def calls(self) -> list[nnx.Linear]:
    return list(reversed(self.layers))

  def __call__(self, x: jax.Array) -> jax.Array:
    layers = self.calls()
    for layer in layers[:-1]:
      x = self.activation(layer(x))
    return layers[-1](x)


def _mlp(activation=nnx.relu, kernel_init=HE_NORMAL, depth=6, width=16, out=10, batch=16):
  """``depth`` hidden layers of ``width`` and a head of ``out`` on a (batch, width) batch.

  16 examples: a ReLU unit is then dead (0 on every example) by chance with
  probability about 2^-16, so a dead fraction near 1/2 would be real.
  """
  model = MLP([width] * (depth + 1) + [out], activation, kernel_init, nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (batch, width))
  return model, x


def _weights(model: MLP) -> list[tuple[jax.Array, jax.Array]]:
  return [(jnp.asarray(l.kernel[...]), jnp.asarray(l.bias[...])) for l in model.calls()]


def _hand_signals(weights, x, activation) -> np.ndarray:
  r"""E_b ||dL/ds_l[b]||, s_l an explicit shift of layer l's output, in a plain function."""
  def loss(shifts):
    h = x
    for i, ((w, b), s) in enumerate(zip(weights, shifts)):
      h = h @ w + b[None, :] + s
      if i < len(weights) - 1:
        h = activation(h)
    return _xent(h)

  shifts = [jnp.zeros((x.shape[0], w.shape[1])) for w, _ in weights]
  grads = jax.grad(loss)(shifts)
  return np.array([np.mean(np.linalg.norm(np.asarray(g, np.float64), axis=1)) for g in grads])


class Measured(NamedTuple):
  """One MLP measured once, shared by the tests that read it."""

  model: MLP
  x: jax.Array
  activation: Callable[[jax.Array], jax.Array]
  loss: float
  values: list[dict]
  report: Report
  before: tuple | None = None  # the output and _snapshot before anything ran on the model


@pytest.fixture(scope="module")
def relu_mlp():
  """The He-ReLU MLP measured and diagnosed once, its output and snapshot taken before either."""
  model, x = _mlp()
  before = np.asarray(model(x)), _snapshot(model)
  loss, values = nnx_probe.measure(model, x, _xent)
  return Measured(model, x, nnx.relu, loss, values, diagnose(model, None, x, _xent), before)


@pytest.fixture(scope="module")
def sigmoid_mlp():
  """The small-init sigmoid MLP measured once; its report is built from that measurement."""
  model, x = _mlp(nnx.sigmoid, SMALL_NORMAL, 8)
  loss, values = nnx_probe.measure(model, x, _xent)
  return Measured(model, x, nnx.sigmoid, loss, values, report_from_values(values, loss))


def test_he_relu_mlp_rows_in_execution_order_and_healthy(relu_mlp):
  model, report = relu_mlp.model, relu_mlp.report
  n = len(model.layers)
  assert [l.name for l in report.layers] == [f"layers/{i}" for i in reversed(range(n))]
  assert {l.kind for l in report.layers} == {"Linear"}
  assert {l.verdict for l in report.layers} == {"healthy"} and report.verdict == "healthy"
  assert all(l.activation == "relu" for l in report.layers[:-1])
  # He-ReLU: chi_1 = sigma_w^2 / 2 = 1 from the measured weights (truncated normal, ~0.88 x 2).
  np.testing.assert_allclose([l.chi1 for l in report.layers[:-2]], 1.0, rtol=0.3)


def test_small_sigmoid_mlp_vanishes_towards_the_input(sigmoid_mlp):
  report = sigmoid_mlp.report
  assert report.verdict == "vanishing"
  assert [l.verdict for l in report.layers[:3]] == ["vanishing"] * 3
  assert report.layers[0].ratio < 1e-8
  assert all(l.activation == "sigmoid" for l in report.layers[:-1])
  # sigma_w^2 = 16 * 1e-4, sigmoid'(0)^2 = 1/16: chi_1 = 1e-4 per layer.
  np.testing.assert_allclose([l.chi1 for l in report.layers[:-2]], 1e-4, rtol=0.3)


def test_diagnose_on_an_nnx_model_reports_what_measure_measured(relu_mlp):
  m = relu_mlp
  assert m.report.to_dict() == report_from_values(m.values, m.loss).to_dict()


@pytest.mark.parametrize("mlp", ["relu", "sigmoid"])
def test_signal_at_each_linear_is_dL_dshift_of_a_plain_function(mlp, relu_mlp, sigmoid_mlp):
  m = relu_mlp if mlp == "relu" else sigmoid_mlp
  hand = _hand_signals(_weights(m.model), m.x, m.activation)
  np.testing.assert_allclose([v["signal"] for v in m.values], hand, **F32_RTOL)
  assert hand[0] > 0  # tiny under the sigmoid (about 1e-17), not flushed to zero


def test_grad_norms_are_nnx_grads_and_weight_statistics_are_the_params(relu_mlp):
  model, x, values = relu_mlp.model, relu_mlp.x, relu_mlp.values
  grads = nnx.to_pure_dict(nnx.grad(lambda m: _xent(m(x)))(model))["layers"]
  n = len(model.layers)
  order = list(reversed(range(n)))
  np.testing.assert_allclose([v["grad"] for v in values],
                             [np.linalg.norm(np.asarray(grads[i]["kernel"])) for i in order],
                             **F32_RTOL)
  kernels = [np.asarray(model.layers[i].kernel[...], np.float64) for i in order]
  np.testing.assert_allclose([v["weight"] for v in values], [np.linalg.norm(k) for k in kernels],
                             **F32_RTOL)
  np.testing.assert_allclose([v["sigma_w2"] for v in values],
                             [k.shape[0] * np.mean(k ** 2) for k in kernels], **F32_RTOL)
  assert [v["sigma_b2"] for v in values] == [0.0] * n  # zero biases
  assert [v["zero_weight"] for v in values] == [0.0] * n
  row = values[0]["row"]
  assert row.kind == "Linear" and row.param_names == ("bias", "kernel") and row.stack is None
  assert row.in_shape == (16, 16) and row.out_shape == (16, 16)
  assert values[-1]["row"].out_shape == (16, 10)
  stats = values[0]["stats"]
  assert stats["is_data"] == 1.0 and values[1]["stats"]["is_data"] == 0.0
  assert values[1]["stats"]["min"] == 0.0 and values[1]["stats"]["zero"] > 0  # after a relu
  assert all(isinstance(v, float) for v in stats.values())


def test_linen_twin_with_the_same_weights_gives_the_same_report(relu_mlp):
  model, x, ours = relu_mlp.model, relu_mlp.x, relu_mlp.report
  weights = _weights(model)

  class Twin(nn.Module):
    @nn.compact
    def __call__(self, h):
      for i, (w, _) in enumerate(weights):
        h = nn.Dense(w.shape[1], name=f"dense_{i}")(h)
        if i < len(weights) - 1:
          h = nn.relu(h)
      return h

  variables = {"params": {f"dense_{i}": {"kernel": w, "bias": b}
                          for i, (w, b) in enumerate(weights)}}
  linen = diagnose(Twin(), variables, x, _xent)
  assert len(linen.layers) == len(ours.layers)
  for field in ("signal", "grad_norm", "weight_norm", "ratio", "chi1", "growth"):
    np.testing.assert_allclose([getattr(l, field) for l in ours.layers[:-1]],
                               [getattr(l, field) for l in linen.layers[:-1]], **F32_RTOL)
  np.testing.assert_allclose(ours.layers[-1].signal, linen.layers[-1].signal, **F32_RTOL)
  assert [l.verdict for l in ours.layers] == [l.verdict for l in linen.layers]
  np.testing.assert_allclose(ours.loss, linen.loss, **F32_RTOL)


class Net(nnx.Module):
  """Linear -> BatchNorm (train mode) -> relu -> Dropout -> Linear."""

  def __init__(self, rngs: nnx.Rngs):
    self.out = nnx.Linear(8, 3, rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)
    self.drop = nnx.Dropout(0.25, rngs=rngs)
    self.inp = nnx.Linear(5, 8, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.out(self.drop(nnx.relu(self.bn(self.inp(x)))))


def _arrays(model: nnx.Module):
  """Every leaf of the model's state as numpy (a PRNG key by its key data)."""
  def leaf(a):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a = jax.random.key_data(a)
    return np.asarray(a)
  return jax.tree.map(leaf, nnx.to_pure_dict(nnx.state(model)))


def _snapshot(model: nnx.Module):
  """The model's graphdef, the class of each of its modules, and its state."""
  classes = [(path, type(node)) for path, node in nnx.iter_graph(model)
             if isinstance(node, nnx.Module)]
  return nnx.graphdef(model), classes, _arrays(model)


def test_batchnorm_and_dropout_model_runs_and_is_left_unchanged():
  model = Net(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (6, 5))
  # Used in a jitted step first: batch statistics and the dropout RNG counter move.
  nnx.jit(lambda m, inp: m(inp))(model, x)
  graphdef, classes, state = _snapshot(model)
  first = diagnose(model, None, x, _xent)
  assert [l.name for l in first.layers] == ["inp", "bn", "out"]
  assert [l.kind for l in first.layers] == ["Linear", "BatchNorm", "Linear"]
  assert all(np.isfinite(l.signal) and l.signal > 0 for l in first.layers)
  after_graphdef, after_classes, after_state = _snapshot(model)
  assert after_classes == classes and after_graphdef == graphdef
  chex.assert_trees_all_equal(after_state, state)
  # State not advanced: the same dropout mask and batch statistics, the same numbers.
  second = diagnose(model, None, x, _xent)
  assert [l.signal for l in second.layers] == [l.signal for l in first.layers]
  assert second.loss == first.loss


def test_mlp_output_and_classes_unchanged_after_diagnose(relu_mlp):
  model, x = relu_mlp.model, relu_mlp.x
  before, (graphdef, classes, state) = relu_mlp.before
  assert all(type(l) is nnx.Linear for l in model.layers)
  after_graphdef, after_classes, after_state = _snapshot(model)
  assert after_classes == classes and after_graphdef == graphdef
  chex.assert_trees_all_equal(after_state, state)
  np.testing.assert_array_equal(np.asarray(model(x)), before)


class Scale(nnx.Module):
  """A user module with its own parameter: ``x * w``."""

  def __init__(self, n: int):
    self.w = nnx.Param(jnp.full((n,), 2.0))

  def __call__(self, x: jax.Array) -> jax.Array:
    return x * self.w[...][None, :]


class Custom(nnx.Module):
  """The root owns a bias; a user module and a Linear own theirs."""

  def __init__(self, rngs: nnx.Rngs):
    self.scale = Scale(4)
    self.lin = nnx.Linear(3, 4, rngs=rngs)
    self.shift = nnx.Param(jnp.zeros((4,)))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.scale(jnp.tanh(self.lin(x))) + self.shift[...][None, :]


def test_user_modules_with_their_own_params_and_the_root_are_probed():
  model = Custom(nnx.Rngs(0))
  x = jax.random.normal(KEY, (5, 3))
  loss_fn = lambda y: jnp.mean(jnp.sin(y))  # noqa: E731
  loss, values = nnx_probe.measure(model, x, loss_fn)
  assert [v["name"] for v in values] == ["lin", "scale", "(root)"]
  assert [v["row"].kind for v in values] == ["Linear", "Scale", "Custom"]
  assert [v["row"].param_names for v in values] == [("bias", "kernel"), ("w",), ("shift",)]
  assert "sigma_w2" not in values[1] and "sigma_w2" in values[0]
  # At the root's output the signal is dL/dy itself; through "+ shift" the same; through
  # tanh and "* w" (w = 2): dL/da = 2 (1 - tanh(a)^2) dL/dy at the Linear's output a.
  a = model.lin(x)
  y = model(x)
  g = np.asarray(jax.grad(loss_fn)(y))
  signal = lambda d: np.mean(np.linalg.norm(d, axis=1))  # noqa: E731
  np.testing.assert_allclose(values[2]["signal"], signal(g), **_tol.F32)
  np.testing.assert_allclose(values[1]["signal"], signal(g), **_tol.F32)
  np.testing.assert_allclose(values[0]["signal"],
                             signal(2.0 * (1.0 - np.tanh(np.asarray(a)) ** 2) * g), **_tol.F32)
  np.testing.assert_allclose(loss, float(loss_fn(y)), **_tol.F32)
  assert values[2]["zero_weight"] == 1.0 and values[1]["zero_weight"] == 0.0
  assert values[1]["stats"]["min"] >= -1 and values[1]["stats"]["max"] <= 1  # tanh's range


class Legacy(nnx.Module, pytree=False):
  """A non-pytree module with a plain list of Linears."""

  def __init__(self, rngs: nnx.Rngs):
    self.layers = [nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)]

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.layers[1](nnx.relu(self.layers[0](x)))


def test_non_pytree_module_with_a_plain_list():
  model = Legacy(nnx.Rngs(0))
  _, values = nnx_probe.measure(model, jnp.ones((2, 3)), lambda y: jnp.sum(y ** 2))
  assert [v["name"] for v in values] == ["layers/0", "layers/1"]
  assert type(model) is Legacy and all(type(l) is nnx.Linear for l in model.layers)


class InnerJit(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.a = nnx.Linear(3, 4, rngs=rngs)
    self.b = nnx.Linear(4, 2, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.b(nnx.jit(lambda m, inp: m(inp))(self.a, x))


def test_module_run_inside_an_inner_nnx_transform_is_skipped_with_a_warning():
  model = InnerJit(nnx.Rngs(0))
  with pytest.warns(UserWarning, match="nnx transform"):
    _, values = nnx_probe.measure(model, jnp.ones((2, 3)), lambda y: jnp.sum(y ** 2))
  assert [v["name"] for v in values] == ["b"]


class MyLinear(nnx.Linear):
  """A user's Linear under another name: a dense layer by its type."""


class MyLayerNorm(nnx.LayerNorm):
  """A user's LayerNorm under another name: a norm by its type."""


class LayerNorm(nnx.Module):
  """Named like a norm but none: a learned per-unit scale, ``x * s``."""

  def __init__(self, n: int):
    self.scale = nnx.Param(jnp.ones((n,)))

  def __call__(self, x: jax.Array) -> jax.Array:
    return x * self.scale[...][None, :]


class NormedTanhChain(nnx.Module):
  """``norm(x)``, then 6 tanh ``MyLinear`` layers drawn N(0, 0.01^2): vanishing, any norm."""

  def __init__(self, norm: nnx.Module, rngs: nnx.Rngs):
    self.norm = norm
    self.layers = nnx.List([MyLinear(16, 16, kernel_init=SMALL_NORMAL, rngs=rngs)
                            for _ in range(6)])
    self.head = nnx.Linear(16, 4, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.norm(x)
    for layer in self.layers:
      x = jnp.tanh(layer(x))
    return self.head(x)


@pytest.mark.parametrize("norm, is_norm", [
    (lambda: MyLayerNorm(16, rngs=nnx.Rngs(1)), True), (lambda: LayerNorm(16), False)])
def test_layers_are_known_by_their_type_not_their_name(norm, is_norm):
  model = NormedTanhChain(norm(), nnx.Rngs(0))
  x = jax.random.normal(KEY, (32, 16))
  loss, values = nnx_probe.measure(model, x, _xent)
  assert [v["row"].kind for v in values] == [
      type(model.norm).__name__, *["MyLinear"] * 6, "Linear"]
  assert [v["row"].is_norm for v in values] == [is_norm] + [False] * 7
  assert "sigma_w2" not in values[0]
  np.testing.assert_allclose([v["sigma_w2"] for v in values[1:7]],
                             [float(theory.weight_variance(l.kernel[...])) for l in model.layers],
                             **_tol.F32)
  report = report_from_values(values, loss)
  assert report.verdict == "vanishing"
  # A model that has a norm is not told to add one.
  assert any("add BatchNorm or LayerNorm" in r for r in report.remedies) == (not is_norm)


def test_clear_errors():
  x = jnp.ones((2, 3))
  with pytest.raises(ValueError, match="nnx.Module"):
    nnx_probe.measure(nn.Dense(2), x, jnp.sum)

  class NoParams(nnx.Module):
    def __init__(self):
      self.drop = nnx.Dropout(0.5, rngs=nnx.Rngs(0))

    def __call__(self, inp):
      return self.drop(inp)

  with pytest.raises(ValueError, match="no nnx.Param"):
    diagnose(NoParams(), None, x, jnp.sum)

  class Unused(nnx.Module):
    def __init__(self):
      self.lin = nnx.Linear(3, 3, rngs=nnx.Rngs(0))

    def __call__(self, inp):
      return inp * 2.0

  with pytest.raises(ValueError, match="ran no module that owns parameters"):
    diagnose(Unused(), None, x, jnp.sum)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    diagnose(Custom(nnx.Rngs(0)), None, x, jnp.sum)  # no warning on a plain model


def test_docstring_example():
  import doctest  # pylint: disable=import-outside-toplevel
  assert doctest.testmod(nnx_probe).failed == 0
  assert doctest.testmod(_dense).failed == 0  # the sigma_w^2, sigma_b^2 it reports
