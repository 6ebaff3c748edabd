"""requirements.lock, which scripts/setup.sh installs with --no-deps --require-hashes, must pin with
hashes every requirement pyproject.toml names (runtime, dev extra and build backend) at a version
pyproject admits: a dependency added to pyproject but not re-locked would otherwise be missing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for every `name==version` entry of the lock."""
    out: dict[str, tuple[str, int]] = {}
    # An entry is `name==version \` followed by its `--hash=sha256:...` continuation lines.
    for entry in re.split(r"\n(?=\S)", (ROOT / "requirements.lock").read_text()):
        head = re.match(r"([A-Za-z0-9._-]+)==(\S+)", entry)
        if head:
            hashes = re.findall(r"--hash=sha256:[0-9a-f]{64}", entry)
            out[canonicalize_name(head.group(1))] = (head.group(2), len(hashes))
    return out


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = project["project"]["dependencies"] + project["project"]["optional-dependencies"]["dev"]
    return [Requirement(r) for r in reqs + project["build-system"]["requires"]]


def test_lock_pins_every_declared_requirement_at_an_admitted_version() -> None:
    locked = pins()
    problems = []
    for req in declared():
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req.name} is not in the lock")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"the lock pins {req.name}=={locked[name][0]}, outside {req}")
    assert not problems, "; ".join(problems) + ": run scripts/lock.sh"


def test_every_pin_carries_hashes() -> None:
    locked = pins()
    assert {"setuptools", "wheel", "grpcio-tools", "protobuf"} <= locked.keys()
    unhashed = [name for name, (_, hashes) in locked.items() if hashes == 0]
    assert not unhashed, f"pins without hashes (pip --require-hashes refuses them): {unhashed}"
