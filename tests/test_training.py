"""Optimizer factory against raw Optax, the grad-norm recorder, schedules, train()."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad import training
from jaxgrad.diagnostics import layer_grad_norms
from jaxgrad.models import DeepMLP
from tests import _tol


def _dense(rng, fan_in, fan_out, stack=()):
  return {"kernel": jnp.asarray(rng.normal(size=(*stack, fan_in, fan_out)) / fan_in**0.5,
                                jnp.float32),
          "bias": jnp.zeros((*stack, fan_out))}


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
  state = tx.init(params)
  out = []
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out, state


SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 0.1, 2, 10, 0.0)
CASES = {
    "sgd": (training.OptimizerConfig("sgd", 0.1), optax.sgd(0.1)),
    "momentum": (training.OptimizerConfig("sgd", 0.1, momentum=0.9), optax.sgd(0.1, 0.9)),
    "nesterov": (training.OptimizerConfig("sgd", 0.1, momentum=0.9, nesterov=True),
                 optax.sgd(0.1, 0.9, nesterov=True)),
    "adam": (training.OptimizerConfig("adam", 1e-2), optax.adam(1e-2)),
    "adamw": (training.OptimizerConfig("adamw", 1e-2, weight_decay=0.1),
              optax.adamw(1e-2, weight_decay=0.1)),
    "rmsprop": (training.OptimizerConfig("rmsprop", 1e-2), optax.rmsprop(1e-2)),
    "adagrad": (training.OptimizerConfig("adagrad", 1e-2), optax.adagrad(1e-2)),
    "clip_value": (training.OptimizerConfig("adam", 1e-2, clip_value=0.5),
                   optax.chain(optax.clip(0.5), optax.adam(1e-2))),
    "clip_norm": (training.OptimizerConfig("sgd", 0.1, clip_norm=1.0),
                  optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1))),
    "both_clips_warmup_cosine": (
        training.OptimizerConfig("sgd", 0.1, momentum=0.9, clip_value=2.0, clip_norm=1.0,
                                 schedule="warmup_cosine", warmup_steps=2, decay_steps=10),
        optax.chain(optax.clip(2.0), optax.clip_by_global_norm(1.0), optax.sgd(SCHEDULE, 0.9))),
    "skip_nonfinite": (training.OptimizerConfig("adam", 1e-2, skip_nonfinite=True),
                       optax.apply_if_finite(optax.adam(1e-2), 2**31 - 1)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_factory_matches_the_raw_optax_chain(name):
  ours, raw = CASES[name]
  params, grads = _params_and_grads()
  got, state = _run(training.make_optimizer(ours), params, grads)
  want, _ = _run(raw, params, grads)
  chex.assert_trees_all_close(got, want, **_tol.F32)
  # The recorded norms are those of the last raw gradient, before clipping.
  np.testing.assert_allclose(training.pre_clip_norm(state), optax.tree.norm(grads[-1]), **_tol.F32)


def test_clip_by_value_clamps_every_entry():
  params, grads = _params_and_grads(1)
  tx = optax.chain(training.make_optimizer(training.OptimizerConfig("sgd", 1.0, clip_value=0.25)))
  (updates,), _ = _run(tx, params, grads)
  for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads[0])):
    np.testing.assert_allclose(u, -jnp.clip(g, -0.25, 0.25), **_tol.F32)
    assert float(jnp.max(jnp.abs(u))) == pytest.approx(0.25)  # some entries were clipped


def test_clip_by_global_norm_gives_the_threshold(x64):
  params, grads = _params_and_grads(1)
  params, grads = jax.tree.map(lambda a: a.astype(jnp.float64), (params, grads))
  tx = training.make_optimizer(training.OptimizerConfig("sgd", 1.0, clip_norm=0.5))
  (updates,), state = _run(tx, params, grads)
  np.testing.assert_allclose(optax.tree.norm(updates), 0.5, **_tol.F64)
  assert float(training.pre_clip_norm(state)) > 0.5


def test_vmapped_clip_thresholds_equal_separate_chains(x64):
  # One program for several clipping arms: clip_norm traced under vmap,
  # inf meaning "never clipped".
  params, grads = _params_and_grads(1)
  params, grads = jax.tree.map(lambda a: a.astype(jnp.float64), (params, grads))

  def updates(clip_norm):
    tx = training.make_optimizer(training.OptimizerConfig("sgd", 1.0, clip_norm=clip_norm))
    return tx.update(grads[0], tx.init(params), params)[0]

  vmapped = jax.vmap(updates)(jnp.asarray([0.5, jnp.inf]))
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], vmapped), updates(0.5), **_tol.F64)
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], vmapped), updates(None), **_tol.F64)


def test_recorded_layer_norms_equal_a_direct_computation():
  params, (g,) = _params_and_grads(1)
  tx = training.make_optimizer(training.OptimizerConfig("adam", 1e-3, clip_norm=0.1))
  _, state = _run(tx, params, [g])
  recorded = training.layer_norms(state)
  direct = {"first/dense": jnp.linalg.norm(g["first"]["dense"]["kernel"]),
            **{f"hidden/layers_{i:03d}/dense": jnp.linalg.norm(g["hidden"]["layers"]["dense"]["kernel"][i])
               for i in range(2)},
            "last/dense": jnp.linalg.norm(g["last"]["dense"]["kernel"])}
  assert list(recorded) == list(direct) == list(layer_grad_norms(g))
  chex.assert_trees_all_close(dict(recorded), direct, **_tol.F32)


def test_record_grad_norms_composes_with_any_chain_and_passes_updates_through():
  params, (g,) = _params_and_grads(1)
  tx = optax.chain(training.record_grad_norms(), optax.sgd(1.0))
  (u,), state = _run(tx, params, [g])
  chex.assert_trees_all_close(u, jax.tree.map(jnp.negative, g), **_tol.F32)
  np.testing.assert_allclose(training.pre_clip_norm(state), optax.tree.norm(g), **_tol.F32)
  with pytest.raises(ValueError, match="no record_grad_norms"):
    training.pre_clip_norm(optax.sgd(1.0).init(params))


def test_nan_gradient_is_recorded_and_skipped():
  params, (g,) = _params_and_grads(1)
  g = jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), g)
  tx = training.make_optimizer(training.OptimizerConfig("adam", 1e-2, skip_nonfinite=True))
  (u,), state = _run(tx, params, [g])
  assert np.isnan(training.pre_clip_norm(state))
  chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, u))


def test_warmup_cosine_schedule_values():
  sched = training.learning_rate_schedule(training.OptimizerConfig(
      "sgd", 0.2, schedule="warmup_cosine", warmup_steps=4, decay_steps=12, end_lr_fraction=0.1))
  np.testing.assert_allclose([sched(0), sched(2), sched(4), sched(8), sched(12)],
                             [0.0, 0.1, 0.2, 0.02 + 0.18 * 0.5, 0.02], **_tol.F32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="lion"), "unknown optimizer 'lion'; valid choices"),
    (dict(schedule="step"), "unknown schedule 'step'; valid choices"),
    (dict(clip_norm=0.0), "clip_norm must be > 0"),
    (dict(learning_rate=-1.0), "learning_rate must be > 0"),
    (dict(name="adam", nesterov=True), "nesterov applies to 'sgd' only"),
    (dict(schedule="warmup_cosine", warmup_steps=5, decay_steps=5), "decay_steps > warmup_steps"),
])
def test_bad_config_is_a_clear_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    training.OptimizerConfig(**kwargs)


def _regression():
  model = DeepMLP(depth=3, width=8, out_features=1, activation="tanh")
  w = jnp.linspace(-1.0, 1.0, 4)
  x = jax.random.normal(jax.random.key(2), (64, 4))
  y = (x @ w)[:, None]
  params = model.init(jax.random.key(0), x[:2])["params"]

  def loss_fn(p, state, batch):
    xb, yb = batch
    return jnp.mean((model.apply({"params": p}, xb) - yb) ** 2), state

  def sample(key):
    i = jax.random.randint(key, (16,), 0, 64)
    return x[i], y[i]

  return loss_fn, params, sample


def test_train_records_norms_and_metrics_and_is_vmappable():
  loss_fn, params, sample = _regression()
  tx = training.make_optimizer(training.OptimizerConfig("adam", 1e-2, clip_norm=0.5))
  record = lambda info: {"step": info.step, "grad_norm": optax.tree.norm(info.grads)}  # noqa: E731
  run = jax.jit(jax.vmap(lambda k: training.train(loss_fn, params, tx, sample, 30, key=k,
                                                  record=record)))
  res = run(jax.random.split(jax.random.key(3), 2))
  chex.assert_shape(res.loss, (2, 30))
  assert (res.loss[:, -5:].mean(1) < 0.5 * res.loss[:, :5].mean(1)).all()
  np.testing.assert_allclose(res.metrics["grad_norm"], res.grad_norm, **_tol.F32)
  np.testing.assert_array_equal(res.metrics["step"][0], np.arange(30))
  assert list(res.layer_grad_norms) == ["first/dense", "hidden/layers_000/dense", "last/dense"]
  np.testing.assert_array_equal(res.diverged_at, [-1, -1])


def test_train_in_chunks_equals_one_run():
  loss_fn, params, sample = _regression()
  tx = training.make_optimizer(training.OptimizerConfig("sgd", 0.05, momentum=0.9))
  key = jax.random.key(4)
  whole = training.train(loss_fn, params, tx, sample, 10, key=key)
  a = training.train(loss_fn, params, tx, sample, 6, key=key)
  b = training.train(loss_fn, a.params, tx, sample, 4, key=key, opt_state=a.opt_state,
                     first_step=6)
  np.testing.assert_allclose(np.concatenate([a.loss, b.loss]), whole.loss, **_tol.F32)
  chex.assert_trees_all_close(b.params, whole.params, **_tol.F32)


def test_divergence_is_recorded_not_raised():
  loss_fn, params, sample = _regression()
  tx = training.make_optimizer(training.OptimizerConfig("sgd", 50.0))
  res = jax.jit(lambda k: training.train(loss_fn, params, tx, sample, 20, key=k))(jax.random.key(0))
  assert 0 < int(res.diverged_at) < 20
  assert not np.isfinite(res.loss[-1])


def _train_program_size(depth: int) -> int:
  """Equations in the traced train() of a DeepMLP, recorder and clipping included."""
  from jaxgrad import monitoring  # pylint: disable=import-outside-toplevel
  model = DeepMLP(depth=depth, width=3, out_features=1)
  x = jnp.ones((2, 2))
  params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  loss_fn = lambda p, s, b: (jnp.mean(model.apply({"params": p}, b) ** 2), s)  # noqa: E731
  tx = training.make_optimizer(training.OptimizerConfig("adam", 1e-3, clip_norm=1.0))
  record = lambda info: {"update_ratio": monitoring.update_ratios(info.updates, info.params)}  # noqa: E731
  run = lambda p: training.train(loss_fn, p, tx, lambda k: x, 2, key=jax.random.key(1),  # noqa: E731
                                 record=record)
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
