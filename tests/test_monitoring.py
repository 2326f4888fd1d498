"""Metrics and logs: norms and update ratios against direct computation, files read back, Monitor.

The Monitor runs in a hand-written loop on a plain Flax model with the user's own Optax chain.
"""

import math
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgrad import files, logs, metrics, optimizers, probe, training
from jaxgrad.diagnostics import layer_grad_norms, unit_fractions
from jaxgrad.models import DeepMLP
from tests import _tol
from tests._json import strict_json

MODEL = DeepMLP(depth=4, width=8, out_features=3, activation="tanh")
LAYOUT = probe.layout(MODEL, jnp.ones((4, 5)))  # execution order, the scanned stack expanded
INIT = jax.jit(MODEL.init)  # one compiled init for the fixture and the tests (same shapes)


def hidden_outputs(variables, x):
  """MODEL's hidden activations keyed like ``layer_grad_norms``, caught by ``nn.intercept_methods``.

  The first block's output, and the scanned stack's per-layer outputs (its second output),
  both seen at the top level of the forward pass (not inside the scan).
  """
  out = {}

  def catch(next_fun, args, kwargs, context):
    y = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and context.module.path == ("first",):
      out["first/dense"] = y
    elif context.method_name == "__call__" and context.module.path == ("hidden",):
      out.update({f"hidden/layers_{i:03d}/dense": h for i, h in enumerate(y[1])})
    return y

  with nn.intercept_methods(catch):
    MODEL.apply(variables, x)
  return out


@pytest.fixture(scope="module")
def monitored():
  x = jax.random.normal(jax.random.key(0), (32, 5))
  y = jnp.arange(32) % 3
  variables = INIT(jax.random.key(1), x[:4])
  params = variables["params"]

  def loss_fn(p, state, batch):
    logits = MODEL.apply({"params": p}, batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean(), state

  def sample(key):
    i = jax.random.randint(key, (8,), 0, 32)
    return x[i], y[i]

  record = metrics.recorder(
      accuracy_fn=lambda p, s, b: jnp.mean(jnp.argmax(MODEL.apply({"params": p}, b[0]), -1) == b[1]),
      outputs_fn=lambda p, s, b: hidden_outputs({"params": p}, b[0]),
      activation="tanh", layout=LAYOUT)
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("sgd", 0.5, clip_norm=0.05))
  key = jax.random.key(2)
  result = jax.jit(lambda: training.train(loss_fn, params, tx, sample, 5, key=key, record=record,
                                          layout=LAYOUT))()
  return dict(result=result, loss_fn=loss_fn, sample=sample, params=params, key=key, tx=tx)


def test_recorded_layer_norms_and_update_ratios_equal_direct_computation(monitored):
  m = monitored

  @jax.jit
  def direct(params):
    batch = m["sample"](jax.random.fold_in(m["key"], 0))
    grads = jax.grad(lambda p: m["loss_fn"](p, {}, batch)[0])(params)
    updates, _ = m["tx"].update(grads, m["tx"].init(params), params)
    return layer_grad_norms(grads, layout=LAYOUT), optax.apply_updates(params, updates)

  norms, new = direct(m["params"])
  recorded = {k: v[0] for k, v in m["result"].layer_grad_norms.items()}
  chex.assert_trees_all_close(recorded, dict(norms), **_tol.F32_REDUCED)
  kernel = lambda t, name: (t["hidden"]["layers"]["dense"]["kernel"][1]  # noqa: E731
                            if name == "hidden/layers_001/dense" else t["first"]["dense"]["kernel"])
  for name in ("first/dense", "hidden/layers_001/dense"):
    ratio = jnp.linalg.norm(kernel(new, name) - kernel(m["params"], name)) / jnp.linalg.norm(
        kernel(m["params"], name))
    np.testing.assert_allclose(m["result"].metrics["update_ratio"][name][0], ratio,
                               **_tol.F32_REDUCED)


def test_intercepted_hidden_outputs_reproduce_the_model():
  x = jax.random.normal(jax.random.key(3), (4, 5))
  v = INIT(jax.random.key(1), x)
  outs = jax.jit(hidden_outputs)(v, x)
  assert list(outs) == ["first/dense", "hidden/layers_000/dense", "hidden/layers_001/dense"]
  last = v["params"]["last"]["dense"]
  np.testing.assert_allclose(outs["hidden/layers_001/dense"] @ last["kernel"] + last["bias"][None],
                             jax.jit(MODEL.apply)(v, x), **_tol.F32)


def test_unit_fractions_on_hand_built_activations():
  relu = {"a": jnp.array([[0.0, 1.0, 0.0, 2.0], [0.0, 3.0, 0.0, 0.0]])}
  f = unit_fractions(relu, "relu")
  assert float(f["dead"]["a"]) == 0.5 and float(f["saturated"]["a"]) == 0.0
  tanh = {"a": jnp.array([[0.9999, 0.1, -0.9999], [-0.99999, 0.0, -0.9999]])}
  f = unit_fractions(tanh, "tanh")  # 1 - h^2 < 0.05 for units 0 and 2
  assert float(f["dead"]["a"]) == 0.0
  np.testing.assert_allclose(f["saturated"]["a"], 2 / 3, **_tol.F32)
  with pytest.raises(ValueError, match="got 'gelu', valid choices"):
    unit_fractions(relu, "gelu")


def test_metrics_jsonl_and_alarms_read_back(monitored, tmp_path):
  res = monitored["result"]
  summary = logs.write_run(tmp_path, res, norm_threshold=0.05)
  rows = logs.read_jsonl(tmp_path / "metrics.jsonl")
  assert [r["step"] for r in rows] == list(range(5))
  np.testing.assert_allclose([r["loss"] for r in rows], res.loss, **_tol.F32)
  np.testing.assert_allclose([r["grad_norm/last/dense"] for r in rows],
                             res.layer_grad_norms["last/dense"], **_tol.F32)
  assert {"accuracy", "update_ratio/first/dense", "saturated/first/dense", "dead/first/dense"} <= set(rows[0])
  alarms = logs.read_jsonl(tmp_path / "alarms.jsonl")
  over = [a for a in alarms if a["metric"] == "grad_norm"]
  assert [a["step"] for a in over] == [i for i in range(5) if res.grad_norm[i] > 0.05]
  assert summary["alarms"] == len(alarms)


def test_nonfinite_values_raise_alarms():
  rows = [{"step": 0, "loss": 1.0, "grad_norm": 2.0},
          {"step": 1, "loss": math.nan, "grad_norm": math.inf, "accuracy": math.nan}]
  events = logs.alarms(rows, norm_threshold=10.0)
  assert [(e["step"], e["event"], e["metric"]) for e in events] == [
      (1, "nonfinite", "loss"), (1, "nonfinite", "grad_norm")]


def test_tensorboard_scalars_and_histograms_read_back(monitored, tmp_path):
  pytest.importorskip("tensorboardX")
  params = monitored["params"]
  logger = logs.TensorBoardLogger(tmp_path / "tb", bins=16)
  logger.log_rows(logs.rows(monitored["result"]))
  logger.histograms(3, params, jax.tree.map(lambda a: 2 * a, params), layout=LAYOUT)
  logger.close()
  events = logs.read_events(tmp_path / "tb")
  steps, losses = zip(*events["scalars"]["loss"])
  assert steps == tuple(range(5))
  np.testing.assert_allclose(losses, monitored["result"].loss, **_tol.F32)
  kernel = np.asarray(params["hidden"]["layers"]["dense"]["kernel"][1])
  ((step, histo),) = events["histograms"]["weights/hidden/layers_001/dense"]
  assert step == 3 and histo["num"] == kernel.size and sum(histo["bucket"]) == kernel.size
  np.testing.assert_allclose([histo["min"], histo["max"]], [kernel.min(), kernel.max()], **_tol.F32)
  ((_, g),) = events["histograms"]["gradients/first/dense"]
  np.testing.assert_allclose(g["max"], 2 * np.asarray(params["first"]["dense"]["kernel"]).max(),
                             **_tol.F32)


def test_alarms_for_update_ratios_outside_the_range():
  rows = [{"step": 0, "loss": 1.0, "update_ratio/a": 1e-9, "update_ratio/b": 5.0,
           "update_ratio/c": 1e-3, "update_ratio/zero_weight": math.inf}]
  assert logs.alarms(rows) == []  # no range: not checked
  events = logs.alarms(rows, update_ratio_range=(1e-6, 1.0))
  assert [(e["event"], e["metric"], e["threshold"]) for e in events] == [
      ("vanishing_update_ratio", "update_ratio/a", 1e-6),
      ("exploding_update_ratio", "update_ratio/b", 1.0)]


def test_jsonl_is_strict_json_and_reads_back(tmp_path):
  rows = [{"step": 0, "loss": math.nan, "grad_norm": math.inf, "x": -math.inf, "y": 1.5}]
  logs.write_jsonl(tmp_path / "m.jsonl", rows)
  (line,) = (tmp_path / "m.jsonl").read_text().splitlines()
  assert strict_json(line) == {
      "step": 0, "loss": "nan", "grad_norm": "inf", "x": "-inf", "y": 1.5}
  (back,) = logs.read_jsonl(tmp_path / "m.jsonl")
  assert math.isnan(back["loss"]) and back["grad_norm"] == math.inf and back["x"] == -math.inf
  assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]  # no temporary file left


# --- Monitor: the user's own loop, own Optax chain ---------------------------------------


class _MLP(nn.Module):
  """A plain Flax MLP, written as users write it."""

  widths: tuple[int, ...] = (8, 8)

  @nn.compact
  def __call__(self, x):
    for w in self.widths:
      x = nn.relu(nn.Dense(w)(x))
    return nn.Dense(1)(x)


@pytest.fixture(scope="module")
def user_setup():
  """``(model, params, loss_fn, sample)`` of a regression by the user's ``_MLP``, shared by the tests."""
  x = jax.random.normal(jax.random.key(0), (32, 4))
  y = jnp.sum(x, -1, keepdims=True)
  model = _MLP()
  params = jax.jit(model.init)(jax.random.key(1), x)["params"]

  def loss_fn(p, state, batch):
    return jnp.mean((model.apply({"params": p}, batch[0]) - batch[1]) ** 2), state

  return model, params, loss_fn, lambda key: (x, y)


def _user_loop(monitor, loss_fn, params, tx, batch, steps):
  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(lambda p: loss_fn(p, {}, batch)[0])(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, loss,
            monitor.measure(grads, params, updates))

  opt_state, events = tx.init(params), []
  for i in range(steps):
    params, opt_state, loss, metrics = step(params, opt_state)
    events += monitor.log(i, metrics, loss=loss)
  monitor.close()
  return events


def test_monitor_in_a_hand_written_loop_equals_train_and_its_recorder(tmp_path, user_setup):
  _, params, loss_fn, sample = user_setup
  tx = optax.chain(optax.clip_by_global_norm(0.1), optax.adamw(1e-2))
  monitor = logs.Monitor(tmp_path / "own", update_ratio_range=None)
  assert _user_loop(monitor, loss_fn, params, tx, sample(None), 4) == []
  own = logs.read_jsonl(tmp_path / "own" / "metrics.jsonl")
  result = training.train(loss_fn, params, tx, sample, 4, key=jax.random.key(0),
                          record=metrics.recorder())
  by_train = logs.rows(result)
  assert list(own[0]) == list(by_train[0]) == [
      "step", "loss", "grad_norm", "grad_norm/Dense_0", "grad_norm/Dense_1", "grad_norm/Dense_2",
      "update_norm", "update_ratio/Dense_0", "update_ratio/Dense_1", "update_ratio/Dense_2"]
  for a, b in zip(own, by_train):
    np.testing.assert_allclose(list(a.values()), list(b.values()), **_tol.F32)
  assert all(r["grad_norm"] > 0.1 for r in own)  # pre-clip: the clipped norm would be 0.1


def test_monitor_on_a_diverging_run_writes_strict_json_and_alarms(tmp_path, user_setup):
  _, params, loss_fn, sample = user_setup
  monitor = logs.Monitor(tmp_path, every=2)
  events = _user_loop(monitor, loss_fn, params, optax.sgd(1e3), sample(None), 12)
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  raw = [strict_json(line) for line in lines]
  assert [r["step"] for r in raw] == list(range(0, 12, 2))
  assert raw[-1]["loss"] == "nan" and raw[-1]["grad_norm"] == "nan"  # diverged, NaN encoded
  rows = logs.read_jsonl(tmp_path / "metrics.jsonl")
  assert math.isnan(rows[-1]["loss"]) and math.isfinite(rows[0]["loss"])
  for line in (tmp_path / "alarms.jsonl").read_text().splitlines():
    strict_json(line)
  written = logs.read_jsonl(tmp_path / "alarms.jsonl")
  key = lambda e: (e["step"], e["event"], e["metric"])  # noqa: E731
  assert [key(e) for e in written] == [key(e) for e in events]
  kinds = {e["event"] for e in events}
  assert {"nonfinite", "exploding_update_ratio"} <= kinds
  first_nan = min(e["step"] for e in events if e["event"] == "nonfinite")
  assert min(e["step"] for e in events) < first_nan  # the explosion is flagged before the NaN


def test_module_docstring_example_runs_as_pasted(tmp_path, monkeypatch):
  doc = logs.__doc__
  block = doc[doc.index("your own loop)::\n") + len("your own loop)::\n"):]
  code = textwrap.dedent(block.rstrip())
  monkeypatch.chdir(tmp_path)
  exec(compile(code, "logs_example", "exec"), {})  # noqa: S102
  rows = logs.read_jsonl(tmp_path / "runs/my_mlp/metrics.jsonl")
  assert [r["step"] for r in rows] == list(range(0, 100, 10))
  assert rows[-1]["loss"] < rows[0]["loss"]
  assert {"grad_norm/Dense_0", "update_ratio/Dense_2", "update_norm"} <= set(rows[0])


def test_monitor_dead_units_tensorboard_and_errors(tmp_path, user_setup):
  pytest.importorskip("tensorboardX")
  _, params, loss_fn, sample = user_setup
  grads = jax.jit(jax.grad(lambda p: loss_fn(p, {}, sample(None))[0]))(params)
  updates = jax.jit(lambda gs: jax.tree.map(lambda g: -0.1 * g, gs))(grads)
  h = jnp.concatenate([jnp.zeros((32, 2)), jnp.ones((32, 6))], -1)  # 2 of 8 units dead
  with logs.Monitor(tmp_path, tensorboard=True, activation="relu") as monitor:
    metrics = jax.jit(lambda g, p, u: monitor.measure(g, p, u, outputs={"Dense_0": h}))(
        grads, params, updates)
    monitor.log(0, metrics, loss=1.0, params=params, grads=grads, accuracy=0.5)
  (row,) = logs.read_jsonl(tmp_path / "metrics.jsonl")
  assert row["dead/Dense_0"] == 0.25 and row["accuracy"] == 0.5
  np.testing.assert_allclose(row["grad_norm/Dense_1"],
                             np.linalg.norm(grads["Dense_1"]["kernel"]), **_tol.F32)
  np.testing.assert_allclose(row["update_ratio/Dense_0"],
                             np.linalg.norm(updates["Dense_0"]["kernel"])
                             / np.linalg.norm(params["Dense_0"]["kernel"]), **_tol.F32)
  events = logs.read_events(tmp_path)
  assert events["scalars"]["grad_norm/Dense_0"][0][0] == 0
  assert {"weights/Dense_0", "gradients/Dense_2"} <= set(events["histograms"])
  with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
    logs.Monitor(tmp_path, every=0)
  with pytest.raises(ValueError, match="got 'gelu', valid choices"):
    logs.Monitor(tmp_path, activation="gelu")
  with pytest.raises(ValueError, match="needs Monitor\\(activation=...\\)"):
    logs.Monitor(tmp_path).measure(grads, params, updates, outputs={"Dense_0": h})
  stacked = jax.jit(jax.vmap(lambda g: monitor.measure(g, params, updates)))(
      jax.tree.map(lambda g: jnp.stack([g, g]), grads))
  with pytest.raises(ValueError, match="expected \\(\\): log one step of one run"):
    logs.Monitor(tmp_path).log(0, stacked)


def test_monitor_reads_dead_units_from_the_probe_on_an_unedited_model(tmp_path):
  """A user's MLP whose middle layer has bias -100: every unit after it is dead, no activation named."""
  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(8, name="a")(x))
      x = nn.relu(nn.Dense(8, name="b", bias_init=nn.initializers.constant(-100.0))(x))
      return nn.Dense(2, name="c")(x)

  x = jax.random.normal(jax.random.key(0), (16, 4))
  model = MLP()
  variables = jax.jit(model.init)(jax.random.key(1), x)
  pr = probe.trace(model, variables, x)
  tx = optax.adamw(1e-3)
  opt_state = tx.init(variables["params"])
  monitor = logs.Monitor(tmp_path, layout=pr.trace)

  @jax.jit
  def step(variables, opt_state):
    loss, g = pr.value_and_grad(variables, x, lambda y: jnp.mean(y ** 2))
    updates, opt_state = tx.update(g["params"], opt_state, variables["params"])
    metrics = monitor.measure(g["params"], variables["params"], updates, stats=g["stats"])
    return loss, metrics

  loss, metrics = step(variables, opt_state)
  monitor.log(0, metrics, loss=loss)
  (row,) = files.read_jsonl(tmp_path / "metrics.jsonl")
  assert row["dead/b"] == 1.0 and 0.0 <= row["dead/a"] < 1.0
  assert list(metrics["layer_grad_norms"]) == ["a", "b", "c"]
  params = variables["params"]
  with pytest.raises(ValueError, match="needs Monitor\\(layout="):
    logs.Monitor(tmp_path / "x").measure(params, params, params, stats={})
