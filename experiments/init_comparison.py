r"""Seed 000 section 7.1: seven initializations of a deep MLP, per-layer gradients, over seeds.

The seed's ``DeepNet``: ``depth`` = 20 Dense layers (10 -> 100 -> ... -> 100 -> 1),
relu or tanh, biases 0, MSE against random targets on one random batch of 32
(x, t ~ N(0, 1)). For each initialization it plots one network's per-layer
weight-gradient norm :math:`\|\partial L/\partial W_l\|_F`. Here every curve
is the median over ``--seeds`` networks (each with its own batch, shared by
every activation and initialization) with an interquartile band, beside the
per-layer backprop signal :math:`s_l = \mathbb E_b \|\partial L/\partial z_l[b]\|`
(z_l the pre-activation; :func:`jaxgrad.diagnostics.backprop_signal`). All
seeds, both activations and all seven initializations run in ONE vmapped,
jitted program that differentiates once per network (the activation a
traced switch: every arm has the same shapes), after one that draws every
network, grouped by initializer (:func:`measure_arms`).

Mean-field theory (dashed) predicts the backprop signal from the output back:
:math:`\mathbb E\|\delta_{l-1}\|^2 = \sigma_{w,l}^2\,\mu_1(q_{l-1})\,
\mathbb E\|\delta_l\|^2`, with :math:`\sigma_{w,l}^2 = \mathrm{fan\_in}_l
\mathrm{Var}(W_l)`, :math:`\mu_1(q) = \mathbb E[\phi'(\sqrt q z)^2]` and
:math:`q_l` from the length map started at :math:`q_1 = \sigma_{w,1}^2`
(unit-variance inputs); the line is anchored at the measured last layer.

Float32 underflow. With the small initializations the gradient entries are
tiny but not zero (normal_small, tanh: about 1e-20 in every layer, since the
forward signal shrinks by sqrt(100 * 0.01^2) = 0.1 per layer and the backward
signal too). Their float32 *norm* is exactly 0: the squares (1e-40) are below
the smallest normal float32 (1.2e-38) and XLA on CPU flushes subnormals to
zero. So the gradient is computed in float32, as in the seed, but every norm is
reduced in float64 (the float32 gradient is exact in float64); the naive
float32 norms are recorded too, and ``results.json`` counts, per layer, the
seeds whose naive float32 norm is 0 and the exactly-zero gradient entries (dead
ReLUs). Since this finding, jaxgrad's own norms (``diagnostics.safe_norm``)
scale by the largest entry before squaring and do not underflow.

Kaiming: the seed calls ``kaiming_*_(w, nonlinearity=activation)``, which for
tanh uses PyTorch's gain 5/3, Var = (25/9) / fan_in. jaxgrad's ``he_*`` is
Var = 2 / fan_in for every activation (``--kaiming-gain he``, the default);
``--kaiming-gain torch`` reproduces the seed (relu's gain sqrt(2) is the same).

    python -m experiments.init_comparison            # 20 seeds: 17 s on 2 cores cold, 7.5 s warm cache
    python -m experiments.init_comparison --quick    # 8 seeds
    python -m experiments.init_comparison --kaiming-gain torch

Writes ``config.json``, ``results.json`` (every plotted number) and
``gradients_<activation>.png`` under ``--out``.
"""

from collections.abc import Callable
import dataclasses
import functools
import math
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import activations, diagnostics, initializers, plotting, probe, theory  # noqa: E402
from jaxgrad.models import DeepMLP  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

INITS = ("xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "orthogonal",
         "uniform_small", "normal_small")
KAIMING_GAINS = ("he", "torch")
# torch.nn.init.calculate_gain(nonlinearity)
TORCH_GAIN = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "sigmoid": 1.0, "linear": 1.0,
              "selu": 0.75}
SMALL = 0.01  # the seed's U(-0.01, 0.01) and N(0, 0.01^2)
# JAX's default PRNG, threefry. "rbg" compiled faster when a switch drew every
# initializer for every network, but its normals run at 38 M/s here against
# threefry's 67 M/s, and under vmap it draws a whole batch from ONE of its keys,
# so vmapped draws are not the draws of each key. Warm runs with threefry:
# init_comparison 8.4 -> 7.5 s, depth_comparison 15.1 -> 12.0 s; cold the same.
PRNG_IMPL = "threefry2x32"


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  depth: int = _config.setting(20, "Dense layers, input and output included", at_least=2)
  width: int = _config.setting(100, at_least=1)
  in_features: int = _config.setting(10, at_least=1)
  batch: int = _config.setting(32, at_least=1)
  activations: tuple[str, ...] = _config.setting(("relu", "tanh"), choices=activations.names)
  inits: tuple[str, ...] = _config.setting(INITS, choices=INITS)
  seeds: int = _config.setting(20, "networks (and batches) per curve", at_least=1)
  kaiming_gain: str = _config.setting("he", "he: Var = 2/fan_in; torch: PyTorch's gain^2/fan_in",
                                      choices=KAIMING_GAINS)
  seed: int = 0

  def relations(self) -> dict[str, str]:
    if self.kaiming_gain == "torch" and any(a not in TORCH_GAIN for a in self.activations):
      return {"activations": f"with kaiming_gain='torch', every item must be one of "
                             f"{tuple(TORCH_GAIN)} (PyTorch's gains)"}
    return {}

  @classmethod
  def quick(cls) -> "Config":
    return cls(seeds=8)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(depth=6, width=8, in_features=3, batch=4, seeds=3)


def kernel_init(name: str, activation: str, kaiming_gain: str = "he"):
  """The Flax initializer for one of :data:`INITS` (He with PyTorch's gain if asked).

  The same initializer is the same object, whatever the activation it is
  asked for, so :func:`init_arms` draws its arms together.
  """
  if kaiming_gain == "torch" and name in ("he_normal", "he_uniform"):
    return _torch_kaiming(name, TORCH_GAIN[activation])
  return _registered(name)


@functools.cache
def _registered(name: str):
  return initializers.get(name)


@functools.cache
def _torch_kaiming(name: str, gain: float):
  distribution = "normal" if name == "he_normal" else "uniform"
  return jax.nn.initializers.variance_scaling(gain**2, "fan_in", distribution)


def weight_variance(name: str, fan_in: int, fan_out: int, activation: str,
                    kaiming_gain: str = "he") -> float:
  """Var(W_ij) of :func:`kernel_init` (the table in :mod:`jaxgrad.initializers`)."""
  if name.startswith("xavier"):
    return 2.0 / (fan_in + fan_out)
  if name.startswith("he"):
    gain2 = TORCH_GAIN[activation] ** 2 if kaiming_gain == "torch" else 2.0
    return gain2 / fan_in
  if name == "orthogonal":
    return 1.0 / max(fan_in, fan_out)
  if name == "uniform_small":
    return SMALL**2 / 3.0
  if name == "normal_small":
    return SMALL**2
  raise ValueError(f"unknown init {name!r}; valid choices: {INITS}")


def layer_fans(depth: int, width: int, in_features: int, out_features: int = 1) -> list[tuple[int, int]]:
  """(fan_in, fan_out) of the ``depth`` Dense layers of :class:`DeepMLP`."""
  return [(in_features, width)] + [(width, width)] * (depth - 2) + [(width, out_features)]


# Layers per compiled length-map program: every depth up to 128 shares one
# program per activation (one per depth was 15 programs in depth_comparison).
MEAN_FIELD_LAYERS = 128


@functools.partial(jax.jit, static_argnums=(0, 3))
def _derivative_moments(activation: str, q1: float, sigma_w2: float, layers: int) -> jax.Array:
  r""":math:`\mu_1(q_l)` along the length map's iterates from ``q1``, zero bias, one program
  (op by op it was ten small compiles, each traced again on every run)."""
  q = theory.length_map_iterates(activation, q1, sigma_w2, 0.0, layers)
  return theory.derivative_moment(activation, q)


def predicted_signal(activation: str, sigma_w2: list[float], q_input: float = 1.0) -> np.ndarray:
  r"""Mean-field backprop signal per layer, relative to the output layer's.

  Args:
    activation: registered name.
    sigma_w2: :math:`\sigma_{w,l}^2 = \mathrm{fan\_in}_l \mathrm{Var}(W_l)` for
      the L layers, input to output; the hidden ones (2..L-1) must be equal,
      as in :class:`DeepMLP`.
    q_input: mean squared input coordinate.

  Returns:
    (L,) float64: :math:`\sqrt{\mathbb E\|\delta_l\|^2 / \mathbb E\|\delta_L\|^2}`
    with :math:`\mathbb E\|\delta_{l-1}\|^2 = \sigma_{w,l}^2 \mu_1(q_{l-1})
    \mathbb E\|\delta_l\|^2`, :math:`q_1 = \sigma_{w,1}^2 q_{in}` and
    :math:`q_l = \sigma_{w,l}^2 \mathbb E[\phi(\sqrt{q_{l-1}} z)^2]` (no bias).
  """
  depth = len(sigma_w2)
  if len(set(sigma_w2[1:-1])) > 1:
    raise ValueError(f"hidden layers must share sigma_w2, got {sigma_w2[1:-1]}")
  hidden = sigma_w2[1] if depth > 2 else 1.0
  with jax.enable_x64(True):
    padded = -(-(depth - 1) // MEAN_FIELD_LAYERS) * MEAN_FIELD_LAYERS
    mu1 = np.asarray(_derivative_moments(activation, sigma_w2[0] * q_input, hidden,
                                         padded))[:depth - 1]
  factors = np.asarray(sigma_w2[1:], dtype=np.float64) * mu1  # delta_{l+1} -> delta_l, l = 1..L-1
  log_sq = np.concatenate([np.cumsum(np.log(factors)[::-1])[::-1], [0.0]])
  return np.exp(0.5 * log_sq)


def _cast(tree, dtype):
  return jax.tree.map(lambda a: a.astype(dtype), tree)


def _naive_example_norm(g: jax.Array) -> jax.Array:
  """mean_b sqrt(sum g[b]^2), reduced in g's dtype as ``jnp.linalg.norm`` does (may underflow)."""
  return jnp.mean(jnp.linalg.norm(g.reshape(g.shape[0], -1), axis=-1))


def gradient_profile(model: DeepMLP, variables, x: jax.Array, target: jax.Array) -> dict:
  r"""Per-layer gradient measurements of one network on one batch, input to output.

  One backward pass, with respect to ``params`` and ``perturbations``
  together, gives :math:`\partial L/\partial W_l` and
  :math:`\partial L/\partial z_l`. It runs in float32 (the parameters'
  dtype); norms are reduced in float64 (must run under ``jax.enable_x64``):
  the loss is written as a function of float64 variables cast to float32, so
  its gradient is the float32 gradient, converted exactly, and casting it back
  to float32 recovers the float32 gradient bit for bit.

  Returns:
    dict of (L,) arrays: ``weight`` (||dL/dW_l||_F, float64 reduction),
    ``weight_f32`` (the same reduced naively in float32, sqrt(sum g^2) as
    ``jnp.linalg.norm`` computes it), ``signal`` and ``signal_f32`` (backprop
    signal E_b||dL/dz_l[b]||, likewise), ``zero_entries``
    (number of exactly-zero entries of dL/dW_l).
  """
  def loss64(v):
    return jnp.mean((model.apply(_cast(v, jnp.float32), x) - target) ** 2)

  grads = jax.grad(loss64)(_cast(variables, jnp.float64))
  weights, preacts = grads["params"], grads[diagnostics.PERTURBATIONS]
  layout = probe.layout(model, jax.ShapeDtypeStruct(x.shape, x.dtype))
  return {
      "weight": diagnostics.layer_grad_norms(weights, layout=layout).stack(),
      "weight_f32": diagnostics.per_layer(_cast(weights, jnp.float32), "kernel",
                                         jnp.linalg.norm, layout=layout).stack(),
      "signal": diagnostics.signal_norms(preacts, layout=layout).stack(),
      "signal_f32": diagnostics.per_layer(_cast(preacts, jnp.float32), "preact",
                                         _naive_example_norm, layout=layout).stack(),
      "zero_entries": diagnostics.per_layer(weights, "kernel", lambda g: jnp.sum(g == 0),
                                           layout=layout).stack(),
  }


def random_batches(key: jax.Array, seeds: int, batch: int, in_features: int, out_features: int = 1):
  """The seed's data, one batch per seed: x, t ~ N(0, 1), float32."""
  kx, kt = jax.random.split(key)
  x = jax.random.normal(kx, (seeds, batch, in_features), jnp.float32)
  t = jax.random.normal(kt, (seeds, batch, out_features), jnp.float32)
  return x, t


def switch_activation(arm: jax.Array, names: list[str]) -> Callable:
  """The activation ``names[arm]``, ``arm`` possibly traced (``lax.switch``).

  Under ``vmap`` over ``arm`` every arm runs through ONE traced model (each
  activation is evaluated, ``lax.switch`` selects), so arms that differ only
  in the activation share a program; the cost is elementwise, the matmuls are
  shared.
  """
  branches = [activations.get(n) for n in names]
  if len(branches) == 1:
    return branches[0]
  return lambda z: jax.lax.switch(arm, branches, z)


def init_arms(make_model: Callable[..., DeepMLP], inits: list[Callable], keys: jax.Array,
              x: jax.Array):
  """Variables of every arm x seed, stacked (arms, seeds, ...), in one jitted program.

  Arms are grouped by initializer (by identity: :func:`kernel_init` returns
  one object per initializer), and each group is drawn by its own vmapped
  ``init``: a traced switch between initializers would, under ``vmap``, draw
  every initializer for every network (7x the random numbers here) and keep
  one. A plain ``jit``, not a :func:`sweep` over seeds: seeds-outer (a sweep
  over seeds, each group's arms vmapped inside, the measurement likewise),
  depth_comparison compiled in 48 s cold against 38 s, for 1.8 s saved warm.

  Args:
    make_model: ``make_model(kernel_init=...) -> DeepMLP``.
    inits: the Flax kernel initializer of each arm.
    keys: (arms, seeds) PRNG keys. Under ``vmap`` an ``rbg`` key array draws
      a whole group from one of its keys (JAX's batching rule for XLA's
      RngBitGenerator): statistically independent networks, but not the draws
      of each key alone; threefry keys give exactly those.
    x: (seeds, batch, in_features), fixes the perturbation shapes.
  """
  groups = list(dict.fromkeys(inits))
  members = [[a for a, i in enumerate(inits) if i is init] for init in groups]
  order = np.argsort(np.concatenate(members), kind="stable")

  def draw(keys, x):
    parts = []
    for init, arms in zip(groups, members):
      over_seeds = jax.vmap(make_model(kernel_init=init).init)
      parts.append(jax.vmap(over_seeds, in_axes=(0, None))(keys[np.asarray(arms)], x))
    return jax.tree.map(lambda *p: jnp.concatenate(p)[order], *parts)

  return jax.jit(draw)(keys, x)


def measure_arms(make_model: Callable[..., DeepMLP], arms: list[tuple[str, Callable]],
                 key: jax.Array, seeds: int, batch: int, in_features: int) -> dict[str, np.ndarray]:
  """Every arm (activation, initializer) x every seed: two jitted programs in all.

  :func:`init_arms` draws the networks; :func:`gradient_profile` measures
  them in one :func:`~jaxgrad.sweep.sweep` over arms (vmapped over seeds),
  the activation a traced switch (:func:`switch_activation`).

  Args:
    make_model: ``make_model(activation=..., kernel_init=...) -> DeepMLP``;
      all arms share every other field.
    arms: ``(activation name, Flax kernel initializer)`` per arm.
    key: split into the data key and the parameter key; arm a, seed s is
      initialised with ``split(fold_in(params_key, a), seeds)[s]`` (but see
      :func:`init_arms` on ``rbg`` keys).
    seeds: networks per arm; seed s uses the same random batch in every arm.

  Must run under ``jax.enable_x64`` (see :func:`gradient_profile`).

  Returns:
    The :func:`gradient_profile` entries with shape (arms, seeds, L).
  """
  names = list(dict.fromkeys(a for a, _ in arms))
  k_data, k_params = jax.random.split(key)
  out_features = make_model().out_features
  x, t = random_batches(k_data, seeds, batch, in_features, out_features)
  keys = jnp.stack([jax.random.split(jax.random.fold_in(k_params, a), seeds)
                    for a in range(len(arms))])
  variables = init_arms(make_model, [i for _, i in arms], keys, x)

  def one(act, v, x, t):
    return gradient_profile(make_model(activation=switch_activation(act, names)), v, x, t)

  over_seeds = jax.vmap(one, in_axes=(None, 0, 0, 0))
  out = sweep(lambda act, v: over_seeds(act, v, x, t),
              jnp.asarray([names.index(a) for a, _ in arms]), variables)
  return {k: np.asarray(v) for k, v in out.items()}


def quantiles(per_seed: np.ndarray) -> dict:
  """(seeds, L) -> median and quartiles over seeds, and the raw values."""
  q25, q50, q75 = np.percentile(per_seed, [25, 50, 75], axis=0)
  return {"median": q50, "q25": q25, "q75": q75, "per_seed": per_seed}


def summarize_arm(m: dict[str, np.ndarray]) -> dict:
  """(seeds, L) measurements of one arm -> quantiles and underflow counts."""
  return {
      "weight": quantiles(m["weight"]),
      "signal": quantiles(m["signal"]),
      "weight_f32_median": np.median(m["weight_f32"], axis=0),
      "signal_f32_median": np.median(m["signal_f32"], axis=0),
      "zeros": {
          # Seeds whose float32 norm of layer l is exactly 0, though the
          # float64 norm of the same float32 gradient is not: norm underflow.
          "weight_f32_norm_underflow": np.sum((m["weight_f32"] == 0) & (m["weight"] > 0), axis=0),
          "signal_f32_norm_underflow": np.sum((m["signal_f32"] == 0) & (m["signal"] > 0), axis=0),
          # Seeds whose whole float32 gradient of layer l is exactly 0.
          "weight_all_zero": np.sum(m["weight"] == 0, axis=0),
          "signal_all_zero": np.sum(m["signal"] == 0, axis=0),
          # Exactly-zero entries of dL/dW_l, median over seeds (dead ReLUs, underflow).
          "zero_entries_median": np.median(m["zero_entries"], axis=0),
      },
  }


def run(config: Config) -> dict:
  """Every activation x initialization in one program; writes results.json and one figure each."""
  fans = layer_fans(config.depth, config.width, config.in_features)
  make_model = functools.partial(DeepMLP, config.depth, config.width, 1, bias_init="zeros")
  arms = [(act, name) for act in config.activations for name in config.inits]
  with jax.enable_x64(True):
    m = measure_arms(make_model, [(act, kernel_init(name, act, config.kaiming_gain))
                                  for act, name in arms],
                     jax.random.key(config.seed, impl=PRNG_IMPL), config.seeds, config.batch,
                     config.in_features)
    per_activation = {act: {} for act in config.activations}
    for a, (act, name) in enumerate(arms):
      sigma_w2 = [fi * weight_variance(name, fi, fo, act, config.kaiming_gain) for fi, fo in fans]
      arm = summarize_arm({k: v[a] for k, v in m.items()})
      arm["sigma_w2"] = sigma_w2
      arm["theory_signal"] = predicted_signal(act, sigma_w2) * arm["signal"]["median"][-1]
      per_activation[act][name] = arm
  results = {"config": config, "layers": np.arange(1, config.depth + 1),
             "float32_tiny": float(np.finfo(np.float32).tiny), "activations": per_activation}
  return results


def plot(results: dict, out_dir: pathlib.Path) -> None:
  layers = np.asarray(results["layers"])
  for act, arms in results["activations"].items():
    fig, axes = plotting.figure(1, 2, panel=(3.7, 3.0))
    for i, (name, arm) in enumerate(arms.items()):
      color = f"C{i}"
      for ax, key in zip(axes[0], ("weight", "signal")):
        plotting.median_band(ax, layers, arm[key]["per_seed"], label=name, color=color, marker="o")
        underflow = np.asarray(arm[f"{key}_f32_median"]) == 0
        if underflow.any():
          ax.plot(layers[underflow], np.asarray(arm[key]["median"])[underflow], "x", color="k",
                  markersize=5)
      plotting.theory_line(axes[0, 1], layers, arm["theory_signal"], color=color)
    axes[0, 0].set_title("weight gradient ‖∂L/∂W_l‖_F\n(×: its float32 norm is 0)")
    axes[0, 1].set_title("backprop signal E_b‖∂L/∂z_l‖\n(dashed: mean field)")
    config = results["config"]
    seeds = config["seeds"] if isinstance(config, dict) else config.seeds
    fig.suptitle(f"{act}: median and IQR over {seeds} seeds", fontsize=9)
    for ax in axes[0]:
      ax.set_yscale("log")
      ax.set_xlabel("layer l")
      ax.set_xticks(layers[:: max(1, len(layers) // 10)])
    axes[0, 1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    plotting.save(fig, out_dir / f"gradients_{act}.png")


def summary(results: dict) -> str:
  header = ["activation", "init", "‖∂L/∂W_1‖", "‖∂L/∂W_L‖", "signal s_1", "theory s_1", "s_L",
            "f32 norm = 0 (layer·seed)", "all-zero"]
  rows = []
  for act, arms in results["activations"].items():
    for name, arm in arms.items():
      w, s, z = arm["weight"]["median"], arm["signal"]["median"], arm["zeros"]
      rows.append([act, name, float(w[0]), float(w[-1]), float(s[0]), float(arm["theory_signal"][0]),
                   float(s[-1]), int(np.sum(z["weight_f32_norm_underflow"])),
                   int(np.sum(z["weight_all_zero"]))])
  return _cli.format_table(header, rows)


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
