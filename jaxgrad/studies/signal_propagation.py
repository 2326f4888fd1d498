r"""Gradients through a deep MLP at initialisation: initialisation arms, per-layer measurement, mean field.

The network is seed 000's ``DeepNet`` (:func:`seed_network`): ``depth`` Dense
layers ``in_features -> width -> ... -> width -> 1``, biases 0, MSE against
random targets on one random batch (:func:`random_batches`). An *arm* is an
(activation, kernel initializer) pair; :func:`measure_arms` draws ``seeds``
networks of every arm and measures, per layer, the weight-gradient norm
:math:`\|\partial L/\partial W_l\|_F` and the backprop signal
:math:`s_l = \mathbb E_b\|\partial L/\partial z_l[b]\|` (:math:`z_l` the
pre-activation), in one jitted program for all arms and seeds.

Mean-field theory (Poole et al. 2016; Schoenholz et al. 2017) predicts the
signal from the output back (:func:`predicted_signal`):
:math:`\mathbb E\|\delta_{l-1}\|^2 = \sigma_{w,l}^2\,\mu_1(q_{l-1})\,
\mathbb E\|\delta_l\|^2`, with :math:`\sigma_{w,l}^2 = \mathrm{fan\_in}_l
\mathrm{Var}(W_l)` (:func:`layer_sigma_w2`) and
:math:`\mu_1(q) = \mathbb E[\phi'(\sqrt q z)^2]`; at the fixed point every
factor is :math:`\chi_1 = \sigma_w^2 \mu_1(q^*)`. He et al. (2015) choose
:math:`\sigma_w^2 = 2` so that relu's :math:`\chi_1 = 1`; Glorot & Bengio
(2010) average fan-in and fan-out.

Float32 underflow: gradients are computed in float32 but their norms reduced
in float64 (:func:`gradient_profile`); the naive float32 norms, which flush to
0 when the squared entries fall below 1.2e-38, are kept beside them and
counted (:func:`summarize_arm`).
"""

from collections.abc import Callable, Sequence
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgrad import activations, diagnostics, initializers, probe, stats, theory
from jaxgrad.models import DeepMLP

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
# Layers per compiled length-map program: every depth up to 128 shares one
# program per activation (one per depth was 15 programs in depth_comparison).
MEAN_FIELD_LAYERS = 128


def seed_network(depth: int, width: int) -> Callable[..., DeepMLP]:
  """Seed 000's ``DeepNet``: ``make_model(activation=..., kernel_init=...) -> DeepMLP``.

  Args:
    depth: Dense layers, input and output included.
    width: hidden units per layer.

  Returns:
    :class:`~jaxgrad.models.DeepMLP` with one output and zero biases, its
    other fields given by the caller.
  """
  return functools.partial(DeepMLP, depth, width, 1, bias_init="zeros")


def kernel_init(name: str, activation: str, kaiming_gain: str = "he"):
  """The Flax initializer for one of :data:`INITS` (He with PyTorch's gain if asked).

  Args:
    name: one of :data:`INITS`.
    activation: the arm's activation (PyTorch's gain depends on it).
    kaiming_gain: ``"he"``, Var = 2 / fan_in (He et al. 2015) for every
      activation; ``"torch"``, Var = gain^2 / fan_in with
      ``torch.nn.init.calculate_gain(activation)`` (tanh: 5/3), as the seed's
      ``kaiming_*_(w, nonlinearity=activation)``.

  Returns:
    The initializer; the same initializer is the same object whatever the
    activation it is asked for, so :func:`measure_arms`'s initializer switch
    (:func:`switch_initializer`) has one branch per initializer, not per arm.
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
  r"""Var(W_ij) of :func:`kernel_init` (the table in :mod:`jaxgrad.initializers`).

  Xavier :math:`2/(\mathrm{fan\_in} + \mathrm{fan\_out})` (Glorot & Bengio
  2010), He :math:`g^2/\mathrm{fan\_in}` with :math:`g^2 = 2` or PyTorch's
  gain squared (He et al. 2015), orthogonal :math:`1/\max(\mathrm{fan\_in},
  \mathrm{fan\_out})` (Saxe et al. 2014), U(-0.01, 0.01) :math:`0.01^2/3`,
  N(0, 0.01^2) :math:`0.01^2`.
  """
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
  """(fan_in, fan_out) of the ``depth`` Dense layers of :class:`~jaxgrad.models.DeepMLP`."""
  return [(in_features, width)] + [(width, width)] * (depth - 2) + [(width, out_features)]


def layer_sigma_w2(name: str, activation: str, fans: Sequence[tuple[int, int]],
                   kaiming_gain: str = "he") -> list[float]:
  r""":math:`\sigma_{w,l}^2 = \mathrm{fan\_in}_l \mathrm{Var}(W_l)` of every layer, input to output.

  Args:
    name: one of :data:`INITS`.
    activation: the arm's activation.
    fans: (fan_in, fan_out) per layer (:func:`layer_fans`).
    kaiming_gain: as in :func:`kernel_init`.
  """
  return [fi * weight_variance(name, fi, fo, activation, kaiming_gain) for fi, fo in fans]


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
      as in :class:`~jaxgrad.models.DeepMLP`.
    q_input: mean squared input coordinate.

  Returns:
    (L,) float64: :math:`\sqrt{\mathbb E\|\delta_l\|^2 / \mathbb E\|\delta_L\|^2}`
    with :math:`\mathbb E\|\delta_{l-1}\|^2 = \sigma_{w,l}^2 \mu_1(q_{l-1})
    \mathbb E\|\delta_l\|^2`, :math:`q_1 = \sigma_{w,1}^2 q_{in}` and
    :math:`q_l = \sigma_{w,l}^2 \mathbb E[\phi(\sqrt{q_{l-1}} z)^2]` (no bias;
    Schoenholz et al. 2017). With equal factors the first entry is
    :math:`\chi_1^{(L-1)/2}`.
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


_float64_norm = functools.partial(diagnostics.safe_norm, dtype=jnp.float64)


def _float64_example_norm(g: jax.Array) -> jax.Array:
  """mean_b of ``safe_norm(g[b])`` reduced in float64 (as :func:`jaxgrad.diagnostics.signal_norms`)."""
  return jnp.mean(jax.vmap(_float64_norm)(g.reshape(g.shape[0], -1)))


def _naive_example_norm(g: jax.Array) -> jax.Array:
  """mean_b sqrt(sum g[b]^2), reduced in g's dtype as ``jnp.linalg.norm`` does (may underflow)."""
  return jnp.mean(jnp.linalg.norm(g.reshape(g.shape[0], -1), axis=-1))


def gradient_profile(model: DeepMLP, variables, x: jax.Array, target: jax.Array) -> dict:
  r"""Per-layer gradient measurements of one network on one batch, input to output.

  One backward pass, with respect to ``params`` and ``perturbations``
  together, gives :math:`\partial L/\partial W_l` and
  :math:`\partial L/\partial z_l`. It runs in float32 (the parameters'
  dtype); norms are reduced in float64 (must run under ``jax.enable_x64``),
  each layer's float32 gradient converted exactly inside its reduction
  (:func:`jaxgrad.diagnostics.safe_norm` with ``dtype=float64``). Float64 copies of the parameters and gradients,
  which converting them whole would hold, doubled the scratch memory of
  depth_comparison's programs.

  Args:
    model: the network; its loss is :math:`L = \mathrm{mean}_b (f(x_b) - t_b)^2`.
    variables: from ``model.init``, float32.
    x: (batch, in_features) inputs.
    target: (batch, out_features) targets.

  Returns:
    dict of (L,) arrays: ``weight`` (||dL/dW_l||_F, float64 reduction),
    ``weight_f32`` (the same reduced naively in float32, sqrt(sum g^2) as
    ``jnp.linalg.norm`` computes it), ``signal`` and ``signal_f32`` (backprop
    signal E_b||dL/dz_l[b]||, likewise), ``zero_entries``
    (number of exactly-zero entries of dL/dW_l).
  """
  def loss(v):
    return jnp.mean((model.apply(v, x) - target) ** 2)

  grads = jax.grad(loss)(variables)
  weights, preacts = grads["params"], grads[diagnostics.PERTURBATIONS]
  layout = probe.layout(model, x, variables=variables)

  def per_layer(tree, leaf, reduce):
    return diagnostics.per_layer(tree, leaf, reduce, layout=layout).stack()

  return {
      "weight": per_layer(weights, "kernel", _float64_norm),
      "weight_f32": per_layer(weights, "kernel", jnp.linalg.norm),
      "signal": per_layer(preacts, "preact", _float64_example_norm),
      "signal_f32": per_layer(preacts, "preact", _naive_example_norm),
      "zero_entries": per_layer(weights, "kernel", lambda g: jnp.sum(g == 0, dtype=jnp.int32)),
  }


def random_batches(key: jax.Array, seeds: int, batch: int, in_features: int,
                   out_features: int = 1) -> tuple[jax.Array, jax.Array]:
  """The seed's data, one batch per seed: x, t ~ N(0, 1), float32, (seeds, batch, features)."""
  kx, kt = jax.random.split(key)
  x = jax.random.normal(kx, (seeds, batch, in_features), jnp.float32)
  t = jax.random.normal(kt, (seeds, batch, out_features), jnp.float32)
  return x, t


def switch_activation(arm: jax.Array, names: list[str]) -> Callable:
  """The activation ``names[arm]``, ``arm`` possibly traced (``lax.switch``).

  Arms that differ only in the activation share one traced model, so one
  program. Under ``jax.lax.map`` over ``arm`` (:func:`measure_arms`) each step
  runs its own branch only; under ``vmap`` every activation is evaluated and
  ``lax.switch`` selects (an elementwise cost, the matmuls are shared).
  """
  branches = [activations.get(n) for n in names]
  if len(branches) == 1:
    return branches[0]
  return lambda z: jax.lax.switch(arm, branches, z)


def switch_initializer(index: jax.Array, inits: list[Callable]) -> Callable:
  """The Flax initializer ``inits[index]``, ``index`` possibly traced (``lax.switch``).

  Arms that differ only in the initializer share one traced model. Under
  ``jax.lax.map`` over ``index`` (:func:`measure_arms`) each step draws with
  its own initializer only; under ``vmap`` every initializer would draw every
  network and one draw be kept.
  """
  if len(inits) == 1:
    return inits[0]

  def init(key, shape, dtype=jnp.float32):
    return jax.lax.switch(index, [functools.partial(i, shape=shape, dtype=dtype) for i in inits],
                          key)

  return init


def _arms_program(make_model: Callable[..., DeepMLP], arms: list[tuple[str, Callable]],
                  seeds: int, batch: int, in_features: int) -> Callable[[jax.Array], dict]:
  """``program(key)``: every arm's ``seeds`` networks drawn and measured (see :func:`measure_arms`)."""
  names = list(dict.fromkeys(a for a, _ in arms))
  inits = list(dict.fromkeys(i for _, i in arms))  # by identity: see kernel_init
  arm_activation = np.asarray([names.index(a) for a, _ in arms])
  arm_init = np.asarray([inits.index(i) for _, i in arms])
  out_features = make_model().out_features

  def arm(act, init, keys, x, t):
    model = make_model(activation=switch_activation(act, names),
                       kernel_init=switch_initializer(init, inits))
    variables = jax.vmap(model.init)(keys, x)
    return jax.vmap(functools.partial(gradient_profile, model))(variables, x, t)

  def program(key):
    k_data, k_params = jax.random.split(key)
    x, t = random_batches(k_data, seeds, batch, in_features, out_features)
    keys = jnp.stack([jax.random.split(jax.random.fold_in(k_params, a), seeds)
                      for a in range(len(arms))])
    return jax.lax.map(lambda a: arm(*a, x, t), (arm_activation, arm_init, keys))

  return program


def measure_arms(make_model: Callable[..., DeepMLP], arms: list[tuple[str, Callable]],
                 key: jax.Array, seeds: int, batch: int, in_features: int) -> dict[str, jax.Array]:
  """Every arm (activation, initializer) x every seed, in one jitted program.

  The program draws the batches (:func:`random_batches`), then, one arm after
  another (``jax.lax.map``), draws the arm's networks and measures them
  (:func:`gradient_profile`), its seeds vmapped, the activation and the
  initializer traced switches (:func:`switch_activation`,
  :func:`switch_initializer`): every arm is one traced model. One arm at a time
  keeps the scratch memory to one arm's networks and gradients (drawing every
  arm first and vmapping all of them held 1.9 GB at depth 100, three arms,
  20 seeds, against 0.37 GB), and each switch runs the arm's own branch only.

  It returns as soon as the program is dispatched: a caller that measures
  several configurations dispatches them all, then reads them
  (``jax.device_get``), so that tracing the next program overlaps running
  this one.

  Args:
    make_model: ``make_model(activation=..., kernel_init=...) -> DeepMLP``
      (e.g. :func:`seed_network`); all arms share every other field.
    arms: ``(activation name, Flax kernel initializer)`` per arm.
    key: split into the data key and the parameter key; arm a, seed s is
      initialised with ``split(fold_in(params_key, a), seeds)[s]``. Under
      ``vmap`` an ``rbg`` key array draws the whole batch from one of its keys
      (JAX's batching rule for XLA's RngBitGenerator): statistically
      independent networks, but not the draws of each key alone; threefry
      keys give exactly those.
    seeds: networks per arm; seed s uses the same random batch in every arm.
    batch: examples per batch.
    in_features: input width.

  Must run under ``jax.enable_x64`` (see :func:`gradient_profile`).

  Returns:
    The :func:`gradient_profile` entries with shape (arms, seeds, L), as
    device arrays.
  """
  return jax.jit(_arms_program(make_model, arms, seeds, batch, in_features))(key)


def measure_depths(make_model: Callable[..., DeepMLP], depths: Sequence[int],
                   arms: list[tuple[str, Callable]], keys: jax.Array, seeds: int, batch: int,
                   in_features: int) -> dict[str, jax.Array]:
  r""":func:`measure_arms` at several depths, one compiled program for all of them.

  Depth :math:`D_i` is :func:`measure_arms` of ``DeepMLP(depth=D_i)`` with key
  ``keys[i]``: the same draws, the same numbers (to float rounding), but every
  depth runs in the program of the deepest, :math:`M = \max_i D_i` layers,
  ``DeepMLP(depth=M, active_depth=D_i)`` (its hidden layers past
  :math:`D_i - 2` the identity, never drawn), one depth after another
  (``jax.lax.map``). Worth it where tracing, lowering and loading a program
  (about 0.4 s each, warm) outweighs the padded layers' matmuls and
  reductions: depths within a few times of each other.

  Args:
    make_model: ``make_model(activation=..., kernel_init=..., active_depth=...)``,
      a :class:`~jaxgrad.models.DeepMLP` of depth :math:`M` (e.g.
      :func:`seed_network` of ``max(depths)``).
    depths: the depths, each in ``[2, M]``.
    arms, seeds, batch, in_features: as in :func:`measure_arms`.
    keys: ``(len(depths),)`` key array, depth ``i``'s key.

  Must run under ``jax.enable_x64``.

  Returns:
    The :func:`gradient_profile` entries with shape (depths, arms, seeds, M),
    as device arrays; depth :math:`D_i`'s layers are ``[..., :D_i]`` (input
    to output; the rest is NaN, -1 for ``zero_entries``).
  """
  full = make_model().depth
  if not all(2 <= d <= full for d in depths):
    raise ValueError(f"depths must be in [2, {full}] (the model's depth), got {tuple(depths)}")

  def one_depth(depth_key):
    depth, key = depth_key
    program = _arms_program(functools.partial(make_model, active_depth=depth), arms, seeds,
                            batch, in_features)
    measured = program(key)
    # Layers 0 .. D-2 of the padded stack, then the output layer; NaN (-1 for counts) past D.
    layer = jnp.arange(full)
    rows = jnp.where(layer < depth - 1, layer, full - 1)
    return {k: jnp.where(layer < depth, v[..., rows], jnp.nan if v.dtype.kind == "f" else -1)
            for k, v in measured.items()}

  return jax.jit(lambda k: jax.lax.map(one_depth, (jnp.asarray(depths), k)))(keys)


def depth_groups(depths: Sequence[int], within: float = 4.0) -> list[tuple[int, ...]]:
  """``depths`` grouped for :func:`measure_depths`, deepest first: one program per group.

  A group holds its deepest depth and every depth at least ``1 / within`` of
  it, so that no network runs more than ``within`` times its layers. On
  depth_comparison (depths 5 … 100, 20 seeds, warm cache, 2 cores) the two
  groups below make the run 5.9 s against 6.6 s with one program per depth
  (medians of 6), and 15 s against 25 s from an empty cache; one program for
  all five depths measured slower than five (the padded layers' matmuls and
  reductions).

  >>> depth_groups((5, 10, 20, 50, 100))
  [(100, 50), (20, 10, 5)]
  """
  groups: list[tuple[int, ...]] = []
  for depth in sorted(set(depths), reverse=True):
    if groups and depth * within >= groups[-1][0]:
      groups[-1] += (depth,)
    else:
      groups.append((depth,))
  return groups


def summarize_arm(m: dict[str, np.ndarray], activation: str, sigma_w2: list[float]) -> dict:
  r"""One arm's (seeds, L) measurements: quartiles over seeds, underflow counts, the mean-field line.

  Args:
    m: the :func:`gradient_profile` entries of one arm, each (seeds, L).
    activation: the arm's activation.
    sigma_w2: the arm's :math:`\sigma_{w,l}^2` (:func:`layer_sigma_w2`).

  Returns:
    ``weight`` and ``signal`` (:func:`jaxgrad.stats.quartiles` over seeds,
    with ``per_seed``), the median float32 norms, ``zeros`` (per layer: seeds
    whose float32 norm underflows to 0 though the float64 one does not, seeds
    whose whole gradient is 0, median count of exactly-zero entries),
    ``sigma_w2``, and ``theory_signal``: :func:`predicted_signal` anchored at
    the measured median signal of the last layer.
  """
  arm = {
      "weight": stats.quartiles(m["weight"]),
      "signal": stats.quartiles(m["signal"]),
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
      "sigma_w2": sigma_w2,
  }
  arm["theory_signal"] = predicted_signal(activation, sigma_w2) * arm["signal"]["median"][-1]
  return arm


def first_over_last(per_seed: np.ndarray) -> np.ndarray:
  """(seeds, L) -> (seeds,) first layer / last layer; 0/0 and x/0 stay NaN/inf."""
  with np.errstate(all="ignore"):
    return per_seed[:, 0] / per_seed[:, -1]
