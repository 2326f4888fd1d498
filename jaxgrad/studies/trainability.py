r"""Which deep networks train: the depth x :math:`\sigma_w^2` phase diagram and its 6 xi_c line.

Mean-field theory says information about the input survives about
:math:`\xi_c` layers of a random network (:func:`jaxgrad.theory.depth_scales`),
and Schoenholz et al. (2017) found networks trainable iff :math:`L < 6\xi_c`,
the trainable region growing toward that line with training time;
:math:`\xi_c` diverges at the critical point :math:`\chi_1 = 1`
(:math:`\sigma_w^2 = 1.761` for tanh at :math:`\sigma_b^2 = 0.05`).

:func:`train_many` trains many networks of one shape in one vmapped, jitted
program; :func:`train_depth` is one row of the phase diagram;
:func:`six_xi_c` and :func:`overlay` are the theory; :func:`separation` and
:func:`phase_maps` score the rule against the measured maps.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgrad import data, theory, training
from jaxgrad.models import DeepMLP
from jaxgrad.studies.mean_field import scaled_init, unit_inits
from jaxgrad.sweep import sweep

CHANCE = 0.1  # ten classes


def train_many(model, dataset: data.Dataset, optimizer_config: training.OptimizerConfig,
               sigma_w2: jax.Array, sigma_b2: jax.Array, keys: jax.Array, *,
               budgets: tuple[int, ...], batch: int, eval_examples: int,
               weights: str = "gaussian", step_scale: jax.Array | None = None
               ) -> dict[str, np.ndarray]:
  r"""Trains one network per ``(sigma_w2[i], sigma_b2[i], keys[i])`` in one vmapped program.

  Run i starts from :func:`jaxgrad.studies.mean_field.scaled_init` at
  :math:`(\sigma_w^2, \sigma_b^2) = ` ``(sigma_w2[i], sigma_b2[i])`` and
  minimises the softmax cross-entropy on batches of ``dataset``. Each run
  trains for ``budgets[-1]`` steps, in chunks that end at each budget (the
  chunks draw the batches of one uninterrupted run), and its accuracy is read
  at every budget. ``step_scale[i]``, if given, multiplies run i's every
  update (``optax.scale`` after the optimizer): for SGD with momentum, exactly
  a learning rate ``step_scale[i]`` times ``optimizer_config``'s, so runs at
  several learning rates share the program.

  Args:
    model: built with :func:`jaxgrad.studies.mean_field.unit_inits` of ``weights``.
    dataset: the training and test examples.
    optimizer_config: the optimizer of every run.
    sigma_w2: ``(runs,)`` weight variances.
    sigma_b2: ``(runs,)`` bias variances.
    keys: ``(runs,)`` keys, each split into the initialisation's and the batches'.
    budgets: increasing step counts at which the accuracies are read.
    batch: examples per step.
    eval_examples: how many training and test examples the accuracies use.
    weights: ``"gaussian"`` or ``"orthogonal"`` kernels.
    step_scale: ``(runs,)`` update multipliers; ``None``: all 1.

  Returns:
    numpy arrays with a leading run axis: ``loss`` (runs, budgets[-1]);
    ``train_accuracy`` and ``test_accuracy`` (runs, budgets), on the first
    ``eval_examples`` training and test examples; ``diverged_at`` (runs,).
  """
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  evals = {"train": (x[:eval_examples], y[:eval_examples]),
           "test": (jnp.asarray(dataset.x_test)[:eval_examples],
                    jnp.asarray(dataset.y_test)[:eval_examples])}
  optimizer = training.make_optimizer(optimizer_config)
  if step_scale is None:
    step_scale = np.ones(np.shape(sigma_w2), np.float32)

  def loss_fn(params, state, b):
    logits = model.apply({"params": params}, b[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, b[1]).mean(), state

  def accuracy(params, split):
    x_eval, y_eval = evals[split]
    return jnp.mean(jnp.argmax(model.apply({"params": params}, x_eval), -1) == y_eval)

  def one_run(s_w, s_b, key, scale):
    k_init, k_data = jax.random.split(key)
    scaled = optax.chain(optimizer, optax.scale(scale))
    params = scaled_init(model, k_init, x[:1], s_w, s_b, weights)["params"]
    opt_state, losses, scores, diverged_at, done = None, [], [], jnp.asarray(-1), 0
    for budget in budgets:
      result = training.train(loss_fn, params, scaled,
                              lambda k: data.sample_batch(k, x, y, batch), budget - done,
                              key=k_data, opt_state=opt_state, first_step=done)
      diverged_at = jnp.where(diverged_at < 0, result.diverged_at, diverged_at)
      params, opt_state, done = result.params, result.opt_state, budget
      losses.append(result.loss)
      scores.append(jnp.stack([accuracy(params, "train"), accuracy(params, "test")]))
    return jnp.concatenate(losses), jnp.stack(scores), diverged_at

  loss, scores, diverged = (np.asarray(a) for a in sweep(one_run, sigma_w2, sigma_b2, keys,
                                                          step_scale))
  return {"loss": loss, "train_accuracy": scores[..., 0], "test_accuracy": scores[..., 1],
          "diverged_at": diverged}


def train_depth(depth: int, sigma_w2: Sequence[float], sigma_b2: float, *, width: int,
                activation: str, seeds: int, dataset: data.Dataset,
                optimizer_config: training.OptimizerConfig, budgets: tuple[int, ...],
                batch: int, eval_examples: int, key: jax.Array) -> dict[str, np.ndarray]:
  r"""One row of the phase diagram: every :math:`\sigma_w^2` and seed of one depth, in one program.

  Args:
    depth: :math:`L`, the Dense layers of the :class:`jaxgrad.models.DeepMLP`.
    sigma_w2: the grid of :math:`\sigma_w^2`.
    sigma_b2: the bias variance :math:`\sigma_b^2`.
    width: the hidden width.
    activation: a :mod:`jaxgrad.activations` name.
    seeds: networks per :math:`\sigma_w^2`.
    dataset: as in :func:`train_many`.
    optimizer_config: the optimizer at this depth.
    budgets: as in :func:`train_many`.
    batch: examples per step.
    eval_examples: as in :func:`train_many`.
    key: split into one key per network.

  Returns:
    ``train_accuracy`` and ``test_accuracy`` (budgets, grid, seeds),
    ``final_loss`` and ``diverged_at`` (grid, seeds).
  """
  model = DeepMLP(depth=depth, width=width, out_features=dataset.num_classes,
                  activation=activation, **unit_inits())
  grid = np.repeat(np.asarray(sigma_w2, np.float32), seeds)
  out = train_many(model, dataset, optimizer_config, grid, np.full_like(grid, sigma_b2),
                   jax.random.split(key, len(grid)), budgets=budgets, batch=batch,
                   eval_examples=eval_examples)
  cells = (len(sigma_w2), seeds)
  by_budget = lambda a: np.moveaxis(a.reshape(*cells, -1), -1, 0)  # noqa: E731
  return {"train_accuracy": by_budget(out["train_accuracy"]),
          "test_accuracy": by_budget(out["test_accuracy"]),
          "final_loss": out["loss"][:, -1].reshape(cells),
          "diverged_at": out["diverged_at"].reshape(cells)}


def six_xi_c(activation: str, sigma_w2: np.ndarray, sigma_b2: float) -> np.ndarray:
  r""":math:`6\xi_c` on a grid of :math:`\sigma_w^2` (float64; Schoenholz et al. 2017)."""
  with jax.enable_x64(True):
    # lax.map, not vmap: each point's fixed-point iteration stops when it converges.
    xi = jax.lax.map(lambda s: theory.depth_scales(activation, s, sigma_b2)["xi_c"],
                     jnp.asarray(sigma_w2, jnp.float64))
    return 6.0 * np.asarray(xi)


def overlay(activation: str, sigma_w2: Sequence[float], sigma_b2: float,
            points: int) -> dict:
  r"""The theory drawn over the phase diagram.

  Returns:
    ``sigma_w2`` (``points`` values spanning the grid) and ``six_xi_c`` on
    them, ``six_xi_c_on_grid`` on ``sigma_w2`` itself, and
    ``critical_sigma_w2``, where :math:`\chi_1 = 1`.
  """
  fine = np.linspace(min(sigma_w2), max(sigma_w2), points)
  return {"sigma_w2": fine, "six_xi_c": six_xi_c(activation, fine, sigma_b2),
          "six_xi_c_on_grid": six_xi_c(activation, np.asarray(sigma_w2), sigma_b2),
          "critical_sigma_w2": float(theory.critical_sigma_w2(activation, sigma_b2))}


def separation(accuracy: np.ndarray, depths, sigma_w2, activation: str, sigma_b2: float, *,
               chance: float = CHANCE) -> dict:
  r"""How well "trainable iff :math:`L < 6\xi_c`" predicts one measured map.

  A cell counts as trainable when its accuracy is above halfway between
  chance and the best accuracy on the map.

  Args:
    accuracy: ``(depths, grid)`` accuracies; NaN counts as untrainable.
    depths: the maps' depths :math:`L`.
    sigma_w2: the maps' :math:`\sigma_w^2`.
    activation: a :mod:`jaxgrad.activations` name.
    sigma_b2: the bias variance.
    chance: the accuracy of guessing.

  Returns:
    ``threshold``, the boolean maps ``measured_trainable`` and
    ``predicted_trainable``, ``agreement`` (the fraction of cells where they
    agree), ``fraction_trainable``, and the counts ``false_trainable``
    (predicted but not measured) and ``false_untrainable`` (the reverse).
  """
  best = float(np.nanmax(accuracy))
  threshold = chance + 0.5 * (best - chance)
  measured = np.nan_to_num(accuracy, nan=0.0) > threshold
  predicted = np.asarray(depths)[:, None] < six_xi_c(activation, np.asarray(sigma_w2),
                                                    sigma_b2)[None, :]
  return {"threshold": threshold, "measured_trainable": measured, "predicted_trainable": predicted,
          "agreement": float(np.mean(measured == predicted)),
          "fraction_trainable": float(np.mean(measured)),
          "false_trainable": int(np.sum(predicted & ~measured)),
          "false_untrainable": int(np.sum(~predicted & measured))}


def phase_maps(per_depth: Sequence[dict], depths, sigma_w2, activation: str, sigma_b2: float, *,
               chance: float = CHANCE) -> dict:
  """The rows of :func:`train_depth` as maps: medians over seeds, and each budget's :func:`separation`.

  Args:
    per_depth: one :func:`train_depth` result per depth of ``depths``.
    depths, sigma_w2, activation, sigma_b2, chance: as in :func:`separation`.

  Returns:
    ``train_accuracy_median`` and ``test_accuracy_median`` (budgets, depths,
    grid), and ``separation``, one per budget (of the training accuracy).
  """
  train, test = (np.median(np.stack([np.asarray(s[k], dtype=float) for s in per_depth], axis=1),
                           axis=-1) for k in ("train_accuracy", "test_accuracy"))
  return {"train_accuracy_median": train, "test_accuracy_median": test,
          "separation": [separation(m, depths, sigma_w2, activation, sigma_b2, chance=chance)
                         for m in train]}
