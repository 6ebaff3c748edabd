"""How a container's process is confined, from its pod's securityContext and QoS class, or why
it cannot be run as asked (the kubelet's CreateContainerConfigError: the container waits, the pod
gets a Warning event, and nothing runs otherwise).

What each field means on a host-process runtime (container settings win over the pod's):

- runAsUser / runAsGroup: the process's uid and gid. A runAsUser without runAsGroup gets the
  user's primary group from the passwd database, or 65534 (nogroup) for a uid it does not know:
  never gid 0, never a group that may be someone else's. Asking for the agent's own user still
  sets that user's groups exactly (a root agent started with extra groups does not pass them on);
  a pod that asks for no user or group runs as the agent, with its user's groups (no switch
  unless the agent holds groups beyond those).
- supplementalGroups, fsGroup, supplementalGroupsPolicy: the supplementary groups are set exactly
  (setgroups), never inherited from the agent: with Merge (the default) the user's groups from the
  group database, then supplementalGroups, then fsGroup; with Strict only the last two. fsGroup
  also owns the pod's sandbox directory (setgid, group-writable), as it owns an emptyDir volume.
  The pod's logs stay the agent's.
- runAsNonRoot: a container that would run as uid 0 is refused with the kubelet's message. With no
  runAsUser the user is the agent's (there is no image user).
- capabilities: relative to what the container's user would have here. A root container starts
  from the agent's bounding set, a non-root one from none; then, in containerd's order, add ALL,
  drop ALL, add, drop. The result is the bounding set and, for root, the permitted, effective and
  inheritable sets; for a non-root user the added capabilities are also ambient, so they survive
  exec (Kubernetes drops them there). A name no kernel knows, or a capability the agent does not
  have, is refused. A container that says nothing about capabilities has its user's usual set.
- privileged: true runs with the agent's full privileges (capability settings do not apply, as in
  Kubernetes); refused when the agent is not root. false is the default and changes nothing.
- allowPrivilegeEscalation: false sets no_new_privs (setuid binaries and file capabilities give
  nothing). Unset means true, as in Kubernetes.
- readOnlyRootFilesystem: a private mount namespace in which every mount is read-only except
  /proc, /dev and the pod's sandbox (its scratch space, as an emptyDir volume would be; /tmp is
  read-only, as in a container). Needs CAP_SYS_ADMIN: refused otherwise.
- oom_score_adj: the kubelet's per QoS class (Guaranteed -997, BestEffort 1000, Burstable
  1000 - 1000 * memory request / node memory, within 3..999), never the agent's own (its unit
  protects it with -999). Without CAP_SYS_RESOURCE the agent cannot lower it below its own.
- RLIMIT_NOFILE: soft 1024, hard the agent's capped at 524288 (systemd's DefaultLimitNOFILE, what
  containerd 2 gives containers), never the agent's raised limit (its unit sets 1048576). Other
  limits are the agent's: it raises none.
"""

from __future__ import annotations

import os
import pwd
import resource
from dataclasses import dataclass

from ketch.api import capabilities, quantity
from ketch.api.qos import qos_class
from ketch.v1 import core_pb2

from . import procfs
from .runtime.confine import Confinement, last_cap

NOGROUP = 65534
NOFILE_SOFT = 1024
NOFILE_HARD = 524288
GUARANTEED_OOM_SCORE_ADJ = -997
BEST_EFFORT_OOM_SCORE_ADJ = 1000
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
CAP_SETGID, CAP_SETUID, CAP_SETPCAP = 6, 7, 8
CAP_SYS_ADMIN, CAP_SYS_RESOURCE = 21, 24


class ConfigError(Exception):
    """The container cannot run as its spec asks (CreateContainerConfigError)."""


@dataclass(frozen=True, slots=True)
class Host:
    """The agent's own identity, capabilities and limits: the most a container can be given."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    effective: int
    permitted: int
    bounding: int
    oom_score_adj: int
    nofile: tuple[int, int]
    memory: int  # bytes: the node's memory capacity
    # The groups the agent's user has in the group database (None: not known). When the agent
    # holds others (started from a shell that had them), a pod that asks for nothing gets these.
    own_groups: tuple[int, ...] | None = None

    @classmethod
    def current(cls) -> Host:
        caps = {"CapEff": 0, "CapPrm": 0, "CapBnd": 0}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in caps:
                    caps[key] = int(value, 16)
        oom = procfs.own_oom_score_adj()
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        uid, gid = os.geteuid(), os.getegid()
        entry = _passwd(uid)
        own = tuple(os.getgrouplist(entry.pw_name, gid)) if entry is not None else None
        return cls(uid, gid, tuple(os.getgroups()), caps["CapEff"], caps["CapPrm"], caps["CapBnd"], oom,
                   resource.getrlimit(resource.RLIMIT_NOFILE), memory, own)

    @property
    def has_foreign_groups(self) -> bool:
        """Whether the agent holds groups its user does not have (which a pod must not inherit)."""
        return self.own_groups is not None and {self.gid, *self.groups} != {self.gid, *self.own_groups}

    def can(self, cap: int) -> bool:
        return bool(self.effective >> cap & 1)


def _pick(csc: core_pb2.SecurityContext, psc: core_pb2.PodSecurityContext, name: str) -> int | bool | None:
    """The container's setting, else the pod's (Kubernetes' merge: the container wins)."""
    for sc in (csc, psc):
        if sc.HasField(name):
            value: int | bool = getattr(sc, name)
            return value
    return None


def pod_ref(pod: core_pb2.Pod) -> str:
    """The kubelet's format.Pod: name_namespace(uid)."""
    return f"{pod.metadata.name}_{pod.metadata.namespace}({pod.metadata.uid})"


def confinement(pod: core_pb2.Pod, c: core_pb2.Container, host: Host, sandbox: str) -> Confinement:
    """What c's process must be; ConfigError when this agent cannot make it so."""
    psc, csc = pod.spec.security_context, c.security_context
    user = _pick(csc, psc, "run_as_user")
    group = _pick(csc, psc, "run_as_group")
    uid = int(user) if user is not None else host.uid
    if _pick(csc, psc, "run_as_non_root"):
        if user == 0:
            raise ConfigError(f'container\'s runAsUser breaks non-root policy (pod: "{pod_ref(pod)}", '
                              f"container: {c.name})")
        if uid == 0:
            raise ConfigError(f'container has runAsNonRoot and image will run as root (pod: "{pod_ref(pod)}", '
                              f"container: {c.name})")
    privileged = csc.HasField("privileged") and csc.privileged
    if privileged and host.uid != 0:
        raise ConfigError(f"privileged: the agent runs as uid {host.uid}, not root, and cannot give a container "
                          "full privileges")
    ident = _identity(psc, None if user is None else uid, None if group is None else int(group), host)
    bounding, caps, ambient = (None, None, 0) if privileged else _capabilities(csc, uid, host)
    read_only = csc.HasField("read_only_root_filesystem") and csc.read_only_root_filesystem
    if read_only and not host.can(CAP_SYS_ADMIN):
        raise ConfigError(f"readOnlyRootFilesystem: the agent runs as uid {host.uid} without CAP_SYS_ADMIN and "
                          "cannot give the container a private mount namespace with a read-only root")
    oom = oom_score_adj(pod, c, host.memory)
    if not host.can(CAP_SYS_RESOURCE):
        oom = max(oom, host.oom_score_adj)
    nofile = nofile_limit(host.nofile)
    return Confinement(
        uid=ident[0] if ident else None, gid=ident[1] if ident else None, groups=ident[2] if ident else None,
        bounding=bounding, caps=caps, ambient=ambient,
        no_new_privs=csc.HasField("allow_privilege_escalation") and not csc.allow_privilege_escalation,
        read_only_root=read_only, writable=(sandbox,) if read_only else (),
        oom_score_adj=None if oom == host.oom_score_adj else oom,
        nofile=None if nofile == host.nofile else nofile)


def _passwd(uid: int) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


def _identity(psc: core_pb2.PodSecurityContext, user: int | None, group: int | None,
              host: Host) -> tuple[int, int, tuple[int, ...]] | None:
    """(uid, gid, groups) to switch to, or None when the pod asks for no identity but the agent's."""
    fs_group = psc.fs_group if psc.HasField("fs_group") else None
    if (user is None and group is None and not psc.supplemental_groups and fs_group is None
            and not (host.has_foreign_groups and host.can(CAP_SETGID))):
        return None
    uid = host.uid if user is None else user
    entry = _passwd(uid)
    if group is not None:
        gid = group
    elif user is None:
        gid = host.gid
    else:
        gid = entry.pw_gid if entry is not None else NOGROUP
    groups: list[int] = []
    if psc.supplemental_groups_policy != "Strict" and entry is not None:
        groups += os.getgrouplist(entry.pw_name, gid)
    groups += psc.supplemental_groups
    if fs_group is not None:
        groups.append(fs_group)
    exact = tuple(dict.fromkeys(groups))
    if uid == host.uid and gid == host.gid and (
            {gid, *exact} == {host.gid, *host.groups}
            or (not host.can(CAP_SETGID) and not psc.supplemental_groups and fs_group is None)):
        return None  # already so; or the agent's own user asked of an agent that cannot set groups
    if uid != host.uid and not host.can(CAP_SETUID):
        raise ConfigError(f"runAsUser: the agent runs as uid {host.uid} without CAP_SETUID and cannot run a "
                          f"container as uid {uid}")
    if (gid != host.gid or sorted(exact) != sorted(host.groups)) and not host.can(CAP_SETGID):
        raise ConfigError(f"runAsGroup, supplementalGroups, fsGroup: the agent runs as uid {host.uid} without "
                          f"CAP_SETGID and cannot run a container with gid {gid} and groups {list(exact)}")
    return uid, gid, exact


def _capabilities(csc: core_pb2.SecurityContext, uid: int, host: Host) -> tuple[int | None, int | None, int]:
    """(bounding set, permitted/effective/inheritable, ambient) from capabilities add and drop."""
    if not csc.HasField("capabilities"):
        return None, None, 0
    asked = capabilities.parse(csc.capabilities)
    for which, _, name in asked.unknown:
        raise ConfigError(f'capabilities.{which}: unknown capability "{name}"')
    if not asked.add and not asked.drop:
        return None, None, 0
    adds, add_all = _mask(asked.add)
    drops, drop_all = _mask(asked.drop)
    full = host.bounding
    if add_all:
        adds |= full
    missing = adds & ~full
    if missing:
        raise ConfigError(f"capabilities.add: the agent cannot give {', '.join(capabilities.names_of(missing))}: "
                          "not in its own capability bounding set")
    bounding = ((0 if drop_all else full) | adds) & ~drops
    if uid == 0:
        gained = bounding
    else:
        gained = adds & ~drops
        if gained & ~host.permitted:
            raise ConfigError(f"capabilities.add: the agent does not hold "
                              f"{', '.join(capabilities.names_of(gained & ~host.permitted))} to give a non-root user")
    if bounding != full and not host.can(CAP_SETPCAP):
        raise ConfigError(f"capabilities.drop: the agent runs as uid {host.uid} without CAP_SETPCAP and cannot "
                          "take capabilities out of a container's bounding set")
    if uid == 0:
        return (None if bounding == full else bounding), gained, 0
    return (None if bounding == full else bounding), (gained or None), gained


def _mask(names: tuple[str, ...]) -> tuple[int, bool]:
    mask, everything = 0, False
    top = last_cap()
    for name in names:
        if name.upper() == capabilities.ALL:
            everything = True
            continue
        n = capabilities.number(name)
        if n is None:
            continue
        if n > top:
            raise ConfigError(f'capabilities: "{name}" is not known to this node\'s kernel')
        mask |= 1 << n
    return mask, everything


def fs_group(pod: core_pb2.Pod) -> int | None:
    psc = pod.spec.security_context
    return psc.fs_group if psc.HasField("fs_group") else None


def nofile_limit(agent: tuple[int, int]) -> tuple[int, int]:
    """RLIMIT_NOFILE for a container: soft 1024, hard the agent's capped at 524288."""
    hard = agent[1]
    if hard == resource.RLIM_INFINITY or hard > NOFILE_HARD:
        hard = NOFILE_HARD
    return min(NOFILE_SOFT, hard), hard


def _memory_request(c: core_pb2.Container) -> int:
    text = c.resources.requests.get("memory")
    if not text:
        return 0
    try:
        return quantity.to_bytes(text)
    except ValueError:
        return 0


def oom_score_adj(pod: core_pb2.Pod, c: core_pb2.Container, memory: int) -> int:
    """The kubelet's GetContainerOOMScoreAdjust (pkg/kubelet/qos/policy.go, 1.31)."""
    spec = pod.spec
    if spec.priority_class_name == "system-node-critical" and spec.priority >= SYSTEM_CRITICAL_PRIORITY:
        return GUARANTEED_OOM_SCORE_ADJ
    qos = pod.status.qos_class or qos_class(spec)
    if qos == "Guaranteed":
        return GUARANTEED_OOM_SCORE_ADJ
    if qos == "BestEffort":
        return BEST_EFFORT_OOM_SCORE_ADJ
    memory = max(memory, 1)
    adj = 1000 - (1000 * _memory_request(c)) // memory
    sidecar = c.HasField("restart_policy") and c.restart_policy == "Always" and any(
        ic.name == c.name for ic in spec.init_containers)
    if sidecar and spec.containers:
        least = min(_memory_request(r) for r in spec.containers)
        adj = min(adj, 1000 - (1000 * least) // memory)
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    if adj == BEST_EFFORT_OOM_SCORE_ADJ:
        return adj - 1
    return adj
