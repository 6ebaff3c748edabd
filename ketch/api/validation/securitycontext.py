"""Pod and container security contexts (pkg/apis/core/validation: ValidatePodSecurityContext,
ValidateSecurityContext), Kubernetes 1.31's rules and messages.

User and group ids are in [0, 2^31-1]; `allowPrivilegeEscalation: false` cannot go with
`privileged: true` nor with `CAP_SYS_ADMIN` in `capabilities.add` (Kubernetes compares that exact
string, so `SYS_ADMIN` passes, as there); `supplementalGroupsPolicy` is Merge or Strict;
`fsGroupChangePolicy` is Always or OnRootMismatch. Capability names are not validated, as in
Kubernetes (warnings.py names unknown ones; the agent refuses to start such a container), but
`capabilities` is a Struct here, so its shape is: `add` and `drop` are lists of strings.
"""

from __future__ import annotations

from ketch.api import capabilities
from ketch.api.errors import FieldError, invalid, not_supported
from ketch.v1 import core_pb2

from . import field
from .field import Errors, idx

MAX_INT32 = 2**31 - 1
UID_RANGE = field.inclusive_range_error(0, MAX_INT32)
SUPPLEMENTAL_GROUPS_POLICIES = ["Merge", "Strict"]
FS_GROUP_CHANGE_POLICIES = ["Always", "OnRootMismatch"]
PRIVILEGED_ESCALATION = "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
SYS_ADMIN_ESCALATION = "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"


def _ids(errs: Errors, sc: core_pb2.PodSecurityContext | core_pb2.SecurityContext, path: str,
         names: tuple[tuple[str, str], ...]) -> None:
    for name, json_name in names:
        if sc.HasField(name) and getattr(sc, name) < 0:
            errs.append(invalid(f"{path}.{json_name}", getattr(sc, name), UID_RANGE))


def pod_security_context(errs: Errors, sc: core_pb2.PodSecurityContext, path: str) -> None:
    _ids(errs, sc, path, (("fs_group", "fsGroup"), ("run_as_user", "runAsUser"), ("run_as_group", "runAsGroup")))
    for i, gid in enumerate(sc.supplemental_groups):
        if gid < 0:
            errs.append(invalid(idx(path + ".supplementalGroups", i), gid, UID_RANGE))
    if sc.HasField("fs_group_change_policy") and sc.fs_group_change_policy not in FS_GROUP_CHANGE_POLICIES:
        errs.append(not_supported(path + ".fsGroupChangePolicy", sc.fs_group_change_policy, FS_GROUP_CHANGE_POLICIES))
    if (sc.HasField("supplemental_groups_policy")
            and sc.supplemental_groups_policy not in SUPPLEMENTAL_GROUPS_POLICIES):
        errs.append(not_supported(path + ".supplementalGroupsPolicy", sc.supplemental_groups_policy,
                                  SUPPLEMENTAL_GROUPS_POLICIES))


def security_context(errs: Errors, sc: core_pb2.SecurityContext, path: str) -> None:
    _ids(errs, sc, path, (("run_as_user", "runAsUser"), ("run_as_group", "runAsGroup")))
    caps = capabilities.parse(sc.capabilities) if sc.HasField("capabilities") else capabilities.Capabilities()
    for where, problem in caps.problems:
        if not problem.startswith("unknown field"):  # an unknown key is a warning, as Kubernetes' decoder gives
            errs.append(FieldError("Invalid", f"{path}.capabilities.{where}", problem))
    if sc.HasField("allow_privilege_escalation") and not sc.allow_privilege_escalation:
        if sc.HasField("privileged") and sc.privileged:
            errs.append(invalid(path, sc.allow_privilege_escalation, PRIVILEGED_ESCALATION))
        if "CAP_SYS_ADMIN" in caps.add:
            errs.append(invalid(path, sc.allow_privilege_escalation, SYS_ADMIN_ESCALATION))
