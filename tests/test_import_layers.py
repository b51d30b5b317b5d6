"""The package's module graph: no import cycle among ocdl's modules, and no module shadowed by a function."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

import ocdl

ROOT = Path(__file__).resolve().parents[1]
#: Import name of each source folder (solvers/ and problems/ install as ocdl.solvers and ocdl.problems).
FOLDERS = {"ocdl": ROOT / "ocdl", "ocdl.solvers": ROOT / "solvers", "ocdl.problems": ROOT / "problems"}


def module_files(folders: dict[str, Path]) -> dict[str, tuple[Path, bool]]:
    """``{module name: (file, is a package)}`` for every ``.py`` file under ``folders``."""
    modules = {}
    for prefix, folder in folders.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            modules[".".join((prefix,) + (parts[:-1] if is_package else parts))] = (path, is_package)
    return modules


def _runtime_imports(tree: ast.AST):
    """Every import statement, at any depth (lazy imports in functions too), except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(folders: dict[str, Path]) -> dict[str, set[str]]:
    """``{module: modules it imports}`` among the modules under ``folders``.

    ``from .x import y`` is an edge to ``x`` and, if ``x.y`` is a module, to ``x.y``; the parent packages
    that Python imports first are not edges (every module would then depend on the package's facade).
    """
    modules = module_files(folders)
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:  # from . (level 1) is the package itself, each further dot one package up
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, successors = work[-1]
            w = next(successors, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_among_ocdls_modules():
    graph = import_graph(FOLDERS)
    assert {"ocdl.propagation", "ocdl.stability", "ocdl.steppers.resnet", "ocdl.solvers.multilevel"} <= set(graph)
    assert "ocdl.stability" in graph["ocdl.steppers.resnet"]  # the steppers' diagnose uses the stability numerics
    assert "ocdl.propagation" not in graph["ocdl.stability"]  # ... which need no network module at run time
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n")
    (package / "b.py").write_text("def f():\n    from .sub.d import g\n")  # a lazy import is an edge too
    (package / "c.py").write_text("from . import a\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "d.py").write_text("from ..b import f\n")
    graph = import_graph({"pkg": package})
    assert graph["pkg.a"] == set() and graph["pkg.c"] == {"pkg", "pkg.a"}
    assert cycles(graph) == [["pkg.b", "pkg.sub.d"]]


def test_the_propagation_module_is_not_shadowed_by_the_network_function():
    import ocdl.propagation as propagation

    assert isinstance(propagation, types.ModuleType) and propagation.Network is ocdl.Network
    assert callable(ocdl.network) and not isinstance(ocdl.network, types.ModuleType)
    with pytest.raises(ModuleNotFoundError):
        __import__("ocdl.network")


def test_every_module_of_ocdl_has_its_place_in_the_import_contracts():
    """A new module of ocdl/ must be put in a layer of pyproject.toml's [tool.importlinter] (checked by .ci/lint)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    contracts = {contract["name"]: contract for contract in config["contracts"]}
    placed = set()
    for contract in contracts.values():
        for entry in contract.get("layers", []) + contract.get("source_modules", []):
            placed.update(name.strip() for name in entry.split("|"))
    top = {f"ocdl.{path.stem}" for path in (ROOT / "ocdl").glob("*.py") if path.stem not in ("__init__", "__main__")}
    top |= {f"ocdl.{path.name}" for path in (ROOT / "ocdl").iterdir() if (path / "__init__.py").is_file()}
    top |= {"ocdl.solvers", "ocdl.problems"}
    assert sorted(top - placed) == []
    assert sorted(placed - top) == []  # no contract names a module that is gone
