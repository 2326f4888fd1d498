"""Tutorial 000's sweeps (its sections 7.1 and 7.2): jaxgrad's warm 20-seed run against two baselines.

    python -m benchmarks.seed_sweeps               # 20 seeds per curve
    python -m benchmarks.seed_sweeps --seeds 1 --repeats 1   # smoke size

It reports two ratios, each against a baseline measured in the same run, with
its target beside it:

* **warm run / floor** (target <= 2.5x): the wall time of
  ``python -m experiments.init_comparison`` then
  ``python -m experiments.depth_comparison`` (``--seeds`` networks per curve,
  each curve with its interquartile band and mean-field line), process start
  to figures, with a warm compilation cache, over the floor that any JAX run
  of the two pays before a single trace or figure: a fresh process importing
  them, ``jax.random.normal`` of every weight their networks draw (the faster
  of JAX's PRNGs) and the arithmetic of their gradients (:func:`floor_seconds`).
* **per network, PyTorch loop / jaxgrad** (target >= 4x): the tutorial's own
  PyTorch code (ported verbatim below; ``plt.show()`` dropped, figures saved)
  draws one network per curve, :data:`SEED_NETWORKS` in all; jaxgrad draws
  ``--seeds`` per curve. The ratio is the PyTorch loop's seconds per network
  over jaxgrad's, both process start to figures. Needs torch
  (``pip install torch``); without it this ratio is skipped with a message.

The warm run, the PyTorch loop and the floor's fresh import each run
``--repeats`` times (5), in turn, and their medians make the ratios: on a
shared 2-core machine one run of either varies by 15-30 %, and the machine's
speed drifts over minutes. The warm runs follow a first one from an empty
cache in a user cache
directory (``$XDG_CACHE_HOME/jaxgrad/jax_cache``, set through the
``JAX_COMPILATION_CACHE_DIR`` environment variable of the child processes,
equivalent to ``jax.config.update('jax_compilation_cache_dir', ...)``), which
fills it. The networks and weights counted are those of the configs the runs
wrote (their ``config.json``). Benchmarks print; they never assert timings.
"""

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import _timing

import jax

from jaxgrad import files
from jaxgrad.studies import signal_propagation

EXPERIMENTS = ("init_comparison", "depth_comparison")
# SEED_CODE's networks: 7 inits x {relu, tanh} at depth 20, then 5 depths x {relu, tanh, sigmoid}.
SEED_NETWORKS = 7 * 2 + 5 * 3
FLOOR_TARGET = 2.5  # warm run / floor, at most
PER_NETWORK_TARGET = 4.0  # PyTorch loop's seconds per network / jaxgrad's, at least
PRNG_IMPLS = ("threefry2x32", "rbg")

SEED_CODE = r'''
import sys, pathlib
import torch
import torch.nn as nn
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
OUT = pathlib.Path(sys.argv[1])

class DeepNet(nn.Module):
    def __init__(self, depth=20, width=100, activation='relu'):
        super(DeepNet, self).__init__()
        self.layers = nn.ModuleList()
        self.layers.append(nn.Linear(10, width))
        for i in range(depth - 2):
            self.layers.append(nn.Linear(width, width))
        self.layers.append(nn.Linear(width, 1))
        if activation == 'relu':
            self.activation = nn.ReLU()
        elif activation == 'tanh':
            self.activation = nn.Tanh()
        elif activation == 'sigmoid':
            self.activation = nn.Sigmoid()
        else:
            raise ValueError(f"Unsupported activation: {activation}")

    def forward(self, x):
        for i, layer in enumerate(self.layers[:-1]):
            x = layer(x)
            x = self.activation(x)
        x = self.layers[-1](x)
        return x

def experiment_initialization(depth=20, width=100, activation='relu'):
    x = torch.randn(32, 10)
    target = torch.randn(32, 1)
    criterion = nn.MSELoss()
    init_methods = {
        'xavier_uniform': nn.init.xavier_uniform_,
        'xavier_normal': nn.init.xavier_normal_,
        'kaiming_uniform': lambda w: nn.init.kaiming_uniform_(w, nonlinearity=activation),
        'kaiming_normal': lambda w: nn.init.kaiming_normal_(w, nonlinearity=activation),
        'orthogonal': nn.init.orthogonal_,
        'uniform_small': lambda w: nn.init.uniform_(w, -0.01, 0.01),
        'normal_small': lambda w: nn.init.normal_(w, 0, 0.01)
    }
    results = {}
    for name, init_fn in init_methods.items():
        print(f"Testing {name} initialization...")
        model = DeepNet(depth=depth, width=width, activation=activation)
        for layer in model.layers:
            init_fn(layer.weight)
            nn.init.zeros_(layer.bias)
        output = model(x)
        loss = criterion(output, target)
        loss.backward()
        grad_norms = []
        for layer in model.layers:
            if layer.weight.grad is not None:
                grad_norm = layer.weight.grad.norm().item()
                grad_norms.append(grad_norm)
        results[name] = grad_norms
    plt.figure(figsize=(10, 6))
    for name, grad_norms in results.items():
        plt.plot(range(len(grad_norms)), grad_norms, label=name)
    plt.xlabel('Layer Index')
    plt.ylabel('Gradient Norm')
    plt.title(f'Gradient Norms with Different Initializations ({activation} activation)')
    plt.legend()
    plt.yscale('log')
    plt.grid(True)
    plt.savefig(OUT / f'gradient_norms_{activation}.png')
    plt.close()
    return results

def compare_depths():
    depths = [5, 10, 20, 50, 100]
    activations = ['relu', 'tanh', 'sigmoid']
    for activation in activations:
        results = {}
        for depth in depths:
            print(f"Testing network with depth {depth}, activation {activation}...")
            model = DeepNet(depth=depth, width=100, activation=activation)
            for layer in model.layers:
                if activation == 'relu':
                    nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')
                else:
                    nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)
            x = torch.randn(32, 10)
            target = torch.randn(32, 1)
            criterion = nn.MSELoss()
            output = model(x)
            loss = criterion(output, target)
            loss.backward()
            grad_norms = []
            for layer in model.layers:
                if layer.weight.grad is not None:
                    grad_norm = layer.weight.grad.norm().item()
                    grad_norms.append(grad_norm)
            normalized_indices = np.linspace(0, 1, len(grad_norms))
            results[depth] = (normalized_indices, grad_norms)
        plt.figure(figsize=(10, 6))
        for depth, (indices, grad_norms) in results.items():
            plt.plot(indices, grad_norms, label=f'Depth {depth}')
        plt.xlabel('Normalized Layer Position')
        plt.ylabel('Gradient Norm')
        plt.title(f'Gradient Norms with Different Network Depths ({activation} activation)')
        plt.legend()
        plt.yscale('log')
        plt.grid(True)
        plt.savefig(OUT / f'depth_comparison_{activation}.png')
        plt.close()

torch.manual_seed(0)
r = experiment_initialization(depth=20, activation='relu')
t = experiment_initialization(depth=20, activation='tanh')
compare_depths()
# Seed claim check printed for the record: the float32 norms of the small inits.
print("tanh normal_small first-layer grad norm:", t['normal_small'][0])
'''


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
  start = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
  return seconds, proc.stdout


def torch_available() -> bool:
  probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
  return probe.returncode == 0


def cache_dir() -> pathlib.Path:
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "jaxgrad" / "jax_cache"


def run_baseline(out: pathlib.Path) -> tuple[float, str]:
  script = out / "seed_sweeps.py"
  script.write_text(SEED_CODE)
  (out / "figures").mkdir(exist_ok=True)
  env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
  return _timed([sys.executable, str(script), str(out / "figures")], env)


def run_jaxgrad(out: pathlib.Path, seeds: int, cache: pathlib.Path) -> float:
  """Seconds of the two experiments, each a fresh process, into ``out/<experiment>``."""
  # The experiments enable jaxgrad's cache (compilation_cache.enable) at the
  # directory JAXGRAD_COMPILE_CACHE names, which overrides JAX's own variable.
  env = {**os.environ, "JAXGRAD_COMPILE_CACHE": str(cache),
         "JAX_COMPILATION_CACHE_DIR": str(cache),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
         "JAXGRAD_NO_PROGRESS": "1", "OPENBLAS_NUM_THREADS": "1"}
  total = 0.0
  for name in EXPERIMENTS:
    seconds, _ = _timed([sys.executable, "-m", f"experiments.{name}", "--seeds", str(seeds),
                         "--out", str(out / name)], env)
    total += seconds
  return total


def networks_drawn(out: pathlib.Path) -> list[tuple[int, int, int]]:
  """(depth, width, in_features) of every network the runs in ``out`` drew, from their config.json."""
  ic = files.read_json(out / "init_comparison" / "config.json")
  dc = files.read_json(out / "depth_comparison" / "config.json")
  return ([(ic["depth"], ic["width"], ic["in_features"])]
          * (len(ic["activations"]) * len(ic["inits"]) * ic["seeds"])
          + [(d, dc["width"], dc["in_features"]) for d in dc["depths"]]
          * (len(dc["activations"]) * dc["seeds"]))


def weights_drawn(networks: list[tuple[int, int, int]]) -> int:
  """Kernel entries of ``networks`` ((depth, width, in_features) each, one output)."""
  return sum(fi * fo for depth, width, in_features in networks
             for fi, fo in signal_propagation.layer_fans(depth, width, in_features))


def import_seconds() -> float:
  """Seconds for a fresh process to import both experiment modules (jax, flax, matplotlib, jaxgrad)."""
  return _timed([sys.executable, "-c",
                 "import " + ", ".join(f"experiments.{n}" for n in EXPERIMENTS)])[0]


def floor_seconds(networks: list[tuple[int, int, int]], batch: int, imports: list[float],
                  repeats: int) -> dict:
  """What no jaxgrad run of the two experiments can go below, each part measured here.

  ``imports``: a fresh process importing both experiment modules, the median
  of the samples given (:func:`import_seconds`, taken between the runs).
  ``draw``: one jitted ``jax.random.normal`` of every weight the runs draw,
  median of ``repeats`` after a warm-up, with the faster of JAX's PRNGs (the
  experiments use threefry); beside it ``torch.randn`` of the same count
  where torch is installed. ``arithmetic``: the forward pass and both
  gradients (6 B flops per weight) at the machine's (width x width) matmul
  rate, an upper bound on the rate of the experiments' (batch x width)
  products.
  """
  n = weights_drawn(networks)
  draw = jax.jit(lambda k: jax.random.normal(k, (n,)))
  out = {"imports": statistics.median(imports), "import_runs": imports, "weights": n}
  for impl in PRNG_IMPLS:
    key = jax.random.key(0, impl=impl)
    out[f"draw_{impl}"] = _timing.median_seconds(lambda: draw(key).block_until_ready(),
                                                 repeats=repeats)
  out["draw"] = min(out[f"draw_{impl}"] for impl in PRNG_IMPLS)
  # Forward, input gradient and weight gradient: 2 B fan_in fan_out flops each per layer.
  width = max(w for _, w, _ in networks)
  out["flops"] = 6 * batch * n
  out["arithmetic"] = out["flops"] / _timing.matmul_flops_per_second(width)
  out["total"] = out["imports"] + out["draw"] + out["arithmetic"]
  if torch_available():
    import torch
    buffer = torch.empty(n)
    out["torch_draw"] = _timing.median_seconds(lambda: buffer.normal_(), repeats=repeats)
  return out


def measure(seeds: int, keep_cache: bool, repeats: int) -> dict:
  """Every time the two ratios need, measured in this one process (see the module docstring).

  After the first run (which fills the cache), each repeat runs the PyTorch
  loop, the warm pair and a fresh import in turn, so that the three medians
  see the same spells of a shared machine.
  """
  cache = cache_dir()
  if not keep_cache and cache.exists():
    shutil.rmtree(cache)
  cache.mkdir(parents=True, exist_ok=True)
  results = {"seeds": seeds, "cache": str(cache), "repeats": repeats}
  with_torch = torch_available()
  baseline, warm, imports = [], [], []
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    results["jaxgrad_first"] = run_jaxgrad(tmp / "first", seeds, cache)
    for i in range(repeats):
      if with_torch:
        baseline.append(run_baseline(tmp))
      warm.append(run_jaxgrad(tmp / f"warm{i}", seeds, cache))
      imports.append(import_seconds())
    networks = networks_drawn(tmp / "warm0")
    batch = files.read_json(tmp / "warm0" / "init_comparison" / "config.json")["batch"]
  if with_torch:
    results["baseline_runs"] = [seconds for seconds, _ in baseline]
    results["baseline"] = statistics.median(results["baseline_runs"])
    results["baseline_note"] = baseline[0][1].strip().splitlines()[-1]
  results["jaxgrad_warm_runs"] = warm
  results["jaxgrad_warm"] = statistics.median(warm)
  results["networks"] = len(networks)
  results["floor"] = floor_seconds(networks, batch, imports, repeats)
  return results


def _per_curve(seeds: int) -> str:
  return f"{seeds} seed{'' if seeds == 1 else 's'} per curve"


def ratio_rows(r: dict) -> list[dict]:
  """The two figures, each against its baseline measured in the same run, with its target."""
  warm, floor = r["jaxgrad_warm"], r["floor"]["total"]
  label = f"tutorial 000 §7.1 + §7.2, {_per_curve(r['seeds'])}, warm cache"
  rows = [{"benchmark": "seed_sweeps", "figure": f"{label}: run / floor (target <= {FLOOR_TARGET}x)",
           "measured": f"{warm:.1f} s", "baseline": f"floor, measured here: {floor:.1f} s",
           "ratio": warm / floor, "target": f"<= {FLOOR_TARGET}x"}]
  jax_per_network = warm / r["networks"]
  base = r.get("baseline")
  rows.append({
      "benchmark": "seed_sweeps",
      "figure": f"{label}: per network, PyTorch loop / jaxgrad (target >= {PER_NETWORK_TARGET}x)",
      "measured": f"{1e3 * jax_per_network:.1f} ms per network ({r['networks']})",
      "baseline": (f"the tutorial's PyTorch loop: {1e3 * base / SEED_NETWORKS:.1f} ms per network "
                   f"({SEED_NETWORKS})" if base else "torch not installed"),
      "ratio": base / SEED_NETWORKS / jax_per_network if base else None,
      "target": f">= {PER_NETWORK_TARGET}x"})
  return rows


def _median_of(runs: list[float]) -> str:
  if len(runs) == 1:
    return f"{runs[0]:.1f} s"
  return f"{statistics.median(runs):.1f} s (median of {', '.join(f'{t:.1f}' for t in runs)})"


def _print_report(r: dict, rows: list[dict]) -> None:
  f = r["floor"]
  print("tutorial 000 §7.1 + §7.2, process start to figures, all measured in this run:")
  if "baseline" in r:
    print(f"  the tutorial's PyTorch loop, 1 seed per curve ({SEED_NETWORKS} networks): "
          f"{_median_of(r['baseline_runs'])}  ({r['baseline_note']})")
  else:
    print("  torch is not installed: no PyTorch baseline (pip install torch)")
  print(f"  jaxgrad, {_per_curve(r['seeds'])} ({r['networks']} networks): "
        f"empty cache {r['jaxgrad_first']:.1f} s, warm cache {_median_of(r['jaxgrad_warm_runs'])}")
  print(f"  floor {f['total']:.1f} s: imports {_median_of(f['import_runs'])}, jax.random.normal of "
        f"{f['weights'] / 1e6:.0f}M weights "
        + ", ".join(f"{f[f'draw_{impl}']:.2f} s ({impl})" for impl in PRNG_IMPLS)
        + (f" (torch.randn {f['torch_draw']:.2f} s)" if "torch_draw" in f else "")
        + f", {f['flops'] / 1e9:.0f} GFLOP {f['arithmetic']:.2f} s")
  for row in rows:
    ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}x"
    print(f"{row['figure']}: {ratio}  [{row['measured']} vs {row['baseline']}]")
  print(f"compilation cache: {r['cache']}")


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.seed_sweeps", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seeds", type=int, default=20, help="jaxgrad networks per curve")
  parser.add_argument("--keep-cache", action="store_true",
                      help="do not empty the compilation cache before the first run")
  parser.add_argument("--repeats", type=int, default=5,
                      help="runs of the warm pair, the PyTorch loop and the floor's fresh import, "
                           "in turn; their medians are reported")
  args = parser.parse_args(argv)
  if args.seeds < 1 or args.repeats < 1:
    parser.error(f"--seeds and --repeats must be integers >= 1; got {args.seeds} and {args.repeats}")
  results = measure(args.seeds, args.keep_cache, args.repeats)
  rows = ratio_rows(results)
  _print_report(results, rows)
  results["machine"] = _timing.machine()
  results["rows"] = rows
  return results


if __name__ == "__main__":
  main()
