"""No hidden state: only an entry point (the CLI, the Ray job entrypoint) may write environment variables (the
registry has no global either: tests/skills/test_registry.py)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("governance", "skills", "planner", "executor")


def _environment_writes(tree: ast.AST) -> list[int]:
    """Lines that assign into os.environ, call its setdefault/update/pop, or call os.putenv."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Subscript) and "environ" in ast.unparse(t.value) for t in targets):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = ast.unparse(node.func.value)
            if ("environ" in owner and node.func.attr in {"setdefault", "update", "pop", "__setitem__"}) or \
                    (owner == "os" and node.func.attr == "putenv"):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("package", LIBRARIES)
def test_libraries_never_write_the_environment(package: str) -> None:
    found = [f"{path.relative_to(ROOT)}:{line}" for path in sorted((ROOT / package).rglob("*.py"))
             for line in _environment_writes(ast.parse(path.read_text(), str(path)))]
    assert found == [], f"environment written at run time (move it to service.settings.configure_process): {found}"


def test_the_check_finds_a_write() -> None:
    tree = ast.parse("import os\nos.environ['A'] = '1'\nos.environ.setdefault('B', '2')\nos.putenv('C', '3')\n")
    assert _environment_writes(tree) == [2, 3, 4]
