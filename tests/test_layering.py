"""The layers hold: every module imports only from its own floor or the floors below it, no two
modules import each other (even through a third, even inside a function), and the ``dispatcher``
library never imports Celery, ``tasks`` or the CLI, neither directly nor by name through
``importlib``; only the CLI and the developer tools reach the Celery side."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dispatcher"
#: Parts of ``dispatcher`` allowed to import the Celery side: the command line (and its
#: ``python -m dispatcher`` entry point) and the developer tools that start workers and beat.
FRONTS = ("dispatcher/cli/", "dispatcher/dev/", "dispatcher/__main__.py")
#: Modules the library must not import: Celery and its scheduler, our Celery glue, the CLI.
CELERY_SIDE = ("celery", "kombu", "redbeat", "tasks")
CLI = ("dispatcher.cli",)
#: The floors, bottom first: a module imports only from its own floor and the ones below it.
#: ``resources`` is the one composition root (it builds the stores and clients of every library
#: floor), so only what sits above it (the fronts) may use it. ``screens`` is a front helper: what
#: the CLI and the demo print, over the library's results; it sits under the fronts so that
#: ``dispatcher.dev`` shows the same screens without importing the CLI (it imports no front itself).
#: ``serving`` runs an ASGI app under uvicorn with read deadlines: the console and the webhook use it,
#: and it knows neither.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ground", ("dispatcher.settings", "dispatcher.keys", "dispatcher.errors", "dispatcher.schema",
                "dispatcher.money")),
    ("instasent", ("dispatcher.instasent",)),
    ("preflight", ("dispatcher.preflight",)),
    ("sending", ("dispatcher.sending",)),
    ("delivery", ("dispatcher.delivery",)),
    ("resources", ("dispatcher.resources",)),
    ("screens", ("dispatcher.screens",)),
    ("serving", ("dispatcher.serving",)),
    ("fronts", ("dispatcher.console", "dispatcher.webhook", "dispatcher.cli", "dispatcher.dev",
                "dispatcher.__main__", "tasks")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in ``path``, at any depth, and for every module named to
    ``importlib.import_module``, ``import_module`` or ``__import__``; a call whose name is not a
    literal yields ``"<dynamic>"``, since nothing can vouch for it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and _is_import_call(node.func):
            first = node.args[0] if node.args else None
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            yield node.lineno, first.value if literal else "<dynamic>"  # type: ignore[union-attr]


def imported_modules(path: Path, modules: set[str]) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every module of ``modules`` that ``path`` imports, at any depth:
    ``from package import name`` imports ``package.name`` when that is a module, else ``package``."""
    by_line: dict[int, set[str]] = {}
    for line, name in imported_names(path):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            by_line.setdefault(line, set()).add(name)
    for line, names in sorted(by_line.items()):
        # ``from package import module`` also names the package: that edge is not the import's.
        yield from ((line, name) for name in sorted(names) if not any(o.startswith(name + ".") for o in names))


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("import_module", "__import__")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _within(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def floor_of(name: str) -> int | None:
    """The index in :data:`FLOORS` of the module (or imported name) ``name``; ``dispatcher``
    itself (the package, which imports nothing) is on the ground floor; None when not ours."""
    if name == "dispatcher":
        return 0
    found = [(len(root), i) for i, (_, roots) in enumerate(FLOORS) for root in roots if _within(name, (root,))]
    return max(found)[1] if found else None


def upward_imports(files: list[Path]) -> list[str]:
    """Every import of a name on a floor above the importing module's, and every module on no floor."""
    out = []
    for path in files:
        here = floor_of(module_name(path))
        if here is None:
            out.append(f"{path.relative_to(ROOT)} is on no floor: add it to FLOORS")
            continue
        for line, name in imported_names(path):
            there = floor_of(name)
            if there is not None and there > here:
                out.append(f"{path.relative_to(ROOT)}:{line} ({FLOORS[here][0]}) imports {name} "
                           f"({FLOORS[there][0]}, a floor above)")
    return sorted(set(out))


def import_circles(files: list[Path]) -> list[list[str]]:
    """The circles among ``files``: each set of modules that reach one another through imports
    (strongly connected components of more than one module), sorted."""
    modules = {module_name(p): p for p in files}
    graph = {name: sorted({m for _, m in imported_modules(path, set(modules)) if m != name})
             for name, path in modules.items()}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the package has about 150 modules
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            component = []
            while (top := stack.pop()) != node:
                component.append(top)
            if component:
                circles.append(sorted([node, *component]))

    for name in graph:
        if name not in order:
            visit(name)
    return sorted(circles)


def library_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if not str(p.relative_to(ROOT)).startswith(FRONTS))


def violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {name}"
            for path in files for line, name in imported_names(path)
            if name == "<dynamic>" or _within(name, forbidden)]


def every_file() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "tasks").rglob("*.py"))


def test_no_module_imports_from_a_floor_above_its_own() -> None:
    upward = upward_imports(every_file())
    assert not upward, "\n".join(upward)


def test_no_two_modules_import_each_other_even_through_others_or_inside_a_function() -> None:
    circles = import_circles(sorted(PACKAGE.rglob("*.py")))
    assert not circles, "\n".join(" <-> ".join(circle) for circle in circles)


def test_the_floor_check_sees_an_import_from_a_floor_above_even_inside_a_function(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    package = tmp_path / "dispatcher"
    for name in ("preflight", "delivery"):
        (package / name).mkdir(parents=True)
    upward = package / "preflight" / "upward.py"
    upward.write_text("from dispatcher.keys import Keys\nfrom dispatcher.sending import store\n\n\n"
                      "def check():\n    from dispatcher.delivery import optout\n    return optout\n")
    stray = package / "stray.py"
    stray.write_text("")
    assert upward_imports([upward, stray]) == [
        "dispatcher/preflight/upward.py:2 (preflight) imports dispatcher.sending (sending, a floor above)",
        "dispatcher/preflight/upward.py:2 (preflight) imports dispatcher.sending.store (sending, a floor above)",
        "dispatcher/preflight/upward.py:6 (preflight) imports dispatcher.delivery (delivery, a floor above)",
        "dispatcher/preflight/upward.py:6 (preflight) imports dispatcher.delivery.optout (delivery, a floor above)",
        "dispatcher/stray.py is on no floor: add it to FLOORS",
    ]


def test_the_circle_check_sees_a_circle_through_a_third_module_closed_inside_a_function(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    package = tmp_path / "dispatcher" / "sending"
    package.mkdir(parents=True)
    sources = {"__init__": "", "a": "from dispatcher.sending import b\n", "b": "from dispatcher.sending.c import x\n",
               "c": "def x():\n    from dispatcher.sending.a import y\n", "d": "import dispatcher.sending.a\n"}
    for name, source in sources.items():
        (package / f"{name}.py").write_text(source)
    assert import_circles(sorted(package.glob("*.py"))) == [
        ["dispatcher.sending.a", "dispatcher.sending.b", "dispatcher.sending.c"]]


def test_the_library_never_imports_celery_tasks_or_the_cli_even_by_name() -> None:
    files = library_files()
    assert len(files) > 40  # the walk found the package
    assert violations(files, CELERY_SIDE + CLI) == []


def test_the_developer_tools_and_the_celery_glue_do_not_import_the_cli() -> None:
    files = sorted((PACKAGE / "dev").rglob("*.py")) + sorted((ROOT / "tasks").rglob("*.py"))
    assert violations(files, CLI) == []


def test_the_check_sees_an_import_hidden_behind_importlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    sneaky = tmp_path / "dispatcher" / "sneaky.py"
    sneaky.parent.mkdir()
    sneaky.write_text("import importlib\n\n\ndef glue():\n    from celery import Celery\n"
                      "    return importlib.import_module('tasks.enqueue'), __import__(name())\n")
    assert violations([sneaky], CELERY_SIDE + CLI) == [
        "dispatcher/sneaky.py:5 imports celery", "dispatcher/sneaky.py:5 imports celery.Celery",
        "dispatcher/sneaky.py:6 imports tasks.enqueue", "dispatcher/sneaky.py:6 imports <dynamic>",
    ]


def test_importing_every_library_module_loads_no_celery() -> None:
    modules = [module_name(p) for p in library_files()]
    probe = ("import importlib, sys\n"
             f"for name in {modules!r}:\n"
             "    importlib.import_module(name)\n"
             f"roots = {CELERY_SIDE + CLI!r}\n"
             "print(sorted(m for m in sys.modules if any(m == r or m.startswith(r + '.') for r in roots)))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
