"""Read the shipped systemd units and env files as systemd does, for the tests that check them.

Only what deploy/ uses: sections of `Key=Value` lines (a key may repeat), comments, lines
continued with a backslash, EnvironmentFile= (`-` for optional), Environment=, and ExecStart=
with `$VAR` (split at whitespace into words) and `${VAR}` (one word) as systemd.exec(5) says.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
CONTROLPLANE_UNIT = DEPLOY / "ketch-controlplane.service"
AGENT_UNIT = DEPLOY / "ketch-agent.service"
# Where the units expect things on a real install (deploy/README.md).
INSTALL_BIN = "/opt/ketch/venv/bin"
ENV_DIR = "/etc/ketch"


@dataclass
class Unit:
    path: Path
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def values(self, key: str, section: str = "Service") -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]

    def value(self, key: str, section: str = "Service") -> str | None:
        """The last setting of key (a later line wins, as systemd reads single-valued keys)."""
        found = self.values(key, section)
        return found[-1] if found else None

    def keys(self, section: str = "Service") -> list[str]:
        return [k for k, _ in self.sections.get(section, [])]


def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if pending and line and line[0] in "#;":  # a comment inside a continued line is skipped
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def read_unit(path: Path) -> Unit:
    unit = Unit(path)
    section = ""
    for line in logical_lines(path.read_text()):
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.sections.setdefault(section, [])
            continue
        key, sep, value = line.partition("=")
        if not sep or not section:
            raise ValueError(f"{path}: not a Key=Value line in a section: {line!r}")
        unit.sections[section].append((key.strip(), value.strip()))
    return unit


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines; a value entirely in quotes loses them."""
    env: dict[str, str] = {}
    for line in logical_lines(path.read_text()):
        name, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise ValueError(f"{path}: not a NAME=value line: {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[name.strip()] = value
    return env


def environment(unit: Unit, env_dir: Path | None = None) -> dict[str, str]:
    """Environment= then each EnvironmentFile= in order (a later assignment wins). env_dir stands
    in for /etc/ketch; a missing optional (`-`) file is skipped as systemd does."""
    env: dict[str, str] = {}
    for key, value in unit.sections.get("Service", []):
        if key == "Environment":
            for word in shlex.split(value):
                name, _, val = word.partition("=")
                env[name] = val
        elif key == "EnvironmentFile":
            optional = value.startswith("-")
            path = value.lstrip("-")
            if env_dir is not None and path.startswith(ENV_DIR + "/"):
                path = str(env_dir / path[len(ENV_DIR) + 1:])
            if optional and not Path(path).exists():
                continue
            env.update(read_env_file(Path(path)))
    return env


def exec_start(unit: Unit, env: dict[str, str]) -> list[str]:
    """ExecStart= as the argv systemd runs: `$VAR` becomes the value's whitespace-separated words
    (none when empty or unset), `${VAR}` one word."""
    line = unit.value("ExecStart")
    if line is None:
        raise ValueError(f"{unit.path}: no ExecStart=")
    argv: list[str] = []
    for word in shlex.split(line):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            argv.extend(env.get(whole.group(1), "").split())
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return argv
