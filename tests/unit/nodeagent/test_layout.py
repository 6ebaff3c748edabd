"""The flat layout's names."""

from __future__ import annotations

from pathlib import Path

from nodeagent.runtime import layout


def test_names(tmp_path: Path) -> None:
    assert layout.sandbox_dir(tmp_path, "u") == f"{tmp_path}/u"
    assert layout.state_file(str(tmp_path), "u") == f"{tmp_path}/u.state.json"
    path = layout.log_file(tmp_path, "u", "main", 3)
    assert path == f"{tmp_path}/u.main.3.log"
    assert layout.log_files(path) == [path, path + ".1", path + ".idx", path + ".1.idx"]

