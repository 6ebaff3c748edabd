"""The direction of imports docs/design.md sets: controlplane and nodeagent never import each other;
ketch.* never imports either; ketch.api imports only ketch.v1; the CLI and client never import
the server side. Checked on the source (module-level and function-level imports alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package prefix -> prefixes it must not import
FORBIDDEN = {
    "controlplane": ("nodeagent",),
    "nodeagent": ("controlplane",),
    "ketch.api": ("ketch.client", "ketch.cli", "controlplane", "nodeagent"),
    "ketch.client": ("ketch.cli", "controlplane", "nodeagent"),
    "ketch.cli": ("controlplane", "nodeagent"),
    "ketch.local": ("ketch.cli", "controlplane", "nodeagent"),
    "ketch.testing": ("ketch.cli", "controlplane", "nodeagent"),
    "ketch.v1": ("ketch.api", "ketch.client", "ketch.cli", "controlplane", "nodeagent"),
    "controlplane.storage": ("controlplane.apiserver", "controlplane.controllers", "controlplane.scheduler"),
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for top in ("ketch", "controlplane", "nodeagent"):
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT)
            out.append((".".join(rel.with_suffix("").parts), path))
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return found


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_imports_follow_the_layering(module: str, path: Path) -> None:
    rules = [(pkg, banned) for pkg, banned in FORBIDDEN.items() if module == pkg or module.startswith(pkg + ".")]
    bad = sorted(imp for imp in _imports(path, module) for _, banned in rules for b in banned
                 if imp == b or imp.startswith(b + "."))
    assert not bad, f"{module} imports {bad}, against the layering in docs/design.md"
