"""The layers, kept: every import of the project's own code (at the top of a module or inside a function) is read
from the source and checked against the rules of the README's "How it is built"."""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    path.name for path in ROOT.iterdir() if path.is_dir() and (path / "__init__.py").is_file() and path.name != "tests"
}
ENTRY_POINTS = {"cli", "worker"}  # modules at the top level
PROJECT = PACKAGES | ENTRY_POINTS

# What each part may not import (of the project).
FORBIDDEN: dict[str, set[str]] = {
    "core": PROJECT - {"core"},  # the vocabulary, settings, errors and contracts: below everything
    "imaging": PROJECT - {"imaging"},  # the engine stands alone
    "db": PROJECT - {"db", "core"},
    "activities": {"services", "api", "workflows", "web", "telemetry", *ENTRY_POINTS},
    # The workflow and the in-process driver reach activities only through core.contracts.
    "workflows": {"db", "activities", "services", "api", "storage", "imaging", "web", "telemetry", *ENTRY_POINTS},
    "services": {"api", "activities", "web", *ENTRY_POINTS},
    "storage": PROJECT - {"storage", "core"},
    "web": PROJECT - {"web", "core"},
}


def source_files() -> Iterator[tuple[str, Path]]:
    """(part, file) for every module of the project outside the tests."""
    for name in sorted(PACKAGES):
        for path in sorted((ROOT / name).rglob("*.py")):
            yield name, path
    for name in sorted(ENTRY_POINTS):
        yield name, ROOT / f"{name}.py"


def imported_parts(path: Path) -> Iterator[tuple[int, str]]:
    """(line, part of the project) for every import in the file, wherever it stands."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT or top == "tests":
                yield node.lineno, top


def dependencies() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {part: set() for part in PROJECT}
    for part, path in source_files():
        graph[part] |= {top for _, top in imported_parts(path) if top != part}
    return graph


def test_the_rules_know_every_part() -> None:
    assert set(FORBIDDEN) <= PROJECT
    assert {"api", "core", "db", "services", "activities", "workflows", "imaging", "storage"} <= PACKAGES


def test_no_import_runs_against_the_layers() -> None:
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for part, path in source_files()
        for line, top in imported_parts(path)
        if top in FORBIDDEN.get(part, set()) or top == "tests"
    ]
    assert broken == []


def test_no_cycle_between_parts() -> None:
    graph = dependencies()
    cycles = []

    def visit(part: str, trail: list[str]) -> None:
        for nxt in sorted(graph[part]):
            if nxt in trail:
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in done:
                visit(nxt, [*trail, nxt])
        done.add(part)

    done: set[str] = set()
    for part in sorted(graph):
        if part not in done:
            visit(part, [part])
    assert cycles == []


def test_the_checker_sees_a_broken_rule(tmp_path: Path) -> None:
    """The reader must find imports inside functions and `with` blocks too (the workflow imports so)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    with x():\n        from db.models import Batch\n    import activities.batch\n")
    assert sorted(imported_parts(module)) == [(3, "db"), (4, "activities")]
