from google.protobuf import any_pb2 as _any_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateRequest(_message.Message):
    __slots__ = ("object", "dry_run")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    object: _any_pb2.Any
    dry_run: bool
    def __init__(self, object: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("kind", "namespace", "label_selector", "field_selector")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    FIELD_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    label_selector: str
    field_selector: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., label_selector: _Optional[str] = ..., field_selector: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("items", "resource_version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    resource_version: str
    def __init__(self, items: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., resource_version: _Optional[str] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("object", "subresource", "dry_run")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    SUBRESOURCE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    object: _any_pb2.Any
    subresource: str
    dry_run: bool
    def __init__(self, object: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., subresource: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class PatchRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name", "patch_type", "patch", "subresource", "dry_run")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATCH_TYPE_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    SUBRESOURCE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    patch_type: str
    patch: str
    subresource: str
    dry_run: bool
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., patch_type: _Optional[str] = ..., patch: _Optional[str] = ..., subresource: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("kind", "namespace", "name", "grace_period_seconds", "propagation_policy", "preconditions", "dry_run")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROPAGATION_POLICY_FIELD_NUMBER: _ClassVar[int]
    PRECONDITIONS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    grace_period_seconds: int
    propagation_policy: str
    preconditions: Preconditions
    dry_run: bool
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., grace_period_seconds: _Optional[int] = ..., propagation_policy: _Optional[str] = ..., preconditions: _Optional[_Union[Preconditions, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class Preconditions(_message.Message):
    __slots__ = ("uid", "resource_version")
    UID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    uid: str
    resource_version: str
    def __init__(self, uid: _Optional[str] = ..., resource_version: _Optional[str] = ...) -> None: ...

class ObjectResponse(_message.Message):
    __slots__ = ("object", "warnings", "deleted")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    object: _any_pb2.Any
    warnings: _containers.RepeatedScalarFieldContainer[str]
    deleted: bool
    def __init__(self, object: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., deleted: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("kind", "namespace", "label_selector", "field_selector", "resource_version", "allow_bookmarks")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    FIELD_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALLOW_BOOKMARKS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    label_selector: str
    field_selector: str
    resource_version: str
    allow_bookmarks: bool
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., label_selector: _Optional[str] = ..., field_selector: _Optional[str] = ..., resource_version: _Optional[str] = ..., allow_bookmarks: _Optional[bool] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("type", "object", "resource_version")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    type: str
    object: _any_pb2.Any
    resource_version: str
    def __init__(self, type: _Optional[str] = ..., object: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., resource_version: _Optional[str] = ...) -> None: ...

class WatchEventList(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("ops",)
    OPS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[BatchOp]
    def __init__(self, ops: _Optional[_Iterable[_Union[BatchOp, _Mapping]]] = ...) -> None: ...

class BatchOp(_message.Message):
    __slots__ = ("create", "update", "patch", "delete")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    PATCH_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    create: CreateRequest
    update: UpdateRequest
    patch: PatchRequest
    delete: DeleteRequest
    def __init__(self, create: _Optional[_Union[CreateRequest, _Mapping]] = ..., update: _Optional[_Union[UpdateRequest, _Mapping]] = ..., patch: _Optional[_Union[PatchRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteRequest, _Mapping]] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchResult, _Mapping]]] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("code", "message", "reason", "response")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    response: ObjectResponse
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., response: _Optional[_Union[ObjectResponse, _Mapping]] = ...) -> None: ...

class PodLogsRequest(_message.Message):
    __slots__ = ("namespace", "name", "container", "follow", "previous", "tail_lines", "since_seconds", "timestamps", "limit_bytes", "pod_uid")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    SINCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    container: str
    follow: bool
    previous: bool
    tail_lines: int
    since_seconds: int
    timestamps: bool
    limit_bytes: int
    pod_uid: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., container: _Optional[str] = ..., follow: _Optional[bool] = ..., previous: _Optional[bool] = ..., tail_lines: _Optional[int] = ..., since_seconds: _Optional[int] = ..., timestamps: _Optional[bool] = ..., limit_bytes: _Optional[int] = ..., pod_uid: _Optional[str] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ExecRequest(_message.Message):
    __slots__ = ("namespace", "name", "container", "command", "pod_uid", "stdin")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    container: str
    command: _containers.RepeatedScalarFieldContainer[str]
    pod_uid: str
    stdin: bool
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., container: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., pod_uid: _Optional[str] = ..., stdin: _Optional[bool] = ...) -> None: ...

class ExecInput(_message.Message):
    __slots__ = ("request", "stdin")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    request: ExecRequest
    stdin: bytes
    def __init__(self, request: _Optional[_Union[ExecRequest, _Mapping]] = ..., stdin: _Optional[bytes] = ...) -> None: ...

class ExecOutput(_message.Message):
    __slots__ = ("stdout", "stderr", "exit_code")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exit_code: int
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit_code: _Optional[int] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("namespace", "name", "container", "pod_uid")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    container: str
    pod_uid: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., container: _Optional[str] = ..., pod_uid: _Optional[str] = ...) -> None: ...

class AttachInput(_message.Message):
    __slots__ = ("request", "stdin")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    request: AttachRequest
    stdin: bytes
    def __init__(self, request: _Optional[_Union[AttachRequest, _Mapping]] = ..., stdin: _Optional[bytes] = ...) -> None: ...

class AttachOutput(_message.Message):
    __slots__ = ("attached",)
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    attached: bool
    def __init__(self, attached: _Optional[bool] = ...) -> None: ...

class NodeStatsRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class NodeStatsResponse(_message.Message):
    __slots__ = ("node", "pods")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    node: ResourceUsage
    pods: _containers.RepeatedCompositeFieldContainer[PodUsage]
    def __init__(self, node: _Optional[_Union[ResourceUsage, _Mapping]] = ..., pods: _Optional[_Iterable[_Union[PodUsage, _Mapping]]] = ...) -> None: ...

class ResourceUsage(_message.Message):
    __slots__ = ("name", "cpu_millicores", "memory_bytes", "cpu_capacity_millicores", "memory_capacity_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLICORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_CAPACITY_MILLICORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    cpu_millicores: int
    memory_bytes: int
    cpu_capacity_millicores: int
    memory_capacity_bytes: int
    def __init__(self, name: _Optional[str] = ..., cpu_millicores: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., cpu_capacity_millicores: _Optional[int] = ..., memory_capacity_bytes: _Optional[int] = ...) -> None: ...

class PodUsage(_message.Message):
    __slots__ = ("namespace", "name", "usage", "containers")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    usage: ResourceUsage
    containers: _containers.RepeatedCompositeFieldContainer[ResourceUsage]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., usage: _Optional[_Union[ResourceUsage, _Mapping]] = ..., containers: _Optional[_Iterable[_Union[ResourceUsage, _Mapping]]] = ...) -> None: ...

class VersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("major", "minor", "git_version", "platform", "python_version", "kubernetes_semantics")
    MAJOR_FIELD_NUMBER: _ClassVar[int]
    MINOR_FIELD_NUMBER: _ClassVar[int]
    GIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_SEMANTICS_FIELD_NUMBER: _ClassVar[int]
    major: str
    minor: str
    git_version: str
    platform: str
    python_version: str
    kubernetes_semantics: str
    def __init__(self, major: _Optional[str] = ..., minor: _Optional[str] = ..., git_version: _Optional[str] = ..., platform: _Optional[str] = ..., python_version: _Optional[str] = ..., kubernetes_semantics: _Optional[str] = ...) -> None: ...

class NodeCertificateRequest(_message.Message):
    __slots__ = ("node_name", "client_csr", "serving_csr")
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CSR_FIELD_NUMBER: _ClassVar[int]
    SERVING_CSR_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    client_csr: bytes
    serving_csr: bytes
    def __init__(self, node_name: _Optional[str] = ..., client_csr: _Optional[bytes] = ..., serving_csr: _Optional[bytes] = ...) -> None: ...

class ServerPKIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerPKIResponse(_message.Message):
    __slots__ = ("ca_certificate", "ca_key", "kubelet_client_certificate", "kubelet_client_key")
    CA_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CA_KEY_FIELD_NUMBER: _ClassVar[int]
    KUBELET_CLIENT_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    KUBELET_CLIENT_KEY_FIELD_NUMBER: _ClassVar[int]
    ca_certificate: bytes
    ca_key: bytes
    kubelet_client_certificate: bytes
    kubelet_client_key: bytes
    def __init__(self, ca_certificate: _Optional[bytes] = ..., ca_key: _Optional[bytes] = ..., kubelet_client_certificate: _Optional[bytes] = ..., kubelet_client_key: _Optional[bytes] = ...) -> None: ...

class NodeCertificateResponse(_message.Message):
    __slots__ = ("client_certificate", "serving_certificate", "ca")
    CLIENT_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    SERVING_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CA_FIELD_NUMBER: _ClassVar[int]
    client_certificate: bytes
    serving_certificate: bytes
    ca: bytes
    def __init__(self, client_certificate: _Optional[bytes] = ..., serving_certificate: _Optional[bytes] = ..., ca: _Optional[bytes] = ...) -> None: ...
