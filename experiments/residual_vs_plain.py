r"""Residual MLP vs its plain twin of equal depth: backprop signal and Jacobian spectrum.

Seed 002 says a residual block's Jacobian ``I + dF/dx`` gives the gradient an
identity "highway", so it cannot vanish; seed 004 builds the block
(``ResNetBlock``: Linear, ReLU, Linear, ``+ x``). This experiment draws
``--seeds`` random networks per case, :class:`jaxgrad.models.ResidualMLP`
with ``--blocks`` blocks and :class:`jaxgrad.models.DeepMLP` with the same
number of Dense layers (``2 * blocks + 2``), for every activation (ReLU with He
init, tanh with Xavier init) and norm (none, LayerNorm), and measures at
initialization, on random data with an MSE loss:

* the backprop signal ``||dL/dh||`` at every block input (residual) or
  pre-activation (plain), relative to ``||dL/dy||`` at the output;
* the residual stream's second moment ``q_k`` after every block;
* the singular values of the Jacobian ``dh_k/dh_0`` of the hidden stack, from
  its input ``h_0`` (the first layer's output) to its output after ``k``
  blocks (``2k`` Dense layers, for both nets), for every ``k``, from one
  forward-mode pass per network;

next to the mean-field predictions (:func:`jaxgrad.theory.residual_signal`
and :mod:`jaxgrad.theory`). The identity path does stop vanishing, but without
normalization the same product ``prod (I + dF/dx)`` makes the gradient
*explode*, by a factor ``1 + chi_F`` per block (3 for He-init ReLU), as fast as
the stream's variance grows; LayerNorm in the branch turns that into
polynomial growth.

    python -m experiments.residual_vs_plain            # width 64, 100 blocks, 16 seeds, ~2 min on 2 cores
    python -m experiments.residual_vs_plain --quick    # width 32, 100 blocks, 4 seeds, about a minute
    python -m experiments.residual_vs_plain --no-float64 --blocks 100   # float32 overflows: NaN recorded

Writes ``config.json``, ``results.json`` (every plotted number), ``signal.png``,
``spectrum.png`` and ``stream.png`` under ``--out``.
"""

import dataclasses
import functools
import pathlib
import warnings

from experiments import _cli, _config

import jax  # noqa: E402  (after _cli, which sets OPENBLAS_NUM_THREADS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import activations, diagnostics, plotting, probe, theory  # noqa: E402
from jaxgrad.models import DeepMLP, DenseStack, ResidualBlock, ResidualMLP, Stack  # noqa: E402
from jaxgrad.sweep import sweep  # noqa: E402

ACTIVATIONS = ("relu", "tanh")
NORMS = ("none", "layer")
ARCHS = ("residual", "plain")
# Each activation with its customary init, and that init's sigma_w^2 at fan_in = fan_out.
KERNEL_INIT = {"relu": ("he_normal", 2.0), "tanh": ("xavier_normal", 1.0)}
COLORS = {"residual": "C0", "plain": "C3"}


@dataclasses.dataclass(frozen=True)
class Config(_config.Checked):
  width: int = _config.setting(64, "width N of every layer", at_least=1)
  blocks: int = _config.setting(
      100, "residual blocks B (the plain net has 2B+2 Dense layers)", at_least=1)
  seeds: int = _config.setting(16, "random networks per case", at_least=1)
  activations: tuple[str, ...] = _config.setting(ACTIVATIONS, choices=ACTIVATIONS)
  norms: tuple[str, ...] = _config.setting(NORMS, "normalizations", choices=NORMS)
  batch: int = _config.setting(32, "examples in the loss", at_least=1)
  float64: bool = _config.setting(
      True, "compute in float64 (the unnormalised residual net's "
      "activations reach ~3^B, beyond float32 at B > 80)")
  seed: int = 0

  @classmethod
  def quick(cls) -> "Config":
    return cls(width=32, seeds=4)

  @classmethod
  def smoke(cls) -> "Config":
    return cls(width=8, blocks=3, seeds=2, activations=("relu",), batch=4)


def _model(arch: str, activation: str, norm: str, config: Config, dtype):
  common = dict(width=config.width, out_features=config.width, activation=activation,
                kernel_init=KERNEL_INIT[activation][0], bias_init="zeros",
                norm=None if norm == "none" else norm, param_dtype=dtype)
  if arch == "residual":
    return ResidualMLP(num_blocks=config.blocks, **common)
  return DeepMLP(depth=2 * config.blocks + 2, **common)


def _stack(arch: str, activation: str, norm: str, config: Config, dtype):
  """The model's scanned ``hidden`` stack on its own (same parameters, ``params['hidden']``)."""
  common = dict(activation=activation, kernel_init=KERNEL_INIT[activation][0], bias_init="zeros",
                norm=None if norm == "none" else norm, param_dtype=dtype)
  if arch == "residual":
    return Stack(functools.partial(ResidualBlock, **common), config.blocks)
  return DenseStack(2 * config.blocks, config.width, **common)


def _per_block(hs: jax.Array, arch: str) -> jax.Array:
  """Stack outputs after each block (the plain stack's every second layer)."""
  return hs if arch == "residual" else hs[1::2]


def measure(config: Config, arch: str, activation: str, norm: str) -> dict[str, np.ndarray]:
  """One case, all seeds in one jitted vmap.

  Returns per-seed arrays: ``signal`` (seeds, entries) = ||dL/dh|| / ||dL/dy||
  for every perturbed intermediate, input to output; ``q`` (seeds, B): second
  moment of the representation after each block; ``s`` (seeds, B, N): singular
  values of ``dh_k/dh_0``, the stack's Jacobian from its input ``h_0`` (the
  first layer's output, one example) to its output after ``k + 1`` blocks.
  """
  dtype = jnp.float64 if config.float64 else jnp.float32
  model = _model(arch, activation, norm, config, dtype)
  stack = _stack(arch, activation, norm, config, dtype)
  capture = lambda mdl, method: mdl.name in ("first", "hidden") and method == "__call__"  # noqa: E731
  layout = probe.layout(model, jax.ShapeDtypeStruct((config.batch, config.width), dtype))

  def one(key):
    k_init, k_x, k_t = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (config.batch, config.width), dtype)
    target = jax.random.normal(k_t, (config.batch, config.width), dtype)
    variables = model.init(k_init, x)
    loss = lambda v: jnp.mean(jnp.sum((model.apply(v, x) - target) ** 2, -1))  # noqa: E731
    signal = diagnostics.backprop_signal(loss, variables, layout=layout).stack()
    _, state = model.apply({"params": variables["params"]}, x, capture_intermediates=capture,
                           mutable=["intermediates"])
    (h0,) = state["intermediates"]["first"]["__call__"]
    ((_, hs),) = state["intermediates"]["hidden"]["__call__"]
    q = jnp.mean(_per_block(hs, arch) ** 2, axis=(1, 2))
    stack_params = {"params": variables["params"]["hidden"]}
    every_block = lambda h: _per_block(stack.apply(stack_params, h[None])[1], arch).reshape(-1)  # noqa: E731
    jac = diagnostics.jacobian(every_block, h0[0]).reshape(config.blocks, config.width,
                                                          config.width)
    return signal / signal[-1], q, jnp.linalg.svd(jac, compute_uv=False)

  keys = jax.random.split(jax.random.key(config.seed), config.seeds)
  signal, q, s = sweep(one, keys)
  return {"signal": np.asarray(signal), "q": np.asarray(q), "s": np.asarray(s)}


def positions(arch: str, blocks: int) -> np.ndarray:
  """Dense layers from the input at each backprop-signal entry (input to output).

  Residual: ``first`` (layer 1), the input of block k (after layer 1 + 2k),
  ``last`` (2B + 2). Plain: the pre-activation of every layer 1 .. 2B + 2.
  """
  if arch == "residual":
    return np.concatenate([[1], 1 + 2 * np.arange(blocks), [2 * blocks + 2]])
  return np.arange(1, 2 * blocks + 3)


def predicted(config: Config, arch: str, activation: str, norm: str) -> dict | None:
  """Mean-field ``signal_sq`` (squared signal / ||dL/dy||^2 at the signal entries that
  theory covers), ``mean_sq`` (mean squared singular value of dh_k/dh_0 for every k)
  and ``q`` (second moment of h_k);
  ``None`` for the plain net with LayerNorm (no closed form here)."""
  sigma_w2 = KERNEL_INIT[activation][1]
  blocks = config.blocks
  if arch == "residual":
    q0 = (float(theory.gaussian_expectation(lambda u: activations.get(activation)(u) ** 2, 1.0))
          if norm == "layer" else float(theory.length_map(activation, q=sigma_w2, sigma_w2=1.0,
                                                          sigma_b2=0.0)))
    t = theory.residual_signal(activation, sigma_w2, sigma_w2, q0, blocks,
                               norm=None if norm == "none" else norm)
    return {"signal_at": positions(arch, blocks)[1:-1],
            "signal_sq": sigma_w2 * t["signal_sq"][:-1],
            "mean_sq": np.cumprod(t["chi"]),
            "q": t["q"][1:]}
  if norm == "layer":
    return None
  depth = 2 * blocks + 2
  q = np.asarray(theory.length_map_iterates(activation, sigma_w2, sigma_w2, 0.0, depth - 1))
  chi = sigma_w2 * np.asarray(theory.derivative_moment(activation, q))  # layer l = 1 .. depth-1
  signal_sq = np.append(np.cumprod(chi[::-1])[::-1], 1.0)  # at pre-activations 1 .. depth
  mean_sq = np.cumprod(chi[1:])[1::2]  # from h_1 to h after layers 3, 5, ..., 2B + 1
  phi = activations.get(activation)
  post = np.asarray(theory.gaussian_expectation(lambda u: phi(u) ** 2, q))[2::2]
  return {"signal_at": positions(arch, blocks), "signal_sq": signal_sq, "mean_sq": mean_sq,
          "q": post}


def _quartiles(per_seed: np.ndarray) -> dict:
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (0/0 condition numbers)
    q25, q50, q75 = np.nanpercentile(np.where(np.isfinite(per_seed), per_seed, np.nan),
                                     [25, 50, 75], axis=0)
  return {"median": q50, "q25": q25, "q75": q75, "per_seed": per_seed}


def _growth_per_block(signal_sq_first: np.ndarray, signal_sq_last: np.ndarray,
                      steps: int) -> np.ndarray:
  with np.errstate(all="ignore"):
    return (signal_sq_first / signal_sq_last) ** (1.0 / max(steps, 1))


def run(config: Config, out_dir: pathlib.Path) -> dict:
  """Measures every case, writes results.json and the figures, returns the results."""
  jobs = [(a, n, arch) for a in config.activations for n in config.norms for arch in ARCHS]
  cases = {}
  with jax.enable_x64(config.float64):
    for activation, norm, arch in _cli.progress(jobs, desc="residual vs plain"):
      m = measure(config, arch, activation, norm)
      stats = {k: np.asarray(v) for k, v in diagnostics.spectrum_stats(m["s"]).items()}
      with np.errstate(all="ignore"):
        resolved = diagnostics.resolvable(m["s"] ** 2)  # (seeds, B, N); s is descending
      # 0 where the smallest singular value is below the SVD's resolution.
      stats["min_resolved"] = np.where(resolved[..., -1], m["s"][..., -1], 0.0)
      pos = positions(arch, config.blocks)
      blocks_at = 1 + 2 * np.arange(config.blocks)  # residual block inputs / plain equivalents
      idx = 1 + np.arange(config.blocks) if arch == "residual" else blocks_at - 1
      sq = m["signal"][:, idx] ** 2
      theory_case = predicted(config, arch, activation, norm)
      cases[f"{activation}/{norm}/{arch}"] = {
          "activation": activation, "norm": norm, "arch": arch,
          "signal_at": pos, "signal": _quartiles(m["signal"]),
          "growth_per_block": _quartiles(_growth_per_block(sq[:, 0], sq[:, -1],
                                                           config.blocks - 1)),
          "q": _quartiles(m["q"]),
          "depth_layers": 2 + 2 * np.arange(config.blocks),
          **{k: _quartiles(v) for k, v in stats.items()},
          "nonfinite_fraction": float(1 - np.isfinite(m["s"]).mean()),
          "unresolved_fraction": _quartiles(1 - resolved.mean(-1)),
          "theory": None if theory_case is None else {
              **theory_case,
              "growth_per_block": float(_growth_per_block(
                  theory_case["signal_sq"][np.searchsorted(theory_case["signal_at"], 1)],
                  theory_case["signal_sq"][np.searchsorted(theory_case["signal_at"],
                                                           blocks_at[-1])],
                  config.blocks - 1))},
      }
  results = {"config": config, "cases": cases}
  _cli.write_json(out_dir / "results.json", results)
  plot(results, out_dir)
  return results


def _grid(results: dict):
  acts = list(dict.fromkeys(c["activation"] for c in results["cases"].values()))
  norms = list(dict.fromkeys(c["norm"] for c in results["cases"].values()))
  fig, axes = plotting.figure(len(norms), len(acts), panel=(3.4, 2.6))
  for c in results["cases"].values():
    yield c, axes[norms.index(c["norm"]), acts.index(c["activation"])]
  yield fig, axes


def _panels(results: dict, out_dir: pathlib.Path, name: str, draw, ylabel: str, xlabel: str):
  *items, (fig, axes) = list(_grid(results))
  for case, ax in items:
    draw(ax, case)
    ax.set_title(f"{case['activation']}, norm: {case['norm']}")
    ax.set_yscale("log")
  for ax in axes[-1]:
    ax.set_xlabel(xlabel)
  for ax in axes[:, 0]:
    ax.set_ylabel(ylabel)
  axes[0, 0].legend()
  plotting.save(fig, out_dir / name)


def plot(results: dict, out_dir: pathlib.Path) -> None:
  def signal(ax, case):
    color = COLORS[case["arch"]]
    plotting.median_band(ax, case["signal_at"], case["signal"]["per_seed"], color=color,
                         label=case["arch"])
    if case["theory"] is not None:
      plotting.theory_line(ax, case["theory"]["signal_at"], np.sqrt(case["theory"]["signal_sq"]),
                           color=color, label=f"{case['arch']}, mean field")

  def spectrum(ax, case):
    color = COLORS[case["arch"]]
    x = case["depth_layers"]
    plotting.median_band(ax, x, case["max"]["per_seed"], color=color, label=f"{case['arch']} s_max")
    s_min = np.asarray(case["min_resolved"]["per_seed"], dtype=float)
    line = plotting.median_band(ax, x, np.where(s_min > 0, s_min, np.nan), color=color,
                                label=f"{case['arch']} s_min (resolved)")
    line.set_linestyle(":")
    if case["theory"] is not None:
      plotting.theory_line(ax, x, np.sqrt(case["theory"]["mean_sq"]), color=color,
                           label=f"{case['arch']} rms s, mean field")

  def stream(ax, case):
    color = COLORS[case["arch"]]
    plotting.median_band(ax, case["depth_layers"], case["q"]["per_seed"], color=color,
                         label=case["arch"])
    if case["theory"] is not None:
      plotting.theory_line(ax, case["depth_layers"], case["theory"]["q"], color=color,
                           label=f"{case['arch']}, mean field")

  _panels(results, out_dir, "signal.png", signal, "||dL/dh|| / ||dL/dy||",
          "Dense layers from the input")
  stack = "Dense layers in the stack (2 per block)"
  _panels(results, out_dir, "spectrum.png", spectrum, "singular value of dh_k/dh_0", stack)
  _panels(results, out_dir, "stream.png", stream, "second moment of h_k", stack)


def _resolved(value) -> float:
  """The value, or 0 where it is below the SVD's resolution (0 or NaN)."""
  value = float(value)
  return value if np.isfinite(value) and value > 0 else 0.0


def summary(results: dict) -> str:
  header = ["case", "growth²/block", "predicted", "||dL/dx₀||/||dL/dy||", "predicted",
            "s_max (deepest)", "s_min", "cond"]
  rows = []
  for name, c in results["cases"].items():
    t = c["theory"]
    first_block = 1  # entry 0 is the first layer's pre-activation
    rows.append([
        name, float(c["growth_per_block"]["median"]),
        "-" if t is None else float(t["growth_per_block"]),
        float(c["signal"]["median"][first_block]),
        "-" if t is None else float(np.sqrt(t["signal_sq"][
            np.searchsorted(t["signal_at"], c["signal_at"][first_block])])),
        float(c["max"]["median"][-1]), _resolved(c["min_resolved"]["median"][-1]),
        float(c["condition"]["median"][-1]) if _resolved(c["min_resolved"]["median"][-1]) != 0
        else "inf"])
  return _cli.format_table(header, rows)


def main(argv: list[str] | None = None) -> dict:
  return _cli.main(__name__, Config, run, summary, argv, __doc__)


if __name__ == "__main__":
  main()
