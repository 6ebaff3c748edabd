"""Logs operators and shippers can use: a pod's output found as a file-tailing shipper (Fluent Bit's
tail input, Promtail) finds it, through the kubelet's layout, each line read by the CRI parser;
`ketch logs` still prints plain lines; the daemons' own logs as klog's JSON with --log-format json."""

from __future__ import annotations

import glob
import json
import os
import re
import stat
from pathlib import Path

from .agent_helpers import apply_all, logs, pod_manifest, wait_phase
from .harness import Cluster

# Fluent Bit's `cri` parser (parsers.conf), as a shipper applies it to each line.
CRI = re.compile(r"^(?P<time>[^ ]+) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) (?P<message>.*)$")
RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
LONG = 40000  # over the 16 KiB line buffer: P, P, F


def _instant(ts: str) -> tuple[str, int]:
    """(seconds part, nanoseconds) of a UTC RFC3339 time with any number of fraction digits."""
    whole, _, frac = ts.rstrip("Z").partition(".")
    return whole, int(frac.ljust(9, "0"))


def _parsed(path: str) -> list[dict[str, str]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            m = CRI.match(line)
            assert m is not None, f"not a CRI line in {path}: {line[:120]!r}"
            assert RFC3339NANO.match(m["time"]), m["time"]
            out.append(m.groupdict())
    return out


def test_a_pods_log_is_found_by_a_shippers_glob_and_read_by_the_cri_parser(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane(["--log-format", "json"])
    c.start_agent("node-a", ["--log-format", "json"])
    script = (f"echo hello; echo oops >&2; head -c {LONG} /dev/zero | tr '\\0' x; echo; "
              "echo 'spaces  and\ttabs'; printf 'no newline'")
    apply_all(c, pod_manifest("shipme", "node-a", ["sh", "-c", script]))
    p = wait_phase(c, "shipme", "Succeeded")
    uid = p["metadata"]["uid"]

    pod_logs = c.dir / "agent-node-a" / "logs" / "pods"
    found = glob.glob(f"{pod_logs}/*_shipme_*/main/*.log")
    assert found == [f"{pod_logs}/default_shipme_{uid}/main/0.log"]
    containers = c.dir / "agent-node-a" / "logs" / "containers"
    links = glob.glob(f"{containers}/*.log")
    assert len(links) == 1
    assert re.fullmatch(r"shipme_default_main-[0-9a-f]{64}\.log", os.path.basename(links[0]))
    assert os.path.realpath(links[0]) == found[0]
    # As the kubelet makes them: dirs 0755, files 0640.
    assert stat.S_IMODE(os.stat(pod_logs / f"default_shipme_{uid}").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(found[0]).st_mode) == 0o640

    lines = _parsed(links[0])
    # stdout and stderr are two pipes read apart, so only each stream's own order is fixed (as in
    # the kubelet); `ketch logs` prints the file's order.
    shape = [(x["stream"], x["logtag"], len(x["message"])) for x in lines]
    assert [s for s in shape if s[0] == "stdout"] == [
        ("stdout", "F", 5),
        ("stdout", "P", 16384), ("stdout", "P", 16384), ("stdout", "F", LONG - 2 * 16384),
        ("stdout", "F", len("spaces  and\ttabs")), ("stdout", "P", len("no newline"))]
    assert [(x["logtag"], x["message"]) for x in lines if x["stream"] == "stderr"] == [("F", "oops")]
    spaced = next(x for x in lines if x["message"] == "spaces  and\ttabs")

    # `ketch logs`: plain lines in the file's order, the long line whole.
    printed = "".join(x["message"] + ("\n" if x["logtag"] == "F" else "") for x in lines)
    assert logs(c, "shipme") == printed
    stamped = logs(c, "shipme", "--timestamps", "--tail", "2").splitlines()
    assert len(stamped) == 2 and stamped[1].endswith(" no newline")
    ts, _, message = stamped[0].partition(" ")
    assert message == "spaces  and\ttabs" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", ts)
    assert _instant(ts) == _instant(spaced["time"])  # the time the line was read, to the nanosecond

    # The daemons' own logs: klog's JSON, one object per line.
    for member in ("agent-node-a", "controlplane"):
        records = [json.loads(line) for line in c.logs(member).splitlines() if line.startswith("{")]
        assert records, f"{member} wrote no JSON lines"
        assert all(isinstance(r["ts"], float) and r["msg"] and ":" in r["caller"] for r in records)
        assert any(r.get("v") == 0 for r in records)
        text = [line for line in c.logs(member).splitlines() if line and not line.startswith(("{", " ", "\t"))]
        assert not [line for line in text if " INFO " in line], f"{member} wrote text log lines: {text[:3]}"


def test_previous_runs_logs_are_kept_and_older_ones_removed(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    c: Cluster = cluster_factory()
    c.start_controlplane()
    c.start_agent("node-a", ["--crash-loop-backoff-base", "100ms", "--crash-loop-backoff-max", "200ms"])
    counter = c.dir / "runs"
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo run $n; " \
             "[ $n -ge 4 ]"
    apply_all(c, pod_manifest("again", "node-a", ["sh", "-c", script], restart="OnFailure"))
    p = wait_phase(c, "again", "Succeeded", timeout=60)
    uid = p["metadata"]["uid"]
    assert logs(c, "again") == "run 4\n"
    assert logs(c, "again", "--previous") == "run 3\n"
    container_dir = Path(c.dir / "agent-node-a" / "logs" / "pods" / f"default_again_{uid}" / "main")
    assert sorted(os.listdir(container_dir)) == ["2.log", "3.log"]
    containers = c.dir / "agent-node-a" / "logs" / "containers"
    links = sorted(os.path.realpath(p) for p in glob.glob(f"{containers}/*.log"))
    assert links == [str(container_dir / "2.log"), str(container_dir / "3.log")]
