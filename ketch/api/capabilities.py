"""securityContext.capabilities: reading `add` and `drop` out of the stored Struct, and Linux
capability names and numbers.

The field is a google.protobuf.Struct in the protos, so its shape (`add` and `drop`, each a list
of strings) is checked here, once, for the API server's validation and for the agent. Names are
read as containerd reads them: case-insensitive, with or without the `CAP_` prefix, and `ALL`.
Kubernetes does not validate the names (a pod with an unknown one is stored, and its container
fails to start); Ketch does the same, with a warning at the API and a refusal on the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import struct_pb2

# Linux capability numbers (include/uapi/linux/capability.h), up to CAP_CHECKPOINT_RESTORE (5.9).
NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
NUMBERS = {name: i for i, name in enumerate(NAMES)}
ALL = "ALL"


def number(name: str) -> int | None:
    """The capability's number for a name as Kubernetes users write it, or None if unknown."""
    upper = name.upper()
    return NUMBERS.get(upper[4:] if upper.startswith("CAP_") else upper)


def names_of(mask: int) -> list[str]:
    """`CAP_X` names of the capabilities in a bit mask, lowest first."""
    return [f"CAP_{name}" for i, name in enumerate(NAMES) if mask >> i & 1]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the container asks for: names as written (ALL included), and shape problems."""

    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    # (JSON path below `capabilities`, problem) for anything that is not a list of strings.
    problems: tuple[tuple[str, str], ...] = ()

    @property
    def unknown(self) -> list[tuple[str, int, str]]:
        """(list, index, name) of every name that is neither ALL nor a Linux capability."""
        return [(which, i, name) for which, names in (("add", self.add), ("drop", self.drop))
                for i, name in enumerate(names) if name.upper() != ALL and number(name) is None]


def parse(struct: struct_pb2.Struct) -> Capabilities:
    """add and drop from the Struct; anything else in it is a problem named by its path."""
    lists: dict[str, tuple[str, ...]] = {}
    problems: list[tuple[str, str]] = []
    fields = struct.fields
    for key in sorted(fields, key=lambda k: (k not in ("add", "drop"), k)):
        value = fields[key]
        if key not in ("add", "drop"):
            problems.append((key, 'unknown field: only "add" and "drop" are capabilities fields'))
            continue
        kind = value.WhichOneof("kind")
        if kind == "null_value":
            continue
        if kind != "list_value":
            problems.append((key, "must be a list of capability names"))
            continue
        names = []
        for i, item in enumerate(value.list_value.values):
            if item.WhichOneof("kind") != "string_value":
                problems.append((f"{key}[{i}]", "must be a string"))
            else:
                names.append(item.string_value)
        lists[key] = tuple(names)
    return Capabilities(lists.get("add", ()), lists.get("drop", ()), tuple(problems))
