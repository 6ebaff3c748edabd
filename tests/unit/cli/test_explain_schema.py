"""ketch/v1/comments.py (the .proto comments `ketch explain` shows) must be what
scripts/proto_comments.py makes of proto/ketch/v1 now, as the stubs must (test_generated_stubs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_proto_comments_are_fresh(tmp_path: Path) -> None:
    out = tmp_path / "comments.py"
    subprocess.run([sys.executable, "scripts/proto_comments.py", str(out)], cwd=ROOT, check=True)
    committed = (ROOT / "ketch" / "v1" / "comments.py").read_text()
    assert committed == out.read_text(), "ketch/v1/comments.py is stale: run `make proto`"


def test_comments_carry_field_comments() -> None:
    from ketch.v1.comments import COMMENTS

    assert COMMENTS["ketch.v1.JobSpec.parallelism"] == "Most pods running at once; default 1. Mutable."
