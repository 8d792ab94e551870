"""The package's layering, checked on the source with the AST (no module is imported).

Layers, lowest first; a module may import only from its own layer or a lower one:

    0 foundations  xtra (the package __init__ only), errors, atomic, config, games, device,
                   seeds, actions, compat, resources
    1 components   xtra.envs, xtra.model, xtra.search, xtra.report
    2 storage      xtra.data, xtra.rundir
    3 acting       xtra.act
    4 learning     xtra.learn
    5 transfer     xtra.transfer
    6 pipeline     xtra.pipeline
    7 interface    xtra.cli, xtra.__main__

A module belongs to the layer of its longest matching prefix (``xtra`` itself matches only the
package __init__, so a new top-level module or package has no layer until it is placed here).
Every ``import`` and ``from ... import`` counts, at any depth (inside functions too), except those
under ``if TYPE_CHECKING:``. Further rules:

* the packages of layer 1 do not import each other, except :data:`LAYER1_ALLOWED`;
* no import cycle among xtra modules (module-level imports only: a function-level import runs
  after every module has loaded);
* no private name (``_x``) is imported from another module, not even by a package __init__.

Failure messages name the importing file, the line and the import statement.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "xtra"

LAYERS: dict[str, int] = {
    "xtra": 0,
    "xtra.errors": 0,
    "xtra.atomic": 0,
    "xtra.config": 0,
    "xtra.games": 0,
    "xtra.device": 0,
    "xtra.seeds": 0,
    "xtra.actions": 0,
    "xtra.compat": 0,
    "xtra.resources": 0,
    "xtra.envs": 1,
    "xtra.model": 1,
    "xtra.search": 1,
    "xtra.report": 1,
    "xtra.data": 2,
    "xtra.rundir": 2,
    "xtra.act": 3,
    "xtra.learn": 4,
    "xtra.transfer": 5,
    "xtra.pipeline": 6,
    "xtra.cli": 7,
    "xtra.__main__": 7,
}
EXACT_ONLY = {"xtra"}  # the package __init__: not a prefix of everything else
LAYER_NAMES = {
    0: "foundations",
    1: "components",
    2: "storage",
    3: "acting",
    4: "learning",
    5: "transfer",
    6: "pipeline",
    7: "interface",
}
LAYER1 = ("xtra.envs", "xtra.model", "xtra.search", "xtra.report")
LAYER1_ALLOWED: set[tuple[str, str]] = set()
"""(importer package, imported package) pairs allowed inside layer 1. Empty: today the search
takes the network as a callable (``recurrent_fn``) and never imports ``xtra.model``; envs,
model and report stand alone too."""


# --------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class Import:
    """One imported module of one import statement."""

    importer: str  # dotted module name of the importing file
    file: str  # the importing file, relative to the repository (or scan) root
    line: int
    target: str  # dotted name of the imported module (a submodule when it is one)
    names: tuple[str, ...]  # the names of a ``from`` import taken from ``target`` ("" for import)
    text: str  # the statement as written (first line)
    module_level: bool  # not inside a function body

    def where(self) -> str:
        return f"{self.file}:{self.line}: `{self.text}`"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """{dotted module name: file} of every module of ``package`` under ``root``."""
    return {
        module_name(p, root): p
        for p in sorted((root / package).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _from_base(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from`` import reads from (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = importer.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
    return ".".join([*parts, node.module] if node.module else parts)


def collect_imports(
    name: str, path: Path, modules: dict[str, Path], root: Path = ROOT
) -> list[Import]:
    """Every import of an xtra module in the file ``path`` (module ``name``) under ``root``."""
    file = path.relative_to(root).as_posix()
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def text(node: ast.stmt) -> str:
        segment = ast.get_source_segment(source, node) or ""
        first = segment.splitlines()[0] if segment else ""
        return first + (" ..." if "\n" in segment else "")

    def add(node: ast.stmt, target: str, names: tuple[str, ...], module_level: bool) -> None:
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            found.append(Import(name, file, node.lineno, target, names, text(node), module_level))

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, module_level)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name, ("",), module_level)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(name, is_package, node)
            by_target: dict[str, list[str]] = defaultdict(list)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # ``from xtra.data import replay``: the submodule itself
                    by_target[sub].append("")
                else:
                    by_target[base].append(alias.name)
            for target, names in by_target.items():
                add(node, target, tuple(names), module_level)
        inner = module_level and not isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
        )
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, True)
    return found


def layer_of(module: str) -> int | None:
    best, layer = -1, None
    for prefix, value in LAYERS.items():
        match = module == prefix or (prefix not in EXACT_ONLY and module.startswith(prefix + "."))
        if match and len(prefix) > best:
            best, layer = len(prefix), value
    return layer


def layer_package(module: str) -> str | None:
    """The LAYERS key a module belongs to."""
    best = None
    for prefix in LAYERS:
        match = module == prefix or (prefix not in EXACT_ONLY and module.startswith(prefix + "."))
        if match and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def describe(module: str) -> str:
    layer = layer_of(module)
    return f"{module} (layer {layer} {LAYER_NAMES.get(layer, '?')})"


# --------------------------------------------------------------------------- the checks


def layer_violations(imports: list[Import]) -> list[str]:
    out = []
    for imp in imports:
        have, want = layer_of(imp.importer), layer_of(imp.target)
        if have is None or want is None:
            continue  # reported by unplaced_modules
        if want > have:
            out.append(f"{imp.where()} -- {describe(imp.importer)} imports {describe(imp.target)}")
    return out


def layer1_violations(imports: list[Import]) -> list[str]:
    out = []
    for imp in imports:
        a, b = layer_package(imp.importer), layer_package(imp.target)
        if a in LAYER1 and b in LAYER1 and a != b and (a, b) not in LAYER1_ALLOWED:
            out.append(f"{imp.where()} -- layer-1 package {a} imports layer-1 package {b}")
    return out


def unplaced_modules(modules: dict[str, Path], imports: list[Import]) -> list[str]:
    out = [
        f"{path.relative_to(ROOT).as_posix()}: module {name} has no layer (add it to LAYERS)"
        for name, path in modules.items()
        if layer_of(name) is None
    ]
    out += [
        f"{imp.where()} -- imports {imp.target}, which has no layer"
        for imp in imports
        if layer_of(imp.target) is None and layer_of(imp.importer) is not None
    ]
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_violations(imports: list[Import]) -> list[str]:
    out = []
    for imp in imports:
        if imp.target == imp.importer:
            continue
        private_names = [n for n in imp.names if n and _private(n)]
        private_parts = [p for p in imp.target.split(".") if _private(p)]
        if private_names:
            out.append(
                f"{imp.where()} -- {imp.importer} imports private "
                f"{', '.join(private_names)} from {imp.target}"
            )
        elif private_parts and imp.target.rsplit(".", 1)[0] != imp.importer.rsplit(".", 1)[0]:
            out.append(f"{imp.where()} -- {imp.importer} imports private module {imp.target}")
    return out


def find_cycles(imports: list[Import]) -> list[list[Import]]:
    """One cycle (as its import edges) per strongly connected component of the module-level
    import graph that has more than one module or imports itself."""
    edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in imports:
        if imp.module_level:
            edges[imp.importer].setdefault(imp.target, imp)

    # Tarjan's strongly connected components (iterative).
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    nodes = sorted(set(edges) | {t for d in edges.values() for t in d})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))

    cycles = []
    for component in components:
        members = set(component)
        first = component[0]
        if len(component) == 1 and first not in edges.get(first, {}):
            continue
        # Shortest path from `first` back to itself inside the component (BFS).
        parent: dict[str, tuple[str, Import]] = {}
        frontier = [first]
        seen = {first}
        closing: Import | None = None
        while frontier and closing is None:
            nxt = []
            for node in frontier:
                for child, imp in sorted(edges.get(node, {}).items()):
                    if child == first:
                        closing = imp
                        break
                    if child in members and child not in seen:
                        seen.add(child)
                        parent[child] = (node, imp)
                        nxt.append(child)
                if closing is not None:
                    break
            frontier = nxt
        assert closing is not None
        path = [closing]
        node = closing.importer
        while node != first:
            node, imp = parent[node]
            path.append(imp)
        cycles.append(path[::-1])
    return cycles


def format_cycle(cycle: list[Import]) -> str:
    chain = " -> ".join([cycle[0].importer, *(imp.target for imp in cycle)])
    lines = "\n".join(f"    {imp.where()}" for imp in cycle)
    return f"cycle {chain}:\n{lines}"


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Import]]:
    modules = discover(ROOT)
    imports = [
        imp for name, path in modules.items() for imp in collect_imports(name, path, modules)
    ]
    return modules, imports


def _fail(title: str, problems: list[str]) -> None:
    if problems:
        pytest.fail(f"{title} ({len(problems)}):\n" + "\n".join(problems), pytrace=False)


def test_every_module_has_a_layer(graph):
    modules, imports = graph
    assert "xtra.config" in modules and "xtra" in modules  # the scan found the package
    _fail("modules without a layer", unplaced_modules(modules, imports))


def test_imports_point_down_the_layers(graph):
    _, imports = graph
    _fail("imports of a higher layer", layer_violations(imports))


def test_layer1_packages_do_not_import_each_other(graph):
    _, imports = graph
    _fail("imports between layer-1 packages", layer1_violations(imports))


def test_no_import_cycles(graph):
    _, imports = graph
    _fail("module-level import cycles", [format_cycle(c) for c in find_cycles(imports)])


def test_no_private_names_imported_from_other_modules(graph):
    _, imports = graph
    _fail("private names imported across modules", private_violations(imports))


# --------------------------------------------------------------------------- the checker itself


def test_checker_on_a_synthetic_package(tmp_path):
    """Nested, function-level, relative and TYPE_CHECKING imports; a cycle; a private name."""
    pkg = tmp_path / "xtra"
    (pkg / "data").mkdir(parents=True)
    (pkg / "learn").mkdir()
    files = {
        "__init__.py": "",
        "config.py": "import xtra.errors\n",
        "errors.py": "from xtra import config\n",  # cycle config <-> errors
        "data/__init__.py": "from .replay import Buffer\n",
        "data/replay.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from xtra.learn.loop import Source\n"
            "else:\n"
            "    from xtra.config import _hidden\n"
            "class Buffer:\n"
            "    def f(self):\n"
            "        from xtra.learn import loop\n"
            "        return loop\n"
        ),
        "learn/__init__.py": "",
        "learn/loop.py": "from ..data import replay\n",
    }
    for rel, body in files.items():
        (pkg / rel).write_text(body)
    modules = discover(tmp_path)
    imports = [imp for n, p in modules.items() for imp in collect_imports(n, p, modules, tmp_path)]
    got = {(i.importer, i.target, i.names, i.module_level) for i in imports}
    assert got == {
        ("xtra.config", "xtra.errors", ("",), True),
        ("xtra.errors", "xtra.config", ("",), True),
        ("xtra.data", "xtra.data.replay", ("Buffer",), True),
        ("xtra.data.replay", "xtra.config", ("_hidden",), True),
        ("xtra.data.replay", "xtra.learn.loop", ("",), False),
        ("xtra.learn.loop", "xtra.data.replay", ("",), True),
    }
    # The function-level upward import is a layer violation; the TYPE_CHECKING one is ignored.
    upward = [(i.importer, i.target) for i in imports if layer_of(i.target) > layer_of(i.importer)]
    assert upward == [("xtra.data.replay", "xtra.learn.loop")]
    # Module-level cycles only: config <-> errors, not replay -> loop -> replay.
    cycles = [sorted({imp.importer for imp in c}) for c in find_cycles(imports)]
    assert cycles == [["xtra.config", "xtra.errors"]]
    assert [v.split(" -- ")[1] for v in private_violations(imports)] == [
        "xtra.data.replay imports private _hidden from xtra.config"
    ]
    assert layer_of("xtra.newthing") is None and layer_of("xtra.learn.loop") == 4
