"""Who asks for what: the user a request was authenticated as, and the request's attributes
(verb, API group, resource, subresource, namespace, name), read before any object is decoded.

These are Kubernetes' authorizer.Attributes: what RBAC, the Node authorizer and admission plugins
decide on. An object's namespace and name come from its metadata alone (PartialObjectMetadata),
so nothing of a request that may be refused is decoded in full.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from ketch.api import errors, limits
from ketch.api.kinds import KindInfo, info_for_type_url, kind_info
from ketch.v1 import api_pb2, meta_pb2


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


# FetchServerPKI's non-resource path (serverpki.py), for authorization.
SERVER_PKI_PATH = "/ketch/server-pki"

# kube-apiserver's own loopback identity: the control plane's in-process controllers.
LOOPBACK_USER = UserInfo("system:apiserver", ("system:authenticated", "system:masters"))
ANONYMOUS_USER = UserInfo("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True, slots=True)
class Attributes:
    """What one request does. A non-resource request (the version) has a path instead."""

    user: UserInfo
    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    kind: str = ""

    @property
    def resource_request(self) -> bool:
        return not self.path


def kind_or_404(kind: str) -> KindInfo:
    try:
        return kind_info(kind)
    except KeyError:
        raise errors.NotFound(f'the server doesn\'t have a resource type "{limits.clip(kind)}"') from None


def _of_kind(user: UserInfo, verb: str, info: KindInfo, namespace: str, name: str = "",
             subresource: str = "", all_namespaces: bool = False) -> Attributes:
    """A request on one kind; an empty namespace is "default" (as the server defaults it), or
    every namespace for a list or watch."""
    if not info.namespaced:
        namespace = ""
    elif not namespace and not all_namespaces:
        namespace = "default"
    return Attributes(user, verb, info.group, info.plural, subresource, namespace, name, kind=info.kind)


def kind_of_object(obj: any_pb2.Any) -> KindInfo:
    """The kind a request's object says it is, before anything of it is decoded; refuses an
    object of no known kind or over the size limit."""
    if not obj.type_url:
        raise errors.BadRequest("the request carries no object")
    try:
        info = info_for_type_url(obj.type_url)
    except KeyError as err:
        raise errors.BadRequest(limits.clip(str(err), 200)) from None
    if len(obj.value) > limits.MAX_OBJECT_BYTES:
        raise limits.object_too_large(info.kind, "", len(obj.value))
    return info


def _of_object(user: UserInfo, verb: str, obj: any_pb2.Any, subresource: str = "") -> Attributes:
    """From a request's object: its type, then only its metadata."""
    info = kind_of_object(obj)
    try:
        md = meta_pb2.PartialObjectMetadata.FromString(obj.value).metadata
    except DecodeError as err:
        raise errors.BadRequest(f"cannot decode the {info.kind}: {err}") from None
    return _of_kind(user, verb, info, md.namespace, md.name, subresource)


def _of_update(user: UserInfo, req: api_pb2.UpdateRequest) -> Attributes:
    # A binding is a create of pods/binding, as Kubernetes authorizes it.
    verb = "create" if req.subresource == "binding" else "update"
    return _of_object(user, verb, req.object, req.subresource)


def attributes_of(user: UserInfo, method: str, req: Message) -> Attributes:
    """The attributes of a request by its API method (a Batch's are per operation: batch_op)."""
    if method == "Create":
        return _of_object(user, "create", req.object)  # type: ignore[attr-defined]
    if method == "Update":
        return _of_update(user, req)  # type: ignore[arg-type]
    if method == "Get":
        return _of_kind(user, "get", kind_or_404(req.kind), req.namespace, req.name)  # type: ignore[attr-defined]
    if method in ("List", "Watch", "WatchBatched"):
        verb = "list" if method == "List" else "watch"
        return _of_kind(user, verb, kind_or_404(req.kind), req.namespace,  # type: ignore[attr-defined]
                        all_namespaces=True)
    if method == "Patch":
        return _of_kind(user, "patch", kind_or_404(req.kind), req.namespace, req.name,  # type: ignore[attr-defined]
                        req.subresource)  # type: ignore[attr-defined]
    if method == "Delete":
        return _of_kind(user, "delete", kind_or_404(req.kind), req.namespace, req.name)  # type: ignore[attr-defined]
    if method == "PodLogs":
        return _of_kind(user, "get", kind_info("Pod"), req.namespace, req.name, "log")  # type: ignore[attr-defined]
    if method == "Exec":  # Kubernetes: create on pods/exec (the connect verb of kubectl exec's POST)
        return _of_kind(user, "create", kind_info("Pod"), req.namespace, req.name, "exec")  # type: ignore[attr-defined]
    if method == "Attach":  # Kubernetes: create on pods/attach (kubectl attach's and run -i's POST)
        return _of_kind(user, "create", kind_info("Pod"), req.namespace, req.name, "attach")  # type: ignore[attr-defined]
    if method == "NodeStats":
        return _of_kind(user, "get", kind_info("Node"), "", req.node, "stats")  # type: ignore[attr-defined]
    if method == "Version":
        return Attributes(user, "get", path="/version")
    if method == "SignNodeCertificate":
        # Kubernetes' kubelet creates a CertificateSigningRequest; its approver checks
        # create on certificatesigningrequests/nodeclient.
        return Attributes(user, "create", "certificates.k8s.io", "certificatesigningrequests", "nodeclient",
                          name=req.node_name)  # type: ignore[attr-defined]
    if method == "FetchServerPKI":
        return Attributes(user, "get", path=SERVER_PKI_PATH)
    raise errors.BadRequest(f"unknown method {limits.clip(method)}")


BATCH_METHODS = {"create": "Create", "update": "Update", "patch": "Patch", "delete": "Delete"}


def batch_op(user: UserInfo, op: api_pb2.BatchOp) -> Attributes:
    which = op.WhichOneof("op")
    if which is None:
        raise errors.BadRequest("empty batch operation")
    return attributes_of(user, BATCH_METHODS[which], getattr(op, which))
