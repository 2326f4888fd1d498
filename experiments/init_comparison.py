r"""Seed 000 section 7.1: seven initializations of a deep MLP, per-layer gradients, over seeds.

The seed's ``DeepNet``: ``depth`` = 20 Dense layers (10 -> 100 -> ... -> 100 -> 1),
relu or tanh, biases 0, MSE against random targets on one random batch of 32
(x, t ~ N(0, 1)). For each initialization it plots one network's per-layer
weight-gradient norm :math:`\|\partial L/\partial W_l\|_F`. Here every curve
is the median over ``--seeds`` networks (each with its own batch, shared by the
seven initializations) with an interquartile band, beside the per-layer
backprop signal :math:`s_l = \mathbb E_b \|\partial L/\partial z_l[b]\|`
(z_l the pre-activation; :func:`jaxgrad.diagnostics.backprop_signal`). All
seeds and all seven initializations of one activation run in ONE vmapped,
jitted program: the parameters of each initialization are drawn by its own
(vmapped) ``init`` and stacked along a leading arm axis; they all have the same
shapes.

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

    python -m experiments.init_comparison            # 20 seeds, ~40 s on 2 cores
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

from experiments import _cli

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import activations, diagnostics, initializers, plotting, theory  # noqa: E402
from jaxgrad.models import DeepMLP  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

INITS = ("xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "orthogonal",
         "uniform_small", "normal_small")
KAIMING_GAINS = ("he", "torch")
# torch.nn.init.calculate_gain(nonlinearity)
TORCH_GAIN = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "sigmoid": 1.0, "linear": 1.0,
              "selu": 0.75}
SMALL = 0.01  # the seed's U(-0.01, 0.01) and N(0, 0.01^2)
# XLA's RngBitGenerator for the random bits (splits stay threefry): compiling
# threefry for the parameters of 7 x 20 networks took 12 s of CPU time here,
# "rbg" 4.5 s. Keys are typed, so this choice stays local to these experiments.
PRNG_IMPL = "rbg"


@dataclasses.dataclass(frozen=True)
class Config:
  depth: int = dataclasses.field(default=20, metadata={"help": "Dense layers, input and output included"})
  width: int = 100
  in_features: int = 10
  batch: int = 32
  activations: tuple[str, ...] = ("relu", "tanh")
  inits: tuple[str, ...] = dataclasses.field(default=INITS, metadata={"help": f"from {INITS}"})
  seeds: int = dataclasses.field(default=20, metadata={"help": "networks (and batches) per curve"})
  kaiming_gain: str = dataclasses.field(
      default="he", metadata={"help": "he: Var = 2/fan_in; torch: PyTorch's gain^2/fan_in",
                              "choices": KAIMING_GAINS})
  seed: int = 0

  def __post_init__(self):
    for name in ("depth", "width", "in_features", "batch", "seeds"):
      value = getattr(self, name)
      minimum = 2 if name == "depth" else 1
      if not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not self.activations:
      raise ValueError("activations must name at least one activation")
    for a in self.activations:
      activations.get(a)
      if self.kaiming_gain == "torch" and a not in TORCH_GAIN:
        raise ValueError(f"no PyTorch gain for activation {a!r}; known: {tuple(TORCH_GAIN)}")
    if not self.inits:
      raise ValueError("inits must name at least one initialization")
    for name in self.inits:
      if name not in INITS:
        raise ValueError(f"unknown init {name!r}; valid choices: {INITS}")
    if self.kaiming_gain not in KAIMING_GAINS:
      raise ValueError(f"unknown kaiming_gain {self.kaiming_gain!r}; valid choices: {KAIMING_GAINS}")

  @classmethod
  def quick(cls) -> "Config":
    return cls(seeds=8)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(depth=6, width=8, in_features=3, batch=4, seeds=3)


def kernel_init(name: str, activation: str, kaiming_gain: str = "he"):
  """The Flax initializer for one of :data:`INITS` (He with PyTorch's gain if asked)."""
  if kaiming_gain == "torch" and name in ("he_normal", "he_uniform"):
    distribution = "normal" if name == "he_normal" else "uniform"
    return jax.nn.initializers.variance_scaling(TORCH_GAIN[activation] ** 2, "fan_in", distribution)
  return initializers.get(name)


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


@functools.partial(jax.jit, static_argnums=(0, 3))
def _derivative_moments(activation: str, q1: float, sigma_w2: float, layers: int) -> jax.Array:
  r""":math:`\mu_1(q_l)` along the length map's iterates from ``q1``, zero bias: one program
  per depth (op by op it was ten small compiles, each traced again on every run)."""
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
    mu1 = np.asarray(_derivative_moments(activation, sigma_w2[0] * q_input, hidden, depth - 1))
  factors = np.asarray(sigma_w2[1:], dtype=np.float64) * mu1  # delta_{l+1} -> delta_l, l = 1..L-1
  log_sq = np.concatenate([np.cumsum(np.log(factors)[::-1])[::-1], [0.0]])
  return np.exp(0.5 * log_sq)


def _cast(tree, dtype):
  return jax.tree.map(lambda a: a.astype(dtype), tree)


def gradient_profile(model: DeepMLP, variables, x: jax.Array, target: jax.Array) -> dict:
  r"""Per-layer gradient measurements of one network on one batch, input to output.

  The gradient is computed in float32 (the parameters' dtype); norms are
  reduced in float64 (must run under ``jax.enable_x64``): the loss is written
  as a function of float64 variables cast to float32, so its gradient is the
  float32 gradient, converted exactly.

  Returns:
    dict of (L,) arrays: ``weight`` (||dL/dW_l||_F, float64 reduction),
    ``weight_f32`` (the same reduced naively in float32, sqrt(sum g^2) as
    ``jnp.linalg.norm`` computes it), ``signal`` and ``signal_f32`` (backprop
    signal E_b||dL/dz_l[b]||, likewise), ``zero_entries``
    (number of exactly-zero entries of dL/dW_l).
  """
  def loss_fn(v):
    return jnp.mean((model.apply(v, x) - target) ** 2)

  def loss64(v):
    return loss_fn(_cast(v, jnp.float32))

  variables64 = _cast(variables, jnp.float64)
  grads = jax.grad(loss64)(variables64)["params"]
  return {
      "weight": diagnostics.layer_grad_norms(grads).stack(),
      "weight_f32": diagnostics.per_layer(_cast(grads, jnp.float32), "kernel",
                                         jnp.linalg.norm).stack(),
      "signal": diagnostics.backprop_signal(loss64, variables64).stack(),
      "signal_f32": diagnostics.per_layer(
          diagnostics.perturbation_grads(loss_fn, variables), "preact",
          lambda g: jnp.mean(jnp.linalg.norm(g.reshape(g.shape[0], -1), axis=-1))).stack(),
      "zero_entries": diagnostics.per_layer(grads, "kernel", lambda g: jnp.sum(g == 0)).stack(),
  }


def random_batches(key: jax.Array, seeds: int, batch: int, in_features: int, out_features: int = 1):
  """The seed's data, one batch per seed: x, t ~ N(0, 1), float32."""
  kx, kt = jax.random.split(key)
  x = jax.random.normal(kx, (seeds, batch, in_features), jnp.float32)
  t = jax.random.normal(kt, (seeds, batch, out_features), jnp.float32)
  return x, t


def switch_init(arm: jax.Array, inits: list) -> Callable:
  """An initializer that draws from ``inits[arm]`` (``arm`` may be traced).

  Under ``vmap`` over ``arm`` every arm's parameters come from ONE traced
  ``init`` (every initializer runs, ``lax.switch`` selects), so one compile
  serves all arms; for a given key the draw is that of ``inits[arm]`` alone.
  """
  def init(key, shape, dtype=jnp.float32):
    branches = [functools.partial(f, shape=shape, dtype=dtype) for f in inits]
    return jax.lax.switch(arm, branches, key)

  return init


def init_arms(make_model: Callable[..., DeepMLP], inits: list, key: jax.Array, x: jax.Array):
  """Variables of every arm (initializer) x seed, stacked (arms, seeds, ...), one program.

  Args:
    make_model: ``make_model(kernel_init=...) -> DeepMLP``; all arms share
      every other field.
    inits: the arms' Flax kernel initializers.
    key: arm a, seed s is initialised with ``split(fold_in(key, a), seeds)[s]``.
    x: (seeds, batch, in_features), fixes the perturbation shapes.
  """
  seeds = x.shape[0]
  keys = jnp.stack([jax.random.split(jax.random.fold_in(key, a), seeds)
                    for a in range(len(inits))])

  def one(arm, key, x):
    return make_model(kernel_init=switch_init(arm, inits)).init(key, x)

  over_seeds = jax.vmap(one, in_axes=(None, 0, 0))
  return sweep(lambda arm, arm_keys: over_seeds(arm, arm_keys, x), jnp.arange(len(inits)), keys)


def profile_arms(model: DeepMLP, variables, x: jax.Array, t: jax.Array) -> dict[str, np.ndarray]:
  """:func:`gradient_profile` of stacked (arms, seeds) variables, one jitted program.

  Seed s uses the batch ``x[s], t[s]`` in every arm. Must run under
  ``jax.enable_x64``. Returns (arms, seeds, L) arrays.
  """
  over_seeds = jax.vmap(functools.partial(gradient_profile, model))
  return {k: np.asarray(v) for k, v in sweep(lambda v: over_seeds(v, x, t), variables).items()}


def measure_arms(make_model: Callable[..., DeepMLP], inits: list, key: jax.Array, seeds: int,
                 batch: int, in_features: int) -> dict[str, np.ndarray]:
  """Every initializer (arm) x every seed: :func:`init_arms`, then :func:`profile_arms`.

  Seed s uses the same random batch in every arm. Must run under
  ``jax.enable_x64`` (see :func:`gradient_profile`).

  Returns:
    The :func:`gradient_profile` entries with shape (arms, seeds, L).
  """
  k_data, k_params = jax.random.split(key)
  model = make_model(kernel_init=inits[0])
  x, t = random_batches(k_data, seeds, batch, in_features, model.out_features)
  return profile_arms(model, init_arms(make_model, inits, k_params, x), x, t)


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


def run(config: Config, out_dir: pathlib.Path) -> dict:
  """One program per activation; writes results.json and one figure per activation."""
  fans = layer_fans(config.depth, config.width, config.in_features)
  per_activation = {}
  with jax.enable_x64(True):
    for i, act in enumerate(_cli.progress(config.activations, desc="activations")):
      make_model = functools.partial(DeepMLP, config.depth, config.width, 1, activation=act,
                                     bias_init="zeros")
      inits = [kernel_init(name, act, config.kaiming_gain) for name in config.inits]
      key = jax.random.fold_in(jax.random.key(config.seed, impl=PRNG_IMPL), i)
      m = measure_arms(make_model, inits, key, config.seeds, config.batch, config.in_features)
      arms = {}
      for a, name in enumerate(config.inits):
        sigma_w2 = [fi * weight_variance(name, fi, fo, act, config.kaiming_gain) for fi, fo in fans]
        arm = summarize_arm({k: v[a] for k, v in m.items()})
        arm["sigma_w2"] = sigma_w2
        arm["theory_signal"] = predicted_signal(act, sigma_w2) * arm["signal"]["median"][-1]
        arms[name] = arm
      per_activation[act] = arms
  results = {"config": config, "layers": np.arange(1, config.depth + 1),
             "float32_tiny": float(np.finfo(np.float32).tiny), "activations": per_activation}
  _cli.write_json(out_dir / "results.json", results)
  plot(results, out_dir)
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


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__)


if __name__ == "__main__":
  main()
