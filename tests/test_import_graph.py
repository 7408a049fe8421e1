"""The modules of ``leuk`` import each other without cycles, never from a higher floor of ``docs/architecture.md``,
and none of them grows past 600 lines.

How the graph is built (read with :mod:`ast`, nothing is imported):

- one node per module under ``leuk/``; a package is the node of its ``__init__.py`` (``leuk.hub``);
- every ``import``/``from ... import`` counts wherever it stands (module level, inside a function, a
  method or a ``try``), except under ``if TYPE_CHECKING:``, which never runs;
- relative imports are resolved to the full dotted name (``from . import x`` in ``leuk/hub/push.py``
  is ``leuk.hub.x``);
- ``import leuk.x.y`` depends on ``leuk.x.y`` only, not on ``leuk`` or ``leuk.x``, although Python runs
  their ``__init__`` first: a package's ``__init__`` is charged with what *it* imports, so the rule that
  remains is the useful one -- a submodule must not import names from its own package's ``__init__``
  while that ``__init__`` imports the submodule (directly, in a function, or through others);
- ``from leuk.x import y`` depends on ``leuk.x.y`` when ``y`` is a submodule, otherwise on ``leuk.x``;
- imports of anything outside ``leuk`` are ignored.

A cycle is a strongly connected component with more than one module. The floors are :data:`FLOORS` (the picture
of ``docs/architecture.md``): a module may import its own floor and the floors below, never one above (no
exceptions: the last ones, the engines' finishing step, moved up to :mod:`leuk.experiments.runs`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "leuk"
MAX_LINES = 600

#: The floors of ``docs/architecture.md`` ("Model families and floors"), lowest first; a module's floor is that of
#: the longest prefix listed. Apps (``app.py``, ``streamlit_app/``) stand above them all, outside ``leuk/``.
FLOOR_NAMES = ("records, io", "contract, models", "engines", "services", "commands")
FLOORS: dict[str, int] = {
    # records, io: the files a run writes, the one reader, errors, the verdict rule, defaults, data, metrics
    **dict.fromkeys(("leuk", "leuk.records", "leuk.io", "leuk.errors", "leuk.verdict", "leuk.defaults",
                     "leuk.devices", "leuk.data", "leuk.metrics", "leuk.selection"), 0),
    # the contract and the families (leuk.preprocess re-exports a family's standalone stain file)
    **dict.fromkeys(("leuk.models", "leuk.preprocess", "leuk.cell_detector"), 1),
    # training engines (leuk.segmentation trains the U-Net)
    **dict.fromkeys(("leuk.training", "leuk.segmentation"), 2),
    **dict.fromkeys(("leuk.serving", "leuk.experiments", "leuk.explain", "leuk.ood", "leuk.inference", "leuk.hub",
                     "leuk.export"), 3),
    **dict.fromkeys(("leuk.cli", "leuk.__main__"), 4),
}

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))
            if "__pycache__" not in path.parts}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom in the tree, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    # the package a relative import starts from: the module's own package, then one up per extra dot
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _dependencies(module: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _resolve_base(module, is_package, node)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        found.update(target for target in targets if target in known and target != module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _dependencies(name, path, known) for name, path in modules.items()}


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit), on a graph given as adjacency sets."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = lowlink[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = lowlink[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _describe_cycle(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    edges = [f"    {name} -> {target}" for name in component for target in sorted(graph[name] & members)]
    return "  {" + ", ".join(component) + "}\n" + "\n".join(edges)


def test_resolution_rules(tmp_path):
    known = {"leuk", "leuk.hub", "leuk.hub.cards", "leuk.hub.loader", "leuk.io"}
    path = tmp_path / "probe.py"
    path.write_text("from __future__ import annotations\n"
                    "from typing import TYPE_CHECKING\n"
                    "from . import cards\n"
                    "from .loader import thing\n"
                    "from .. import io\n"
                    "if TYPE_CHECKING:\n"
                    "    import leuk\n"
                    "def f():\n"
                    "    import numpy\n"
                    "    from leuk.hub import not_a_module\n", encoding="utf-8")
    # as a plain module leuk/hub/push.py ...
    assert _dependencies("leuk.hub.push", path, known) == {"leuk.hub.cards", "leuk.hub.loader", "leuk.io",
                                                          "leuk.hub"}
    # ... and as the package's own __init__.py (relative imports start one floor lower)
    package_init = tmp_path / "__init__.py"
    package_init.write_text(path.read_text(encoding="utf-8").replace("from .. import io", "from . import io"),
                            encoding="utf-8")
    assert _dependencies("leuk.hub", package_init, known) == {"leuk.hub.cards", "leuk.hub.loader"}


def test_scc_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    cycles = [c for c in strongly_connected_components(graph) if len(c) > 1]
    assert cycles == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = import_graph()
    assert "leuk.io" in graph and "leuk.hub.loader" in graph  # the walk found the package
    cycles = [component for component in strongly_connected_components(graph) if len(component) > 1]
    if cycles:
        pytest.fail("import cycles under leuk/ (module -> module it imports):\n"
                    + "\n".join(_describe_cycle(component, graph) for component in cycles))


def test_no_module_over_600_lines():
    offenders = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    offenders = {name: lines for name, lines in offenders.items() if lines > MAX_LINES}
    assert not offenders, f"modules over {MAX_LINES} lines (split them by responsibility): " + ", ".join(
        f"{name} ({lines})" for name, lines in sorted(offenders.items()))


def floor_of(module: str) -> int:
    """The floor of ``module`` (see :data:`FLOORS`); a module under no listed prefix fails the test."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in FLOORS:
            return FLOORS[prefix]
    raise KeyError(f"{module} is on no floor: add it to FLOORS and to the picture in docs/architecture.md")


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Every ``(importer, imported)`` whose imported module stands on a higher floor than its importer."""
    return {(name, target) for name, targets in graph.items() for target in targets
            if floor_of(target) > floor_of(name)}


def test_floor_rule_catches_an_upward_import():
    graph = {"leuk.io": {"leuk.hub.loader"}, "leuk.hub.loader": {"leuk.io", "leuk.models.family"},
             "leuk.cli.predict": {"leuk.inference"}}
    assert upward_imports(graph) == {("leuk.io", "leuk.hub.loader")}
    with pytest.raises(KeyError):
        floor_of("leuk_other.thing")


def test_every_module_stands_on_a_floor():
    unplaced = []
    for name in import_graph():
        try:
            floor_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced, f"modules on no floor (add them to FLOORS and to docs/architecture.md): {unplaced}"


def test_no_import_runs_up_a_floor():
    found = sorted(upward_imports(import_graph()))
    assert not found, "imports from a higher floor (importer -> imported; move the code down, or hand the " \
        "lower module what it needs):\n" + "\n".join(
        f"  {a} ({FLOOR_NAMES[floor_of(a)]}) -> {b} ({FLOOR_NAMES[floor_of(b)]})" for a, b in found)


#: The floor labels of the picture in ``docs/architecture.md`` and the floor each stands for.
PICTURE_LABELS = {"commands": 4, "services": 3, "engines": 2, "contract": 1, "models": 1, "records, io": 0}


def _picture_floors() -> dict[int, str]:
    """The text the architecture picture draws on each floor (a label's line and the lines under it)."""
    import re

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    picture = text[text.index("\n apps "):]
    picture = picture[:picture.index("```")]
    floors: dict[int, str] = {}
    current = None
    for line in picture.splitlines():
        label = next((label for label in PICTURE_LABELS if re.match(rf" {re.escape(label)}\s", line)), None)
        if label is not None:
            current = PICTURE_LABELS[label]
        if current is not None:
            floors[current] = floors.get(current, "") + line + "\n"
    return floors


def test_the_floors_are_those_the_architecture_document_draws():
    import re

    drawn = _picture_floors()
    assert set(drawn) == set(range(len(FLOOR_NAMES)))
    misplaced = [f"{package} (FLOORS: {FLOOR_NAMES[floor]})" for package, floor in FLOORS.items()
                 if package not in ("leuk", "leuk.__main__")
                 and not re.search(rf"(?<![\w.]){re.escape(package)}(?![\w])", drawn[floor])]
    assert not misplaced, f"not drawn on their floor in docs/architecture.md: {misplaced}"


def test_no_private_name_of_an_engine_is_imported_from_outside_it():
    """Experiments and commands use the engines' public API only (``from leuk.training.x import _y`` fails)."""
    offenders = []
    for name, path in _modules().items():
        if name.startswith("leuk.training"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _import_nodes(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leuk.training"):
                offenders += [f"{name}: {node.module}.{alias.name}" for alias in node.names
                              if alias.name.startswith("_")]
    assert not offenders, offenders
