"""The shape of the code: the import graph of the installed package (every import, function-level ones
included) has no cycle and points only down the data path, and every path the docs name exists (issue 15)."""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import screenpop.daemon
import screenpop.db
import screenpop.simulator
import screenpop.tray

from support import ROOT


TOPS = {"screenpop.daemon": screenpop.daemon, "screenpop.db": screenpop.db, "screenpop.simulator": screenpop.simulator,
        "screenpop.tray": screenpop.tray}

# The data path: pbx -> calls -> record -> push -> web, with customers, reports and auth beside them for web, staff
# (the employee snapshot) beside them for record, push and web, sources (other systems' fields) beside customers for
# push and web, analysis (recordings' figures and transcripts) beside reports for web, and db below all. Each area names the areas it may import besides itself (db and daemon.config: every daemon area).
DATA_PATH = {
    "daemon.pbx": set(),
    "daemon.calls": {"daemon.pbx"},
    "daemon.record": {"daemon.pbx", "daemon.calls", "daemon.customers", "daemon.staff"},
    "daemon.push": {"daemon.record", "daemon.customers", "daemon.auth", "daemon.staff", "daemon.sources"},
    "daemon.reports": set(),
    "daemon.auth": set(),
    "daemon.customers": {"daemon.reports"},
    "daemon.web": {"daemon.pbx", "daemon.calls", "daemon.record", "daemon.push", "daemon.customers",
                   "daemon.reports", "daemon.auth", "daemon.staff", "daemon.sources", "daemon.analysis"},
    "daemon.staff": set(),
    "daemon.sources": set(),
    "daemon.analysis": set(),
}
BELOW_ALL = {"db", "daemon.config", "daemon.i18n"}
# the daemon's own top: the CLI, the runtime that wires the pipeline, the demo, the cluster election, log format
TOP = {"daemon.cli", "daemon.runtime", "daemon.demo", "daemon.demo_data", "daemon.cluster", "daemon.logformat",
       "daemon.sdnotify"}
# `screenpop simulate` and `screenpop tray` load their own stacks, lazily, from the one console script
CLI_ONLY = {("daemon.cli", "simulator"), ("daemon.cli", "tray")}


def modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, with its file."""
    found = {}
    for name, package in TOPS.items():
        folder = Path(package.__file__).parent
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((name, *parts))] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping `if TYPE_CHECKING:` bodies (annotations only, never run)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            yield from (n for sub in child.orelse for n in (sub, *_walk(sub)))
            continue
        yield child
        yield from _walk(child)


def imports(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, bool]]:
    """The screenpop modules a module imports, each with whether the import runs when the module loads."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    top_level = {id(n) for n in tree.body}
    for node in _walk(tree):
        at_load = id(node) in top_level
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("screenpop.") and target != name:
                yield target, at_load


def area(module: str) -> str:
    """The area of a module: db, simulator, tray, a daemon package, or a daemon top-level module."""
    parts = module.split(".")[1:]
    return ".".join(parts[:2]) if parts[0] == "daemon" and len(parts) > 1 else parts[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[tuple[str, bool]]]:
    found = modules()
    return {name: set(imports(name, path, set(found))) for name, path in found.items()}


def allowed(src: str, dst: str) -> bool:
    """Whether area src may import area dst."""
    if src == dst or (src, dst) in CLI_ONLY:
        return True
    if dst in ("simulator", "tray") or src == "tray":
        return False
    if src == "simulator":
        return dst == "daemon.pbx"
    if src == "db":
        return False
    if src in TOP:
        return dst != "daemon.cli"
    if dst in BELOW_ALL:
        return True
    return dst in DATA_PATH.get(src, set())


def test_imports_point_down_the_data_path(graph: dict[str, set[tuple[str, bool]]]) -> None:
    wrong = sorted(f"{src} imports {dst}" for src, targets in graph.items() for dst, _ in targets
                   if not allowed(area(src), area(dst)))
    assert wrong == [], "\n".join(wrong)


def test_the_daemon_never_loads_the_simulator(graph: dict[str, set[tuple[str, bool]]]) -> None:
    at_load = sorted(f"{src} imports {dst}" for src, targets in graph.items() for dst, load in targets
                     if area(dst) == "simulator" and area(src) != "simulator" and load)
    assert at_load == []


def test_no_import_cycles(graph: dict[str, set[tuple[str, bool]]]) -> None:
    """No cycle between modules, nor between areas (a package importing one that imports it back)."""
    def cycle(edges: dict[str, set[str]]) -> list[str]:
        state: dict[str, int] = {}
        path: list[str] = []

        def visit(node: str) -> list[str]:
            state[node] = 1
            path.append(node)
            for nxt in sorted(edges.get(node, ())):
                if state.get(nxt) == 1:
                    return path[path.index(nxt):] + [nxt]
                if nxt not in state and (found := visit(nxt)):
                    return found
            state[node] = 2
            path.pop()
            return []
        for node in sorted(edges):
            if node not in state and (found := visit(node)):
                return found
        return []

    module_edges = {src: {dst for dst, _ in targets} for src, targets in graph.items()}
    # a package's __init__ is its parent of every module in it: only real imports count
    assert cycle(module_edges) == []
    area_edges: dict[str, set[str]] = {}
    for src, targets in graph.items():
        for dst, _ in targets:
            if area(src) != area(dst):
                area_edges.setdefault(area(src), set()).add(area(dst))
    assert cycle(area_edges) == []


DOC_PATH = re.compile(r"`((?:daemon|db|tray|simulator|tests|bench|systemd|packaging|docs|\.ci)/[\w./-]*)`")


@pytest.mark.parametrize("doc", sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"]), ids=lambda p: p.name)
def test_every_path_the_docs_name_exists(doc: Path) -> None:
    missing = sorted({p for p in DOC_PATH.findall(doc.read_text()) if not (ROOT / p.rstrip("/")).exists()})
    assert missing == []


def test_the_command_line_loads_no_database_driver_before_gevent_patches() -> None:
    """`screenpop daemon` patches the standard library with gevent after reading its arguments; a psycopg imported
    before that (peewee imports it) waits for PostgreSQL's notifications without yielding, and the whole daemon hangs
    (it did, once: a top-level import of db.database in cli.py)."""
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, screenpop.daemon.cli; "
                             "print(sorted(m for m in ('psycopg', 'peewee', 'gevent.monkey') if m in sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
