"""The committed stubs in ketch/v1 must match, byte for byte, what the locked grpcio-tools makes of
proto/ketch/v1."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def locked_version(name: str) -> str:
    """The version requirements.lock pins for name (its `name==X` line)."""
    match = re.search(rf"^{re.escape(name)}==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert match, f"requirements.lock pins no {name}; run scripts/lock.sh"
    return match.group(1)


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    # Stubs carry the generator's version (GRPC_GENERATED_VERSION, the protobuf gencode version),
    # which sets the floors below; so compare against the locked generator only, and say so
    # instead of reporting every stub stale when another grpcio-tools is installed.
    installed, locked = importlib.metadata.version("grpcio-tools"), locked_version("grpcio-tools")
    assert installed == locked, (f"grpcio-tools {installed} is installed but requirements.lock pins {locked}: "
                                 "run ./scripts/setup.sh to bring .venv to the lock")
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto/ketch/v1").glob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", *protos],
                   cwd=ROOT, check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert generated, "protoc generated nothing"
    stale = [str(rel) for rel in generated
             if not (ROOT / rel).exists() or (ROOT / rel).read_bytes() != (tmp_path / rel).read_bytes()]
    assert not stale, f"generated protobuf code is stale: {stale}; run `make proto`"

