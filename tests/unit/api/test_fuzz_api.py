"""Property-based fuzzing of the API server's in-process path (APIService over a memory Store and
a WatchHub): decode -> default -> validate -> store, patches, and selectors on list and watch.

Whatever a client sends, each call either succeeds or raises a StatusError that is not an
InternalError; a refused write leaves the store's revision where it was; and every object in
the store re-validates cleanly and round-trips through its manifest JSON.

Bounded for CI: a fixed number of examples, derandomized (the same inputs every run), no
per-example deadline. `KETCH_FUZZ_EXAMPLES=2000` explores further with random inputs.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from google.protobuf import any_pb2
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controlplane.apiserver.bootstrap import ensure_default_namespaces
from controlplane.apiserver.local import LocalTransport
from controlplane.apiserver.service import APIService
from controlplane.apiserver.watch import WatchHub
from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend
from ketch.api import errors, manifest
from ketch.api.kinds import KINDS, info_of, kind_info
from ketch.v1 import api_pb2

from .objects import validate_create

T = TypeVar("T")

_EXPLORE = int(os.environ.get("KETCH_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXPLORE or 100,
    deadline=None,
    derandomize=not _EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ---------------------------------------------------------------------------------------------
# Valid manifests of the kinds a user writes, as the starting points of mutations.

_CONTAINER = {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hi"],
              "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}
_TEMPLATE = {"metadata": {"labels": {"app": "x"}},
             "spec": {"restartPolicy": "Never", "containers": [_CONTAINER]}}
BASES: dict[str, dict[str, Any]] = {
    "Pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "x", "tier": "a"}},
            "spec": {"restartPolicy": "Always", "containers": [_CONTAINER], "nodeSelector": {"disk": "ssd"}}},
    "Job": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "labels": {"app": "x"}},
            "spec": {"completions": 3, "parallelism": 2, "backoffLimit": 4, "completionMode": "Indexed",
                     "template": _TEMPLATE}},
    "CronJob": {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid",
                         "jobTemplate": {"spec": {"template": _TEMPLATE}}}},
    "DaemonSet": {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                  "spec": {"selector": {"matchLabels": {"app": "x"}},
                           "template": {"metadata": {"labels": {"app": "x"}},
                                        "spec": {"containers": [_CONTAINER]}}}},
    "Node": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "labels": {"zone": "a"}},
             "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}},
    "Namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a", "labels": {"t": "a"}}},
}
MANIFEST_KINDS = sorted(BASES)

# ---------------------------------------------------------------------------------------------
# Strategies

_words = st.sampled_from(["", "a", "x", "app", "main", "-", "A_b", "default", "kube-system", "1", "0", "-1",
                          "Never", "OnFailure", "Always", "Indexed", "NonIndexed", "Forbid", "*/1 * * * *",
                          "@hourly", "1Gi", "500m", "a" * 64, "a.b/c", "ünïcode", " ", "null", "true",
                          "2024-01-01T00:00:00Z", "not a time"])
_text = st.one_of(_words, st.text(max_size=12))
_ints = st.one_of(st.integers(-3, 10), st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63, 10**30]),
                  st.integers())
_scalars = st.one_of(st.none(), st.booleans(), _ints, st.floats(allow_nan=False, allow_infinity=False), _text)
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(_text, inner, max_size=3)),
                     max_leaves=8)
# YAML can carry what JSON cannot: NaN and infinities.
_yamlish = st.one_of(_json, st.floats())


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into doc (dict keys and list indices), the root excluded."""
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _like(value: Any) -> st.SearchStrategy[Any]:
    """Values of value's JSON type, which get past decoding to defaulting and validation."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return _ints
    if isinstance(value, str):
        return _text
    if isinstance(value, list):
        return st.lists(st.one_of(*(_like(v) for v in value[:1])) if value else _json, max_size=3)
    if isinstance(value, dict):
        return st.dictionaries(_text, _text, max_size=3)
    return _json


def _mutate(data: st.DataObject, doc: dict[str, Any], keep_kind: bool) -> dict[str, Any]:
    """A few random edits of doc: set a value, delete a key, or add an unknown or known key."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = [p for p in _paths(doc) if not (keep_kind and p in (("apiVersion",), ("kind",)))]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["set", "set", "delete", "add"]), label="action")
        if action == "set":
            parent[path[-1]] = data.draw(st.one_of(_like(parent[path[-1]]), _like(parent[path[-1]]), _yamlish),
                                         label="value")
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            key = data.draw(st.one_of(_text, st.sampled_from(list(parent))), label="key")
            parent[key] = data.draw(_yamlish, label="value")
        else:
            parent.append(data.draw(_yamlish, label="value"))
    return doc


def _selectors() -> st.SearchStrategy[str]:
    atoms = st.sampled_from(["app", "tier", "app=x", "app==x", "app!=x", "!app", "app in (x,y)", "app notin (x)",
                             "app in ()", "zone=a", "a.b/c=d", "app=", "=x", "in", "(", ")", ",", " ", "app gt 1",
                             "metadata.name=p", "metadata.namespace=default", "spec.nodeName=", "status.phase!=x",
                             "metadata.name", "spec.unknown=1", "app=" + "x" * 70, "x/" * 40])
    return st.one_of(st.lists(atoms, max_size=4).map(",".join), st.text(max_size=20))


# ---------------------------------------------------------------------------------------------
# The service, and the properties every call must keep


class API:
    """The API's operations through the whole request chain, as the control plane's own clients
    call it: attributes, authorization, decode, admission, validation, store."""

    def __init__(self, service: API) -> None:
        self.store = service.store
        self.transport = LocalTransport(service)

    def create(self, req: api_pb2.CreateRequest) -> Awaitable[api_pb2.ObjectResponse]:
        return self.transport.unary("Create", req)  # type: ignore[no-any-return]

    def update(self, req: api_pb2.UpdateRequest) -> Awaitable[api_pb2.ObjectResponse]:
        return self.transport.unary("Update", req)  # type: ignore[no-any-return]

    def patch(self, req: api_pb2.PatchRequest) -> Awaitable[api_pb2.ObjectResponse]:
        return self.transport.unary("Patch", req)  # type: ignore[no-any-return]

    def list(self, req: api_pb2.ListRequest) -> Awaitable[api_pb2.ListResponse]:
        return self.transport.unary("List", req)  # type: ignore[no-any-return]

    def watch(self, req: api_pb2.WatchRequest) -> AsyncIterator[api_pb2.WatchEvent]:
        return self.transport.stream("Watch", req)


def run(body: Callable[[API], Awaitable[None]]) -> None:
    """A fresh service for each example, so that an example replays the same way when shrunk."""

    async def main() -> None:
        registry = Registry()
        store = Store(MemoryBackend(), registry.field_values, parsed_on_read=registry.parsed_on_read())
        await store.start()
        hub = WatchHub(store)
        service = APIService(store, hub, registry=registry)
        api = API(service)
        await ensure_default_namespaces(api.transport.chain)
        try:
            await body(api)
            check_store(api)
        finally:
            hub.close_all()
            await store.stop()

    asyncio.run(main())


async def call(service: API, op: Awaitable[T]) -> T | None:
    """op's result, or None when the API refused it with a StatusError that is not internal.
    Any other exception propagates and fails the example."""
    before = service.store.revision
    try:
        result = await op
    except errors.StatusError as err:
        event(f"refused: {type(err).__name__}")
        assert not isinstance(err, errors.InternalError), f"internal error: {err}"
        assert service.store.revision == before, f"a refused call ({err}) changed the store"
        return None
    event("accepted")
    return result


def check_store(service: API) -> None:
    """Every stored object re-validates and round-trips through its manifest JSON."""
    for info in KINDS:
        for entry in service.store.list(info.kind, ""):
            obj = entry.obj
            errs = validate_create(obj)
            assert not errs, f"stored {info.kind} {entry.key} is invalid: {[str(e) for e in errs]}"
            text = manifest.to_json(obj)
            again = manifest.from_dict(json.loads(text))
            # The store keeps no apiVersion/kind (the type says them); the manifest always has them.
            again.api_version, again.kind = obj.api_version, obj.kind
            assert again == obj, f"stored {info.kind} {entry.key} does not round-trip:\n{text}"


def packed(obj: Any) -> any_pb2.Any:
    return any_pb2.Any(type_url=info_of(obj).type_url, value=obj.SerializeToString())


async def create_base(service: API, kind: str) -> Any:
    resp = await service.create(api_pb2.CreateRequest(object=packed(manifest.from_dict(BASES[kind]))))
    return resp.object


# ---------------------------------------------------------------------------------------------
# Tests


@FUZZ
@given(data=st.data(), kind=st.sampled_from([k.kind for k in KINDS]), update=st.booleans())
def test_random_bytes_as_any_kinds_object(data: st.DataObject, kind: str, update: bool) -> None:
    info = kind_info(kind)
    base = BASES.get(kind)
    valid = manifest.from_dict(base).SerializeToString() if base else b""
    # Raw noise, or a valid object's bytes with some of them changed or appended (protobuf wire noise).
    value = data.draw(st.one_of(
        st.binary(max_size=64),
        st.binary(min_size=1, max_size=8).map(lambda tail: valid + tail),
        st.integers(16, 2**20).map(lambda number: valid + _varint(number << 3) + b"\x01"),  # a field unknown here
        st.builds(lambda edits: _edit_bytes(valid, edits),
                  st.lists(st.tuples(st.integers(0, max(len(valid) - 1, 0)), st.binary(max_size=3)), max_size=4)),
    ), label="value")

    async def body(service: API) -> None:
        obj = any_pb2.Any(type_url=info.type_url, value=value)
        if update and base:
            await create_base(service, kind)
            await call(service, service.update(api_pb2.UpdateRequest(object=obj)))
        else:
            await call(service, service.create(api_pb2.CreateRequest(object=obj)))

    run(body)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _edit_bytes(data: bytes, edits: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(data)
    for at, new in edits:
        out[at:at + len(new)] = new
    return bytes(out)


@FUZZ
@given(data=st.data(), kind=st.sampled_from(MANIFEST_KINDS), keep_kind=st.booleans())
def test_random_manifests_are_stored_valid_or_refused(data: st.DataObject, kind: str, keep_kind: bool) -> None:
    doc = _mutate(data, BASES[kind], keep_kind)

    async def body(service: API) -> None:
        try:
            obj = manifest.from_dict(doc)
        except errors.StatusError as err:  # decoding refused it: a client error, not a crash
            event(f"not decoded: {type(err).__name__}")
            assert not isinstance(err, errors.InternalError), err
            return
        created = await call(service, service.create(api_pb2.CreateRequest(object=packed(obj))))
        if created is None:
            return
        # The same manifest again as an update of what was stored.
        stored = info_of(obj).new()
        created.object.Unpack(stored)
        obj.metadata.resource_version = stored.metadata.resource_version
        obj.metadata.name = stored.metadata.name
        await call(service, service.update(api_pb2.UpdateRequest(object=packed(obj))))

    run(body)


@FUZZ
@given(data=st.data(), kind=st.sampled_from(MANIFEST_KINDS),
       patch_type=st.sampled_from(["merge", "strategic", "json", "", "bogus"]),
       subresource=st.sampled_from(["", "", "status"]))
def test_random_patches_on_stored_objects(data: st.DataObject, kind: str, patch_type: str, subresource: str) -> None:
    async def body(service: API) -> None:
        stored = await create_base(service, kind)
        obj = kind_info(kind).new()
        stored.Unpack(obj)
        current = manifest.to_dict(obj)
        if patch_type == "json":
            paths = ["/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)
                     for path in _paths(current)]
            op = st.fixed_dictionaries(
                {"op": st.sampled_from(["add", "remove", "replace", "test", "move", "copy", "bogus"]),
                 "path": st.one_of(st.sampled_from(paths), _text)},
                optional={"value": _json, "from": st.one_of(st.sampled_from(paths), _text)})
            patch: Any = data.draw(st.one_of(st.lists(op, max_size=3), _json), label="patch")
        else:
            patch = data.draw(st.one_of(_mutate_to_patch(data, current), _json), label="patch")
        text = data.draw(st.one_of(st.just(json.dumps(patch)), st.text(max_size=10)), label="text")
        md = obj.metadata
        await call(service, service.patch(api_pb2.PatchRequest(
            kind=kind, namespace=md.namespace, name=md.name, patch_type=patch_type, patch=text,
            subresource=subresource)))

    run(body)


def _mutate_to_patch(data: st.DataObject, current: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A merge-style patch: the object with a few random edits, or a sparse piece of it."""
    edited = _mutate(data, current, keep_kind=data.draw(st.booleans(), label="keep kind"))
    return st.one_of(st.just(edited), st.just({k: v for k, v in edited.items() if k in ("metadata", "spec")}))


@FUZZ
@given(kind=st.sampled_from([k.kind for k in KINDS] + ["", "Bogus", "jobs"]), label=_selectors(),
       field=_selectors(), namespace=st.sampled_from(["", "default", "nope"]),
       resource_version=st.sampled_from(["", "0", "1", "999999", "-1", "x"]))
def test_random_selectors_on_list_and_watch(kind: str, label: str, field: str, namespace: str,
                                             resource_version: str) -> None:
    async def body(service: API) -> None:
        for k in MANIFEST_KINDS:
            await create_base(service, k)
        await call(service, service.list(api_pb2.ListRequest(
            kind=kind, namespace=namespace, label_selector=label, field_selector=field)))

        async def first_event() -> None:
            stream = service.watch(api_pb2.WatchRequest(
                kind=kind, namespace=namespace, label_selector=label, field_selector=field,
                resource_version=resource_version))
            try:
                # From "1" or "0" the stream replays what exists; otherwise it waits: stop there.
                await asyncio.wait_for(anext(stream), 0.05)
            except (TimeoutError, StopAsyncIteration):
                pass
            finally:
                await stream.aclose()

        await call(service, first_event())

    run(body)


# ---------------------------------------------------------------------------------------------
# Regressions the fuzzing found, kept as plain examples


def _node_bytes(**fields: Any) -> bytes:
    node = manifest.from_dict(BASES["Node"])
    for name, value in fields.items():
        setattr(node, name, value)
    return node.SerializeToString()


def _refused(value: bytes, update: bool = False) -> None:
    async def body(service: API) -> None:
        if update:
            await create_base(service, "Node")
        before = service.store.revision
        obj = any_pb2.Any(type_url=kind_info("Node").type_url, value=value)
        op = (service.update(api_pb2.UpdateRequest(object=obj)) if update
              else service.create(api_pb2.CreateRequest(object=obj)))
        try:
            await op
        except errors.BadRequest:
            assert service.store.revision == before
        else:
            raise AssertionError("stored")

    run(body)


def test_an_object_with_fields_unknown_to_the_server_is_refused() -> None:
    # Field 99, varint 1: kept by protobuf as an unknown field, then stored and served back.
    _refused(_node_bytes() + b"\x98\x06\x01")
    _refused(_node_bytes() + b"\x98\x06\x01", update=True)


def test_an_object_whose_api_version_or_kind_contradicts_its_type_is_refused() -> None:
    _refused(_node_bytes(api_version="\x00\x00"))
    _refused(_node_bytes(kind="Pod"), update=True)
