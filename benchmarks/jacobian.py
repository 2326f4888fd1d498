"""Jacobian spectrum speed against the arithmetic floor, and compile time against depth.

    python -m benchmarks.jacobian

1. ``jax.jacfwd`` + singular values of a tanh net of width N = 256 and depth
   L = 100, one network, jitted: time against the floor L * 2 N^3 flops divided
   by the float32 matmul rate measured at N x N in the same run (forward mode
   pushes N tangents through each N x N layer: one N x N x N matmul per layer).
2. Compile time of the same program at depth 10 and 1000 (``nn.scan``: flat),
   against the same network written as an unrolled Python loop at depth 10 and
   100 (grows with depth).
"""

import argparse
import pathlib

from benchmarks import _timing

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxgrad import diagnostics  # noqa: E402
from jaxgrad.models import DenseStack  # noqa: E402


def _scanned_spectrum(depth: int, width: int):
  model = DenseStack(depth=depth, features=width, activation="tanh",
                     kernel_init=("gaussian", {"sigma_w2": 1.0}))
  params = model.init(jax.random.key(0), jnp.ones(width))

  def spectrum(params, x):
    return diagnostics.singular_values(lambda v: model.apply(params, v)[0], x)

  return spectrum, params


def _unrolled_spectrum(depth: int, width: int):
  kernels = jax.random.normal(jax.random.key(0), (depth, width, width)) / jnp.sqrt(width)

  def spectrum(kernels, x):
    def f(h):
      for l in range(depth):
        h = jnp.tanh(h @ kernels[l])
      return h
    return diagnostics.singular_values(f, x)

  return spectrum, kernels


def run(width: int = 256, depth: int = 100) -> dict:
  x = jax.random.normal(jax.random.key(1), (width,))
  spectrum, params = _scanned_spectrum(depth, width)
  compiled = jax.jit(spectrum)
  seconds = _timing.median_seconds(lambda: compiled(params, x).block_until_ready())
  rate = _timing.matmul_flops_per_second(width)
  floor = depth * 2 * width**3 / rate
  svd_only = jax.jit(lambda a: jnp.linalg.svd(a, compute_uv=False))
  svd_seconds = _timing.median_seconds(
      lambda: svd_only(jnp.eye(width) + 0.1 * jnp.ones((width, width))).block_until_ready())

  compile_times = {}
  for kind, build, depths in (("scan", _scanned_spectrum, (10, 1000)),
                              ("unrolled", _unrolled_spectrum, (10, 100))):
    for d in depths:
      fn, p = build(d, width)
      compile_times[f"{kind} L={d}"] = _timing.compile_seconds(fn, p, x)
  return {
      "machine": _timing.machine(),
      "width": width, "depth": depth,
      "jacfwd_svd_seconds": seconds,
      "svd_seconds": svd_seconds,
      "matmul_gflops": rate / 1e9,
      "floor_seconds": floor,
      "ratio_to_floor": seconds / floor,
      "compile_seconds": compile_times,
  }


def rows(r: dict) -> list[dict]:
  c = r["compile_seconds"]
  return [
      {"benchmark": "jacobian",
       "figure": f"jacfwd + SVD, tanh net N={r['width']} L={r['depth']}, one network",
       "measured": f"{r['jacfwd_svd_seconds'] * 1e3:.1f} ms",
       "baseline": f"floor L*2N^3 at {r['matmul_gflops']:.1f} GFLOP/s: {r['floor_seconds'] * 1e3:.1f} ms",
       "ratio": r["ratio_to_floor"]},
      {"benchmark": "jacobian", "figure": "compile time, scanned net, L=1000 vs L=10",
       "measured": f"{c['scan L=1000']:.2f} s", "baseline": f"{c['scan L=10']:.2f} s at L=10",
       "ratio": c["scan L=1000"] / c["scan L=10"]},
      {"benchmark": "jacobian", "figure": "compile time, unrolled Python loop, L=100 vs L=10",
       "measured": f"{c['unrolled L=100']:.2f} s", "baseline": f"{c['unrolled L=10']:.2f} s at L=10",
       "ratio": c["unrolled L=100"] / c["unrolled L=10"]},
  ]


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.jacobian", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--width", type=int, default=256)
  parser.add_argument("--depth", type=int, default=100)
  parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
  args = parser.parse_args(argv)
  r = run(args.width, args.depth)
  return _timing.report(r, rows(r), args.json)


if __name__ == "__main__":
  main()
