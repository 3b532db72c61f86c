"""The package's import directions (docs/ARCHITECTURE.md): lower layers never import upper ones.

Read from the source (every import statement, the ones inside functions too), so a lazy import
that breaks a rule is caught as surely as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cooee_agent"

# (importer, what it must not import): each a dotted prefix inside cooee_agent.
FORBIDDEN = [
    ("identity", "protocol"),
    ("identity", "discovery"),
    ("identity", "bus"),
    ("identity", "config"),
    ("protocol", "discovery"),
    ("protocol", "agent"),
    ("protocol", "leader"),
    ("protocol", "bus"),
    ("protocol", "config"),
    ("bus", "config"),
    ("bus", "agent"),
    ("bus", "leader"),
    ("config", "discovery"),
    ("config", "agent"),
    ("config", "leader"),
    ("discovery", "agent"),
    ("discovery", "leader"),
    ("discovery", "protocol"),
    ("agent", "leader"),
    ("leader", "agent"),
    ("leader", "discovery"),
    # The HTTP server knows neither side: each hands it its routes.
    ("web", "agent"),
    ("web", "leader"),
    ("web", "discovery"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("cooee_agent.")}


def _within(name: str, prefix: str) -> bool:
    full = f"cooee_agent.{prefix}"
    return name == full or name.startswith(full + ".")


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_no_module_imports_against_the_layering(importer: str, imported: str) -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if not _within(module, importer):
            continue
        offenders += [
            f"{module} imports {name}" for name in _imports(path) if _within(name, imported)
        ]
    assert not offenders, "\n".join(offenders)
