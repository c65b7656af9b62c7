"""The layers import inward only: errors → domain → ports → adapters/policy → service →
webhooks/testing → command line (docs/architecture.md). Parsed from the source, so a stray
import fails here before it tangles the package."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "bountyescrow"
STDLIB = sys.stdlib_module_names

#: For each layer, the bountyescrow modules it may import (prefixes).
ALLOWED: dict[str, tuple[str, ...]] = {
    "domain": ("bountyescrow.domain", "bountyescrow.errors"),
    "ports": ("bountyescrow.domain", "bountyescrow.errors", "bountyescrow.ports"),
    "policy": ("bountyescrow.domain", "bountyescrow.errors", "bountyescrow.ports"),
    "adapters": (
        "bountyescrow.domain",
        "bountyescrow.errors",
        "bountyescrow.ports",
        "bountyescrow.adapters",
        "bountyescrow._alerts",
    ),
    "service": (
        "bountyescrow.domain",
        "bountyescrow.errors",
        "bountyescrow.ports",
        "bountyescrow.policy",
        "bountyescrow.service",
        "bountyescrow._alerts",
        "bountyescrow._metrics",
    ),
}


def imports_of(path: Path) -> set[str]:
    """Every bountyescrow module `path` imports, at any depth (TYPE_CHECKING included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "bountyescrow":
            found.update(f"bountyescrow.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("bountyescrow")}


def modules(layer: str) -> list[Path]:
    root = PACKAGE / layer
    return sorted(root.rglob("*.py")) if root.is_dir() else [PACKAGE / f"{layer}.py"]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    stray = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules(layer)
        for name in imports_of(path)
        if not name.startswith(ALLOWED[layer])
    }
    assert stray == set()


def test_the_domain_imports_no_third_party_library_but_attrs() -> None:
    """The domain is pure: no SQLAlchemy, Stripe, pydantic or HTTP client."""
    stray = set()
    for path in modules("domain"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top not in ("bountyescrow", "attrs", "__future__") and top not in STDLIB:
                    stray.add(f"{path.relative_to(PACKAGE)} imports {name}")
    assert stray == set()
