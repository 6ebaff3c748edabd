"""Authorization as kube-apiserver builds it from --authorization-mode (Node,RBAC by default):
the authorizers in order behind the system:masters fast path, the RBAC index they read, their
decision caches, and the admission steps that go with them (NodeRestriction, RBAC escalation
prevention).

    index.py           RBAC objects in memory, fed by the store's commits, bindings by subject
    rules.py           a rule against a request; covering, for escalation (pure)
    authorizer.py      RBAC
    node.py            the Node authorizer
    cache.py           decisions remembered until what they depend on changes
    noderestriction.py NodeRestriction admission
    escalation.py      a user grants only what it holds (or may escalate / bind)
    bootstrap.py       the default ClusterRoles and bindings, reconciled at start
"""

from __future__ import annotations

from controlplane.storage import Store

from ..admission import Admission
from ..authz import AlwaysAllow, AlwaysDeny, Authorizer, Authorizers, PrivilegedGroups
from .authorizer import RBACAuthorizer
from .cache import CachedAuthorizer, DecisionCache
from .escalation import RBACEscalationCheck
from .index import RBACIndex
from .node import NodeAuthorizer
from .noderestriction import NodeRestriction

__all__ = ["DEFAULT_MODES", "MODES", "Authorization", "NodeRestriction", "RBACEscalationCheck", "parse_modes"]

MODES = ("AlwaysAllow", "AlwaysDeny", "Node", "RBAC")
DEFAULT_MODES = ("Node", "RBAC")


def parse_modes(text: str) -> tuple[str, ...]:
    """`Node,RBAC` to its modes, refusing unknown and repeated ones in kube-apiserver's words."""
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes:
        raise ValueError("at least one authorization-mode must be passed")
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f'authorization-mode "{mode}" is not a valid mode (valid: {", ".join(MODES)})')
    repeated = sorted({m for m in modes if modes.count(m) > 1})
    if repeated:
        raise ValueError(f'authorization-mode {", ".join(repeated)} has mode specified more than once')
    return modes


class Authorization:
    """The authorizers for modes over one store; cache=False evaluates every request afresh
    (for measuring what the cache saves)."""

    def __init__(self, store: Store, modes: tuple[str, ...] = DEFAULT_MODES, cache: bool = True) -> None:
        self.modes = modes
        self.index = RBACIndex()
        self.index.load(store)
        self.rbac_cache = DecisionCache() if cache else None
        self.node_cache = DecisionCache() if cache else None
        chain: list[Authorizer] = [PrivilegedGroups()]
        for mode in modes:
            if mode == "AlwaysAllow":
                chain.append(AlwaysAllow())
            elif mode == "AlwaysDeny":
                chain.append(AlwaysDeny())
            elif mode == "Node":
                chain.append(NodeAuthorizer(store, self.node_cache))
            elif mode == "RBAC":
                rbac: Authorizer = RBACAuthorizer(self.index)
                if self.rbac_cache is not None:
                    rbac = CachedAuthorizer(rbac, self.rbac_cache)
                    self.index.listeners.append(self.rbac_cache.clear)
                chain.append(rbac)
        self.authorizers = Authorizers(chain)
        self.node_restriction = NodeRestriction()
        self.escalation = RBACEscalationCheck(self.index, self.authorizers)

    def admission(self, base: Admission) -> Admission:
        """base's plugins with NodeRestriction (mutating, as Kubernetes') and escalation
        prevention (validating) added."""
        return Admission(mutating=[*base.mutating, self.node_restriction],
                         validating=[*base.validating, self.escalation])
