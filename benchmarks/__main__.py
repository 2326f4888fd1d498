"""Every benchmark, one table: ``python -m benchmarks [--only NAME ...] [--json FILE]``.

Each benchmark module's ``main(argv)`` prints its own table and returns a dict
with ``rows`` (figure, measured, baseline, ratio: the baseline is measured in
the same run) and ``machine``. This runs them in turn, prints all rows as one
table and writes them, with the machine, to ``--json`` (default
``runs/benchmarks.json``; strict JSON, written atomically).
"""

import argparse
import pathlib
import sys
import time

from benchmarks import _timing
from benchmarks import deep_spectrum
from benchmarks import diagnose
from benchmarks import jacobian
from benchmarks import long_runs
from benchmarks import memory
from benchmarks import rnn
from benchmarks import seed_sweeps
from benchmarks import sweep
from jaxgrad import files

# Name -> the benchmark's main; each runs with the flags that give its README figures (none).
BENCHMARKS = {
    "jacobian": jacobian.main,
    "memory": memory.main,
    "sweep": sweep.main,
    "deep_spectrum": deep_spectrum.main,
    "rnn": rnn.main,
    "seed_sweeps": seed_sweeps.main,
    "diagnose": diagnose.main,
    "long_runs": long_runs.main,
}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=list(BENCHMARKS))
  parser.add_argument("--json", type=pathlib.Path, default=pathlib.Path("runs/benchmarks.json"))
  args = parser.parse_args(argv)
  rows, seconds = [], {}
  for name in args.only:
    start = time.perf_counter()
    print(f"\n== benchmarks.{name}", flush=True)
    result = BENCHMARKS[name]([])
    seconds[name] = time.perf_counter() - start
    rows.extend(result.get("rows", []))
  print("\n== all benchmarks\n" + _timing.format_rows(rows, _timing.machine()))
  print("wall time per benchmark: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
  files.write_json(args.json, {"machine": _timing.machine(), "rows": rows, "seconds": seconds})
  return {"rows": rows}


if __name__ == "__main__":
  sys.exit(main() and 0)
