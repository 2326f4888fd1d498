"""Optimizer factory against raw Optax, schedules, train() with any Optax chain and any data."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad import metrics, optimizers, probe, training
from jaxgrad.diagnostics import layer_grad_norms
from jaxgrad.models import DeepMLP
from tests import _tol


def _dense(rng, fan_in, fan_out, stack=()):
  return {"kernel": jnp.asarray(rng.normal(size=(*stack, fan_in, fan_out)) / fan_in**0.5,
                                jnp.float32),
          "bias": jnp.zeros((*stack, fan_out))}


# _params_and_grads' model, for the probed layout (execution order, the scanned stack).
PARAMS_LAYOUT = probe.layout(DeepMLP(depth=4, width=6, out_features=2), jnp.ones((1, 5)))


def _params_and_grads(steps=3):
  """Parameters shaped like DeepMLP(depth=4, width=6, out_features=2) on 5 inputs."""
  rng = np.random.default_rng(0)
  params = {"first": {"dense": _dense(rng, 5, 6)},
            "hidden": {"layers": {"dense": _dense(rng, 6, 6, (2,))}},
            "last": {"dense": _dense(rng, 6, 2)}}
  grads = [jax.tree.map(lambda p: jnp.asarray(3.0 * rng.normal(size=p.shape), jnp.float32), params)
           for _ in range(steps)]
  return params, grads


def _run(tx, params, grads):
  """``tx``'s updates at each of ``grads`` from ``params``, and its final state (callers jit it)."""
  state = tx.init(params)
  out = []
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out, state


SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 0.1, 2, 10, 0.0)
CASES = {
    "sgd": (optimizers.OptimizerConfig("sgd", 0.1), optax.sgd(0.1)),
    "momentum": (optimizers.OptimizerConfig("sgd", 0.1, momentum=0.9), optax.sgd(0.1, 0.9)),
    "nesterov": (optimizers.OptimizerConfig("sgd", 0.1, momentum=0.9, nesterov=True),
                 optax.sgd(0.1, 0.9, nesterov=True)),
    "adam": (optimizers.OptimizerConfig("adam", 1e-2), optax.adam(1e-2)),
    "adamw": (optimizers.OptimizerConfig("adamw", 1e-2, weight_decay=0.1),
              optax.adamw(1e-2, weight_decay=0.1)),
    "rmsprop": (optimizers.OptimizerConfig("rmsprop", 1e-2), optax.rmsprop(1e-2)),
    "adagrad": (optimizers.OptimizerConfig("adagrad", 1e-2), optax.adagrad(1e-2)),
    "clip_value": (optimizers.OptimizerConfig("adam", 1e-2, clip_value=0.5),
                   optax.chain(optax.clip(0.5), optax.adam(1e-2))),
    "clip_norm": (optimizers.OptimizerConfig("sgd", 0.1, clip_norm=1.0),
                  optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1))),
    "both_clips_warmup_cosine": (
        optimizers.OptimizerConfig("sgd", 0.1, momentum=0.9, clip_value=2.0, clip_norm=1.0,
                                 schedule="warmup_cosine", warmup_steps=2, decay_steps=10),
        optax.chain(optax.clip(2.0), optax.clip_by_global_norm(1.0), optax.sgd(SCHEDULE, 0.9))),
    "skip_nonfinite": (optimizers.OptimizerConfig("adam", 1e-2, skip_nonfinite=True),
                       optax.apply_if_finite(optax.adam(1e-2), 2**31 - 1)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_factory_matches_the_raw_optax_chain(name):
  ours, raw = CASES[name]
  params, grads = _params_and_grads()
  tx = optimizers.make_optimizer(ours)
  got, want = jax.jit(lambda p, gs: (_run(tx, p, gs)[0], _run(raw, p, gs)[0]))(params, grads)
  chex.assert_trees_all_close(got, want, **_tol.F32)


def test_clip_by_value_clamps_every_entry():
  params, grads = _params_and_grads(1)
  tx = optax.chain(optimizers.make_optimizer(optimizers.OptimizerConfig("sgd", 1.0, clip_value=0.25)))
  (updates,), _ = jax.jit(lambda p, gs: _run(tx, p, gs))(params, grads)
  for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads[0])):
    np.testing.assert_allclose(u, -jnp.clip(g, -0.25, 0.25), **_tol.F32)
    assert float(jnp.max(jnp.abs(u))) == pytest.approx(0.25)  # some entries were clipped


def test_clip_by_global_norm_gives_the_threshold(x64):
  params, grads = _params_and_grads(1)
  params, grads = jax.tree.map(lambda a: a.astype(jnp.float64), (params, grads))
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("sgd", 1.0, clip_norm=0.5))
  (updates,), _ = jax.jit(lambda p, gs: _run(tx, p, gs))(params, grads)
  np.testing.assert_allclose(optax.tree.norm(updates), 0.5, **_tol.F64)
  assert float(optax.tree.norm(grads[0])) > 0.5


def test_vmapped_clip_thresholds_equal_separate_chains(x64):
  # One program for several clipping arms: clip_norm traced under vmap,
  # inf meaning "never clipped".
  params, grads = _params_and_grads(1)
  params, grads = jax.tree.map(lambda a: a.astype(jnp.float64), (params, grads))

  def updates(clip_norm):
    tx = optimizers.make_optimizer(optimizers.OptimizerConfig("sgd", 1.0, clip_norm=clip_norm))
    return tx.update(grads[0], tx.init(params), params)[0]

  vmapped = jax.jit(jax.vmap(updates))(jnp.asarray([0.5, jnp.inf]))
  separate = jax.jit(lambda: (updates(0.5), updates(None)))()
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], vmapped), separate[0], **_tol.F64)
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], vmapped), separate[1], **_tol.F64)


def test_grad_norms_equal_a_direct_computation():
  params, (g,) = _params_and_grads(1)
  kernel = lambda name: g[name]["dense"]["kernel"]  # noqa: E731
  stack = g["hidden"]["layers"]["dense"]["kernel"]
  norm, layers = metrics.grad_norms(g, layout=PARAMS_LAYOUT)
  direct = {"first/dense": jnp.linalg.norm(kernel("first")),
            **{f"hidden/layers_{i:03d}/dense": jnp.linalg.norm(stack[i]) for i in range(2)},
            "last/dense": jnp.linalg.norm(kernel("last"))}
  assert list(layers) == list(direct) == list(layer_grad_norms(g, layout=PARAMS_LAYOUT))
  chex.assert_trees_all_close(dict(layers), direct, **_tol.F32)
  np.testing.assert_allclose(norm, optax.tree.norm(g), **_tol.F32)
  # Without a layout: the tree's order, the stack one entry.
  _, flat = metrics.grad_norms(g)
  assert list(flat) == ["first/dense", "hidden/layers/dense", "last/dense"]
  np.testing.assert_allclose(flat["hidden/layers/dense"], jnp.linalg.norm(stack), **_tol.F32)


def test_nan_gradient_is_recorded_and_skipped():
  """loss = <g, p>, so the raw gradient is g, NaN in one entry: recorded as NaN, step skipped."""
  params, (g,) = _params_and_grads(1)
  g = jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), g)
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("adam", 1e-2, skip_nonfinite=True))
  loss_fn = lambda p, s, b: (optax.tree.vdot(g, p), s)  # noqa: E731
  res = training.train(loss_fn, params, tx, lambda k: None, 1, key=jax.random.key(0))
  assert np.isnan(res.grad_norm[0]) and np.isnan(res.layer_grad_norms["first/dense"][0])
  assert float(res.update_norm[0]) == 0.0
  chex.assert_trees_all_equal(res.params, params)


def test_warmup_cosine_schedule_values():
  sched = optimizers.learning_rate_schedule(optimizers.OptimizerConfig(
      "sgd", 0.2, schedule="warmup_cosine", warmup_steps=4, decay_steps=12, end_lr_fraction=0.1))
  np.testing.assert_allclose([sched(0), sched(2), sched(4), sched(8), sched(12)],
                             [0.0, 0.1, 0.2, 0.02 + 0.18 * 0.5, 0.02], **_tol.F32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="lion"), "unknown optimizer 'lion'; valid choices"),
    (dict(schedule="step"), "unknown schedule 'step'; valid choices"),
    (dict(clip_norm=0.0), "clip_norm must be > 0"),
    (dict(learning_rate=-1.0), "learning_rate must be finite and > 0"),
    (dict(name="adam", nesterov=True), "nesterov applies to 'sgd' only"),
    (dict(schedule="warmup_cosine", warmup_steps=5, decay_steps=5), "decay_steps > warmup_steps"),
])
def test_bad_config_is_a_clear_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    optimizers.OptimizerConfig(**kwargs)


REGRESSION_MODEL = DeepMLP(depth=3, width=8, out_features=1, activation="tanh")
REGRESSION_LAYOUT = probe.layout(REGRESSION_MODEL, jnp.ones((2, 4)))


@pytest.fixture(scope="module")
def regression():
  """``(loss_fn, params, sample)`` of a linear regression by REGRESSION_MODEL, shared by the tests."""
  model = REGRESSION_MODEL
  w = jnp.linspace(-1.0, 1.0, 4)
  x = jax.random.normal(jax.random.key(2), (64, 4))
  y = (x @ w)[:, None]
  params = jax.jit(model.init)(jax.random.key(0), x[:2])["params"]

  def loss_fn(p, state, batch):
    xb, yb = batch
    return jnp.mean((model.apply({"params": p}, xb) - yb) ** 2), state

  def sample(key):
    i = jax.random.randint(key, (16,), 0, 64)
    return x[i], y[i]

  return loss_fn, params, sample


@pytest.mark.parametrize("tx", [
    optimizers.make_optimizer(optimizers.OptimizerConfig("adam", 1e-2, clip_norm=0.5)),
    optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(1e-2)),
], ids=["make_optimizer", "plain_optax"])
def test_train_records_norms_and_metrics_and_is_vmappable(tx, regression):
  loss_fn, params, sample = regression
  record = lambda info: {"step": info.step, "grad_norm": optax.tree.norm(info.grads)}  # noqa: E731
  run = jax.jit(jax.vmap(lambda k: training.train(loss_fn, params, tx, sample, 30, key=k,
                                                  record=record, layout=REGRESSION_LAYOUT)))
  res = run(jax.random.split(jax.random.key(3), 2))
  chex.assert_shape(res.loss, (2, 30))
  assert (res.loss[:, -5:].mean(1) < 0.5 * res.loss[:, :5].mean(1)).all()
  np.testing.assert_allclose(res.metrics["grad_norm"], res.grad_norm, **_tol.F32)
  np.testing.assert_array_equal(res.metrics["step"][0], np.arange(30))
  assert list(res.layer_grad_norms) == ["first/dense", "hidden/layers_000/dense", "last/dense"]
  np.testing.assert_array_equal(res.diverged_at, [-1, -1])


def test_train_in_chunks_equals_one_run(regression):
  loss_fn, params, sample = regression
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("sgd", 0.05, momentum=0.9))
  key = jax.random.key(4)
  whole = training.train(loss_fn, params, tx, sample, 10, key=key)
  a = training.train(loss_fn, params, tx, sample, 6, key=key)
  b = training.train(loss_fn, a.params, tx, sample, 4, key=key, opt_state=a.opt_state,
                     first_step=6)
  np.testing.assert_allclose(np.concatenate([a.loss, b.loss]), whole.loss, **_tol.F32)
  chex.assert_trees_all_close(b.params, whole.params, **_tol.F32)


def test_divergence_is_recorded_not_raised(regression):
  loss_fn, params, sample = regression
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("sgd", 50.0))
  res = jax.jit(lambda k: training.train(loss_fn, params, tx, sample, 20, key=k))(jax.random.key(0))
  assert 0 < int(res.diverged_at) < 20
  assert not np.isfinite(res.loss[-1])


def _hand_written(loss_fn, params, tx, batches):
  """The loop a user writes: grad, update, apply; with the raw gradient's norm per step."""
  @jax.jit  # one compiled step, as a user writes it, not hundreds of eager ops
  def step(params, state, batch):
    g = jax.grad(lambda p: loss_fn(p, {}, batch)[0])(params)
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state, optax.tree.norm(g)

  state, norms = tx.init(params), []
  for batch in batches:
    params, state, norm = step(params, state, batch)
    norms.append(norm)
  return params, np.asarray(norms)


@functools.cache
def _drawer(sample):
  """``sample``'s batch of step ``i`` under ``key``: one compiled program for every key and step."""
  return jax.jit(lambda key, i: sample(jax.random.fold_in(key, i)))


def _batches(sample, key, steps, first=0):
  draw = _drawer(sample)
  return [draw(key, first + i) for i in range(steps)]


def test_plain_adamw_matches_a_hand_written_loop(regression):
  loss_fn, params, sample = regression
  tx, key = optax.adamw(1e-2), jax.random.key(5)
  res = jax.jit(lambda p: training.train(loss_fn, p, tx, sample, 12, key=key,
                                         layout=REGRESSION_LAYOUT))(params)
  want, norms = _hand_written(loss_fn, params, tx, _batches(sample, key, 12))
  chex.assert_trees_all_close(res.params, want, **_tol.F32)
  np.testing.assert_allclose(res.grad_norm, norms, **_tol.F32)
  assert list(res.layer_grad_norms) == ["first/dense", "hidden/layers_000/dense", "last/dense"]


def test_pre_clip_norm_is_the_raw_gradients_with_clipping_in_the_users_chain(regression):
  # The user's own chain, clipping first: the recorded norm is the raw
  # gradient's at every step (above c, so the clipped one would differ), the
  # update norm lr * min(||g||, c).
  loss_fn, params, sample = regression
  c, lr, key = 0.05, 0.1, jax.random.key(6)
  tx = optax.chain(optax.clip_by_global_norm(c), optax.sgd(lr))
  res = training.train(loss_fn, params, tx, sample, 8, key=key)
  want, norms = _hand_written(loss_fn, params, tx, _batches(sample, key, 8))
  assert (norms > c).all()
  np.testing.assert_allclose(res.grad_norm, norms, **_tol.F32)
  np.testing.assert_allclose(res.update_norm, lr * np.minimum(norms, c), **_tol.F32)
  chex.assert_trees_all_close(res.params, want, **_tol.F32)


def _record(info):
  return {"step": info.step, "update_ratio": metrics.update_ratios(info.updates, info.params)}


def test_iterator_and_sampler_give_identical_runs(regression):
  loss_fn, params, sample = regression
  tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-2))
  key, first = jax.random.key(7), 3
  by_sampler = training.train(loss_fn, params, tx, sample, 6, key=key, record=_record,
                              first_step=first)
  batches = _batches(sample, key, 6, first)
  by_list = training.train(loss_fn, params, tx, batches, 6, record=_record, first_step=first)
  by_iterator = training.train(loss_fn, params, tx, (b for b in batches + batches), 6,
                               record=_record, first_step=first)
  for res in (by_list, by_iterator):
    np.testing.assert_array_equal(res.loss, by_sampler.loss)
    np.testing.assert_array_equal(res.metrics["step"], first + np.arange(6))
    chex.assert_trees_all_close(res, by_sampler, **_tol.F32)


def test_jit_equals_eager(regression):
  loss_fn, params, sample = regression
  tx, key = optax.adamw(1e-2), jax.random.key(8)
  run = lambda p: training.train(loss_fn, p, tx, sample, 5, key=key, record=_record)  # noqa: E731
  chex.assert_trees_all_close(jax.jit(run)(params), run(params), **_tol.F32)


def test_the_loss_reaches_a_chain_that_asks_for_it(regression):
  # reduce_on_plateau reads `value`; a chain gets the step's loss.
  loss_fn, params, sample = regression
  tx = optax.chain(optax.sgd(1e-2), optax.contrib.reduce_on_plateau(patience=1, factor=0.5))
  res = training.train(loss_fn, params, tx, sample, 6, key=jax.random.key(9))
  assert np.isfinite(res.loss).all()


@pytest.mark.parametrize("steps", [2.5, 0, -1, True, "3"])
def test_steps_must_be_a_positive_integer(steps, regression):
  loss_fn, params, sample = regression
  with pytest.raises(ValueError, match=f"steps must be an integer >= 1, got {steps!r}"):
    training.train(loss_fn, params, optax.sgd(0.1), sample, steps, key=jax.random.key(0))


def test_bad_data_and_optimizer_are_clear_errors(regression):
  loss_fn, params, sample = regression
  batches = _batches(sample, jax.random.key(0), 3)
  with pytest.raises(ValueError, match="data ran out after 3 batches; steps=5"):
    training.train(loss_fn, params, optax.sgd(0.1), iter(batches), 5)
  with pytest.raises(ValueError, match="pass key="):
    training.train(loss_fn, params, optax.sgd(0.1), sample, 5)
  with pytest.raises(TypeError, match="data is a mapping"):
    training.train(loss_fn, params, optax.sgd(0.1), {"x": 1}, 5)
  with pytest.raises(TypeError, match="sampler key -> batch or an iterable of batches, got int"):
    training.train(loss_fn, params, optax.sgd(0.1), 3, 5)
  with pytest.raises(TypeError, match="must be an Optax GradientTransformation.*got function"):
    training.train(loss_fn, params, optax.sgd, sample, 5, key=jax.random.key(0))


def _train_program_size(depth: int) -> int:
  """Equations in the traced train() of a DeepMLP, recorder and clipping in, stack expanded."""
  model = DeepMLP(depth=depth, width=3, out_features=1)
  x = jnp.ones((2, 2))
  params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  layout = probe.layout(model, x)
  loss_fn = lambda p, s, b: (jnp.mean(model.apply({"params": p}, b) ** 2), s)  # noqa: E731
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("adam", 1e-3, clip_norm=1.0))
  record = metrics.recorder(layout=layout)
  run = lambda p: training.train(loss_fn, p, tx, lambda k: x, 2, key=jax.random.key(1),  # noqa: E731
                                 record=record, layout=layout)
  return _count_eqns(jax.make_jaxpr(run)(params).jaxpr)


def _count_eqns(jaxpr) -> int:
  """Equations of a jaxpr and of every jaxpr nested in them (scan bodies, pjit, ...)."""
  total = 0
  for eqn in jaxpr.eqns:
    total += 1
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          total += _count_eqns(inner)
  return total


def test_train_program_does_not_grow_with_depth():
  # Per-layer norms and update ratios of a scanned stack are vmapped
  # reductions kept as (L,) arrays; expanding them per layer made a
  # 10,000-layer step take minutes to compile.
  assert _train_program_size(4) == _train_program_size(200)
