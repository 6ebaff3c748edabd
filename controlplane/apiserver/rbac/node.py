"""The Node authorizer (plugin/pkg/auth/authorizer/node): what an agent, the user
`system:node:NAME` in the group `system:nodes`, may do. Other users: no opinion.

As Kubernetes 1.31 (without the AuthorizeNodeWithSelectors gate, alpha there), a node may read
every Node and every Pod: its agent watches its own pods by the field selector spec.nodeName, but
the selector is not part of what is authorized (Kubernetes 1.32 begins checking it). Writes are
narrower than Kubernetes' static node rules, since Ketch's attributes carry the object's name on
create too and the agent needs less:

- Nodes: create, update, patch and delete its own Node (deleting it is how `--drain-on-exit`
  leaves), update and patch its own nodes/status. Names are compared directly, as Kubernetes
  does, so an agent may read or create its Node before it exists.
- Leases: get, create, update, patch, delete its own, in kube-node-lease.
- Pods: update and patch pods/status, and delete (the end of a graceful deletion), of pods bound
  to it. A pod that does not exist is let through, so the agent hears NotFound, what it acts on
  (it may read every pod anyway). Never create (Ketch has no mirror pods), never a spec update.
- Secrets and ConfigMaps: get, list and watch by name, of those that a pod bound to it references
  (env valueFrom and envFrom, volumes and projected volumes, imagePullSecrets: the edges of
  Kubernetes' graph), and nothing else; a list or watch without a name is refused.
- Events: create, update, patch, in any namespace.
- Access reviews: create subjectaccessreviews and localsubjectaccessreviews (as kubelets may).

Which node a pod is bound to is read from the store's committed objects (an in-memory field of
each Pod entry, nothing decoded); what a pod references, from the pods of the namespace bound to
the node (decoded only for a Secret or ConfigMap decision). Decisions are cached (cache.py): the
ones about a pod are dropped when that pod is created, deleted or bound, and the ones about a
node's Secrets and ConfigMaps when a pod bound to (or unbound from) that node changes so: they
are the only decisions that depend on anything but the request. NodeRestriction admission
(noderestriction.py) checks the same on the objects themselves, whatever the authorizer.
"""

from __future__ import annotations

from controlplane.storage import Store
from controlplane.storage.store import WatchEvent
from ketch.api import configrefs

from ..authz import ALLOW, NO_OPINION, Decision
from ..request import Attributes, UserInfo
from .cache import DecisionCache

NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
NODE_LEASE_NAMESPACE = "kube-node-lease"
READ = frozenset({"get", "list", "watch"})
NODE_FIELD = "spec.nodeName"
# Resources a node reads only when its pods reference them, and the kind configrefs names them by.
_REFERENCED = {"secrets": configrefs.SECRET, "configmaps": configrefs.CONFIGMAP}


def node_identity(user: UserInfo) -> tuple[str, bool]:
    """NodeIdentity: (node name, whether the user is a node); a node user needs both the name
    prefix and the group."""
    if not user.name.startswith(NODE_USER_PREFIX) or NODES_GROUP not in user.groups:
        return "", False
    return user.name[len(NODE_USER_PREFIX):], True


def _yes() -> Decision:
    return Decision(ALLOW)


def _no(reason: str = "") -> Decision:
    return Decision(NO_OPINION, reason)


class NodeAuthorizer:
    def __init__(self, store: Store, cache: DecisionCache | None = None) -> None:
        self.store = store
        self.cache = cache
        if cache is not None:
            store.add_listener(self.on_commit)

    def on_commit(self, events: list[WatchEvent]) -> None:
        """Forget what was decided about a pod whose existence or node changed."""
        cache = self.cache
        assert cache is not None
        for event in events:
            entry = event.entry
            if entry.kind != "Pod":
                continue
            prev = event.prev
            if event.type == "MODIFIED" and prev is not None and \
                    prev.fields.get(NODE_FIELD, "") == entry.fields.get(NODE_FIELD, ""):
                continue
            cache.drop(("Pod", entry.namespace, entry.name))
            for pod in (entry, prev):
                bound = pod.fields.get(NODE_FIELD, "") if pod is not None else ""
                if bound:
                    cache.drop(("References", bound))

    def authorize(self, attrs: Attributes) -> Decision:
        node, is_node = node_identity(attrs.user)
        if not is_node:
            return _no()
        if not node:
            return _no(f'unknown node for user "{attrs.user.name}"')
        if not attrs.resource_request:
            return _no()
        cache = self.cache
        if cache is None:
            return self._decide(node, attrs)[0]
        decision = cache.get(attrs)
        if decision is None:
            decision, tag = self._decide(node, attrs)
            cache.put(attrs, decision, tag)
        return decision

    def _decide(self, node: str, attrs: Attributes) -> tuple[Decision, object]:
        """The decision and, when it depends on a pod, that pod (the cache's tag)."""
        group, resource, sub, verb = attrs.api_group, attrs.resource, attrs.subresource, attrs.verb
        if group == "":
            if resource == "pods":
                return self._pod(node, attrs)
            if resource == "nodes":
                return self._node(node, attrs), None
            if resource == "events" and not sub and verb in ("create", "update", "patch"):
                return _yes(), None
            if resource in _REFERENCED:
                return self._referenced(node, _REFERENCED[resource], attrs), ("References", node)
        elif group == "coordination.k8s.io" and resource == "leases" and not sub:
            return self._lease(node, attrs), None
        elif group == "authorization.k8s.io" and verb == "create" and \
                resource in ("subjectaccessreviews", "localsubjectaccessreviews"):
            return _yes(), None
        return _no(), None

    def _node(self, node: str, attrs: Attributes) -> Decision:
        verb, sub = attrs.verb, attrs.subresource
        if not sub and verb in READ:
            return _yes()
        if (not sub and verb in ("create", "update", "patch", "delete")) or \
                (sub == "status" and verb in ("update", "patch")):
            if attrs.name == node:
                return _yes()
            return _no(f"node '{node}' cannot modify node '{attrs.name}', only its own Node object")
        return _no()

    def _lease(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return _no("can only get, create, update, patch, or delete a node lease")
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            return _no(f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        if attrs.name != node:
            return _no("can only access node lease with the same name as the requesting node")
        return _yes()

    def _referenced(self, node: str, kind: str, attrs: Attributes) -> Decision:
        """authorizeReadNamespacedObject: a Secret or ConfigMap a pod bound to the node names."""
        if attrs.verb not in READ:
            return _no("can only read resources of this type")
        if attrs.subresource:
            return _no("cannot read subresource")
        if not attrs.namespace:
            return _no("can only read namespaced object of this type")
        if not attrs.name:
            return _no("No Object name found")
        wanted = (kind, attrs.name)
        for entry in self.store.list("Pod", attrs.namespace):
            if entry.fields.get(NODE_FIELD, "") != node:
                continue
            spec = entry.obj.spec  # type: ignore[attr-defined]
            if wanted in configrefs.pod_refs(spec):
                return _yes()
        return _no(f"no relationship found between node '{node}' and this object")

    def _pod(self, node: str, attrs: Attributes) -> tuple[Decision, object]:
        verb, sub = attrs.verb, attrs.subresource
        if not sub and verb in READ:
            return _yes(), None
        if (sub == "status" and verb in ("update", "patch")) or (not sub and verb == "delete"):
            tag = ("Pod", attrs.namespace, attrs.name)
            entry = self.store.get("Pod", f"{attrs.namespace}/{attrs.name}")
            if entry is None or entry.fields.get(NODE_FIELD, "") == node:
                return _yes(), tag
            return _no(f"no relationship found between node '{node}' and this object"), tag
        return _no(), None
