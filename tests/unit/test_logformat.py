"""--log-format json: the daemons' own log lines are klog's JSON objects (component-base/logs/json)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest

from ketch import logformat


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    logformat.configure("debug", "json", out)
    yield out
    root.handlers[:], root.level = saved


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_info_debug_and_extra_key_values(captured: io.StringIO) -> None:
    before = time.time() * 1000
    log = logging.getLogger("ketch.agent")
    log.info("pod %s started", "web", extra={"pod": "default/web", "containers": 2})
    log.debug("tick")
    log.warning("slow")
    info, debug, warning = _lines(captured)
    assert info["msg"] == "pod web started" and info["v"] == 0
    assert info["pod"] == "default/web" and info["containers"] == 2 and info["logger"] == "ketch.agent"
    assert isinstance(info["ts"], float) and before <= info["ts"] <= time.time() * 1000 + 1
    assert info["caller"] == f"test_logformat.py:{_line_of('pod %s started')}"
    assert debug["v"] == 4 and warning["v"] == 0
    assert "level" not in info  # klog's JSON has no level key: v on info lines, err on errors


def test_an_error_has_err_and_no_v(captured: io.StringIO) -> None:
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        logging.getLogger("ketch.controlplane").exception("cannot commit")
    logging.getLogger("ketch.controlplane").error("plain")
    err, plain = _lines(captured)
    assert err["msg"] == "cannot commit" and err["err"] == "[Errno 28] No space left on device"
    assert "v" not in err and "OSError" in str(err["stacktrace"])
    assert plain["msg"] == "plain" and "v" not in plain and "err" not in plain


def test_text_stays_the_default_and_a_bad_format_is_refused() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        out = io.StringIO()
        logformat.configure("info", "text", out)
        logging.getLogger("x").info("hello")
        assert out.getvalue().rstrip().endswith("INFO x: hello")
        with pytest.raises(ValueError, match="--log-format"):
            logformat.configure("info", "xml", out)
    finally:
        root.handlers[:], root.level = saved


def _line_of(text: str) -> int:
    with open(__file__) as f:
        for n, line in enumerate(f, 1):
            if text in line and "_line_of" not in line:
                return n
    raise AssertionError(text)
