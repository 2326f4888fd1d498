r"""Normalization under a poor initialization: none, BatchNorm, LayerNorm, weight norm.

Seed 000 §4.3 and seed 004 say BatchNorm "keeps the distribution of every
layer's input stable" and so prevents vanishing *and exploding* gradients;
§6.4 proposes weight normalization ``w = g v / ||v||``. This experiment takes
a deep MLP (:class:`jaxgrad.models.DeepMLP`, ``--depth`` Dense layers of
width ``--width``) with sigmoid or ReLU under a poor initialization (default:
the seed's ``normal_small``, N(0, 0.01^2)), and for each normalization

* ``none``: the plain net;
* ``batch``: BatchNorm after every hidden Dense layer (train mode: batch
  statistics, ``batch_stats`` carried through training as model state);
* ``layer``: LayerNorm at the same place;
* ``weight``: every kernel reparameterized as ``g v / ||v||``
  (:func:`jaxgrad.models.weight_norm.to_weight_norm`, ``g = ||v||`` at init);

measures, over ``--seeds`` runs vmapped into one program, the per-layer weight
gradient norm ``||dL/dW_l||`` (``||dL/dv_l||`` for weight norm) and the
backprop signal ``||dL/dz_l||`` at initialization and after ``--steps`` Adam
steps on MNIST-1D (:func:`jaxgrad.data.mnist1d`, standardized), with
:func:`jaxgrad.training.train`. Theory (theory.md §1.7; Yang et al. 2019):
with BatchNorm in every layer the squared backprop signal *grows* toward the
input at initialization, by ``pi / (pi - 1) = 1.467`` per layer for ReLU at
large batch, whatever the weight scale.

    python -m experiments.normalization            # depth 20, 8 seeds, ~3 min on 2 cores
    python -m experiments.normalization --quick    # sigmoid only, 3 seeds: under a minute
    python -m experiments.normalization --kernel-init he_normal   # a good init, for contrast

Writes ``config.json``, ``results.json`` (every plotted number),
``grad_norms.png``, ``signal.png`` and ``training.png`` under ``--out``.
"""

import dataclasses
import math
import pathlib
import warnings

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxgrad import activations, data, diagnostics, initializers, plotting, probe, theory  # noqa: E402
from jaxgrad.models import DeepMLP  # noqa: E402
from jaxgrad.models.weight_norm import from_weight_norm, to_weight_norm  # noqa: E402
from jaxgrad.optimizers import OptimizerConfig, make_optimizer  # noqa: E402
from jaxgrad.training import train  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

NORMS = ("none", "batch", "layer", "weight")
COLORS = {"none": "C7", "batch": "C3", "layer": "C0", "weight": "C2"}
# Weight norm equals the plain net at init (g = ||v||): drawn dotted so both show.
LINESTYLES = {"weight": ":"}
PANEL = (4.0, 2.8)
# Yang et al. 2019 (theory.md §1.7): growth of the squared backprop signal per
# BatchNorm-ReLU layer, large-batch limit.
BN_RELU_GROWTH = math.pi / (math.pi - 1)
# sigma_w^2 = fan_in * Var(W) of the initializers whose variance is known in
# closed form, as a function of fan_in (the hidden width).
SIGMA_W2 = {"normal_small": lambda fan_in: fan_in * 0.01**2, "he_normal": lambda _: 2.0,
            "lecun_normal": lambda _: 1.0, "xavier_normal": lambda _: 1.0}


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  depth: int = _config.setting(20, "Dense layers, input and output included", at_least=3)
  width: int = _config.setting(64, "hidden width", at_least=1)
  activations: tuple[str, ...] = _config.setting(("sigmoid", "relu"), choices=activations.names)
  norms: tuple[str, ...] = _config.setting(NORMS, "normalizations", choices=NORMS)
  kernel_init: str = _config.setting("normal_small", "initializer name (jaxgrad.initializers)",
                                     choices=initializers.names)
  steps: int = _config.setting(200, "Adam steps", at_least=1)
  learning_rate: float = _config.setting(1e-3, above=0)
  batch: int = _config.setting(128, "batch size (BatchNorm's too)", at_least=2)
  seeds: int = _config.setting(8, "runs per case", at_least=1)
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(activations=("sigmoid",), seeds=3)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(depth=4, width=8, activations=("relu",), steps=3, batch=8, seeds=2)


def _model(config: Config, activation: str, norm: str) -> DeepMLP:
  return DeepMLP(depth=config.depth, width=config.width, out_features=10,
                 activation=activation, kernel_init=config.kernel_init, bias_init="zeros",
                 norm=norm if norm in ("batch", "layer") else None)


def measure(config: Config, activation: str, norm: str, dataset: data.Dataset) -> dict:
  """One case, all seeds in one jitted vmap; per-seed numpy arrays.

  Returns ``grad_init`` / ``grad_final`` (seeds, depth): per-layer weight
  gradient norms on a fixed batch; ``signal_init`` / ``signal_final``
  (seeds, depth): per-layer ``||dL/dz||``; ``loss`` (seeds, steps);
  ``test_accuracy`` (seeds,); ``diverged_at`` (seeds,); ``zero_grad_fraction_init``
  / ``_final`` (seeds,): the fraction of float32 weight-gradient entries exactly 0.
  Norms and signals are computed in float64 from the float32 parameters.
  """
  model = _model(config, activation, norm)
  x_train, y_train = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  x_test, y_test = jnp.asarray(dataset.x_test), jnp.asarray(dataset.y_test)
  sample = lambda key: data.sample_batch(key, x_train, y_train, config.batch)  # noqa: E731
  layout = (probe.layout(model, x_train[:config.batch], train=True, mutable=["batch_stats"])
            if norm == "batch" else probe.layout(model, x_train[:config.batch]))
  to_plain = from_weight_norm if norm == "weight" else (lambda p: p)
  optimizer = make_optimizer(OptimizerConfig("adam", config.learning_rate))

  def logits(variables, x):
    if norm == "batch":
      out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
      return out, {"batch_stats": updates["batch_stats"]}
    return model.apply(variables, x), {}

  def cross_entropy(out, y):
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()

  def loss_fn(params, state, batch):
    out, state = logits({"params": to_plain(params), **state}, batch[0])
    return cross_entropy(out, batch[1]), state

  def diagnose(params, state, perturbations, batch):
    # In float64: the gradients of a net this badly initialised are ~1e-25 and
    # their squares underflow float32 (norms would read 0). What float32
    # training sees is recorded separately: the fraction of exactly-zero entries.
    zero_fraction = _zero_fraction(jax.grad(lambda p: loss_fn(p, state, batch)[0])(params))
    params, state, perturbations, batch = jax.tree.map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a,
        (params, state, perturbations, batch))
    # One backward pass for the weight gradients and the backprop signal.
    grads, signal_grads = jax.grad(
        lambda p, h: cross_entropy(
            logits({"params": to_plain(p), **state, "perturbations": h}, batch[0])[0], batch[1]),
        argnums=(0, 1))(params, perturbations)
    norms = diagnostics.layer_grad_norms(grads, weight_names=("kernel", "v"), layout=layout)
    signal = diagnostics.signal_norms(signal_grads, layout=layout)
    return norms.stack(), signal.stack(), zero_fraction

  def one(key):
    k_init, k_train, k_eval = jax.random.split(key, 3)
    batch = sample(k_eval)
    variables = model.init(k_init, batch[0])
    params = variables["params"]
    params = to_weight_norm(params) if norm == "weight" else params
    state = {"batch_stats": variables["batch_stats"]} if norm == "batch" else {}
    result = train(loss_fn, params, optimizer, sample, config.steps, key=k_train,
                   model_state=state)
    # Init and final state through one vmapped diagnosis: one copy to compile, not two.
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), (params, state),
                        (result.params, result.model_state))
    grads, signals, zeros = jax.vmap(
        lambda p, s: diagnose(p, s, variables["perturbations"], batch))(*both)
    (grad_init, grad_final), (signal_init, signal_final), (zero_init, zero_final) = (
        grads, signals, zeros)
    # BatchNorm: test-set batch statistics (the running averages, momentum 0.99,
    # still remember their init after 200 steps).
    test_logits, _ = logits({"params": to_plain(result.params), **result.model_state}, x_test)
    accuracy = jnp.mean(jnp.argmax(test_logits, -1) == y_test)
    return dict(grad_init=grad_init, grad_final=grad_final, signal_init=signal_init,
                signal_final=signal_final, zero_grad_fraction_init=zero_init,
                zero_grad_fraction_final=zero_final, loss=result.loss, test_accuracy=accuracy,
                diverged_at=result.diverged_at)

  keys = jax.random.split(jax.random.key(config.seed), config.seeds)
  with jax.enable_x64(True):  # for diagnose's float64; training stays in float32
    return {k: np.asarray(v) for k, v in sweep(one, keys).items()}


def _zero_fraction(grads) -> jax.Array:
  """Fraction of the weight-gradient entries (kernels, weight-norm directions) exactly 0."""
  leaves = [g for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]
            if str(getattr(path[-1], "key", "")) in ("kernel", "v")]
  return sum(jnp.sum(g == 0) for g in leaves) / sum(g.size for g in leaves)


def predicted_growth(config: Config, activation: str, norm: str) -> float | None:
  r"""Mean-field growth of the squared backprop signal per hidden layer at init, toward the input.

  * ``none`` and ``weight`` (identical at init): :math:`\chi_1 = \sigma_w^2
    \mathbb E[\phi'(\sqrt{q^*} z)^2]` (:func:`jaxgrad.theory.chi1`, zero
    biases), for the initializers in :data:`SIGMA_W2`;
  * ``layer``: LayerNorm rescales the pre-activation to unit variance, and its
    backward pass divides by the same standard deviation
    :math:`\sigma_w \sqrt{\mathbb E h^2}`, so
    :math:`\chi = \mathbb E[\phi'(z)^2] / \mathbb E[\phi(z)^2]`, whatever
    the weight scale (1 for ReLU);
  * ``batch``: :data:`BN_RELU_GROWTH` for ReLU (Yang et al. 2019), else None.
  """
  if norm == "batch":
    return BN_RELU_GROWTH if activation == "relu" else None
  if norm == "layer":
    phi = activations.get(activation)
    return float(theory.derivative_moment(activation, 1.0)
                 / theory.gaussian_expectation(lambda u: phi(u) ** 2, 1.0))
  if config.kernel_init not in SIGMA_W2:
    return None
  sigma_w2 = SIGMA_W2[config.kernel_init](config.width)
  return float(theory.chi1(activation, sigma_w2, 0.0))


def growth_per_layer(signal: np.ndarray) -> np.ndarray:
  r"""Geometric-mean growth of the squared signal per layer toward the input.

  Least-squares slope of :math:`\log \|dL/dz_l\|^2` against ``-l`` over the
  hidden layers (the first and the last layer excluded), per seed; NaN where a
  signal is 0 or not finite.
  """
  hidden = signal[:, 1:-1]
  if hidden.shape[1] < 2:
    return np.full(len(signal), np.nan)
  with np.errstate(all="ignore"):
    logs = np.log(hidden ** 2)
  layers = np.arange(hidden.shape[1])
  out = np.full(len(signal), np.nan)
  for i, row in enumerate(logs):
    if np.all(np.isfinite(row)):
      out[i] = np.exp(-np.polyfit(layers, row, 1)[0])
  return out


def _quartiles(per_seed: np.ndarray) -> dict:
  finite = np.where(np.isfinite(per_seed), per_seed, np.nan)
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
    q25, q50, q75 = np.nanpercentile(finite, [25, 50, 75], axis=0)
  return {"median": q50, "q25": q25, "q75": q75, "per_seed": per_seed}


def run(config: Config, out_dir: pathlib.Path) -> dict:
  """Trains and measures every case, writes results.json and the figures."""
  dataset = data.standardize(data.mnist1d())
  jobs = [(a, n) for a in config.activations for n in config.norms]
  cases = {}
  for activation, norm in _cli.progress(jobs, desc="normalization"):
    m = measure(config, activation, norm, dataset)
    cases[f"{activation}/{norm}"] = {
        "activation": activation, "norm": norm,
        "layers": np.arange(1, config.depth + 1),
        **{k: _quartiles(m[k]) for k in ("grad_init", "grad_final", "signal_init",
                                          "signal_final", "loss", "zero_grad_fraction_init",
                                          "zero_grad_fraction_final")},
        "signal_growth_init": _quartiles(growth_per_layer(m["signal_init"])),
        "test_accuracy": _quartiles(m["test_accuracy"]),
        "diverged_at": m["diverged_at"],
        "theory_signal_growth_init": predicted_growth(config, activation, norm),
    }
  results = {"config": config, "dataset": "mnist1d", "bn_relu_growth": BN_RELU_GROWTH,
             "cases": cases}
  _cli.write_json(out_dir / "results.json", results)
  plot(results, out_dir)
  return results


def plot(results: dict, out_dir: pathlib.Path) -> None:
  cases = results["cases"]
  acts = list(dict.fromkeys(c["activation"] for c in cases.values()))
  config = results["config"]
  steps = config["steps"] if isinstance(config, dict) else config.steps

  def draw(ax, x, y, norm, label):
    line = plotting.median_band(ax, x, y, color=COLORS[norm], label=label)
    line.set_linestyle(LINESTYLES.get(norm, "-"))

  fig, axes = plotting.figure(2, len(acts), panel=PANEL)
  for c in cases.values():
    col = acts.index(c["activation"])
    for row, key in enumerate(("grad_init", "grad_final")):
      draw(axes[row, col], c["layers"], c[key]["per_seed"], c["norm"], c["norm"])
  for col, a in enumerate(acts):
    axes[0, col].set_title(f"{a}, at initialization")
    axes[1, col].set_title(f"{a}, after {steps} Adam steps")
    for row in range(2):
      axes[row, col].set_yscale("log")
    axes[1, col].set_xlabel("layer")
  for row in range(2):
    axes[row, 0].set_ylabel("||dL/dW_l||")
  axes[0, 0].legend()
  plotting.save(fig, out_dir / "grad_norms.png")

  fig, axes = plotting.figure(1, len(acts), panel=PANEL)
  for c in cases.values():
    ax = axes[0, acts.index(c["activation"])]
    draw(ax, c["layers"], c["signal_init"]["per_seed"], c["norm"], c["norm"])
    growth = c["theory_signal_growth_init"]
    if growth is not None and c["norm"] != "weight":  # weight: the same line as none
      anchor = np.asarray(c["signal_init"]["median"])[-2]
      layers = np.asarray(c["layers"])[1:-1]
      with np.errstate(all="ignore"):
        predicted = anchor * growth ** (0.5 * (layers[-1] - layers))
      plotting.theory_line(ax, layers, predicted, color=COLORS[c["norm"]],
                           label=f"{c['norm']}, mean field: ×{growth:.3g}/layer²")
  for col, a in enumerate(acts):
    axes[0, col].set_title(f"{a}, backprop signal at initialization")
    axes[0, col].set_yscale("log")
    axes[0, col].set_xlabel("layer")
  axes[0, 0].set_ylabel("||dL/dz_l||")
  for ax in axes[0]:
    ax.legend(fontsize=6)
  plotting.save(fig, out_dir / "signal.png")

  fig, axes = plotting.figure(1, len(acts), panel=PANEL)
  for c in cases.values():
    ax = axes[0, acts.index(c["activation"])]
    loss = np.asarray(c["loss"]["per_seed"])
    draw(ax, np.arange(1, loss.shape[1] + 1), loss, c["norm"],
         f"{c['norm']} (test acc {float(c['test_accuracy']['median']):.2f})")
  for col, a in enumerate(acts):
    axes[0, col].set_title(f"{a}, MNIST-1D training loss")
    axes[0, col].set_xlabel("Adam step")
  axes[0, 0].set_ylabel("cross-entropy")
  for ax in axes[0]:
    ax.legend()
  plotting.save(fig, out_dir / "training.png")


def summary(results: dict) -> str:
  header = ["case", "|g₁|/|g_L| init", "after", "signal²/layer init", "theory",
            "f32 zero grads init", "final loss", "test acc"]
  rows = []
  for name, c in results["cases"].items():
    g0, g1 = (np.asarray(c[k]["median"], dtype=float) for k in ("grad_init", "grad_final"))
    t = c["theory_signal_growth_init"]
    with np.errstate(all="ignore"):
      rows.append([name, float(g0[0] / g0[-1]), float(g1[0] / g1[-1]),
                   float(c["signal_growth_init"]["median"]), "-" if t is None else float(t),
                   f"{float(c['zero_grad_fraction_init']['median']):.0%}",
                   float(np.asarray(c["loss"]["median"])[-1]),
                   float(c["test_accuracy"]["median"])])
  return _cli.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__)


if __name__ == "__main__":
  main()
