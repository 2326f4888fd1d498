"""The import rules the layout promises, read from the sources (no module is imported).

* no experiment imports another (only the harness, ``experiments._cli`` / ``_config``);
* no benchmark imports an experiment (they run them, or read their configs from the
  command line);
* the library imports no experiment, benchmark or test;
* no cycle among jaxgrad's modules, counting a package as importing its ``__init__``'s
  imports (so ``a -> b.c`` also needs ``b``), and no jaxgrad import hidden inside a function.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> list[tuple[str, bool]]:
  """``(imported module, at module level)`` for every import in ``path``, relative ones resolved."""
  tree = ast.parse(path.read_text())
  package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
  top_level = {id(node) for node in tree.body}
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(alias.name, id(node) in top_level) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base])
        base = base.rstrip(".")
      # `from pkg import name`: name may be a submodule (pkg/name.py) or an attribute.
      for alias in node.names:
        sub = f"{base}.{alias.name}"
        found = any((ROOT / (sub.replace(".", "/") + suffix)).exists()
                    for suffix in (".py", "/__init__.py"))
        out.append((sub if found else base, id(node) in top_level))
  return out


def _sources(folder: str) -> list[pathlib.Path]:
  return sorted((ROOT / folder).rglob("*.py"))


def test_no_experiment_imports_another():
  for path in _sources("experiments"):
    own = _module_name(path)
    for name, _ in _imports(path):
      if name.startswith("experiments.") and name != own:
        assert name in ("experiments._cli", "experiments._config") or own == "experiments.__main__", (
            f"{own} imports {name}")


@pytest.mark.parametrize("folder", ["benchmarks", "jaxgrad"])
def test_benchmarks_and_the_library_import_no_experiment(folder):
  for path in _sources(folder):
    for name, _ in _imports(path):
      assert not (name == "experiments" or name.startswith("experiments.")), (
          f"{_module_name(path)} imports {name}")
      if folder == "jaxgrad":
        assert not name.split(".")[0] in ("benchmarks", "tests"), f"{_module_name(path)} imports {name}"


def _jaxgrad_graph() -> dict[str, set[str]]:
  """Module -> the jaxgrad modules it needs loaded, packages as nodes of their own."""
  modules = {_module_name(p): p for p in _sources("jaxgrad")}
  graph: dict[str, set[str]] = {m: set() for m in modules}
  for module, path in modules.items():
    for name, _ in _imports(path):
      if name.split(".")[0] != "jaxgrad":
        continue
      while name not in modules:  # an attribute of a module: the module
        name = name.rpartition(".")[0]
      # Importing a.b.c loads the packages a and a.b first.
      parts = name.split(".")
      needed = {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)
      graph[module] |= needed - {module}
  # A package's own __init__ loading its submodules is not a dependency of those submodules.
  for module in graph:
    graph[module] = {m for m in graph[module] if not module.startswith(m + ".")}
  return graph


def test_jaxgrad_has_no_import_cycle():
  graph = _jaxgrad_graph()
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(module: str) -> None:
    state[module] = 1
    stack.append(module)
    for dep in sorted(graph[module]):
      if state.get(dep) == 1:
        cycle = stack[stack.index(dep):] + [dep]
        raise AssertionError("import cycle: " + " -> ".join(cycle))
      if dep not in state:
        visit(dep)
    stack.pop()
    state[module] = 2

  for module in sorted(graph):
    if module not in state:
      visit(module)


def test_no_jaxgrad_import_hides_inside_a_function():
  for path in _sources("jaxgrad"):
    hidden = [name for name, top in _imports(path) if not top and name.split(".")[0] == "jaxgrad"]
    assert not hidden, f"{_module_name(path)} imports {hidden} inside a function"
