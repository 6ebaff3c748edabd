"""Every manifest in examples/ decodes strictly and passes validation after defaulting, so the
README's examples apply as they stand."""

from __future__ import annotations

from pathlib import Path

import pytest

from ketch.api import manifest
from tests.unit.api.objects import apply_defaults, strategy_of, validate_create

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_object(path: Path) -> None:
    objs = manifest.parse_objects(path.read_text())
    assert objs
    for obj in objs:
        md = obj.metadata  # type: ignore[attr-defined]
        md.namespace = md.namespace or "default"
        md.uid = "0d9f4c55-2a6b-4d0e-9d43-6f0b8f2e0c11"
        md.generation = 1
        # As the API server does on create: defaults, then the server-set fields, then validation.
        apply_defaults(obj)
        strategy_of(obj).prepare_for_create(obj, 0.0)
        assert validate_create(obj) == [], path.name
