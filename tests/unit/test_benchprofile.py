"""The benches' profiler switch: a process profiles itself only when KETCH_PROFILE_DIR is set, and
then writes stats pstats can read, even when the block ends by SystemExit (how main() returns)."""

from __future__ import annotations

import pstats
from pathlib import Path

import pytest

from ketch import benchprofile


def busy() -> int:
    return sum(i * i for i in range(1000))


def test_without_the_variable_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(benchprofile.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with benchprofile.profiled("controlplane"):
        busy()
    assert list(tmp_path.iterdir()) == []


def test_the_stats_name_what_ran_and_survive_system_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "profiles" / "secure"
    monkeypatch.setenv(benchprofile.ENV, str(out))
    with pytest.raises(SystemExit), benchprofile.profiled("nodeagent"):
        busy()
        raise SystemExit(0)
    [written] = list(out.iterdir())
    assert written.name.startswith("nodeagent-") and written.suffix == ".prof"
    functions = {name for _, _, name in pstats.Stats(str(written)).stats}  # type: ignore[attr-defined]
    assert "busy" in functions
