"""Layering rules, checked by parsing imports with ``ast``: the core stays pure, hub/ stays
independent of the agent side."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "hub", "client", "opshub")

#: Modules that must stay sans-I/O: no event loop, no sockets, no database, no clock.
CORE = (
    "protocol/*.py",
    "protocol/store.py",
    "client/identity.py",
    "client/membership.py",
    "client/secure_messages.py",
    "opshub/histogram.py",
    "client/e2ee/*.py",
    "client/messages/*.py",
    "client/replay/scenario.py",
    "client/replay/plan.py",
    "client/replay/tally.py",
    "client/replay/aar.py",
    "client/replay/report.py",
    "client/replay/report_svg.py",
    "client/replay/progress.py",
    "client/replay/names.py",
    "client/replay/yaml_nodes.py",
    "client/replay/cases.py",
    "client/replay/plan_inspections.py",
    "client/replay/plan_hits.py",
    "client/exercise/clock.py",
    "client/exercise/engine.py",
    "client/exercise/expectations.py",
    "client/exercise/model.py",
    "client/exercise/times.py",
    "client/exercise/injects.py",
    "client/exercise/msel.py",
    "client/exercise/forms.py",
    "client/exercise/review.py",
    "client/teach/lesson.py",
    "client/teach/explanations.py",
    "client/teach/view.py",
    # opshub load: what it sends, measures and judges, apart from its processes and sockets
    "opshub/load/spec.py",
    "opshub/load/thresholds.py",
    "opshub/load/traffic.py",
    "opshub/load/plan.py",
    "opshub/load/messages.py",
    "opshub/load/recorder.py",
    "opshub/load/series.py",
    "opshub/load/results.py",
    "opshub/load/histograms.py",
    "opshub/load/e2ee_traffic.py",
    "opshub/load/cpu.py",
    "opshub/load/report_html.py",
)
FORBIDDEN_IN_CORE = frozenset({"asyncio", "aiohttp", "sqlite3", "socket", "time"})


def _files(*patterns: str) -> list[Path]:
    return sorted({p for pattern in patterns for p in ROOT.glob(pattern)})


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _top(name: str) -> str:
    return name.partition(".")[0]


ALL_FILES = _files(*(f"{pkg}/**/*.py" for pkg in PACKAGES))
HUB_FILES = _files("hub/**/*.py")
PROTOCOL_FILES = _files("protocol/**/*.py")
CORE_FILES = _files(*CORE)


_TYPE_CHECKING = {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def imports_in_source(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Absolute names of every module imported anywhere in ``source`` (also inside functions),
    with relative imports resolved against ``module``'s package. For ``from a import b`` both
    ``a`` and ``a.b`` are reported, since ``b`` may be a submodule."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(source)
    # Imports under ``if TYPE_CHECKING:`` never run; they only name types.
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in _TYPE_CHECKING:
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                prefix = ".".join([*parts, node.module] if node.module else parts)
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def imports_in_file(path: Path) -> set[str]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return imports_in_source(path.read_text(), ".".join(parts), is_package=is_package)


def _project_file(module: str) -> Path | None:
    """The file of a project module name, or None (third-party, stdlib, or a name that is
    not a module, like ``protocol.frames.Hello``)."""
    if _top(module) not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _transitive_io_imports(start: Path) -> dict[str, set[str]]:
    """Every project file reachable from ``start`` by imports that imports an I/O module."""
    seen: set[Path] = set()
    todo = [start]
    offenders: dict[str, set[str]] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        names = imports_in_file(path)
        bad = {m for m in names if _top(m) in FORBIDDEN_IN_CORE}
        if bad:
            offenders[_rel(path)] = bad
        todo.extend(p for m in names if (p := _project_file(m)) is not None)
    return offenders


def test_layers_finds_the_files_it_checks() -> None:
    """The globs match the listed core modules, so the checks cannot pass vacuously."""
    core = {_rel(p) for p in CORE_FILES}
    assert {"protocol/codec.py", "protocol/frames.py", "protocol/session.py",
            "protocol/store.py", "client/identity.py", "client/membership.py"} <= core
    assert "hub/store/sqlite.py" in {_rel(p) for p in HUB_FILES}


def test_layers_import_parser_sees_every_form_of_import() -> None:
    """The parser reports plain, aliased, from-, nested and relative imports."""
    source = (
        "import time as t\n"
        "from asyncio import sleep\n"
        "def f():\n"
        "    import socket\n"
        "from .. import session\n"
        "from . import codec\n"
        "from .frames import Hello\n"
    )
    found = imports_in_source(source, "hub.store.probe")
    assert {"time", "asyncio", "socket", "hub.session", "hub.store.codec",
            "hub.store.frames"} <= found


@pytest.mark.parametrize("path", HUB_FILES, ids=_rel)
def test_layers_hub_never_imports_client_or_opshub(path: Path) -> None:
    """No module under hub/ imports client/ or opshub/: the hub never depends on agents."""
    bad = {m for m in imports_in_file(path) if _top(m) in {"client", "opshub"}}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=_rel)
def test_layers_protocol_core_imports_neither_hub_nor_client(path: Path) -> None:
    """protocol/ is shared by both sides, so it depends on neither: no hub/, client/, opshub/."""
    bad = {m for m in imports_in_file(path) if _top(m) in {"hub", "client", "opshub"}}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", CORE_FILES, ids=_rel)
def test_layers_core_never_imports_io_modules(path: Path) -> None:
    """Pure core modules never import asyncio, aiohttp, sqlite3, socket or time."""
    bad = {m for m in imports_in_file(path) if _top(m) in FORBIDDEN_IN_CORE}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path",
    CORE_FILES,
    ids=_rel,
)
def test_layers_core_never_reaches_io_modules_through_project_imports(path: Path) -> None:
    """Following project imports from a core module never reaches a module importing I/O."""
    offenders = _transitive_io_imports(path)
    assert not offenders, f"{_rel(path)} reaches {offenders}"


def test_layers_import_parser_skips_type_checking_blocks() -> None:
    """Imports under `if TYPE_CHECKING:` are not counted: they never run."""
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio\n"
    assert "asyncio" not in imports_in_source(source, "client.x")
    assert "asyncio" in imports_in_source("import asyncio\n", "client.x")
