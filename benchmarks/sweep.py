"""Sweep throughput against the device count (simulated CPU devices).

    python -m benchmarks.sweep [--runs 8] [--steps 100]

One sweep of ``--runs`` independent trainings (Adam, MLP depth 8, width 128,
batch 128, ``--steps`` steps each, one ``lax.scan``) through
``jaxgrad.sweep.sweep``, in a fresh process per device count with
``XLA_FLAGS=--xla_force_host_platform_device_count=D``. On a 2-core machine,
4 simulated devices can only use the 2 cores; on a machine with D real
accelerators the sweep axis is split the same way, D runs at a time.
"""

import argparse
import json
import os
import subprocess
import sys

from benchmarks import _timing

CHILD = """
import json, sys, time
from benchmarks import _timing
import jax, jax.numpy as jnp, optax
from jaxgrad import data, optimizers, training
from jaxgrad.models import DeepMLP
from jaxgrad.sweep import sweep

runs, steps = int(sys.argv[1]), int(sys.argv[2])
model = DeepMLP(depth=8, width=128, out_features=10, activation="relu")
x = jax.random.normal(jax.random.key(0), (4096, 32))
y = jnp.argmax(x[:, :10], axis=-1)
tx = optimizers.make_optimizer(optimizers.OptimizerConfig("adam", 1e-3))

def loss(p, s, batch):
  logits = model.apply({"params": p}, batch.x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch.y).mean(), s

def one_run(key):
  params = model.init(key, x[:1])["params"]
  sample = lambda k: data.sample_batch(k, x, y, 128)
  return training.train(loss, params, tx, sample, steps, key=key).loss[-1]

keys = jax.random.split(jax.random.key(1), runs)
start = time.perf_counter(); sweep(one_run, keys).block_until_ready(); first = time.perf_counter() - start
steady = _timing.median_seconds(lambda: sweep(one_run, keys).block_until_ready(), repeats=3, warmup=0)
print(json.dumps({"devices": jax.device_count(), "first": first, "steady": steady}))
"""


def _child(devices: int, runs: int, steps: int) -> dict:
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, "-c", CHILD, str(runs), str(steps)], env=env,
                        capture_output=True, text=True, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def run(runs: int = 8, steps: int = 100, device_counts=(1, 2, 4)) -> dict:
  results = {d: _child(d, runs, steps) for d in device_counts}
  base = results[device_counts[0]]["steady"]
  rows = [{
      "benchmark": "sweep",
      "figure": f"sweep of {runs} trainings x {steps} steps, {d} simulated CPU device(s)",
      "measured": f"{r['steady']:.2f} s (first call {r['first']:.1f} s)",
      "baseline": f"{base:.2f} s on 1 device",
      "ratio": r["steady"] / base,
  } for d, r in results.items()]
  return {"machine": _timing.machine(), "by_devices": results, "rows": rows}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--runs", type=int, default=8)
  parser.add_argument("--steps", type=int, default=100)
  args = parser.parse_args(argv)
  r = run(args.runs, args.steps)
  print(_timing.format_rows(r["rows"], r["machine"]))
  return r


if __name__ == "__main__":
  main()
