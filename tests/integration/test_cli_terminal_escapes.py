"""Terminal escape sequences stored in objects reach the terminal escaped in human output
(describe, get tables, events, custom columns, messages), as kubectl escapes them; JSON and YAML
output stays exact, and logs stay the program's own bytes."""

from __future__ import annotations

import io
import json

import yaml

from controlplane.apiserver.testing import TestAPIServer
from ketch.api import manifest, timeutil
from ketch.cli.cmd_logs import _Sink
from ketch.cli.factory import Factory

from .test_cli_apply_get import PI
from .test_cli_support import CLI

# Clear the screen, retitle the window (OSC ... BEL), a carriage return over the line, an 8-bit CSI.
HOSTILE = "\x1b[2J\x1b]0;owned\x07\rgone\x9b31m"
SHOWN = "^[[2J^[]0;owned\\x07\\rgone\\u009b31m"
# A line break inside a table cell would forge a row of its own.
FORGED = "fine\nWarning   Hacked   job/pi   all good"


def raw_controls(text: str) -> list[str]:
    """Every control character in text but the tabs and newlines of its own layout."""
    return [c for c in text if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0]


async def _hostile_job(api: TestAPIServer, cli: CLI) -> None:
    await cli("apply", "-f", "-", stdin=PI)
    job = await api.client.get("Job", "pi", "default")
    await api.client.patch("Job", "pi", {"metadata": {"annotations": {"note": HOSTILE}}}, namespace="default",
                           patch_type="merge")
    now = timeutil.now()
    for i, message in enumerate((HOSTILE, FORGED)):
        await api.client.create(manifest.from_dict({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"pi.{i}", "namespace": "default"},
            "involvedObject": {"kind": "Job", "name": "pi", "namespace": "default", "uid": job.metadata.uid,
                               "apiVersion": "batch/v1"},
            "reason": "Hostile", "message": message, "type": "Warning", "source": {"component": "someone"},
            "count": 1, "firstTimestamp": now, "lastTimestamp": now}))


async def test_describe_escapes_what_objects_and_events_hold(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await _hostile_job(api, cli)
    r = await cli("describe", "job", "pi")
    assert r.code == 0 and raw_controls(r.out) == []
    assert f"note: {SHOWN}" in r.out
    assert SHOWN in r.out.split("Events:")[1]


async def test_tables_escape_cells_so_no_row_can_be_forged(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await _hostile_job(api, cli)
    for argv in (["get", "events"], ["events", "--for", "job/pi"],
                 ["get", "events", "-o", "custom-columns=MESSAGE:.message"]):
        r = await cli(*argv)
        assert r.code == 0 and raw_controls(r.out) == [], argv
        lines = r.out.splitlines()
        assert len(lines) == 3, (argv, lines)  # the header and one row per event, nothing forged
        assert SHOWN in r.out and "fine\\nWarning   Hacked" in r.out, argv


async def test_json_and_yaml_output_stay_exact(api: TestAPIServer) -> None:
    cli = CLI(api.client)
    await _hostile_job(api, cli)
    r = await cli("get", "job", "pi", "-o", "json")
    assert json.loads(r.out)["metadata"]["annotations"]["note"] == HOSTILE
    r = await cli("get", "job", "pi", "-o", "yaml")
    assert yaml.safe_load(r.out)["metadata"]["annotations"]["note"] == HOSTILE
    r = await cli("get", "events", "-o", "jsonpath={.items[0].message}")
    assert r.out == HOSTILE


def test_logs_keep_the_programs_bytes_and_escape_only_the_prefix() -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    sink = _Sink(Factory(out=out), prefix="[pod/x\x1b[8m/main] ")
    sink.write(b"\x1b[32mgreen\x1b[0m\r\n")
    sink.close()
    out.flush()
    assert out.buffer.getvalue() == b"[pod/x^[[8m/main] \x1b[32mgreen\x1b[0m\r\n"  # type: ignore[attr-defined]
