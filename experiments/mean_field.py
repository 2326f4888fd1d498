r"""Mean-field theory beside measurement: chi_1 and the length map in wide random nets.

For weights N(0, sigma_w^2/N) and biases N(0, sigma_b^2), mean-field theory
(Poole et al. 2016; Schoenholz et al. 2017; jaxgrad.theory) predicts

* the pre-activation variance q^l of every layer: the iterates of the length
  map q^l = sigma_w^2 E[phi(sqrt(q^{l-1}) z)^2] + sigma_b^2;
* the per-layer factor of the squared backprop signal,
  ||dL/dz_{l-1}||^2 / ||dL/dz_l||^2 -> chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2].

This draws ``--seeds`` networks of width N and depth L for every sigma_w^2 on a
grid (all sigma_w^2 and seeds of one activation in one compiled program),
sends a random output gradient dL/dh_L = r ~ N(0, I) back through them, and
fits the slope of ln ||dL/dz_l||^2 against l over the layers past
``burn_in`` (where q^l has settled at q*). exp(slope) is the measured chi_1.

    python -m experiments.mean_field            # width 512, depth 50, 6 seeds, ~2-4 min on 2 cores
    python -m experiments.mean_field --quick    # width 256, depth 30, under a minute

Writes ``config.json``, ``results.json`` (every plotted number), ``chi1.png``
(measured against predicted ln chi_1, identity line) and ``length_map.png``
(measured q^l against the length map's iterates) under ``--out``.
"""

import dataclasses
import pathlib

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import activations, diagnostics, plotting, theory  # noqa: E402
from jaxgrad.models import DenseStack  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

WEIGHTS = ("gaussian", "orthogonal")
LENGTH_MAP_PANELS = 3  # sigma_w^2 values drawn in the length-map figure: lowest, middle, highest
# Agreement bar at small width (N = 64): finite-width corrections to q^l and chi_1 are O(1/N).
SMALL_WIDTH_RTOL = 0.1


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  width: int = _config.setting(512, "network width N", at_least=1)
  depth: int = _config.setting(50, "number of layers L", at_least=3)
  seeds: int = _config.setting(6, "networks per sigma_w^2", at_least=1)
  batch: int = _config.setting(8, "inputs per network", at_least=1)
  activations: tuple[str, ...] = _config.setting(("tanh", "relu", "erf"), choices=activations.names)
  sigma_w2: tuple[float, ...] = _config.setting((1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0),
                                                "grid of sigma_w^2", above=0)
  sigma_b2: float = _config.setting(0.05, "bias variance", at_least=0)
  burn_in: int = _config.setting(10, "layers skipped before fitting the slope", at_least=0)
  seed: int = 0

  def relations(self) -> dict[str, str]:
    """The slope is fitted over layers ``burn_in .. depth - 2``: at least two of them."""
    if self.burn_in > self.depth - 3:
      return {"burn_in": f"must be <= depth - 3 = {self.depth - 3}"}
    return {}

  @classmethod
  def quick(cls) -> "Config":
    return cls(width=256, depth=30, seeds=3, burn_in=8, sigma_w2=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0))

  @classmethod
  def smoke(cls) -> "Config":
    return cls(width=16, depth=8, seeds=2, batch=2, burn_in=2, activations=("tanh",),
               sigma_w2=(1.0, 3.0))


def scaled_init(model, key: jax.Array, x: jax.Array, sigma_w2: jax.Array, sigma_b2: jax.Array,
                weights: str = "gaussian") -> dict:
  r"""Variables of ``model`` with every kernel :math:`\sim \sigma_w \cdot` (N(0, 1/fan_in) or
  orthogonal) and every bias :math:`\sim \mathcal N(0, \sigma_b^2)`.

  The model must be built with ``kernel_init`` = ``("gaussian", {"sigma_w2": 1})``
  or ``"orthogonal"`` and ``bias_init`` = ``("normal", {"stddev": 1})``; the
  scales are applied after ``init``, so ``sigma_w2`` and ``sigma_b2`` may be
  traced (``vmap`` over a grid of them).
  """
  if weights not in WEIGHTS:
    raise ValueError(f"unknown weights {weights!r}; valid choices: {WEIGHTS}")
  variables = model.init(key, x)

  def scale(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return leaf * jnp.sqrt(sigma_w2).astype(leaf.dtype)
    if name == "bias":
      return leaf * jnp.sqrt(sigma_b2).astype(leaf.dtype)
    return leaf

  return {**variables, "params": jax.tree_util.tree_map_with_path(scale, variables["params"])}


def unit_inits(weights: str = "gaussian") -> dict:
  """The ``kernel_init`` / ``bias_init`` that :func:`scaled_init` expects."""
  kernel = ("gaussian", {"sigma_w2": 1.0}) if weights == "gaussian" else "orthogonal"
  return {"kernel_init": kernel, "bias_init": ("normal", {"stddev": 1.0})}


def measure(config: Config, activation: str) -> dict[str, np.ndarray]:
  """Per sigma_w^2 and seed: ln ||dL/dz_l||^2 and q^l for every layer, shape (grid, seeds, L)."""
  model = DenseStack(depth=config.depth, features=config.width, activation=activation,
                     **unit_inits())
  n, b = config.width, config.batch

  def one_network(key, sigma_w2):
    k_init, k_x, k_r = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (b, n))
    x = x / jnp.sqrt(jnp.mean(x**2, axis=-1, keepdims=True))  # ||x||^2 / N = 1
    variables = scaled_init(model, k_init, x, sigma_w2, config.sigma_b2)
    r = jax.random.normal(k_r, (b, n))

    def loss(v):
      return jnp.sum(model.apply(v, x)[0] * r)

    grads = diagnostics.perturbation_grads(loss, variables)["layers"]["preact"]  # (L, b, n)
    _, hs = model.apply(variables, x)
    layer = variables["params"]["layers"]["dense"]
    inputs = jnp.concatenate([x[None], hs[:-1]], axis=0)
    z = jnp.einsum("lbi,lio->lbo", inputs, layer["kernel"]) + layer["bias"][:, None, :]
    return jnp.log(jnp.mean(jnp.sum(grads**2, axis=-1), axis=-1)), jnp.mean(z**2, axis=(1, 2))

  keys = jax.random.split(jax.random.key(config.seed), config.seeds)
  grid = jnp.asarray(config.sigma_w2)
  # Seeds are the sweep axis; the grid is a loop inside, so memory holds one
  # network per seed whatever the grid size.
  log_g2, q = sweep(lambda key: jax.lax.map(lambda s: one_network(key, s), grid), keys)
  return {"log_grad_sq": np.swapaxes(np.asarray(log_g2), 0, 1), "q": np.swapaxes(np.asarray(q), 0, 1)}


def fit_slope(log_g2: np.ndarray, burn_in: int) -> np.ndarray:
  r"""Least-squares slope of :math:`\ln\|dL/dz_l\|^2` against :math:`-l` (toward the input).

  Layers ``burn_in .. L-2`` (the last layer, fed the raw output gradient, is
  left out). Non-finite values give NaN. Shape ``(..., L) -> (...)``.
  """
  y = log_g2[..., burn_in:-1]
  x = -np.arange(y.shape[-1], dtype=float)
  x = x - x.mean()
  with np.errstate(all="ignore"):
    return np.sum((y - y.mean(-1, keepdims=True)) * x, axis=-1) / np.sum(x**2)


def predict(config: Config, activation: str) -> dict[str, np.ndarray]:
  with jax.enable_x64(True):
    grid = jnp.asarray(config.sigma_w2, jnp.float64)
    chi = jax.vmap(lambda s: theory.chi1(activation, s, config.sigma_b2))(grid)
    q1 = grid + config.sigma_b2  # ||x||^2 / N = 1
    qs = jax.vmap(lambda s, q: theory.length_map_iterates(
        activation, q, s, config.sigma_b2, config.depth))(grid, q1)
    return {"chi1": np.asarray(chi), "q": np.asarray(qs)}


def run(config: Config) -> dict:
  """Measures and predicts every activation, writes results.json and the figures."""
  cases = {}
  for activation in _cli.progress(config.activations, desc="mean field"):
    measured = measure(config, activation)
    predicted = predict(config, activation)
    slope = fit_slope(measured["log_grad_sq"], config.burn_in)  # (grid, seeds)
    chi_measured = np.exp(np.median(slope, axis=1))
    with np.errstate(all="ignore"):
      rel_error = np.abs(chi_measured - predicted["chi1"]) / predicted["chi1"]
    cases[activation] = {
        "sigma_w2": config.sigma_w2,
        "chi1_theory": predicted["chi1"],
        "log_chi1_measured_per_seed": slope,
        "chi1_measured_median": chi_measured,
        "chi1_rel_error": rel_error,
        "q_theory": predicted["q"],
        "q_measured_per_seed": measured["q"],
        "log_grad_sq_per_seed": measured["log_grad_sq"],
    }
  worst = {a: float(np.nanmax(c["chi1_rel_error"])) for a, c in cases.items()}
  results = {"config": config, "sigma_b2": config.sigma_b2, "width": config.width,
             "cases": cases, "worst_chi1_rel_error": worst}
  return results


def plot(results: dict, out_dir: pathlib.Path) -> None:
  cases = results["cases"]
  fig, axes = plotting.figure(1, len(cases), panel=(3.0, 2.8))
  for col, (activation, case) in enumerate(cases.items()):
    ax = axes[0, col]
    predicted = np.log(np.asarray(case["chi1_theory"], dtype=float))
    slopes = np.asarray(case["log_chi1_measured_per_seed"], dtype=float).T  # (seeds, grid)
    order = np.argsort(predicted)
    plotting.median_band(ax, predicted[order], slopes[:, order], marker="o", label="measured")
    lo, hi = predicted.min(), predicted.max()
    plotting.theory_line(ax, [lo, hi], [lo, hi], color="k", label="identity (theory)")
    for s, p, m in zip(case["sigma_w2"], predicted, np.median(slopes, axis=0)):
      ax.annotate(f"{s:g}", (p, m), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_title(f"{activation}: worst |Δχ₁|/χ₁ = {results['worst_chi1_rel_error'][activation]:.1%}")
    ax.set_xlabel("ln χ₁ predicted")
  axes[0, 0].set_ylabel("measured slope of ln‖dL/dz_l‖² per layer")
  axes[0, 0].legend(loc="upper left")
  fig.suptitle(f"per-layer growth of the backprop signal, σb²={results['sigma_b2']:g}, "
               f"N={results['width']} (point labels: σw²)", fontsize=9)
  plotting.save(fig, out_dir / "chi1.png")

  fig, axes = plotting.figure(1, len(cases), panel=(3.0, 2.6))
  for col, (activation, case) in enumerate(cases.items()):
    ax = axes[0, col]
    grid = list(case["sigma_w2"])
    picks = sorted({0, len(grid) // 2, len(grid) - 1})[:LENGTH_MAP_PANELS]
    q_meas = np.asarray(case["q_measured_per_seed"], dtype=float)
    q_theory = np.asarray(case["q_theory"], dtype=float)
    layers = np.arange(1, q_theory.shape[-1] + 1)
    for i, pick in enumerate(picks):
      color = f"C{i}"
      plotting.median_band(ax, layers, q_meas[pick], color=color, label=f"σw²={grid[pick]:g}")
      plotting.theory_line(ax, layers, q_theory[pick], color=color)
    ax.set_yscale("log")
    ax.set_title(f"{activation}: q^l (dashed: theory)")
    ax.set_xlabel("layer l")
  axes[0, 0].set_ylabel("mean pre-activation² q^l")
  axes[0, -1].legend(loc="lower right")
  plotting.save(fig, out_dir / "length_map.png")


def summary(results: dict) -> str:
  header = ["activation", "σw²", "χ₁ theory", "χ₁ measured", "rel. error"]
  rows = []
  for activation, case in results["cases"].items():
    for i, s in enumerate(case["sigma_w2"]):
      rows.append([activation, float(s), float(case["chi1_theory"][i]),
                   float(case["chi1_measured_median"][i]), float(case["chi1_rel_error"][i])])
  worst = ", ".join(f"{a} {e:.2%}" for a, e in results["worst_chi1_rel_error"].items())
  return _cli.format_table(header, rows) + f"\n\nworst relative error of χ₁: {worst}"


EXPERIMENT = _cli.Experiment(__name__, __doc__, Config, run, plot, summary)
main = EXPERIMENT.main


if __name__ == "__main__":
  main()
