"""`ketch top nodes [NAME] [-l SEL]` and `ketch top pods [NAME] [-A] [-l SEL] [--containers]`.

Usage comes from each agent through the API server (`NodeStats`), asked for all nodes at once;
a node that does not answer shows `<unknown>`, as kubectl shows nodes without metrics.
Columns and units are kubectl's: CPU in millicores, memory in Mi, percentages of allocatable.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ketch.api import errors, quantity
from ketch.cancelsafe import wait_for

from .factory import Factory
from .main import CLIError, add_common
from .tabwriter import table_text

STATS_TIMEOUT = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("top", help="CPU and memory use of nodes or pods")
    tsub = p.add_subparsers(dest="top_what", metavar="nodes|pods", required=True)
    for names, fn in ((("nodes", "node", "no"), run_nodes), (("pods", "pod", "po"), run_pods)):
        q = tsub.add_parser(names[0], aliases=list(names[1:]), help=f"usage of {names[0]}")
        q.add_argument("name", nargs="?", default="")
        q.add_argument("-l", "--selector", default="")
        q.add_argument("--sort-by", default="", choices=["", "cpu", "memory"])
        q.add_argument("--no-headers", action="store_true")
        if fn is run_pods:
            q.add_argument("-A", "--all-namespaces", action="store_true")
            q.add_argument("--containers", action="store_true")
            q.add_argument("--sum", action="store_true")
        add_common(q)
        q.set_defaults(run=fn)
    add_common(p)


def cpu_text(millicores: int) -> str:
    return f"{millicores}m"


def mem_text(n: int) -> str:
    return f"{n // (1024 * 1024)}Mi"


async def _stats(factory: Factory, node: str) -> Any | None:
    try:
        return await wait_for(factory.client().node_stats(node), STATS_TIMEOUT)
    except (errors.StatusError, TimeoutError):
        return None


def node_rows(nodes: list[Any], stats: dict[str, Any]) -> list[list[str]]:
    """Rows of `top nodes`: nodes with metrics first (in order), then the unknown ones."""
    known, unknown = [], []
    for node in nodes:
        st = stats.get(node.metadata.name)
        if st is None or not st.HasField("node"):
            unknown.append([node.metadata.name, "<unknown>", "<unknown>", "<unknown>", "<unknown>"])
            continue
        usage = st.node
        alloc = node.status.allocatable or node.status.capacity
        cpu_total = quantity.millicores(alloc["cpu"]) if "cpu" in alloc else usage.cpu_capacity_millicores
        mem_total = quantity.to_bytes(alloc["memory"]) if "memory" in alloc else usage.memory_capacity_bytes
        cpu_pct = f"{usage.cpu_millicores * 100 // cpu_total}%" if cpu_total else "<unknown>"
        mem_pct = f"{usage.memory_bytes * 100 // mem_total}%" if mem_total else "<unknown>"
        known.append([node.metadata.name, cpu_text(usage.cpu_millicores), cpu_pct, mem_text(usage.memory_bytes),
                      mem_pct])
    return known + unknown


async def run_nodes(args: argparse.Namespace, factory: Factory) -> int:
    client = factory.client()
    if args.name:
        nodes = [await client.get("Node", args.name)]
    else:
        nodes, _ = await client.list("Node", "", args.selector)
        nodes.sort(key=lambda n: n.metadata.name)
    if not nodes:
        factory.error_line("No resources found")
        return 0
    results = await asyncio.gather(*(_stats(factory, n.metadata.name) for n in nodes))
    stats = {n.metadata.name: s for n, s in zip(nodes, results, strict=True) if s is not None}
    if args.name and args.name not in stats:
        raise CLIError(f"metrics not available yet for node {args.name}")
    rows = node_rows(nodes, stats)
    if args.sort_by:
        idx = 1 if args.sort_by == "cpu" else 3
        rows.sort(key=lambda r: -_number(r[idx]))
    header = ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    factory.out.write(table_text(([] if args.no_headers else [header]) + rows))
    return 0


def _number(text: str) -> int:
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else -1


async def run_pods(args: argparse.Namespace, factory: Factory) -> int:
    client = factory.client()
    ns = "" if args.all_namespaces else factory.default_namespace
    if args.name:
        pods = [await client.get("Pod", args.name, ns or factory.default_namespace)]
    else:
        pods, _ = await client.list("Pod", ns, args.selector)
    pods = [p for p in pods if p.spec.node_name and p.status.phase not in ("Succeeded", "Failed")]
    if not pods:
        if args.name:
            raise CLIError(f"metrics not available yet for pod {ns}/{args.name}")
        factory.error_line(f"No resources found in {ns} namespace." if ns else "No resources found")
        return 0
    nodes = sorted({p.spec.node_name for p in pods})
    results = await asyncio.gather(*(_stats(factory, n) for n in nodes))
    usage: dict[tuple[str, str], Any] = {}
    for st in results:
        if st is not None:
            for pu in st.pods:
                usage[(pu.namespace, pu.name)] = pu
    rows: list[tuple[list[str], int, int]] = []
    for pod in sorted(pods, key=lambda p: (p.metadata.namespace, p.metadata.name)):
        pu = usage.get((pod.metadata.namespace, pod.metadata.name))
        if pu is None:
            continue
        prefix = [pod.metadata.namespace] if args.all_namespaces else []
        if args.containers:
            for c in pu.containers:
                cells = [*prefix, pod.metadata.name, c.name, cpu_text(c.cpu_millicores), mem_text(c.memory_bytes)]
                rows.append((cells, c.cpu_millicores, c.memory_bytes))
        else:
            u = pu.usage
            cells = [*prefix, pod.metadata.name, cpu_text(u.cpu_millicores), mem_text(u.memory_bytes)]
            rows.append((cells, u.cpu_millicores, u.memory_bytes))
    if not rows:
        if args.name:
            raise CLIError(f"Metrics not available for pod {pods[0].metadata.namespace}/{args.name}")
        raise CLIError("metrics not available yet")
    if args.sort_by == "cpu":
        rows.sort(key=lambda r: -r[1])
    elif args.sort_by == "memory":
        rows.sort(key=lambda r: -r[2])
    header = (["NAMESPACE"] if args.all_namespaces else []) + (
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"] if args.containers else ["NAME", "CPU(cores)", "MEMORY(bytes)"])
    table = ([] if args.no_headers else [header]) + [r for r, _, _ in rows]
    if args.sum and not args.containers:
        width = len(header)
        table.append([""] * (width - 2) + ["________", "________"])
        table.append([""] * (width - 2) + [cpu_text(sum(r[1] for r in rows)), mem_text(sum(r[2] for r in rows))])
    factory.out.write(table_text(table))
    return 0
