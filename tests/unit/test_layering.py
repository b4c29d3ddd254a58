"""The direction of dependencies (ARCHITECTURE §3): the domain depends on nothing outside itself,
the application never on adapters or doors."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "alluse"

FORBIDDEN = {
    "domain": ("alluse.application", "alluse.adapters", "alluse.cli", "boto3", "pynamodb", "moto", "typer", "rich"),
    "application": ("alluse.adapters", "alluse.cli", "boto3", "pynamodb", "moto", "typer", "rich"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_reach_outward(layer: str) -> None:
    offences = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for name in sorted(_imports(path))
        if name.startswith(FORBIDDEN[layer])
    ]
    assert offences == []
