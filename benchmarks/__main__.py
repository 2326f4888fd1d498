"""Every benchmark, one table: ``python -m benchmarks [--only NAME ...] [--json FILE]``.

Each benchmark module's ``main(argv)`` prints its own table and returns a dict
with ``rows`` (figure, measured, baseline, ratio: the baseline is measured in
the same run) and ``machine``. This runs them in turn, prints all rows as one
table and writes them, with the machine, to ``--json`` (default
``runs/benchmarks.json``).
"""

import argparse
import importlib
import json
import pathlib
import sys
import time

from benchmarks import _timing

# Module name -> argv giving its README figures.
BENCHMARKS = {
    "jacobian": [],
    "memory": [],
    "sweep": [],
    "deep_spectrum": [],
    "rnn": [],
    "seed_sweeps": [],
    "diagnose": [],
    "long_runs": [],
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
    result = importlib.import_module(f"benchmarks.{name}").main(BENCHMARKS[name])
    seconds[name] = time.perf_counter() - start
    rows.extend(result.get("rows", []))
  print("\n== all benchmarks\n" + _timing.format_rows(rows, _timing.machine()))
  print("wall time per benchmark: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
  args.json.parent.mkdir(parents=True, exist_ok=True)
  args.json.write_text(json.dumps({"machine": _timing.machine(), "rows": rows,
                                   "seconds": seconds}, indent=1))
  return {"rows": rows}


if __name__ == "__main__":
  sys.exit(main() and 0)
