"""The flat layout's names, and flattening what an agent of the nested layout left behind (an
upgrade under running pods): a running container keeps its working dir and log file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nodeagent.runtime import checkpoint, layout
from nodeagent.runtime.checkpoint import PodRecord
from nodeagent.status import PodRun


def test_names(tmp_path: Path) -> None:
    assert layout.sandbox_dir(tmp_path, "u") == f"{tmp_path}/u"
    assert layout.state_file(str(tmp_path), "u") == f"{tmp_path}/u.state.json"
    path = layout.log_file(tmp_path, "u", "main", 3)
    assert path == f"{tmp_path}/u.main.3.log"
    assert layout.log_files(path) == [path, path + ".1", path + ".idx", path + ".1.idx"]


def _nested(root: Path, uid: str) -> Path:
    d = root / uid
    (d / "sandbox").mkdir(parents=True)
    (d / "sandbox" / "work").write_text("w")
    for name in ("main.0.log", "main.1.log", "main.1.log.1", "main.0.log.idx"):
        (d / name).write_text(name)
    (d / "state.json.tmp").write_text("{")
    checkpoint.save(str(d / "state.json"), PodRecord(uid, "ns", "p", PodRun(start_time=1.0)))
    return d


def test_migrate_nested_pods(tmp_path: Path) -> None:
    _nested(tmp_path, "a")
    # A pass cut short after the dir moved aside and the sandbox moved out.
    b = _nested(tmp_path, "b")
    b.rename(tmp_path / ".nested-b")
    (tmp_path / ".nested-b" / "sandbox").rename(tmp_path / "b")
    # Flat already: a sandbox that happens to hold a state.json is left alone.
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "state.json").write_text("{}")
    checkpoint.save(layout.state_file(tmp_path, "c"), PodRecord("c", "ns", "c", PodRun()))

    assert sorted(layout.migrate_nested(tmp_path)) == ["a", "b"]
    for uid in ("a", "b"):
        assert sorted(n for n in os.listdir(tmp_path) if n.startswith(uid)) == [
            uid, f"{uid}.main.0.log", f"{uid}.main.0.log.idx", f"{uid}.main.1.log", f"{uid}.main.1.log.1",
            f"{uid}.state.json"]
        assert (tmp_path / uid / "work").read_text() == "w"
        assert Path(layout.log_file(tmp_path, uid, "main", 1)).read_text() == "main.1.log"
        rec = checkpoint.load(layout.state_file(tmp_path, uid))
        assert rec is not None and rec.uid == uid
    assert os.listdir(tmp_path / "c") == ["state.json"]
    assert not any(n.startswith(".nested-") for n in os.listdir(tmp_path))
    assert sorted(r.uid for r in checkpoint.load_all(tmp_path)) == ["a", "b", "c"]
    assert layout.migrate_nested(tmp_path) == []


def test_a_running_container_follows_its_files(tmp_path: Path) -> None:
    d = _nested(tmp_path, "u")
    # A Python child, not `sh`: dash answers `pwd -P` from the directory it read at start, so the
    # shell's answer depended on whether it started before or after the move. The child blocks on
    # stdin until the migration is done, then asks the kernel where its working dir is now.
    child = "import os, sys; sys.stdin.read(); print(os.getcwd()); print(open('work').read(), end='')"
    with open(d / "main.2.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", child], cwd=d / "sandbox",
                                stdin=subprocess.PIPE, stdout=out, stderr=out)
    try:
        assert layout.migrate_nested(tmp_path) == ["u"]
        proc.communicate(timeout=10)
        assert proc.returncode == 0
    finally:
        proc.kill()
        proc.wait()
    assert Path(layout.log_file(tmp_path, "u", "main", 2)).read_text() == f"{tmp_path.resolve()}/u\nw"
