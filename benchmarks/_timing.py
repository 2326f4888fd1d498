"""Timing helpers shared by the benchmarks: medians over repeats, the matmul floor."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
  """Median wall time of ``fn()`` (which must block on its result) over ``repeats`` runs."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def compile_seconds(fn: Callable, *args) -> float:
  """Seconds to trace, lower and compile ``jax.jit(fn)`` for ``args``."""
  start = time.perf_counter()
  jax.jit(fn).lower(*args).compile()
  return time.perf_counter() - start


def matmul_flops_per_second(n: int, dtype=jnp.float32, *, batch: int = 8) -> float:
  """The machine's float32 matmul rate for (n x n) @ (n x n) products, in flop/s.

  The best of two forms, each timed as the median of 7 runs: ``batch``
  independent products in one batched dot, and a chain of 32 dependent
  products in a ``lax.scan`` (the form a deep net's forward or tangent pass
  takes). A floor computed from it is a lower bound on time.
  """
  a = jax.random.normal(jax.random.key(0), (batch, n, n), dtype)
  batched = jax.jit(lambda a: a @ a)
  batched_s = median_seconds(lambda: batched(a).block_until_ready(), repeats=7)
  w = jax.random.normal(jax.random.key(1), (32, n, n), dtype) / jnp.sqrt(n)
  chained = jax.jit(lambda h, w: jax.lax.scan(lambda h, wl: (h @ wl, None), h, w)[0])
  chained_s = median_seconds(lambda: chained(w[0], w).block_until_ready(), repeats=7)
  return max(batch * 2 * n**3 / batched_s, 32 * 2 * n**3 / chained_s)


def machine() -> str:
  return f"{platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()})"


def format_rows(rows: list[dict], machine_name: str) -> str:
  """The benchmark table: figure, measured, baseline, ratio (baseline measured in the same run)."""
  header = ("figure", "measured", "baseline", "ratio")
  cells = [header] + [(r["figure"], r["measured"], r["baseline"],
                       "" if r.get("ratio") is None else f"{r['ratio']:.3g}x") for r in rows]
  widths = [max(len(c[i]) for c in cells) for i in range(4)]
  lines = ["  ".join(v.ljust(w) for v, w in zip(c, widths)) for c in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return f"machine: {machine_name}\n" + "\n".join(lines)


def report(result: dict, rows: list[dict], json_path=None) -> dict:
  """Attaches ``rows`` to ``result``, prints the table, optionally writes ``result`` as JSON."""
  result["rows"] = rows
  print(format_rows(rows, result["machine"]))
  if json_path:
    json_path.write_text(json.dumps(result, indent=1))
  return result
