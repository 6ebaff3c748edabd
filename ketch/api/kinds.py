"""The kinds Ketch serves, and how each is named, stored and scoped.

The names come from the API itself: every kind is a message of ketch/v1 carrying the
`(ketch.v1.resource)` option (meta.proto), as Kubernetes' discovery describes its resources.
Every other module looks kinds up here instead of hard-coding message classes or plural names,
so adding a kind is its message in the protos plus its server-side strategy
(docs/checklist-new-kind.md).
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from google.protobuf.message import Message

from ketch.v1 import kinds_index

# ketch/v1's modules that hold kinds, in the order SERVED lists them.
MODULES = ("core_pb2", "secret_pb2", "configmap_pb2", "batch_pb2", "apps_pb2", "coordination_pb2", "rbac_pb2",
           "authorization_pb2")
PACKAGE = "ketch.v1"


class KindInfo(NamedTuple):
    """A served kind. A NamedTuple, not a frozen dataclass: every CLI command defines it, and a
    frozen dataclass costs ~1 ms of start-up (issue 14). Its message class is imported from
    `module` on first use, so a command that handles pods never loads the other kinds' modules."""

    kind: str
    api_version: str
    plural: str
    module: str  # the ketch.v1 module holding the message
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    # Kinds with a status subresource: spec writes keep status, status writes keep spec.
    has_status: bool = True
    # Questions answered on create and never stored (access reviews); not in KINDS.
    create_only: bool = False

    @property
    def message(self) -> type[Message]:
        cls = _MESSAGES.get(self.kind)
        if cls is None:
            cls = _MESSAGES[self.kind] = getattr(importlib.import_module(f"{PACKAGE}.{self.module}"), self.kind)
        return cls

    @property
    def full_name(self) -> str:
        """The message's protobuf name (`ketch.v1.Pod`), known without loading it."""
        return f"{PACKAGE}.{self.kind}"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def type_url(self) -> str:
        return "type.googleapis.com/" + self.full_name

    @property
    def qualified_plural(self) -> str:
        """`jobs.batch` as kubectl prints resource names; core kinds have no group."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def new(self) -> Message:
        return self.message()


_MESSAGES: dict[str, type[Message]] = {}


def served(modules: tuple[str, ...] = MODULES) -> tuple[KindInfo, ...]:
    """Every message of the modules that carries the `(ketch.v1.resource)` option (meta.proto), in
    declaration order: what ketch/v1/kinds_index.py records (scripts/kinds_index.py writes it at
    `make proto`; tests/unit/api/test_kinds_index.py fails when it is stale)."""
    from ketch.v1 import meta_pb2

    option: Any = meta_pb2.resource  # (its generated stub types it loosely)
    out = []
    for module_name in modules:
        module: Any = importlib.import_module(f"{PACKAGE}.{module_name}")
        for name in module.DESCRIPTOR.message_types_by_name:
            message: type[Message] = getattr(module, name)
            options = message.DESCRIPTOR.GetOptions()
            if not options.HasExtension(option):
                continue
            res = options.Extensions[option]
            out.append(KindInfo(name, res.api_version, res.plural, module_name, namespaced=not res.cluster_scoped,
                                short_names=tuple(res.short_names), has_status=not res.no_status_subresource,
                                create_only=res.create_only))
    return tuple(out)


# Read from the generated index, not the descriptors: loading every kind's module costs each CLI
# command ~5 ms (issue 14).
SERVED: tuple[KindInfo, ...] = tuple(KindInfo(*row) for row in kinds_index.KINDS)
# The kinds that are stored (what strategies, controllers and the store deal with).
KINDS: tuple[KindInfo, ...] = tuple(k for k in SERVED if not k.create_only)

_BY_KIND = {k.kind: k for k in SERVED}
_BY_MESSAGE = {k.full_name: k for k in SERVED}
_BY_NAME: dict[str, KindInfo] = {}
for _k in SERVED:
    for _name in (_k.kind, _k.plural, _k.singular, _k.qualified_plural, *_k.short_names):
        _BY_NAME[_name.lower()] = _k


class UnknownKindError(KeyError):
    def __str__(self) -> str:
        return f'the server doesn\'t have a resource type "{self.args[0]}"'


def kind_info(kind: str) -> KindInfo:
    """The kind by its exact name (`Job`)."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise UnknownKindError(kind) from None


def resolve(name: str) -> KindInfo:
    """The kind by any name a kubectl user types: `jobs`, `job`, `Job`, `cj`, `jobs.batch`."""
    try:
        return _BY_NAME[name.lower()]
    except KeyError:
        raise UnknownKindError(name) from None


def info_of(obj: Message) -> KindInfo:
    try:
        return _BY_MESSAGE[obj.DESCRIPTOR.full_name]
    except KeyError:
        raise UnknownKindError(obj.DESCRIPTOR.full_name) from None


def info_for_type_url(type_url: str) -> KindInfo:
    full_name = type_url.rpartition("/")[2]
    try:
        return _BY_MESSAGE[full_name]
    except KeyError:
        raise UnknownKindError(full_name) from None


def info_for_manifest(api_version: str, kind: str) -> KindInfo:
    info = _BY_KIND.get(kind)
    if info is None or info.api_version != api_version:
        raise UnknownKindError(f"{api_version}, Kind={kind}" if api_version else kind)
    return info
