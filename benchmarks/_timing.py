"""Timing helpers shared by the benchmarks: medians over repeats, the matmul rate of a floor."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import functools  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxgrad import files  # noqa: E402


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


@functools.cache
def matmul_flops_per_second(n: int, dtype=jnp.float32, *, batch: int = 8, k: int | None = None,
                            replicas: int = 1, chain: int = 32) -> float:
  r"""The machine's matmul rate for products with ``n`` output columns, in flop/s.

  Two shapes, each timed as the median of 7 warm, jitted runs:

  * square (``k=None``, the default): :math:`(n \times n) @ (n \times n)`, the
    best of two forms: ``batch`` independent products in one batched dot,
    and a chain of 32 dependent products in a ``lax.scan`` (the form a deep
    net's forward or tangent pass takes), :math:`2 n^3` flops each;
  * rectangular (``k`` given): :math:`(\mathrm{batch}, k) @ (k, n)` as a
    training step's scan runs them, vmapped over ``replicas``: a chain of
    ``chain`` dependent steps :math:`x \leftarrow (x W) W^\top`, a forward
    product and its backward :math:`\partial x = \partial y\, W^\top`,
    :math:`2 \cdot 2\, \mathrm{batch}\, k n` flops per step and replica;
    :math:`W`'s entries have variance :math:`(k n)^{-1/2}`, so :math:`x` keeps
    its scale.

  A floor computed from it is a lower bound on time. Cached per arguments.
  """
  if k is None:
    return _square_rate(n, dtype, batch)
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (replicas, batch, k), dtype)
  w = jax.random.normal(kw, (replicas, k, n), dtype) * (k * n) ** -0.25
  one = lambda x, w: jax.lax.fori_loop(0, chain, lambda _, x: (x @ w) @ w.T, x)  # noqa: E731
  run = jax.jit(jax.vmap(one))
  seconds = median_seconds(lambda: run(x, w).block_until_ready(), repeats=7)
  return chain * 4.0 * replicas * batch * k * n / seconds


def _square_rate(n: int, dtype, batch: int) -> float:
  """The best of ``batch`` batched and 32 chained (n x n) @ (n x n) products, in flop/s."""
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
  """Attaches ``rows`` to ``result``, prints the table, optionally writes ``result`` as strict JSON.

  The file is written atomically (:func:`jaxgrad.files.write_json`; NaN and
  ±inf as the strings ``"nan"``, ``"inf"``, ``"-inf"``).
  """
  result["rows"] = rows
  print(format_rows(rows, result["machine"]))
  if json_path:
    files.write_json(json_path, result)
  return result
