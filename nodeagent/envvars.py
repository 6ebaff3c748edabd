"""A container's environment and argv, as the kubelet builds them (pure).

`expand` is Kubernetes' `$(VAR)` syntax (third_party/forked/golang/expansion): `$(NAME)` becomes
the value of NAME when it is defined and stays as written otherwise; `$$` is an escaped `$`, so
`$$(NAME)` gives the literal `$(NAME)`. Env values may reference variables defined before them
(envFrom's included); command and args reference the final environment.

ConfigMaps and Secrets are read as the kubelet's makeEnvironmentVariables does: envFrom first,
then env; an optional reference to a missing object or key sets nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

from ketch.api import configrefs, quantity
from ketch.api.validation import field
from ketch.v1 import core_pb2

# Inherited from the agent so that commands resolve as they do on the host's shell.
HOST_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "HOME")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# (kind, name) -> a ConfigMap's data or a Secret's, as strings; None: the object does not exist.
ConfigLookup = Callable[[str, str], Mapping[str, str] | None]

_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand `$(VAR)` references in text (Kubernetes' expansion.Expand)."""
    if "$" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:end]
            value = lookup(name)
            out.append(value if value is not None else f"$({name})")
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def field_ref(pod: core_pb2.Pod, path: str, host_ip: str) -> str:
    """The value of a downward-API fieldRef."""
    md = pod.metadata
    simple = {
        "metadata.name": md.name,
        "metadata.namespace": md.namespace,
        "metadata.uid": md.uid,
        "spec.nodeName": pod.spec.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": host_ip,
        "status.podIPs": host_ip,
    }
    if path in simple:
        return simple[path]
    m = _FIELD_KEY.match(path)
    if m:
        source = md.labels if m.group(1) == "labels" else md.annotations
        return source.get(m.group(2), "")
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted(md.labels.items()))
    if path == "metadata.annotations":
        return "\n".join(f'{k}="{v}"' for k, v in sorted(md.annotations.items()))
    raise ValueError(f'unsupported fieldRef path "{path}"')


def resource_ref(pod: core_pb2.Pod, container: core_pb2.Container, sel: core_pb2.ResourceFieldSelector,
                 node_allocatable: Mapping[str, str]) -> str:
    """A downward-API resourceFieldRef (limits default to the node's allocatable)."""
    target = container
    if sel.container_name:
        target = next((c for c in [*pod.spec.containers, *pod.spec.init_containers]
                       if c.name == sel.container_name), container)
    kind, _, res = sel.resource.partition(".")
    source = target.resources.limits if kind == "limits" else target.resources.requests
    raw = source.get(res) or (node_allocatable.get(res, "0") if kind == "limits" else "0")
    value = quantity.parse(raw)
    divisor = quantity.parse(sel.divisor) if sel.divisor else quantity.parse("1")
    if divisor == 0:
        divisor = quantity.parse("1")
    ratio = value / divisor
    # Kubernetes rounds up to the next integer.
    whole = int(ratio.to_integral_value(rounding="ROUND_CEILING"))
    return str(whole)


def no_objects(kind: str, name: str) -> Mapping[str, str] | None:
    return None


def not_found(kind: str, name: str) -> str:
    """The kubelet's words for a missing object (its managers' NotFound, resource in the singular)."""
    return f'{kind.lower()} "{name}" not found'


def _env_from(pod: core_pb2.Pod, container: core_pb2.Container, objects: ConfigLookup,
              skipped: list[str], missing_ok: bool) -> dict[str, str]:
    """envFrom, in order (later entries win): every key of each object, prefixed; keys that are
    not variable names are skipped (and reported in skipped, as the kubelet's event)."""
    out: dict[str, str] = {}
    for entry in container.env_from:
        ef = configrefs.env_from(entry)
        data = objects(ef.kind, ef.name)
        if data is None:
            if ef.optional or missing_ok:
                continue
            raise ValueError(not_found(ef.kind, ef.name))
        invalid = []
        for key, value in data.items():
            name = ef.prefix + key
            if field.env_var_name(name):
                invalid.append(name)
                continue
            out[name] = value
        if invalid:
            skipped.append(f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {ef.kind.lower()} "
                           f"{pod.metadata.namespace}/{ef.name} were skipped since they are considered invalid "
                           "environment variable names.")
    return out


def container_env(pod: core_pb2.Pod, container: core_pb2.Container, host_ip: str,
                  node_allocatable: Mapping[str, str] | None = None,
                  host_env: Mapping[str, str] | None = None, objects: ConfigLookup = no_objects,
                  skipped: list[str] | None = None, missing_ok: bool = False) -> dict[str, str]:
    """The environment a container's process gets: host basics, HOSTNAME, envFrom, then spec env
    in order. objects gives a ConfigMap's data or a Secret's (None: it does not exist); a missing
    object or key that is not optional is a ValueError with the kubelet's message (missing_ok:
    every reference is treated as optional)."""
    source = os.environ if host_env is None else host_env
    env = {k: source[k] for k in HOST_ENV if k in source}
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOSTNAME"] = pod.spec.hostname or pod.metadata.name
    defined: dict[str, str] = {}
    if container.env_from:
        defined = _env_from(pod, container, objects, skipped if skipped is not None else [], missing_ok)
        env.update(defined)
    for var in container.env:
        if var.HasField("value_from"):
            vf = var.value_from
            if vf.HasField("field_ref"):
                value = field_ref(pod, vf.field_ref.field_path, host_ip)
            elif vf.HasField("resource_field_ref"):
                value = resource_ref(pod, container, vf.resource_field_ref, node_allocatable or {})
            else:
                ref = configrefs.key_ref(vf)
                if ref is None:
                    raise ValueError(f'env "{var.name}": valueFrom names no source')
                data = objects(ref.kind, ref.name)
                if data is None:
                    if ref.optional or missing_ok:
                        continue
                    raise ValueError(not_found(ref.kind, ref.name))
                found = data.get(ref.key)
                if found is None:
                    if ref.optional or missing_ok:
                        continue
                    raise ValueError(f"couldn't find key {ref.key} in {ref.kind} {pod.metadata.namespace}/{ref.name}")
                value = found
        else:
            value = expand(var.value, defined.get)
        defined[var.name] = value
        env[var.name] = value
    return env


def container_argv(container: core_pb2.Container, env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded from env (no image entrypoint on a process runtime)."""
    return [expand(a, env.get) for a in [*container.command, *container.args]]
