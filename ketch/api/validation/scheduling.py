"""Tolerations and node affinity (pkg/apis/core/validation): what the scheduler reads.

Toleration operator/effect/value rules (tolerationSeconds only with NoExecute) and the node
selector requirement operators; pod (anti-)affinity is stored but not validated (Ketch ignores it).
"""

from __future__ import annotations

from collections.abc import Sequence

from ketch.api.errors import forbidden, invalid, not_supported, required
from ketch.v1 import core_pb2

from . import field
from .field import Errors, idx

TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]


# ---------------------------------------------------------------------------------------------
# Scheduling: tolerations and node affinity


def tolerations(errs: Errors, tols: Sequence[core_pb2.Toleration], path: str) -> None:
    for i, tol in enumerate(tols):
        p = idx(path, i)
        if tol.key:
            field.qualified_name_field(errs, tol.key, p + ".key")
        if not tol.key and tol.operator != "Exists":
            errs.append(invalid(p + ".operator", tol.operator,
                                'operator must be Exists when `key` is empty, which means "match all values and all '
                                'keys"'))
        if tol.HasField("toleration_seconds") and tol.effect != "NoExecute":
            errs.append(invalid(p + ".effect", tol.effect,
                                "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if tol.operator in ("Equal", ""):
            msgs = field.label_value(tol.value)
            if msgs:
                errs.append(invalid(p + ".operator", tol.value, ";".join(msgs)))
        elif tol.operator == "Exists":
            if tol.value:
                errs.append(invalid(p + ".operator", _go_toleration(tol),
                                    "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(p + ".operator", tol.operator, ["Equal", "Exists"]))
        if tol.effect and tol.effect not in TAINT_EFFECTS:
            errs.append(not_supported(p + ".effect", tol.effect, TAINT_EFFECTS))


def _go_toleration(tol: core_pb2.Toleration) -> field.Shown:
    """The toleration as Go's %#v prints core.Toleration (the bad value Kubernetes reports). A set
    tolerationSeconds is a pointer Go prints by its address, which means nothing: a fixed one."""
    seconds = "(*int64)(0xc000000000)" if tol.HasField("toleration_seconds") else "(*int64)(nil)"
    return field.Shown(f'core.Toleration{{Key:"{tol.key}", Operator:"{tol.operator}", Value:"{tol.value}", '
                       f'Effect:"{tol.effect}", TolerationSeconds:{seconds}}}')


def node_affinity(errs: Errors, na: core_pb2.NodeAffinity, path: str) -> None:
    if na.HasField("required_during_scheduling_ignored_during_execution"):
        terms_path = path + ".requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        terms = na.required_during_scheduling_ignored_during_execution.node_selector_terms
        if not terms:
            errs.append(required(terms_path, "must have at least one node selector term"))
        for i, term in enumerate(terms):
            _node_selector_term(errs, term, idx(terms_path, i))
    for i, pref in enumerate(na.preferred_during_scheduling_ignored_during_execution):
        p = idx(path + ".preferredDuringSchedulingIgnoredDuringExecution", i)
        if not 1 <= pref.weight <= 100:
            errs.append(invalid(p + ".weight", pref.weight, "must be in the range 1-100"))
        _node_selector_term(errs, pref.preference, p + ".preference")


def _node_selector_term(errs: Errors, term: core_pb2.NodeSelectorTerm, path: str) -> None:
    for j, req in enumerate(term.match_expressions):
        p = idx(path + ".matchExpressions", j)
        op = req.operator
        if op in ("In", "NotIn"):
            if not req.values:
                errs.append(required(p + ".values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if req.values:
                errs.append(forbidden(p + ".values", "may not be specified when `operator` is 'Exists' or "
                                                     "'DoesNotExist'"))
        elif op in ("Gt", "Lt"):
            if len(req.values) != 1:
                errs.append(required(p + ".values", "must be specified single value when `operator` is 'Lt' or 'Gt'"))
        else:
            errs.append(invalid(p + ".operator", op, "not a valid selector operator"))
        field.qualified_name_field(errs, req.key, p + ".key")
    for j, req in enumerate(term.match_fields):
        p = idx(path + ".matchFields", j)
        if req.operator in ("In", "NotIn"):
            if len(req.values) != 1:
                errs.append(required(p + ".values", "must be only one value when `operator` is 'In' or 'NotIn' for "
                                                    "node field selector"))
        else:
            errs.append(invalid(p + ".operator", req.operator, "not a valid selector operator"))
        if req.key != "metadata.name":
            errs.append(invalid(p + ".key", req.key, "not a valid field selector key"))
        else:
            for k, v in enumerate(req.values):
                field.dns_subdomain_field(errs, v, idx(p + ".values", k))


