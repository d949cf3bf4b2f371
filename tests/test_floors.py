"""The house's floors: a module imports only from its own floor or below, and no import circle exists.

The order below is the one place the rule is written (docs/architecture.md draws it). Every import of every
project module is read with ``ast`` (also imports inside functions: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Lowest floor first. A module may import modules of its own floor or of a lower one, never of a higher one.
# Rooms of one floor are apart unless SAME_FLOOR lets one import another: the middle floor's datasets and
# models stand alone, losses read models (the typed output, ``models.output``).
FLOORS: tuple[tuple[str, ...], ...] = (
    ("utils",),
    ("datasets", "models", "losses"),
    ("engine.experiment",),
    ("engine.runtime",),
    ("engine.inference",),
    ("engine.convert", "engine.training"),
    ("engine.tables",),
    ("engine.cli",),
    ("train_mpii", "train_coco", "evaluate", "demo", "tools", "benchmarks"),
)
# Within one floor, which packages may import which (a package always may import itself).
SAME_FLOOR: dict[str, tuple[str, ...]] = {
    "datasets": (),
    "models": (),
    "losses": ("models",),
    "engine.convert": (),
    "engine.training": (),
}
SOURCE_FOLDERS = ("utils", "datasets", "models", "losses", "engine", "tools", "benchmarks")


def module_name(path: Path, root: Path) -> str:
    """'engine/inference/predictor.py' -> 'engine.inference.predictor' (a package's __init__ -> the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of the project (the entry points at the top and the packages), by dotted name."""
    files = [p for p in root.glob("*.py")]
    for folder in SOURCE_FOLDERS:
        files += (root / folder).rglob("*.py")
    return {module_name(p, root): p for p in files}


def imports_of(path: Path, known: Iterable[str]) -> list[tuple[int, str]]:
    """(line, module) of every import of a project module in one file, lazy imports included."""
    known = set(known)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.append((node.lineno, name))
    return sorted(set(found))


def floor_of(module: str) -> tuple[int, str]:
    """(floor number, the FLOORS entry) of a module; the longest matching prefix wins."""
    best = (-1, "")
    for number, entries in enumerate(FLOORS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and len(entry) > len(best[1]):
                best = (number, entry)
    if best[0] < 0:
        raise AssertionError(f"module {module} is on no floor: add its package to FLOORS in {__file__}")
    return best


def floor_violations(root: Path) -> list[str]:
    """Each import that runs up a floor or across to a forbidden room, as 'file:line: a -> b (why)'."""
    modules = project_modules(root)
    problems = []
    for name, path in sorted(modules.items()):
        imports = imports_of(path, modules)
        if not imports:
            continue  # e.g. an empty package __init__
        own_floor, own_room = floor_of(name)
        for line, target in imports:
            floor, room = floor_of(target)
            where = f"{path.relative_to(root)}:{line}: {name} imports {target}"
            if floor > own_floor:
                problems.append(f"{where}, which is on a higher floor ({room} above {own_room})")
            elif floor == own_floor and room != own_room and room not in SAME_FLOOR.get(own_room, (room,)):
                problems.append(f"{where}: {own_room} may not import {room}")
    return problems


def circles(root: Path) -> list[list[str]]:
    """Every import circle between project modules (strongly connected components of more than one module)."""
    modules = project_modules(root)
    graph = {name: {t for _, t in imports_of(path, modules) if t != name} for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_no_import_runs_up_a_floor() -> None:
    problems = floor_violations(REPO_ROOT)
    assert not problems, "imports against the floors (tests/test_floors.py FLOORS):\n" + "\n".join(problems)


def test_no_import_circle() -> None:
    found = circles(REPO_ROOT)
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_planted_import_back_up_is_found(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "utils/__init__.py": "",
            "utils/errors.py": "X = 1\n",
            "utils/planted.py": "def f():\n    from engine.cli import main\n",
            "engine/__init__.py": "",
            "engine/cli.py": "from utils.errors import X\n\ndef main():\n    return X\n",
        },
    )
    problems = floor_violations(tmp_path)
    assert len(problems) == 1 and problems[0].startswith(
        "utils/planted.py:2: utils.planted imports engine.cli"
    )


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "datasets/__init__.py": "",
            "datasets/a.py": "import datasets.b\n",
            "datasets/b.py": "from datasets.a import thing\n",
        },
    )
    assert circles(tmp_path) == [["datasets.a", "datasets.b"]]


@pytest.mark.parametrize("room", ["datasets", "models"])
def test_the_middle_floor_rooms_are_apart(tmp_path: Path, room: str) -> None:
    other = "models" if room == "datasets" else "datasets"
    _plant(
        tmp_path,
        {
            f"{room}/__init__.py": "",
            f"{room}/x.py": f"import {other}.y\n",
            f"{other}/__init__.py": "",
            f"{other}/y.py": "",
        },
    )
    assert floor_violations(tmp_path) == [
        f"{room}/x.py:1: {room}.x imports {other}.y: {room} may not import {other}"
    ]
