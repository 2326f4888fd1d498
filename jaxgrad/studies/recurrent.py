r"""Recurrent networks: long memory, gradient clipping and gradients through time.

Three studies of a :class:`jaxgrad.models.recurrent.RecurrentNet`, each vmapped
over seeds (and arms) in one jitted program:

* **The adding problem** (Hochreiter & Schmidhuber 1997; Pascanu, Mikolov &
  Bengio 2013): :func:`train_adding` trains one cell with and without
  ``clip_by_global_norm`` and scores each seed by its test MSE;
  :func:`memory_factor` is what the LSTM's forget gate carries at init.
* **Clipping on the sine task** (seed 000 §7.3): :func:`train_arm` trains one
  arm (no clipping, clip by norm or value, a gated cell) of a stacked RNN,
  :func:`arm_measures` turns its curves into the seed's epoch loss, the steps
  above the threshold and the divergences.
* **Gradients through time** (Pascanu et al. 2013): :func:`pascanu_signal`
  measures :math:`\|\partial L / \partial h_t\|` of an RNN whose recurrent
  kernel is :math:`\rho Q`, and its per-step rate against :math:`\rho\gamma`;
  :func:`trained_signal` the same of a cell at init and after training.

Every function takes the shapes, cells and keys it needs as arguments.
:func:`study_kwargs` is the one place that reads them from an experiment's
settings (its ``Config``, or the fields a benchmark reads from its command
line): :func:`train_adding_setting`, :func:`train_arm_setting` and
:func:`arm_steps_per_epoch` are the adding problem's and the clipping
experiment's calls.
"""

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import data, optimizers, stats, training
from jaxgrad.diagnostics import time_grads
from jaxgrad.models.recurrent import RecurrentNet
from jaxgrad.sweep import sweep, sweep_grid

ADDING_SOLVED_MSE = 0.04  # Pascanu et al.'s per-sample threshold, applied to the test MSE
ADDING_CONSTANT_MSE = 1 / 6  # Var(u1 + u2), u ~ U[0, 1]: the mean predictor's MSE
ADDING_FEATURES = 2  # (value, marker)
CLIPPING_ARMS = ("none", "clip_norm", "clip_value", "lstm", "gru")
ARM_CELL = {"none": "simple", "clip_norm": "simple", "clip_value": "simple", "lstm": "lstm",
            "gru": "gru"}
GAMMA = {"linear": 1.0, "simple": 1.0}  # max phi': identity and tanh

# An experiment's settings by field name: a mapping, or any object with attributes (a
# ``Config``, a ``types.SimpleNamespace``).
Settings = Mapping[str, Any] | Any


# The adding problem.


def adding_arms(cells: Sequence[str], forget_biases: Sequence[float]) -> list[tuple[str, float]]:
  """``(cell, forget_bias)`` of every network: the LSTM once per forget bias, the others at 0."""
  return [(cell, b) for cell in cells for b in (forget_biases if cell == "lstm" else (0.0,))]


def arm_name(cell: str, forget_bias: float) -> str:
  """``"gru"``, or ``"lstm b_f=1"`` for the LSTM."""
  return f"lstm b_f={forget_bias:g}" if cell == "lstm" else cell


def memory_factor(forget_bias: float, length: int) -> float:
  r"""What the LSTM's cell state keeps of the second mark at init, :math:`\sigma(b_f)^{T/2}`.

  At initialisation the forget gate is about :math:`\sigma(b_f)`, and the read-out
  comes at least :math:`T/2` steps after the second mark: :math:`0.5^{25}
  \approx 3\times10^{-8}` at :math:`b_f = 0` for T = 50, 0.30 at +3 (Gers et al.
  2000; Jozefowicz et al. 2015).

  Args:
    forget_bias: the forget gate's bias :math:`b_f` at init.
    length: the sequence length T.
  """
  return float((1.0 / (1.0 + np.exp(-forget_bias))) ** (length / 2))


def train_adding(cell: str, length: int, *, forget_bias: float = 0.0, hidden: int, init: str,
                 unroll: int, clipping: Sequence[str], clip_norm: float, learning_rate: float,
                 batch_size: int, steps: int, test_size: int, log_every: int, seeds: int,
                 key: jax.Array) -> dict[str, dict]:
  r"""Every clipping arm x every seed of one network on the adding problem, in one program.

  Each seed trains a one-layer ``RecurrentNet`` with Adam on fresh batches of
  ``T = length`` (:func:`jaxgrad.data.adding_problem`) and is scored on
  ``test_size`` fresh sequences: it *solves* the task when its test MSE is
  below :data:`ADDING_SOLVED_MSE` (the mean predictor scores
  :math:`\mathrm{Var}(u_1 + u_2) = 1/6`); ``error_rate`` is Pascanu et al.'s
  (2013) per-sample criterion, the fraction of squared errors above it. The
  arms differ only in the clipping threshold, traced (``inf`` for none), and
  seed s starts from the same parameters and batches in every arm.

  Args:
    cell: ``"simple"``, ``"lstm"`` or ``"gru"``.
    length: the sequence length T.
    forget_bias: the LSTM's forget-gate bias at init (:func:`memory_factor`).
    hidden: the hidden size.
    init: the recurrent init (:data:`jaxgrad.models.recurrent.RECURRENT_INITS`).
    unroll: time steps per scan iteration.
    clipping: the arms, each ``"none"`` or ``"clip_norm"``.
    clip_norm: the ``"clip_norm"`` arm's ``clip_by_global_norm`` threshold.
    learning_rate: Adam's.
    batch_size: training sequences per step.
    steps: training steps, a multiple of ``log_every``.
    test_size: fresh test sequences per seed.
    log_every: steps per logged (mean) loss and gradient norm.
    seeds: replicas per arm.
    key: split into one key per seed.

  Returns:
    Per arm: ``loss`` and ``grad_norm`` ``(seeds, steps / log_every)``, and per
    seed ``test_mse``, ``error_rate``, ``constant_mse`` (the test targets'
    variance), ``diverged_at``, ``solved``; ``fraction_solved``, ``diverged``.
  """
  net = RecurrentNet(cell=cell, hidden=hidden, recurrent_init=init, unroll=unroll,
                     forget_bias=forget_bias)

  def one(key, threshold):
    k_init, k_train, k_test = jax.random.split(key, 3)
    params = net.init(k_init, jnp.zeros((1, length, ADDING_FEATURES)))["params"]
    tx = optimizers.make_optimizer(optimizers.OptimizerConfig(
        "adam", learning_rate, clip_norm=threshold))
    sample = lambda k: data.as_batch(*data.adding_problem(k, batch_size, length))  # noqa: E731
    result = training.train(_mse_loss(net), params, tx, sample, steps, key=k_train)
    x_test, y_test = data.adding_problem(k_test, test_size, length)
    sq_err = (net.apply({"params": result.params}, x_test) - y_test)[:, 0] ** 2
    return {"loss": result.loss.reshape(-1, log_every).mean(-1),
            "grad_norm": result.grad_norm.reshape(-1, log_every).mean(-1),
            "test_mse": jnp.mean(sq_err), "error_rate": jnp.mean(sq_err > ADDING_SOLVED_MSE),
            "constant_mse": jnp.var(y_test), "diverged_at": result.diverged_at}

  thresholds = jnp.asarray([clip_norm if a == "clip_norm" else jnp.inf for a in clipping])
  out = sweep_grid(one, jax.random.split(key, seeds), thresholds)
  return {arm: _solved({k: np.asarray(v[a]) for k, v in out.items()})
          for a, arm in enumerate(clipping)}


def _mse_loss(net: RecurrentNet):
  """``loss_fn(params, state, batch)``: the MSE of ``net``'s output on a ``data.Batch``."""
  def loss_fn(params, state, batch):
    x, y = batch.x, batch.y
    return jnp.mean((net.apply({"params": params}, x) - y) ** 2), state
  return loss_fn


def _solved(arm: dict) -> dict:
  """Adds which seeds solved the task (finite test MSE below the threshold) and which diverged."""
  arm["solved"] = np.isfinite(arm["test_mse"]) & (arm["test_mse"] < ADDING_SOLVED_MSE)
  arm["fraction_solved"] = float(arm["solved"].mean())
  arm["diverged"] = int((arm["diverged_at"] >= 0).sum())
  return arm


# Clipping on the seed's sine task.


def arm_optimizer(arm: str, learning_rate: float, clip_norm: float,
                  clip_value: float) -> optimizers.OptimizerConfig:
  """Adam, clipped by global norm in the ``"clip_norm"`` arm and by value in ``"clip_value"``."""
  return optimizers.OptimizerConfig(
      "adam", learning_rate,
      clip_norm=clip_norm if arm == "clip_norm" else None,
      clip_value=clip_value if arm == "clip_value" else None)


def sine_replica(net: RecurrentNet, key: jax.Array, *, num_sequences: int, length: int,
                 batch_size: int, epochs: int):
  """One seed's data, initial parameters, loss and epoch sampler on the seed's sine task.

  The arms of a cell share them: the same ``key`` draws the same sequences
  (:func:`jaxgrad.data.sine_sequences`), initialization and shuffling.

  Returns:
    ``(params, loss_fn, sample, train_key)`` for :func:`jaxgrad.training.train`.
  """
  k_data, k_init, k_shuffle, k_train = jax.random.split(key, 4)
  x, y = data.sine_sequences(k_data, num_sequences, length)
  params = net.init(k_init, x[:1])["params"]
  sample = data.epoch_sampler(x, y, batch_size, epochs, shuffle_key=k_shuffle,
                               train_key=k_train)

  def loss_fn(p, state, batch):
    return data.weighted_mse(net.apply({"params": p}, batch.x), batch), state

  return params, loss_fn, sample, k_train


def arm_program(arm: str, *, hidden: int, layers: int, init: str, rho: float, unroll: int,
                learning_rate: float, clip_norm: float, clip_value: float, num_sequences: int,
                length: int, batch_size: int, epochs: int):
  """``one(key)``: trains one seed of ``arm`` for ``epochs`` epochs; ``sweep(one, keys)`` all.

  Args:
    arm: one of :data:`CLIPPING_ARMS`: its cell is :data:`ARM_CELL`'s, its
      chain :func:`arm_optimizer`'s.
    hidden, layers, init, rho, unroll: the stacked ``RecurrentNet`` (``rho``:
      the recurrent kernel's spectral radius, for inits other than PyTorch's).
    learning_rate, clip_norm, clip_value: the chain.
    num_sequences, length, batch_size, epochs: the sine task's data and schedule
      (:func:`sine_replica`).
  """
  net = RecurrentNet(cell=ARM_CELL[arm], hidden=hidden, layers=layers, recurrent_init=init,
                     rho=rho, unroll=unroll)
  tx = optimizers.make_optimizer(arm_optimizer(arm, learning_rate, clip_norm, clip_value))
  steps = epochs * data.batches_per_epoch(num_sequences, batch_size)

  def one(key):
    params, loss_fn, sample, k_train = sine_replica(
        net, key, num_sequences=num_sequences, length=length, batch_size=batch_size,
        epochs=epochs)
    return training.train(loss_fn, params, tx, sample, steps, key=k_train)

  return one


def train_arm(arm: str, *, seeds: int, key: jax.Array, **settings) -> training.TrainResult:
  """Every seed of ``arm`` (:func:`arm_program` of ``settings``) in one jitted, vmapped program.

  ``key`` is split into one key per seed; seed s draws the same data,
  initialization and shuffling in every arm of a cell. The seeds' axis is
  sharded over the devices (:func:`jaxgrad.sweep.sweep`).
  """
  return jax.block_until_ready(sweep(arm_program(arm, **settings), jax.random.split(key, seeds)))


def arm_measures(result: training.TrainResult, *, epochs: int, clip_norm: float) -> dict:
  r"""What one arm's training gives: the seed's epoch loss, steps above ``clip_norm``, divergences.

  Args:
    result: :func:`train_arm`'s, per-step arrays ``(seeds, steps)``.
    epochs: the epochs it trained (``steps / epochs`` steps each).
    clip_norm: the threshold :math:`c` whose exceedances :math:`\|g\| > c`
      (the global norm before clipping) are counted.

  Returns:
    ``step_loss``, ``epoch_loss`` (the mean of each epoch's batch losses),
    ``grad_norm``, ``diverged_at``, ``diverged`` (seeds), per seed
    ``fraction_above_clip_norm`` and ``max_grad_norm`` (finite steps), and the
    quartiles of the last epoch's loss over seeds (finite seeds).
  """
  loss = np.asarray(result.loss, dtype=float)  # (seeds, steps)
  norm = np.asarray(result.grad_norm, dtype=float)
  seeds = loss.shape[0]
  epoch_loss = loss.reshape(seeds, epochs, -1).mean(-1)
  diverged_at = np.asarray(result.diverged_at)
  return {
      "step_loss": loss,
      "epoch_loss": epoch_loss,
      "grad_norm": norm,
      "diverged_at": diverged_at,
      "diverged": int((diverged_at >= 0).sum()),
      "fraction_above_clip_norm": (norm > clip_norm).mean(axis=1),
      "final_epoch_loss": stats.quartiles(epoch_loss[:, -1], keep_samples=False),
      "max_grad_norm": np.nanmax(np.where(np.isfinite(norm), norm, np.nan), axis=1),
  }


# From an experiment's settings.


def _has(settings: Settings, name: str) -> bool:
  """Whether ``settings`` (a mapping or an object) has a field ``name``."""
  return name in settings if isinstance(settings, Mapping) else hasattr(settings, name)


def _field(settings: Settings, name: str) -> Any:
  """``settings[name]`` of a mapping, else ``settings.name`` (its KeyError or AttributeError)."""
  return settings[name] if isinstance(settings, Mapping) else getattr(settings, name)


def study_kwargs(fn: Callable, settings: Settings) -> dict[str, Any]:
  """The keyword-only arguments of ``fn`` that ``settings`` holds, by name.

  ``fn``'s ``key`` is ``jax.random.key(seed)`` when ``settings`` has a
  ``seed`` and no ``key``. Fields ``fn`` does not take (an experiment's
  ``lengths``, ``arms``...) are left out, and so are arguments ``settings``
  lacks: ``fn``'s default, or its ``TypeError`` naming them, applies.

  Args:
    fn: a study function, e.g. :func:`train_adding` or :func:`arm_program`.
    settings: an experiment's config fields, a mapping or an object.
  """
  names = [name for name, p in inspect.signature(fn).parameters.items()
           if p.kind is inspect.Parameter.KEYWORD_ONLY]
  out = {name: _field(settings, name) for name in names if _has(settings, name)}
  if "key" in names and "key" not in out and _has(settings, "seed"):
    out["key"] = jax.random.key(_field(settings, "seed"))
  return out


def train_adding_setting(settings: Settings, cell: str, length: int,
                         forget_bias: float = 0.0) -> dict[str, dict]:
  """:func:`train_adding` of one (cell, forget bias, T) at an adding-problem experiment's settings.

  Every clipping arm x seed in one program; ``settings`` supplies the other
  arguments (:func:`study_kwargs`), its ``seed`` the key.
  """
  return train_adding(cell, length, forget_bias=forget_bias,
                      **study_kwargs(train_adding, settings))


def train_arm_setting(settings: Settings, arm: str) -> training.TrainResult:
  """:func:`train_arm` of ``arm`` at a clipping experiment's settings, every seed in one program.

  ``settings`` supplies ``seeds``, the key (its ``seed``) and :func:`arm_program`'s
  arguments (:func:`study_kwargs`).
  """
  return train_arm(arm, **study_kwargs(train_arm, settings),
                   **study_kwargs(arm_program, settings))


def arm_steps_per_epoch(settings: Settings) -> int:
  """Training steps per epoch of an arm at ``settings``: one per batch, the last one padded."""
  return data.batches_per_epoch(_field(settings, "num_sequences"),
                                _field(settings, "batch_size"))


# Gradients through time (Pascanu, Mikolov & Bengio 2013).


def pascanu_signal(cell: str, rhos: Sequence[float], *, length: int, hidden: int, batch: int,
                   seeds: int, key: jax.Array) -> dict:
  r""":math:`\|\partial L / \partial h_t\|` of an RNN, :math:`W_{rec} = \rho Q`, in float64.

  The cell ``h_t = phi(W_rec h_{t-1} + W_in x_t + b)`` (``"linear"`` or tanh
  ``"simple"``) reads ``x_t ~ N(0, 1)``; the loss is ``||y||^2 / 2`` on the
  head's output at ``t = T``. Backpropagation through time gives

  .. math::

     \frac{\partial L}{\partial h_t} = W_{rec}^\top D_{t+1}
     \frac{\partial L}{\partial h_{t+1}}, \qquad D_s = \operatorname{diag}\phi'(z_s),

  so with ``Q`` Haar-orthogonal (every singular value of :math:`W_{rec}` is
  :math:`\rho`) the per-step ratio is exactly :math:`\rho` for the linear cell
  and at most :math:`\rho\gamma` (:data:`GAMMA`, :math:`\gamma = \max\phi'`)
  for tanh: :math:`\rho < 1/\gamma` suffices for vanishing, :math:`\rho > 1/\gamma`
  is necessary for exploding (Pascanu et al. 2013). The kernel of each seed is
  drawn once and scaled by every :math:`\rho`; float64, since :math:`\rho^T`
  spans many decades.

  Args:
    cell: ``"linear"`` or ``"simple"``.
    rhos: the spectral radii.
    length: T.
    hidden: the hidden size.
    batch: sequences per measurement.
    seeds: replicas (recurrent kernels and inputs).
    key: split into one key per seed.

  Returns:
    ``log10_signal`` ``(rhos, seeds, T)``: :math:`\log_{10}` of
    :math:`\|\partial L/\partial h_t\| / \|\partial L/\partial h_T\|`, mean over
    the batch; ``rate`` ``(rhos, seeds)`` (:func:`fitted_rate`); the largest and
    smallest per-step ratio ``max_step_ratio``, ``min_step_ratio``; ``gamma``.
  """
  with jax.enable_x64(True):
    net = RecurrentNet(cell=cell, hidden=hidden, recurrent_init="orthogonal", rho=1.0,
                       param_dtype=jnp.float64)

    def one(rho, key):
      k_x, k_init = jax.random.split(key)
      x = jax.random.normal(k_x, (batch, length, 1), jnp.float64)
      params = net.init(k_init, x[:1])["params"]
      rec = params["rnn_0"]["cell"]["cell"]["h"]
      params["rnn_0"]["cell"]["cell"]["h"] = {"kernel": rho * rec["kernel"]}
      grads = time_grads(net, params, x, lambda y: 0.5 * jnp.sum(y**2))[0]
      norms = jnp.linalg.norm(grads, axis=-1)
      ratio = norms[:, :-1] / norms[:, 1:]  # (B, T-1): ||dL/dh_t|| / ||dL/dh_{t+1}||
      log_signal = jnp.mean(jnp.log10(norms / norms[:, -1:]), axis=0)
      return log_signal, jnp.max(ratio), jnp.min(ratio)

    keys = jax.random.split(key, seeds)
    over_seeds = jax.vmap(one, in_axes=(None, 0))
    log_signal, hi, lo = (np.asarray(a) for a in sweep(lambda rho: over_seeds(rho, keys),
                                                        jnp.asarray(rhos, jnp.float64)))
  return {"log10_signal": log_signal, "rate": fitted_rate(log_signal), "max_step_ratio": hi,
          "min_step_ratio": lo, "gamma": GAMMA[cell]}


def fitted_rate(log10_signal: np.ndarray) -> np.ndarray:
  r"""The per-step backward growth :math:`10^s`, :math:`s` the least-squares slope in :math:`T - t`.

  Args:
    log10_signal: ``(..., T)``, :math:`\log_{10}\|\partial L/\partial h_t\|`
      relative to :math:`t = T` (a line through 0 at :math:`T - t = 0`).

  Returns:
    ``(...)``: the fitted rate per curve; exactly :math:`\rho` for a linear cell.
  """
  length = np.shape(log10_signal)[-1]
  steps_back = np.arange(length - 1, -1, -1, dtype=float)  # T - t
  slope = np.linalg.lstsq(steps_back[:, None], np.reshape(log10_signal, (-1, length)).T,
                          rcond=None)[0]
  return 10 ** slope.reshape(np.shape(log10_signal)[:-1])


def trained_signal(net: RecurrentNet, *, length: int, num_sequences: int, steps: int,
                   learning_rate: float, batch: int, seeds: int, key: jax.Array) -> dict:
  r""":math:`\|\partial L/\partial h_t\|` of ``net`` on the sine task, at init and after training.

  Each seed draws ``num_sequences`` sine sequences of ``length`` steps, trains
  for ``steps`` steps of ``batch`` sequences sampled with replacement (MSE on
  the next value), and measures the signal, mean over its first ``batch``
  sequences, before and after (seed 000 §5.1, seed 002); ``key`` is split into
  one key per seed.

  Returns:
    ``init`` and ``trained`` ``(seeds, T)``, ``train_loss`` ``(seeds, steps)``.
  """
  tx = optimizers.make_optimizer(optimizers.OptimizerConfig("adam", learning_rate))

  def mse(pred, y):
    return jnp.mean((pred - y) ** 2)

  def one(key):
    k_data, k_init, k_train = jax.random.split(key, 3)
    x, y = data.sine_sequences(k_data, num_sequences, length)
    params = net.init(k_init, x[:1])["params"]
    x_eval, y_eval = x[:batch], y[:batch]
    sample = lambda k: data.sample_batch(k, x, y, batch)  # noqa: E731
    result = training.train(_mse_loss(net), params, tx, sample, steps, key=k_train)

    def signal(p):
      g = time_grads(net, p, x_eval, lambda out: mse(out, y_eval))[0]
      return jnp.linalg.norm(g, axis=-1).mean(0)

    return signal(params), signal(result.params), result.loss

  init, trained, loss = (np.asarray(a) for a in sweep(one, jax.random.split(key, seeds)))
  return {"init": init, "trained": trained, "train_loss": loss}
