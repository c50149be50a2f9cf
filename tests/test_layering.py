"""The layers hold: the ``dispatcher`` library never imports Celery, ``tasks`` or the CLI, neither
directly nor by name through ``importlib``; only the CLI and the developer tools reach the Celery side."""

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


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("import_module", "__import__")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _within(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def library_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if not str(p.relative_to(ROOT)).startswith(FRONTS))


def violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {name}"
            for path in files for line, name in imported_names(path)
            if name == "<dynamic>" or _within(name, forbidden)]


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
