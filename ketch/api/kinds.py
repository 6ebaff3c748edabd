"""The kinds Ketch serves, and how each is named, stored and scoped.

Every other module looks kinds up here instead of hard-coding message classes or plural names,
so adding a kind means one entry in KINDS (see docs/checklist-new-kind.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import Message

from ketch.v1 import apps_pb2, batch_pb2, coordination_pb2, core_pb2


@dataclass(frozen=True)
class KindInfo:
    kind: str
    api_version: str
    plural: str
    message: type[Message]
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    # Kinds with a status subresource: spec writes keep status, status writes keep spec.
    has_status: bool = True
    # Kinds whose spec changes bump metadata.generation.
    has_spec: bool = True
    aliases: frozenset[str] = field(default_factory=frozenset)

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def type_url(self) -> str:
        return "type.googleapis.com/" + self.message.DESCRIPTOR.full_name

    @property
    def qualified_plural(self) -> str:
        """`jobs.batch` as kubectl prints resource names; core kinds have no group."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def new(self) -> Message:
        return self.message()


KINDS: tuple[KindInfo, ...] = (
    KindInfo("Pod", "v1", "pods", core_pb2.Pod, short_names=("po",)),
    KindInfo("Node", "v1", "nodes", core_pb2.Node, namespaced=False, short_names=("no",)),
    KindInfo("Namespace", "v1", "namespaces", core_pb2.Namespace, namespaced=False, short_names=("ns",)),
    KindInfo("Event", "v1", "events", core_pb2.Event, short_names=("ev",), has_status=False, has_spec=False),
    KindInfo("Job", "batch/v1", "jobs", batch_pb2.Job),
    KindInfo("CronJob", "batch/v1", "cronjobs", batch_pb2.CronJob, short_names=("cj",)),
    KindInfo("DaemonSet", "apps/v1", "daemonsets", apps_pb2.DaemonSet, short_names=("ds",)),
    KindInfo(
        "ControllerRevision", "apps/v1", "controllerrevisions", apps_pb2.ControllerRevision,
        has_status=False, has_spec=False,
    ),
    KindInfo(
        "Lease", "coordination.k8s.io/v1", "leases", coordination_pb2.Lease, has_status=False,
    ),
)

_BY_KIND = {k.kind: k for k in KINDS}
_BY_MESSAGE = {k.message.DESCRIPTOR.full_name: k for k in KINDS}
_BY_NAME: dict[str, KindInfo] = {}
for _k in KINDS:
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
