"""The seed's sweeps (seed 000 sections 7.1 and 7.2), PyTorch loop vs jaxgrad, process start to figures.

    python -m benchmarks.seed_sweeps               # baseline + jaxgrad, cold then warm cache
    python -m benchmarks.seed_sweeps --seeds 20

Every measurement is the wall time of a fresh Python process, from start to its
figures on disk:

* baseline: the seed's own PyTorch code (ported verbatim below; ``plt.show()``
  dropped, figures saved), one random network per curve: 7 inits x {relu,
  tanh} at depth 20, then 5 depths x {relu, tanh, sigmoid}. Needs torch
  (``pip install torch``); without it the baseline is skipped with a message.
* jaxgrad: ``python -m experiments.init_comparison`` then
  ``python -m experiments.depth_comparison``, ``--seeds`` networks per curve
  (default 20), each with its interquartile band and mean-field line.
* floor: what any JAX run of the two experiments pays before a single trace
  or figure: a fresh process importing them, ``jax.random.normal`` of every
  weight their networks draw (beside ``torch.randn`` of the same count), and
  the arithmetic of their gradients (:func:`floor_seconds`).

jaxgrad runs twice with JAX's persistent compilation cache in a user cache
directory (``$XDG_CACHE_HOME/jaxgrad/jax_cache``, set through the
``JAX_COMPILATION_CACHE_DIR`` environment variable of the child processes,
equivalent to ``jax.config.update('jax_compilation_cache_dir', ...)``): the
first run starts from an empty cache and fills it, the second reads the
compiled programs back. Benchmarks print; they never assert timings.
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
from experiments import depth_comparison, init_comparison

import jax

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
  # The experiments enable jaxgrad's cache (compilation_cache.enable) at the
  # directory JAXGRAD_COMPILE_CACHE names, which overrides JAX's own variable.
  env = {**os.environ, "JAXGRAD_COMPILE_CACHE": str(cache),
         "JAX_COMPILATION_CACHE_DIR": str(cache),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
         "JAXGRAD_NO_PROGRESS": "1", "OPENBLAS_NUM_THREADS": "1"}
  total = 0.0
  for name in ("init_comparison", "depth_comparison"):
    seconds, _ = _timed([sys.executable, "-m", f"experiments.{name}", "--seeds", str(seeds),
                         "--out", str(out / name)], env)
    total += seconds
  return total


PRNG_IMPLS = ("threefry2x32", "rbg")


def weights_drawn(seeds: int) -> int:
  """Weights (kernel entries) the two experiments' default configurations draw at ``seeds``."""
  def per_network(depth: int, width: int, in_features: int) -> int:
    return sum(fi * fo for fi, fo in init_comparison.layer_fans(depth, width, in_features))

  ic = init_comparison.Config(seeds=seeds)
  dc = depth_comparison.Config(seeds=seeds)
  arms = len(ic.activations) * len(ic.inits)
  return (arms * seeds * per_network(ic.depth, ic.width, ic.in_features)
          + len(dc.activations) * seeds * sum(per_network(d, dc.width, dc.in_features)
                                              for d in dc.depths))


def floor_seconds(seeds: int) -> dict:
  """What no jaxgrad run of the two experiments can go below, each part measured here.

  ``imports``: a fresh process importing both experiment modules (jax, flax,
  matplotlib, jaxgrad), median of 3. ``draw``: one jitted
  ``jax.random.normal`` of every weight the runs draw, median of 3 after a
  warm-up, with the faster of JAX's PRNGs (the experiments use threefry);
  beside it ``torch.randn`` of the same count where torch is installed.
  ``arithmetic``: the forward pass and both gradients (6 B flops per weight)
  at the machine's (width x width) matmul rate, an upper bound on the rate of
  the experiments' (batch x width) products.
  """
  imports = statistics.median(
      _timed([sys.executable, "-c", "import experiments.init_comparison, "
              "experiments.depth_comparison"])[0] for _ in range(3))
  n = weights_drawn(seeds)
  draw = jax.jit(lambda k: jax.random.normal(k, (n,)))
  out = {"imports": imports, "weights": n}
  for impl in PRNG_IMPLS:
    key = jax.random.key(0, impl=impl)
    out[f"draw_{impl}"] = _timing.median_seconds(lambda: draw(key).block_until_ready(), repeats=3)
  out["draw"] = min(out[f"draw_{impl}"] for impl in PRNG_IMPLS)
  # Forward, input gradient and weight gradient: 2 B fan_in fan_out flops each per layer.
  width = init_comparison.Config().width
  out["flops"] = 6 * init_comparison.Config().batch * n
  out["arithmetic"] = out["flops"] / _timing.matmul_flops_per_second(width)
  if torch_available():
    import torch
    buffer = torch.empty(n)
    out["torch_draw"] = _timing.median_seconds(lambda: buffer.normal_(), repeats=3)
  return out


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.seed_sweeps", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seeds", type=int, default=20, help="jaxgrad networks per curve")
  parser.add_argument("--keep-cache", action="store_true",
                      help="do not empty the compilation cache before the first run")
  args = parser.parse_args(argv)
  cache = cache_dir()
  if not args.keep_cache and cache.exists():
    shutil.rmtree(cache)
  cache.mkdir(parents=True, exist_ok=True)
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    if torch_available():
      results["baseline"], printed = run_baseline(tmp)
      results["baseline_note"] = printed.strip().splitlines()[-1]
    else:
      print("torch is not installed: skipping the PyTorch baseline (pip install torch)")
    results["jaxgrad_first"] = run_jaxgrad(tmp / "first", args.seeds, cache)
    results["jaxgrad_second"] = run_jaxgrad(tmp / "second", args.seeds, cache)
  results["floor"] = floor = floor_seconds(args.seeds)
  rows = []
  if "baseline" in results:
    rows.append(("seed's PyTorch loop, 1 seed per curve", results["baseline"], 1.0))
  base = results.get("baseline")
  for key, label in (("jaxgrad_first", f"jaxgrad, {args.seeds} seeds per curve, empty cache"),
                     ("jaxgrad_second", f"jaxgrad, {args.seeds} seeds per curve, warm cache")):
    rows.append((label, results[key], results[key] / base if base else float("nan")))
  floor_total = floor["imports"] + floor["draw"] + floor["arithmetic"]
  rows.append((f"floor: imports, drawing {floor['weights'] / 1e6:.0f}M weights, their gradients",
               floor_total, floor_total / base if base else float("nan")))
  width = max(len(r[0]) for r in rows)
  print(f"{'sections 7.1 + 7.2, process start to figures':<{width}}  wall s   / baseline")
  for label, seconds, ratio in rows:
    print(f"{label:<{width}}  {seconds:6.1f}   {ratio:6.2f}")
  print(f"(floor: imports {floor['imports']:.2f} s, jax.random.normal "
        + ", ".join(f"{floor[f'draw_{impl}']:.2f} s ({impl})" for impl in PRNG_IMPLS)
        + (f", torch.randn of the same {floor['torch_draw']:.2f} s" if "torch_draw" in floor else "")
        + f", {floor['flops'] / 1e9:.0f} GFLOP {floor['arithmetic']:.2f} s)")
  if "baseline_note" in results:
    print(f"(baseline: {results['baseline_note']})")
  print(f"compilation cache: {cache}")
  results["machine"] = _timing.machine()
  results["rows"] = [{
      "benchmark": "seed_sweeps", "figure": f"seed 000 §7.1 + §7.2 process start to figures: {label}",
      "measured": f"{seconds:.1f} s",
      "baseline": (f"seed's PyTorch loop, 1 seed per curve: {base:.1f} s" if base
                   else "torch not installed"),
      "ratio": ratio if base else None,
  } for label, seconds, ratio in rows if label != "seed's PyTorch loop, 1 seed per curve"]
  return results


if __name__ == "__main__":
  main()
