"""``python -m experiments``: lists the experiments; each runs as ``python -m experiments.<name>``.

The list is read from the modules' docstrings without importing them (no JAX start-up).
"""

import ast
import pathlib


def experiments() -> dict[str, str]:
  """Experiment name -> the first line of its module docstring, in name order."""
  found = {}
  for path in sorted(pathlib.Path(__file__).parent.glob("*.py")):
    if path.name.startswith("_"):
      continue
    doc = (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    found[path.stem] = doc.splitlines()[0] if doc else ""
  return found


def main() -> None:
  listed = experiments()
  width = max(map(len, listed))
  print("usage: python -m experiments.<name> [--out DIR] [--seeds N] [--quick] [--help]\n")
  for name, line in listed.items():
    print(f"  {name:<{width}}  {line}")
  print("\nDefault --out: runs/<name>. `python -m experiments.<name> --help` lists every flag.")


if __name__ == "__main__":
  main()
