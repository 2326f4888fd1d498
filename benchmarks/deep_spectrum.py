"""Log singular values of a 10,000-layer tanh net of width 128 (jaxgrad.diagnostics.log_singular_values).

    python -m benchmarks.deep_spectrum                 # depth 10,000, width 128
    python -m benchmarks.deep_spectrum --depth 1000    # smaller

The net is critical tanh with Gaussian weights N(0, sigma_w^2/N) and biases
N(0, sigma_b^2) on the critical line at q* = 0.01, each layer's weights drawn
from its own key inside the scan (nothing of size depth x N x N is stored).
Prints, never asserts, each against a baseline measured in the same run: the
float32 run time against its arithmetic floor (the :math:`2 N^3` flops per
layer of multiplying the layer's Jacobian into the tracked frame, at the
machine's measured (N x N) matmul rate; the frame's QR steps and the forward
pass come on top), the float64 run time against float32's, the largest
difference of the top ten log singular values between the two precisions
(the float64 spectrum of the same network is the reference), and the compile
time at depth 100 against the full depth (scan: independent of depth).
"""

import argparse
import math
import time

from benchmarks import _timing

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgrad import diagnostics, theory  # noqa: E402

Q_STAR = 0.01
TOP = 10


def critical_variances() -> tuple[float, float]:
  """``(sigma_w^2, sigma_b^2)`` on tanh's critical line at q* = Q_STAR, solved in float64.

  Solved once for both precisions: float32's root finding gives a sigma_b^2 off
  by 0.1 % (1.2594e-6 against 1.2580e-6), a different network.
  """
  with jax.enable_x64(True):
    sigma_w2, sigma_b2 = theory.critical_line("tanh", Q_STAR)
    return float(sigma_w2), float(sigma_b2)


def make(depth: int, width: int, dtype):
  """A jitted ``key -> log singular values`` for the critical tanh net."""
  sigma_w2, sigma_b2 = critical_variances()

  def layer(key, h):
    k_w, k_b = jax.random.split(key)
    # Drawn and scaled in float32, then cast, so that both precisions see
    # exactly the same network (scaling after the cast would give the float64
    # run weights that differ in the last float32 bit).
    w = math.sqrt(sigma_w2 / width) * jax.random.normal(k_w, (width, width), jnp.float32)
    b = math.sqrt(max(sigma_b2, 0.0)) * jax.random.normal(k_b, (width,), jnp.float32)
    return jnp.tanh(w.astype(dtype) @ h + b.astype(dtype))

  def spectrum(key):
    k_x, k_layers = jax.random.split(key)
    h0 = jax.random.normal(k_x, (width,), jnp.float32).astype(dtype)
    h0 = math.sqrt(Q_STAR / sigma_w2) * h0
    return diagnostics.log_singular_values(layer, jax.random.split(k_layers, depth), h0)

  return spectrum


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.deep_spectrum", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--depth", type=int, default=10_000)
  parser.add_argument("--width", type=int, default=128)
  args = parser.parse_args(argv)
  key = jax.random.key(0)
  rows, times, spectra = [], {}, {}
  for name, dtype in (("float32", jnp.float32), ("float64", jnp.float64)):
    with jax.enable_x64(dtype == jnp.float64):
      fn = jax.jit(make(args.depth, args.width, dtype))
      fn.lower(key).compile()
      start = time.perf_counter()
      spectra[name] = np.asarray(fn(key).block_until_ready(), dtype=np.float64)
      times[name] = time.perf_counter() - start
  rate = _timing.matmul_flops_per_second(args.width)
  floor = args.depth * 2 * args.width**3 / rate
  rows.append({"figure": f"log singular values, depth {args.depth}, width {args.width}, float32",
               "measured": f"{times['float32']:.1f} s",
               "baseline": (f"floor: L 2N^3 flops at the measured {rate / 1e9:.0f} GFLOP/s, "
                            f"{floor:.2f} s"),
               "ratio": times["float32"] / floor})
  rows.append({"figure": "the same in float64", "measured": f"{times['float64']:.1f} s",
               "baseline": f"float32 {times['float32']:.1f} s",
               "ratio": times["float64"] / times["float32"]})
  error = float(np.max(np.abs(spectra["float32"][:TOP] - spectra["float64"][:TOP])))
  rows.append({"figure": f"max |f32 - f64| over the top {TOP} log s",
               "measured": f"{error:.2e}", "baseline": "float64 spectrum, this run",
               "ratio": None})
  compile_s = {}
  for depth in (100, args.depth):
    compile_s[depth] = _timing.compile_seconds(make(depth, args.width, jnp.float32), key)
  rows.append({"figure": f"compile time, depth {args.depth}", "measured": f"{compile_s[args.depth]:.2f} s",
               "baseline": f"depth 100: {compile_s[100]:.2f} s",
               "ratio": compile_s[args.depth] / compile_s[100]})
  top = spectra["float64"]
  rows.append({"figure": "largest / smallest log s (float64)",
               "measured": f"{top[0]:.1f} / {top[-1]:.1f}", "baseline": "", "ratio": None})
  machine = _timing.machine()
  print(_timing.format_rows(rows, machine))
  return {"rows": rows, "machine": machine, "log_s_float64": top.tolist(),
          "log_s_float32": spectra["float32"].tolist()}


if __name__ == "__main__":
  main()
