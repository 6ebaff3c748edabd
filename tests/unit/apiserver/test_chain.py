"""The request chain's order and entries: authorization before any object is decoded, a Batch
authorized op by op, admission around the strategy's validation, and Kubernetes' refusal words."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from google.protobuf import any_pb2

from controlplane.apiserver.admission import Admission, AdmissionRequest
from controlplane.apiserver.authn import LOOPBACK, Authenticators, Credentials, LoopbackAuthenticator
from controlplane.apiserver.authz import ALLOW, DENY, Authorizers, Decision, forbidden_message
from controlplane.apiserver.bootstrap import ensure_default_namespaces
from controlplane.apiserver.chain import RequestChain
from controlplane.apiserver.nodeproxy import NodeProxy
from controlplane.apiserver.request import ANONYMOUS_USER, Attributes, UserInfo, attributes_of
from controlplane.apiserver.service import APIService
from controlplane.apiserver.watch import WatchHub
from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend
from ketch.api import errors
from ketch.v1 import api_pb2, core_pb2, meta_pb2


class DenyWrites:
    """Allows reads and creates of Pods only; denies the rest, naming a reason."""

    def __init__(self) -> None:
        self.seen: list[Attributes] = []

    def authorize(self, attrs: Attributes) -> Decision:
        self.seen.append(attrs)
        if attrs.verb in ("get", "list", "watch") or (attrs.verb == "create" and attrs.resource == "pods"):
            return Decision(ALLOW)
        return Decision(DENY, "not in this test")


@asynccontextmanager
async def chain_with(authorizer: object = None, admission: Admission | None = None) -> AsyncIterator[RequestChain]:
    registry = Registry()
    store = Store(MemoryBackend(), registry.field_values, parsed_on_read=registry.parsed_on_read())
    await store.start()
    hub = WatchHub(store)
    service = APIService(store, hub, registry=registry, admission=admission)
    proxy = NodeProxy(store)
    admin = RequestChain(service, proxy)
    await ensure_default_namespaces(admin)
    chain = admin if authorizer is None else RequestChain(
        service, proxy, authenticators=Authenticators([LoopbackAuthenticator()]),
        authorizers=Authorizers([authorizer]))  # type: ignore[list-item]
    try:
        yield chain
    finally:
        hub.close_all()
        await proxy.close()
        await store.stop()


def pod(name: str, namespace: str = "default") -> any_pb2.Any:
    p = core_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, namespace
    c = p.spec.containers.add()
    c.name, c.command[:] = "c", ["true"]
    out = any_pb2.Any()
    out.Pack(p)
    return out


def undecodable(name: str, kind: type = core_pb2.Pod) -> any_pb2.Any:
    """Good metadata, then a spec (field 4) whose own bytes no decoder accepts: only a full decode
    finds that out."""
    header = meta_pb2.PartialObjectMetadata()
    header.metadata.name, header.metadata.namespace = name, "default"
    return any_pb2.Any(type_url="type.googleapis.com/" + kind.DESCRIPTOR.full_name,
                       value=header.SerializeToString() + b"\x22\x03\xff\xff\xff")


async def test_an_unauthorized_request_is_refused_before_its_object_is_decoded() -> None:
    authorizer = DenyWrites()
    async with chain_with(authorizer) as chain:
        # A Node create is denied: Forbidden, not the BadRequest its bytes would earn.
        with pytest.raises(errors.Forbidden, match='User "system:apiserver" cannot create resource "nodes" '
                                                   'in API group "" at the cluster scope: not in this test'):
            await chain.unary("Create", api_pb2.CreateRequest(object=undecodable("n1", core_pb2.Node)), LOOPBACK)
        assert authorizer.seen[-1].name == "n1"
        # Allowed, the same bytes reach the decoder.
        with pytest.raises(errors.BadRequest, match="cannot decode"):
            await chain.unary("Create", api_pb2.CreateRequest(object=undecodable("p1")), LOOPBACK)


async def test_a_batch_is_authorized_op_by_op_and_a_refused_op_fails_alone() -> None:
    async with chain_with(DenyWrites()) as chain:
        batch = api_pb2.BatchRequest(ops=[
            api_pb2.BatchOp(create=api_pb2.CreateRequest(object=pod("a"))),
            api_pb2.BatchOp(delete=api_pb2.DeleteRequest(kind="Pod", namespace="default", name="a")),
            api_pb2.BatchOp(create=api_pb2.CreateRequest(object=pod("b"))),
        ])
        out = await chain.unary("Batch", batch, LOOPBACK)
        assert [r.reason for r in out.results] == ["", "Forbidden", ""]
        listed = await chain.unary("List", api_pb2.ListRequest(kind="Pod", namespace="default"), LOOPBACK)
        assert len(listed.items) == 2


async def test_unrecognised_credentials_are_unauthorized() -> None:
    async with chain_with(DenyWrites()) as chain:
        with pytest.raises(errors.Unauthorized):
            await chain.unary("Get", api_pb2.GetRequest(kind="Pod", name="x"), Credentials())


class Labeler:
    def admit(self, request: AdmissionRequest) -> None:
        request.obj.metadata.labels["admitted"] = "yes"


class NoPodsNamedBad:
    def __init__(self) -> None:
        self.requests: list[AdmissionRequest] = []

    def validate(self, request: AdmissionRequest) -> None:
        self.requests.append(request)
        if request.obj is not None and request.obj.metadata.name == "bad":
            raise errors.Forbidden("no pods named bad")


async def test_admission_mutates_before_validation_and_validates_after() -> None:
    validating = NoPodsNamedBad()
    async with chain_with(admission=Admission([Labeler()], [validating])) as chain:
        made = await chain.unary("Create", api_pb2.CreateRequest(object=pod("good")), LOOPBACK)
        stored = core_pb2.Pod.FromString(made.object.value)
        assert stored.metadata.labels["admitted"] == "yes"
        # The validating plugin saw the object as the strategy prepared it (server-set fields).
        assert validating.requests[-1].obj.status.phase == "Pending"
        assert validating.requests[-1].attrs.user.name == "system:apiserver"
        with pytest.raises(errors.Forbidden, match="no pods named bad"):
            await chain.unary("Create", api_pb2.CreateRequest(object=pod("bad")), LOOPBACK)
        with pytest.raises(errors.NotFound):
            await chain.unary("Get", api_pb2.GetRequest(kind="Pod", namespace="default", name="bad"), LOOPBACK)


async def test_namespace_lifecycle_is_an_admission_plugin_on_by_default() -> None:
    async with chain_with() as chain:
        with pytest.raises(errors.NotFound, match='namespaces "nowhere" not found'):
            await chain.unary("Create", api_pb2.CreateRequest(object=pod("p", "nowhere")), LOOPBACK)


Case = tuple[str, Callable[[], object], tuple[str, str, str, str, str]]
CASES: list[Case] = [
    ("Create", lambda: api_pb2.CreateRequest(object=pod("p", "")), ("create", "", "pods", "", "default")),
    ("List", lambda: api_pb2.ListRequest(kind="Job"), ("list", "batch", "jobs", "", "")),
    ("Watch", lambda: api_pb2.WatchRequest(kind="Node"), ("watch", "", "nodes", "", "")),
    ("Update", lambda: api_pb2.UpdateRequest(object=pod("p"), subresource="status"),
     ("update", "", "pods", "status", "default")),
    ("Update", lambda: api_pb2.UpdateRequest(object=pod("p"), subresource="binding"),
     ("create", "", "pods", "binding", "default")),
    ("Patch", lambda: api_pb2.PatchRequest(kind="DaemonSet", namespace="x", name="d"),
     ("patch", "apps", "daemonsets", "", "x")),
    ("PodLogs", lambda: api_pb2.PodLogsRequest(name="p"), ("get", "", "pods", "log", "default")),
    ("NodeStats", lambda: api_pb2.NodeStatsRequest(node="n"), ("get", "", "nodes", "stats", "")),
]


@pytest.mark.parametrize(("method", "make", "want"), CASES, ids=[f"{c[0]}-{c[2][3] or c[2][2]}" for c in CASES])
def test_request_attributes(method: str, make: Callable[[], object], want: tuple[str, ...]) -> None:
    a = attributes_of(ANONYMOUS_USER, method, make())  # type: ignore[arg-type]
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace) == want


def test_forbidden_messages_read_as_kubernetes_writes_them() -> None:
    user = UserInfo("x")
    assert forbidden_message(Attributes(user, "create", "batch", "jobs", namespace="default", name="pi")) == \
        'jobs.batch is forbidden: User "x" cannot create resource "jobs" in API group "batch" in the namespace ' \
        '"default"'
    assert forbidden_message(Attributes(user, "get", "", "pods", "log", "default", "p"), "not yours") == \
        'pods "p" is forbidden: User "x" cannot get resource "pods/log" in API group "" in the namespace ' \
        '"default": not yours'
    assert forbidden_message(Attributes(user, "list", "", "nodes")) == \
        'nodes is forbidden: User "x" cannot list resource "nodes" in API group "" at the cluster scope'
    assert forbidden_message(Attributes(user, "get", path="/version")) == \
        'forbidden: User "x" cannot get path "/version"'


def test_every_kind_has_a_strategy() -> None:
    registry = Registry()
    from ketch.api.kinds import KINDS

    assert all(registry[k.kind].info is k or registry[k.kind].info == k for k in KINDS)
