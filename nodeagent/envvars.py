"""A container's environment and argv, as the kubelet builds them (pure).

`expand` is Kubernetes' `$(VAR)` syntax (third_party/forked/golang/expansion): `$(NAME)` becomes
the value of NAME when it is defined and stays as written otherwise; `$$` is an escaped `$`, so
`$$(NAME)` gives the literal `$(NAME)`. Env values may reference variables defined before them;
command and args reference the final environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

from ketch.api import quantity
from ketch.v1 import core_pb2

# Inherited from the agent so that commands resolve as they do on the host's shell.
HOST_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "HOME")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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


def container_env(pod: core_pb2.Pod, container: core_pb2.Container, host_ip: str,
                  node_allocatable: Mapping[str, str] | None = None,
                  host_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a container's process gets: host basics, HOSTNAME, then spec env in order."""
    source = os.environ if host_env is None else host_env
    env = {k: source[k] for k in HOST_ENV if k in source}
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOSTNAME"] = pod.spec.hostname or pod.metadata.name
    defined: dict[str, str] = {}
    for var in container.env:
        if var.HasField("value_from"):
            vf = var.value_from
            if vf.HasField("field_ref"):
                value = field_ref(pod, vf.field_ref.field_path, host_ip)
            elif vf.HasField("resource_field_ref"):
                value = resource_ref(pod, container, vf.resource_field_ref, node_allocatable or {})
            else:
                raise ValueError(f'env "{var.name}": only fieldRef and resourceFieldRef are supported '
                                 "(no ConfigMaps or Secrets on a process runtime)")
        else:
            value = expand(var.value, defined.get)
        defined[var.name] = value
        env[var.name] = value
    return env


def container_argv(container: core_pb2.Container, env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded from env (no image entrypoint on a process runtime)."""
    return [expand(a, env.get) for a in [*container.command, *container.args]]
