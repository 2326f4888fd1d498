r"""Pre-LN vs post-LN Transformers: gradients at init, attention scaling, LR warmup.

On a synthetic task, reversing a random token sequence (:func:`reversal_batch`,
target[t] = token[T-1-t], cross-entropy per position), a
:class:`jaxgrad.models.transformer.Transformer` with LayerNorm after
(post-LN) or before (pre-LN) every sublayer:

* :func:`init_grad_norms`: ||dL/dW2_l||_F of every layer's second FFN weight at
  init, with the residual stream's length and token similarity; :func:`depth_sweep`
  over norm positions and depths. Xiong et al. (2020): post-LN's gradients near
  the output are large and do not shrink with depth, pre-LN's scale like
  :math:`1/\sqrt L`; :func:`depth_summary` fits the slope against depth and
  :func:`last_layer_theory` checks the pre-LN last layer against the final
  LayerNorm's :math:`q_L^{-1/2}`;
* :func:`profile_ablation`: the per-layer profile for the settings of
  :data:`ABLATIONS` (down to the simplified model of Xiong's analysis);
* :func:`attention_stats`: one attention layer with and without the
  :math:`1/\sqrt{d_k}` scale (Vaswani et al. 2017); :func:`attention_sweep`
  over head sizes;
* :func:`train_arms`: Adam with a constant rate vs a linear warmup
  (:func:`warmup_schedule`); :func:`warmup_comparison` per norm position,
  against :func:`chance_loss`.

Keys use JAX's ``rbg`` PRNG (:func:`~jaxgrad.sweep.rbg_key`): XLA's CPU compile of threefry for
many tensors is ~8x slower.
"""

import dataclasses
import math
from collections.abc import Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgrad import diagnostics, optimizers, training
from jaxgrad.models import transformer
from jaxgrad.models.stack import STACK_NAME
from jaxgrad.stats import quartiles
from jaxgrad.sweep import rbg_key, sweep, sweep_grid

STACK = "hidden"  # the Transformer's TransformerStack; its blocks are STACK/STACK_NAME
FFN_OUT = "mlp_out"  # a block's second FFN Dense, W2
ACTIVATIONS = {"gelu": nn.gelu, "relu": nn.relu}  # nn.gelu: the tanh form the model always used
# Per-layer profile ablation: name -> overrides of (activation, d_ff, kernel_init, attention);
# absent keys keep the Setting's value, "d_model" sets d_ff = d_model.
ABLATIONS = {
    "default": {},
    "no attention": {"attention": False},
    "ReLU": {"activation": "relu"},
    "ReLU, no attention": {"activation": "relu", "attention": False},
    "Xiong's simplified model": {"activation": "relu", "attention": False, "d_ff": "d_model",
                                 "kernel_init": "lecun_normal"},
}



@dataclasses.dataclass(frozen=True)
class Setting:
  """The reversal task and every Transformer hyperparameter but depth and norm position.

  Attributes:
    vocab, seq_len: the task's tokens and sequence length T.
    d_model, num_heads, d_ff: the residual width, heads and MLP width.
    ffn_activation: a key of :data:`ACTIVATIONS`.
    attention: attention sublayers (off: MLP-only blocks).
    kernel_init: initializer of every Dense kernel (:mod:`jaxgrad.initializers`).
  """
  vocab: int
  seq_len: int
  d_model: int
  num_heads: int
  d_ff: int
  ffn_activation: str = "gelu"
  attention: bool = True
  kernel_init: str = "xavier_uniform"


def reversal_batch(key: jax.Array, setting: Setting, batch: int) -> tuple[jax.Array, jax.Array]:
  """Random tokens ``(batch, T)`` and their reversal, the per-position targets."""
  tokens = jax.random.randint(key, (batch, setting.seq_len), 0, setting.vocab)
  return tokens, tokens[:, ::-1]


def make_model(setting: Setting, depth: int, norm_position: str) -> transformer.Transformer:
  """The Transformer of ``setting`` with ``depth`` blocks, LayerNorm ``"pre"`` or ``"post"``."""
  return transformer.Transformer(
      vocab_size=setting.vocab, max_len=setting.seq_len, out_features=setting.vocab,
      d_model=setting.d_model, depth=depth, num_heads=setting.num_heads, d_ff=setting.d_ff,
      norm_position=norm_position, kernel_init=setting.kernel_init,
      activation=ACTIVATIONS[setting.ffn_activation], attention=setting.attention)


def ablated(setting: Setting, name: str) -> Setting:
  """``setting`` with the overrides of ``ABLATIONS[name]``."""
  overrides = {{"activation": "ffn_activation"}.get(k, k): v
               for k, v in ABLATIONS[name].items()}
  if overrides.get("d_ff") == "d_model":
    overrides["d_ff"] = setting.d_model
  return dataclasses.replace(setting, **overrides)


def stream_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  r"""Length and token similarity of residual streams ``(..., batch, T, d)``.

  Returns:
    ``q = mean_{b,t} ||x_{bt}||^2 / d`` and the mean cosine between different
    tokens of one sequence, :math:`\overline{\cos(x_{bt}, x_{bs})}_{t \ne s}`,
    both of shape ``x.shape[:-3]``.
  """
  t = x.shape[-2]
  q = jnp.mean(jnp.mean(x * x, axis=-1), axis=(-2, -1))
  unit = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  gram = jnp.einsum("...td,...sd->...ts", unit, unit)
  cosine = (jnp.sum(gram, axis=(-2, -1)) - t) / (t * (t - 1))
  return q, jnp.mean(cosine, axis=-1)


def cross_entropy(model, params, batch) -> jax.Array:
  """Mean per-position softmax cross-entropy of ``model`` on ``(tokens, targets)``."""
  tokens, targets = batch
  logits = model.apply({"params": params}, tokens)
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def init_grad_norms(setting: Setting, depth: int, norm_position: str, *, batch: int,
                    seeds: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Gradient norms and the residual stream at initialization, per seed.

  Args:
    setting, depth, norm_position: the network (:func:`make_model`).
    batch: sequences in the loss.
    seeds: networks, keyed by ``split(rbg_key(seed), seeds)``.

  Returns:
    ``grad_norm`` ||dL/dW2_l|| ``(seeds, depth)``, and the residual stream's
    ``q`` and ``token_cosine`` (:func:`stream_stats`) ``(seeds, depth + 1)``,
    index 0 the embeddings entering the stack (pre-LN: before the final LayerNorm).
  """
  model = make_model(setting, depth, norm_position)

  def one(k):
    k_init, k_data = jax.random.split(k)
    tokens, targets = reversal_batch(k_data, setting, batch)
    params = model.init(k_init, tokens)["params"]

    def loss(p):
      logits, state = model.apply({"params": p}, tokens, mutable=[transformer.STREAM])
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
      return ce, state[transformer.STREAM][STACK]

    grads, stream = jax.grad(loss, has_aux=True)(params)
    w2 = grads[STACK][STACK_NAME][FFN_OUT]["kernel"]  # (depth, d_ff, d_model), scan order
    (x0,) = stream[transformer.STREAM_IN]
    (xs,) = stream[STACK_NAME][transformer.RESIDUAL]
    q, cosine = stream_stats(jnp.concatenate([x0[None], xs]))
    return {"grad_norm": jax.vmap(diagnostics.safe_norm)(w2), "q": q, "token_cosine": cosine}

  return jax.tree.map(np.asarray, sweep(one, jax.random.split(rbg_key(seed), seeds)))


def depth_sweep(setting: Setting, cases: Iterable[tuple[str, int]], *, batch: int, seeds: int,
                seed: int = 0) -> tuple[dict, dict]:
  """:func:`init_grad_norms` per ``(norm_position, depth)`` of ``cases``, summarised over seeds.

  Args:
    setting: the task and the network but its depth and norm position.
    cases: ``(norm_position, depth)`` pairs, any iterable (a progress bar, say).
    batch, seeds, seed: as in :func:`init_grad_norms`.

  Returns:
    ``(grad_norms, stream)``, both keyed ``[norm_position][str(depth)]``:
    the :func:`~jaxgrad.stats.quartiles` of ||dL/dW2_l|| over seeds (``per_seed``
    ``(seeds, depth)``), and of the stream's ``q`` and ``token_cosine``
    (``(seeds, depth + 1)``).
  """
  grad_norms, stream = {}, {}
  for position, depth in cases:
    m = init_grad_norms(setting, depth, position, batch=batch, seeds=seeds, seed=seed)
    grad_norms.setdefault(position, {})[str(depth)] = quartiles(m["grad_norm"])
    stream.setdefault(position, {})[str(depth)] = {"q": quartiles(m["q"]),
                                                   "token_cosine": quartiles(m["token_cosine"])}
  return grad_norms, stream


def layer_across_depths(sweep_of_one_position: dict, depths: Iterable[int],
                        layer: int) -> np.ndarray:
  """Entry ``layer`` of every depth's per-seed samples, ``(seeds, depths)``.

  Args:
    sweep_of_one_position: ``{str(depth): {"per_seed": (seeds, n_depth)}}``, e.g.
      ``grad_norms["pre"]`` of :func:`depth_sweep`.
    depths: which depths, in order.
    layer: the index into each depth's samples (``-1``: the last layer; for the
      stream's ``q``, ``0``: the embeddings).
  """
  return np.stack([np.asarray(sweep_of_one_position[str(d)]["per_seed"])[:, layer]
                   for d in depths], axis=1)


def profile_ablation(setting: Setting, names: Iterable[str], depth: int, *, batch: int,
                     seeds: int, seed: int = 0) -> dict:
  """Per-layer ||dL/dW2_l|| at ``depth`` for each ablation in ``names`` (keys of :data:`ABLATIONS`).

  Returns:
    Per ablation, its ``overrides`` and, per norm position, the per-layer
    ``grad_norm`` quartiles, ``last_over_first`` (median over seeds of
    ||dL/dW2_L|| / ||dL/dW2_1||) and the stream's ``q`` quartiles.
  """
  out = {}
  for name in names:
    out[name] = {"overrides": ABLATIONS[name]}
    for position in transformer.NORM_POSITIONS:
      m = init_grad_norms(ablated(setting, name), depth, position, batch=batch, seeds=seeds,
                          seed=seed)
      out[name][position] = {
          "grad_norm": quartiles(m["grad_norm"]), "q": quartiles(m["q"]),
          "last_over_first": float(np.median(m["grad_norm"][:, -1] / m["grad_norm"][:, 0]))}
  return out


def attention_stats(head_dim: int, *, batch: int, seq_len: int, seeds: int,
                    seed: int = 0) -> dict:
  r"""Logit std within a row, row entropy / log T and max probability, scaled vs unscaled.

  One single-head attention layer on LayerNormed inputs :math:`x`
  ``(batch, seq_len, head_dim)``. A logit :math:`q \cdot k` sums :math:`d_k`
  products of unit-variance entries, so its standard deviation within a row is
  :math:`\sqrt{d_k}` unscaled and 1 scaled; unscaled, the softmax saturates as
  :math:`d_k` grows. Both variants use the same parameters and inputs, so
  their logits differ by exactly the factor :math:`\sqrt{d_k}`.

  Returns:
    ``{"scaled", "unscaled"}`` -> ``logit_std``, ``entropy``, ``max_prob``, each ``(seeds,)``.
  """
  attn = {s: transformer.MultiHeadSelfAttention(num_heads=1, scale_attention=s)
          for s in (True, False)}

  def one(k):
    k_x, k_init = jax.random.split(k)
    x = jax.random.normal(k_x, (batch, seq_len, head_dim))
    x = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)  # LayerNormed input
    params = attn[True].init(k_init, x)["params"]
    out = {}
    for scaled, module in attn.items():
      _, state = module.apply({"params": params}, x, mutable=["intermediates"])
      (probs,) = state["intermediates"][transformer.ATTENTION]
      (logits,) = state["intermediates"][transformer.LOGITS]
      entropy = -jnp.sum(jnp.where(probs > 0, probs * jnp.log(probs), 0.0), axis=-1)
      out["scaled" if scaled else "unscaled"] = {
          "logit_std": jnp.mean(jnp.std(logits, axis=-1)),
          "entropy": jnp.mean(entropy) / math.log(seq_len),
          "max_prob": jnp.mean(jnp.max(probs, axis=-1)),
      }
    return out

  keys = jax.random.split(jax.random.fold_in(rbg_key(seed), head_dim), seeds)
  return jax.tree.map(np.asarray, sweep(one, keys))


def attention_sweep(head_dims: Iterable[int], *, batch: int, seq_len: int, seeds: int,
                    seed: int = 0) -> dict:
  r""":func:`attention_stats` for each head size, summarised over seeds, beside the theory.

  Args:
    head_dims: the head sizes :math:`d_k`, any iterable (a progress bar, say).
    batch, seq_len, seeds, seed: as in :func:`attention_stats`.

  Returns:
    ``head_dims`` (a tuple); per variant ``scaled`` / ``unscaled`` and statistic
    (``logit_std``, ``entropy``, ``max_prob``) the quartiles over seeds
    (``per_seed`` ``(seeds, head_dims)``); ``theory_logit_std``: 1 scaled,
    :math:`\sqrt{d_k}` unscaled; ``unscaled_over_scaled_logit_std``: the median
    over seeds of the ratio, :math:`\sqrt{d_k}` exactly (same parameters and inputs).
  """
  per_dim = [(d, attention_stats(d, batch=batch, seq_len=seq_len, seeds=seeds, seed=seed))
             for d in head_dims]
  dims = tuple(d for d, _ in per_dim)
  out = {"head_dims": dims, "scaled": {}, "unscaled": {},
         "theory_logit_std": {"scaled": [1.0] * len(dims),
                              "unscaled": [math.sqrt(d) for d in dims]}}
  for variant in ("scaled", "unscaled"):
    for stat in ("logit_std", "entropy", "max_prob"):
      samples = np.stack([s[variant][stat] for _, s in per_dim], axis=1)  # (seeds, dims)
      out[variant][stat] = quartiles(samples)
  out["unscaled_over_scaled_logit_std"] = [
      float(np.median(s["unscaled"]["logit_std"] / s["scaled"]["logit_std"])) for _, s in per_dim]
  return out


def warmup_schedule(peak: float, warmup_steps: jax.Array) -> optax.Schedule:
  """``optax.linear_schedule(0, peak, warmup_steps)``, constant ``peak`` when ``warmup_steps`` is 0.

  ``warmup_steps`` may be traced, so both arms of the comparison share one program.
  """
  def schedule(count):
    ramp = jnp.minimum(count / jnp.maximum(warmup_steps, 1), 1.0)
    return peak * jnp.where(warmup_steps > 0, ramp, 1.0)
  return schedule


def train_arms(setting: Setting, depth: int, norm_position: str, *, batch: int, steps: int,
               learning_rate: float, warmup_steps: int, seeds: int,
               seed: int = 0) -> training.TrainResult:
  """Adam on the reversal task, without then with linear warmup: leading axes (2, seeds).

  Both arms and all seeds run in one vmapped program; seed s starts from the
  same parameters and draws the same batches in either arm.

  Args:
    setting, depth, norm_position: the network (:func:`make_model`).
    batch, steps: Adam's batch and steps.
    learning_rate: the peak rate, reached after ``warmup_steps`` in the second arm.
    seeds: runs, keyed by ``split(fold_in(rbg_key(seed), 1), seeds)``.
  """
  model = make_model(setting, depth, norm_position)
  loss_fn = lambda params, state, b: (cross_entropy(model, params, b), state)  # noqa: E731
  sample = lambda k: reversal_batch(k, setting, batch)  # noqa: E731

  def one(k, warmup):
    k_init, k_train = jax.random.split(k)
    params = model.init(k_init, sample(k_init)[0])["params"]
    optimizer = optimizers.make_optimizer(optimizers.OptimizerConfig(
        "adam", learning_rate=warmup_schedule(learning_rate, warmup)))
    return training.train(loss_fn, params, optimizer, sample, steps, key=k_train)

  keys = jax.random.split(jax.random.fold_in(rbg_key(seed), 1), seeds)
  out = sweep_grid(one, keys, jnp.asarray([0, warmup_steps]))
  return jax.tree.map(np.asarray, out)


def warmup_comparison(setting: Setting, depth: int, norm_positions: Iterable[str], *, batch: int,
                      steps: int, learning_rate: float, warmup_steps: int, seeds: int,
                      seed: int = 0) -> dict:
  """:func:`train_arms` for each norm position, each arm summarised over seeds.

  Args:
    setting, depth: the network (:func:`make_model`).
    norm_positions: ``"pre"`` / ``"post"``, any iterable (a progress bar, say).
    batch, steps, learning_rate, warmup_steps, seeds, seed: as in :func:`train_arms`.

  Returns:
    Per arm, named ``"{position}-LN, warmup"`` or ``"... no warmup"``: its
    ``norm_position`` and ``warmup``, the quartiles over seeds of the ``loss`` and
    ``grad_norm`` per step, ``final_loss_per_seed`` (the mean loss over the last
    ``max(1, steps // 10)`` steps) and ``diverged_at`` (-1: never) per seed.
  """
  out = {}
  tail = max(1, steps // 10)
  for position in norm_positions:
    both = train_arms(setting, depth, position, batch=batch, steps=steps,
                      learning_rate=learning_rate, warmup_steps=warmup_steps, seeds=seeds,
                      seed=seed)
    for a, use_warmup in enumerate((False, True)):
      result = jax.tree.map(lambda x, a=a: x[a], both)
      out[f"{position}-LN, {'warmup' if use_warmup else 'no warmup'}"] = {
          "norm_position": position, "warmup": use_warmup,
          "loss": quartiles(result.loss), "grad_norm": quartiles(result.grad_norm),
          "final_loss_per_seed": result.loss[:, -tail:].mean(axis=1),
          "diverged_at": result.diverged_at,
      }
  return out


def chance_loss(vocab: int) -> float:
  r"""The cross-entropy of the uniform prediction over ``vocab`` tokens, :math:`\log V`."""
  return math.log(vocab)


def loglog_slope(x, y) -> float:
  """Least-squares slope of log y against log x."""
  return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def last_layer_theory(depths: tuple[int, ...], grad_last: np.ndarray, q_0: np.ndarray,
                      q_last: np.ndarray) -> dict:
  r"""Pre-LN's last-layer gradient against the final LayerNorm's 1/sqrt(q_L).

  The last block's output :math:`x_L` reaches the head through the final
  LayerNorm, whose Jacobian is :math:`(I - \tfrac{1}{d}\mathbf{1}\mathbf{1}^\top
  - \tfrac{1}{d}\hat x\hat x^\top)/\sigma(x_L)`, so

  .. math::

     \|\partial L/\partial W_2^L\| = c_L\, q_L^{-1/2}, \qquad q_L = q_0 + L v,
     \qquad \frac{d \log \|\partial L/\partial W_2^L\|}{d \log L}
     = -\frac{1}{2}\frac{L v}{q_0 + L v} + \frac{d \log c_L}{d \log L}
     \quad (v \text{ constant}).

  Args:
    depths: the depths L, increasing.
    grad_last: ||dL/dW2_L|| per seed and depth, ``(seeds, depths)``.
    q_0, q_last: the stream's q at the embeddings and after the last block, same shape.

  Returns:
    Medians over seeds per depth (``grad``, ``q_0``, ``q_L``, ``v`` = (q_L - q_0)/L,
    ``c`` = grad sqrt(q_L), ``linear_growth_slope`` = -L v / 2 (q_0 + L v)),
    ``predicted`` = grad at the first depth times sqrt(q_L(first) / q_L) (c constant),
    and between consecutive depths the local slopes ``measured``, ``predicted``
    (-0.5 d log q_L / d log L) and ``residual`` (d log c / d log L), with the
    ``midpoints`` (geometric) they belong to.
  """
  depths_f = np.asarray(depths, float)
  v = (q_last - q_0) / depths_f
  med = lambda a: np.median(a, axis=0)  # noqa: E731
  grad, q_l, c = med(grad_last), med(q_last), med(grad_last * np.sqrt(q_last))
  local = lambda y: np.diff(np.log(y)) / np.diff(np.log(depths_f))  # noqa: E731
  return {"depths": list(depths), "grad": grad, "q_0": med(q_0), "q_L": q_l, "v": med(v), "c": c,
          "linear_growth_slope": med(-0.5 * depths_f * v / (q_0 + depths_f * v)),
          "predicted": grad[0] * np.sqrt(q_l[0] / q_l),
          "local_slopes": {"midpoints": np.sqrt(depths_f[1:] * depths_f[:-1]),
                           "measured": local(grad), "predicted": -0.5 * local(q_l),
                           "residual": local(c)}}


def depth_summary(depths: tuple[int, ...], grad_norms: dict, stream: dict) -> dict:
  """Last-layer and mean-layer medians against depth, their slope, pre-LN's last-layer theory.

  Args:
    depths: the depths L swept, increasing.
    grad_norms, stream: :func:`depth_sweep`'s results for every position of
      ``grad_norms`` at every depth of ``depths``, pre-LN among them.

  Returns:
    Per norm position, ``last_layer_median`` (median over seeds of ||dL/dW2_L||)
    and ``mean_layer_median`` (median over seeds of the mean over layers) per
    depth; ``last_layer_depth_exponent``: :func:`loglog_slope` of the former
    against depth (``None`` for one depth); ``pre_ln_last_layer``:
    :func:`last_layer_theory` of pre-LN.
  """
  last_layer = {p: [float(sweep[str(d)]["median"][-1]) for d in depths]
                for p, sweep in grad_norms.items()}
  pre_q = {str(d): stream["pre"][str(d)]["q"] for d in depths}
  return {
      "last_layer_median": last_layer,
      "mean_layer_median": {
          p: [float(np.median(np.mean(sweep[str(d)]["per_seed"], axis=1))) for d in depths]
          for p, sweep in grad_norms.items()},
      "last_layer_depth_exponent": (
          {p: loglog_slope(depths, last_layer[p]) for p in grad_norms}
          if len(depths) > 1 else None),
      "pre_ln_last_layer": last_layer_theory(
          depths, layer_across_depths(grad_norms["pre"], depths, -1),
          layer_across_depths(pre_q, depths, 0), layer_across_depths(pre_q, depths, -1)),
  }
