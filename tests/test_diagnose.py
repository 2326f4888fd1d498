"""jaxgrad.diagnose on public-style Flax models as written: order, verdicts from theory, signals."""

import json
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgrad import diagnose, diagnostics, probe, theory
from jaxgrad.diagnostics.report import Report
from tests import _tol
from tests import foreign_models as fm

KEY = jax.random.key(0)


def _xent(out):
  return jnp.mean(jax.nn.logsumexp(out, -1) - out[:, 0])


def _diagnose(factory, batch=None, **kwargs):
  """The factory's model on its own batch, or on ``batch`` N(0, 1) examples."""
  model, variables, x, apply_kwargs = factory(KEY, **kwargs)
  if batch is not None:  # "dead on every example" needs enough examples to mean it
    x = jax.random.normal(jax.random.key(1), (batch, *x.shape[1:]), x.dtype)
  return diagnose(model, variables, x, _xent, **apply_kwargs)


def test_he_relu_list_mlp_is_healthy_and_growth_matches_chi1():
  report = _diagnose(fm.make_he_relu_mlp, batch=128)
  assert [l.name for l in report.layers] == [f"layers_{i}" for i in range(6)] + ["head"]
  assert {l.verdict for l in report.layers} == {"healthy"} and report.verdict == "healthy"
  # He-ReLU: chi_1 = sigma_w^2 / 2 = 1 from the measured weights (truncated normal, ~0.88 x 2).
  chi1 = [l.chi1 for l in report.layers[:-2]]
  np.testing.assert_allclose(chi1, 1.0, rtol=0.3)
  assert all(l.activation == "relu" for l in report.layers[:-1])


def test_small_sigmoid_mlp_vanishes_at_chi1_per_layer():
  report = _diagnose(fm.make_small_sigmoid_mlp, batch=128)
  assert report.verdict == "vanishing" and report.layers[0].verdict == "vanishing"
  assert report.layers[0].ratio < 1e-8
  # sigma_w^2 = 16 * 1e-4, sigmoid'(0)^2 = 1/16: chi_1 = 1e-4 per layer; growth measured alike.
  hidden = report.layers[:-2]
  assert all(l.activation == "sigmoid" for l in hidden)
  np.testing.assert_allclose([l.chi1 for l in hidden], 1e-4, rtol=0.3)
  # One width-16 network: per layer the growth scatters around chi_1 (a factor ~3 at most
  # here); over the chain, the geometric means agree.
  log_growth, log_chi1 = (np.mean(np.log([getattr(l, k) for l in hidden])) for k in ("growth", "chi1"))
  np.testing.assert_allclose(log_growth, log_chi1, rtol=0.05)
  assert not any("BatchNorm" in r and "already" in r for r in report.remedies)


def test_relu_mlp_with_8_over_fan_in_explodes_at_the_input():
  report = _diagnose(fm.make_list_mlp, batch=128, kernel_init=fm.EXPLODING_NORMAL, depth=10)
  assert report.verdict == "exploding" and report.layers[0].verdict == "exploding"
  assert report.layers[0].ratio > 1e2
  np.testing.assert_allclose([l.chi1 for l in report.layers[:-2]], 4.0, rtol=0.35)


@pytest.fixture(scope="module")
def vit_report():
  return _diagnose(fm.make_vit)


def test_vit_rows_in_execution_order_and_zero_head_blocks(vit_report):
  report = vit_report
  names = [l.name for l in report.layers]
  assert names[0] == "embedding"
  assert names.index("head") == len(names) - 2 and names[-1] == "(root)"  # root owns `cls`
  block = [n for n in names if "encoderblock_0/" in n]
  attn = "Transformer/encoderblock_0/MultiHeadDotProductAttention_0/"
  assert block.index(attn + "query") < block.index(attn + "key") < block.index(attn + "out")
  assert names.index("Transformer/encoderblock_0/LayerNorm_0") < names.index(
      "Transformer/encoderblock_1/LayerNorm_0") < names.index("Transformer/encoder_norm")
  upstream = report.layers[:names.index("head")]
  assert all(l.verdict == "blocked" and l.cause == "head" for l in upstream)
  assert report.verdict == "blocked" and report.counts["vanishing"] == 0
  assert "zero-initialised" in report.remedies[0]
  assert not any("initialise for the activation" in r for r in report.remedies)


def test_vit_with_a_live_head_is_not_blocked():
  report = _diagnose(fm.make_vit, zero_head=False)
  assert report.counts["blocked"] == 0
  assert all(l.signal > 0 for l in report.layers)


def test_sequential_named_layers_gives_exactly_its_dense_rows():
  report = _diagnose(fm.make_sequential_mlp, batch=128)
  assert [l.name for l in report.layers] == [f"layers/layers_{i}" for i in range(0, 13, 2)]
  assert report.verdict == "healthy"


def test_batchnorm_resnet_in_train_mode_stem_first_zero_scale_blocks_its_branch():
  report = _diagnose(fm.make_resnet)
  names = [l.name for l in report.layers]
  assert names[:2] == ["conv_init", "bn_init"] and names[-1] == "Dense_0"
  branch = report["ResNetBlock_0/Conv_0"]
  assert branch.verdict == "blocked" and branch.cause == "ResNetBlock_0/BatchNorm_1"
  assert report["conv_init"].verdict == "healthy"
  assert report.verdict == "blocked"
  assert not any("residual connections" in r or "BatchNorm" in r for r in report.remedies)


@pytest.mark.parametrize("named, prefix", [(False, "ScanBlock_0"), (True, "blocks")])
def test_user_scan_without_perturbation_axes_is_marked_weight_grad(named, prefix):
  report = _diagnose(fm.make_scan_res_mlp, named=named)
  names = [l.name for l in report.layers]
  assert names == (["Dense_0"] + [f"{prefix}_{i:03d}/Dense_{j}" for i in range(4) for j in (0, 1)]
                   + ["Dense_1"])
  inside = report.layers[1:-1]
  assert all(l.signal_kind == "weight_grad" and math.isnan(l.signal) for l in inside)
  assert all(l.signal_kind == "output" for l in (report.layers[0], report.layers[-1]))
  assert any("variable_axes" in n for n in report.notes)


def test_user_scan_with_perturbation_axes_gives_a_signal_per_layer():
  class Stack(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.Dense(8)(x)
      x, _ = nn.scan(fm.Block, variable_axes={"params": 0, "perturbations": 0},
                     split_rngs={"params": True}, length=3)(8, name="blocks")(x, None)
      return nn.Dense(10)(x)

  x = jax.random.normal(KEY, (4, 8))
  model = Stack()
  report = diagnose(model, jax.jit(model.init)(KEY, x), x, _xent)
  assert len(report.layers) == 8
  assert all(l.signal_kind == "output" and l.signal > 0 for l in report.layers)


class _Overflow(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(8, name="a")(x))
    x = nn.Dense(8, name="b", kernel_init=nn.initializers.constant(1e30))(x)
    return nn.Dense(2, name="c", kernel_init=nn.initializers.constant(1e30))(nn.relu(x))


def test_first_nonfinite_names_the_layer_that_overflows():
  x = jnp.abs(jax.random.normal(KEY, (4, 3))) + 1.0
  model = _Overflow()
  report = diagnose(model, jax.jit(model.init)(KEY, x), x, _xent)
  assert report.first_nonfinite == {"module": "c", "direction": "forward"}
  assert report["c"].verdict == "exploding" and not report["c"].finite
  assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["first_nonfinite"]["module"] == "c"


class _PerturbedListMLP(fm.ListMLP):
  """The same ListMLP written with ``perturb`` at every Dense output."""

  def __call__(self, x):
    for i, layer in enumerate(self.layers):
      x = self.activation(self.perturb(f"d{i}", layer(x)))
    return self.perturb("out", self.head(x))


def test_unedited_signal_equals_the_model_written_with_perturb():
  model, variables, x, _ = fm.make_he_relu_mlp(KEY)
  report = diagnose(model, variables, x, _xent)
  twin = _PerturbedListMLP(widths=model.widths, activation=model.activation,
                           kernel_init=model.kernel_init)
  pert = jax.jit(twin.init)(KEY, x)["perturbations"]
  g = jax.jit(jax.grad(lambda p: _xent(twin.apply({**variables, "perturbations": p}, x))))(pert)
  by_hand = [jnp.mean(jnp.linalg.norm(g[k], axis=-1)) for k in [f"d{i}" for i in range(6)] + ["out"]]
  chex.assert_trees_all_close([l.signal for l in report.layers], [float(v) for v in by_hand],
                              **_tol.F32)


def test_probe_jit_equals_eager_and_vmaps_over_seeds():
  model, variables, x, _ = fm.make_he_relu_mlp(KEY)
  pr = probe.trace(model, variables, x)
  fn = lambda v: pr.value_and_grad(v, x, _xent)  # noqa: E731
  chex.assert_trees_all_close(jax.jit(fn)(variables), fn(variables), **_tol.F32)
  seeds = jax.jit(jax.vmap(lambda k: model.init(k, x)))(jax.random.split(KEY, 3))
  batched = jax.jit(jax.vmap(fn))(seeds)
  for s in range(3):
    one = fn(jax.tree.map(lambda a, s=s: a[s], seeds))
    chex.assert_trees_all_close(jax.tree.map(lambda a, s=s: a[s], batched), one, **_tol.F32)


def test_report_serialises_strictly_plots_and_shows_html(vit_report, tmp_path):
  report = vit_report
  text = json.dumps(report.to_dict(), allow_nan=False)
  back = Report.from_dict(json.loads(text, parse_constant=lambda c: pytest.fail(c)))
  assert [l.name for l in back.layers] == [l.name for l in report.layers]
  assert math.isnan(back["head"].grad_to_weight)  # zero head: |dW| / 0
  report.plot(tmp_path / "flow.png")
  assert (tmp_path / "flow.png").stat().st_size > 10_000
  assert "<table>" in report._repr_html_() and "blocked" in str(report)


def test_bad_input_is_a_clear_error():
  model, variables, x, _ = fm.make_he_relu_mlp(KEY)
  with pytest.raises(ValueError, match="flax.linen.Module"):
    diagnose(object(), variables, x, _xent)
  with pytest.raises(ValueError, match="'params' collection"):
    diagnose(model, {"batch_stats": {}}, x, _xent)
  with pytest.raises(ValueError, match="activation hint must be one of"):
    diagnose(model, variables, x, _xent, activation="softplus")
  with pytest.raises(ValueError, match="mutable=True is not supported"):
    diagnose(model, variables, x, _xent, mutable=True)


class _RematDropout(nn.Module):
  """nn.remat blocks, Dropout that needs rngs, and an extra ``train`` argument."""

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(3):
      x = nn.remat(fm.Block)(8, name=f"block{i}")(x, None)[0]
      x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(10, name="head")(x)


def test_remat_dropout_rngs_and_apply_kwargs():
  x = jax.random.normal(KEY, (16, 8))
  model = _RematDropout()
  variables = jax.jit(model.init, static_argnames="train")(KEY, x, train=False)
  report = diagnose(model, variables, x, _xent, rngs={"dropout": jax.random.key(3)}, train=True)
  assert [l.name for l in report.layers] == [f"block{i}/Dense_{j}" for i in range(3)
                                             for j in (0, 1)] + ["head"]
  assert all(l.signal > 0 and l.finite for l in report.layers)
  # Dropout with rate 1/2 zeroes about half of the entries after each block.
  eval_report = diagnose(model, variables, x, _xent, train=False)
  assert [l.signal for l in eval_report.layers] != [l.signal for l in report.layers]


class _BackwardOverflow(nn.Module):
  """Finite forward pass, non-finite gradient: d sqrt(u)/du = inf at u = 0."""

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(8, name="a")(x)
    return nn.Dense(2, name="b")(jnp.sqrt(x - jax.lax.stop_gradient(x)))


def test_first_nonfinite_in_the_backward_pass():
  x = jax.random.normal(KEY, (4, 3))
  model = _BackwardOverflow()
  report = diagnose(model, jax.jit(model.init)(KEY, x), x, _xent)
  assert report.first_nonfinite == {"module": "a", "direction": "backward"}
  assert report["b"].finite and not report["a"].finite


class _SharedAtTwoShapes(nn.Module):
  """One Dense applied to the batch and to a slice of it (weight sharing at two shapes)."""

  @nn.compact
  def __call__(self, x):
    dense = nn.Dense(3, name="shared")
    return nn.Dense(2, name="head")(dense(x) + jnp.mean(dense(x[:2]), axis=0, keepdims=True))


def test_a_module_called_at_two_shapes_is_one_row_with_the_first_calls_signal():
  x = jax.random.normal(KEY, (4, 3))
  model = _SharedAtTwoShapes()
  variables = jax.jit(model.init)(KEY, x)
  report = diagnose(model, variables, x, _xent)
  assert [l.name for l in report.layers] == ["shared", "head"]
  # The signal at the first call's output: dL/dy of y = dense(x) alone.
  p = variables["params"]

  def loss_of_shift(eps):
    y1 = x @ p["shared"]["kernel"] + p["shared"]["bias"][None] + eps
    y2 = x[:2] @ p["shared"]["kernel"] + p["shared"]["bias"][None]
    h = y1 + jnp.mean(y2, axis=0, keepdims=True)
    return _xent(h @ p["head"]["kernel"] + p["head"]["bias"][None])

  g = jax.jit(jax.grad(loss_of_shift))(jnp.zeros((4, 3)))
  np.testing.assert_allclose(report["shared"].signal, jnp.mean(jnp.linalg.norm(g, axis=-1)),
                             **_tol.F32)


class _RootOwnsAParam(nn.Module):
  @nn.compact
  def __call__(self, x):
    w = self.param("kernel", nn.initializers.lecun_normal(), (3, 4))
    return nn.Dense(10)(x @ w)


def test_diagnose_and_layer_grad_norms_name_and_order_layers_alike():
  x = jax.random.normal(KEY, (4, 3))
  model = _RootOwnsAParam()
  variables = jax.jit(model.init)(KEY, x)
  grads = jax.jit(jax.grad(lambda p: _xent(model.apply({"params": p}, x))))(variables["params"])
  norms = diagnostics.layer_grad_norms(grads, layout=probe.layout(model, x))
  report = diagnose(model, variables, x, _xent)
  assert list(norms) == [l.name for l in report.layers] == ["Dense_0", "(root)"]
  np.testing.assert_allclose([float(v) for v in norms.values()],
                             [l.grad_norm for l in report.layers], **_tol.F32)


class MyDense(nn.Dense):
  """A user's Dense under another name: a dense layer by its type."""


class _MyDenseChain(nn.Module):
  @nn.compact
  def __call__(self, x):
    for _ in range(3):
      x = MyDense(8)(x)
    return x


def test_a_subclass_of_dense_gets_its_weight_variance():
  x = jax.random.normal(KEY, (16, 8))
  model = _MyDenseChain()
  variables = jax.jit(model.init)(KEY, x)
  report = diagnose(model, variables, x, _xent, activation="linear")
  assert [l.kind for l in report.layers] == ["MyDense"] * 3
  # Linear between layers: E[phi'^2] = 1, so chi_1 is the next layer's sigma_w^2 itself.
  kernels = [variables["params"][f"MyDense_{i}"]["kernel"] for i in (1, 2)]
  np.testing.assert_allclose([l.chi1 for l in report.layers[:2]],
                             [float(theory.weight_variance(k)) for k in kernels], **_tol.F32)
  assert report.layers[2].chi1 is None


class MyLayerNorm(nn.LayerNorm):
  """A user's LayerNorm under another name: a norm by its type."""


class LayerNorm(nn.Module):
  """Named like a norm but none: a learned per-unit scale, ``x * s``."""

  @nn.compact
  def __call__(self, x):
    return x * self.param("scale", nn.initializers.ones, (x.shape[-1],))[None, :]


class _NormedTanhChain(nn.Module):
  """``norm(x)``, then 6 tanh Dense layers drawn N(0, 0.01^2): vanishing, whatever the norm."""

  norm: type

  @nn.compact
  def __call__(self, x):
    x = self.norm()(x)
    for _ in range(6):
      x = jnp.tanh(nn.Dense(16, kernel_init=nn.initializers.normal(0.01))(x))
    return nn.Dense(4)(x)


@pytest.mark.parametrize("norm, is_norm", [(MyLayerNorm, True), (LayerNorm, False)])
def test_a_norm_is_known_by_its_type_not_its_name(norm, is_norm):
  x = jax.random.normal(KEY, (32, 16))
  model = _NormedTanhChain(norm)
  variables = jax.jit(model.init)(KEY, x)
  assert probe.trace(model, variables, x).trace.rows[0].is_norm == is_norm
  report = diagnose(model, variables, x, _xent)
  assert report.layers[0].kind == norm.__name__ and report.verdict == "vanishing"
  # A model that has a norm is not told to add one.
  assert any("add BatchNorm or LayerNorm" in r for r in report.remedies) == (not is_norm)
