"""The committed stubs in ketch/v1 must match, byte for byte, what the locked grpcio-tools makes of
proto/ketch/v1, and pyproject.toml's grpcio and protobuf floors must be what those stubs check at
import time (a lower floor installs fine and then dies on `import ketch.v1`)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "ketch" / "v1"


def locked_version(name: str) -> str:
    """The version requirements.lock pins for name (its `name==X` line)."""
    match = re.search(rf"^{re.escape(name)}==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert match, f"requirements.lock pins no {name}; run scripts/lock.sh"
    return match.group(1)


def floor(name: str) -> Version:
    """The lowest version pyproject.toml admits for a runtime dependency (its `>=` bound)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        if dep.name == name:
            lows = [Version(s.version) for s in dep.specifier if s.operator == ">="]
            assert lows, f"pyproject.toml gives {name} no floor: {dep}"
            return max(lows)
    raise AssertionError(f"pyproject.toml does not depend on {name}")


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


def test_grpcio_floor_is_what_the_stubs_check() -> None:
    stamps = {Version(v) for f in STUBS.glob("*_pb2_grpc.py")
              for v in re.findall(r"^GRPC_GENERATED_VERSION = '([^']+)'", f.read_text(), re.MULTILINE)}
    assert stamps, "no GRPC_GENERATED_VERSION in ketch/v1"
    assert floor("grpcio") == max(stamps), (
        f"ketch/v1 refuses grpcio older than {max(stamps)} but pyproject.toml says grpcio>={floor('grpcio')}")


def test_protobuf_floor_is_what_the_stubs_check() -> None:
    call = re.compile(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,"
                      r"\s*(\d+),\s*(\d+),\s*(\d+),")
    stamps = {Version(".".join(m)) for f in STUBS.glob("*_pb2.py") for m in call.findall(f.read_text())}
    assert stamps, "no ValidateProtobufRuntimeVersion call in ketch/v1"
    assert floor("protobuf") == max(stamps), (
        f"ketch/v1 refuses a protobuf runtime older than {max(stamps)} "
        f"but pyproject.toml says protobuf>={floor('protobuf')}")
