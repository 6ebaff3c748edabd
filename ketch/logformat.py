"""`--log-format text|json` for the daemons' own logs (ketch-controlplane, ketch-agent).

json is klog's JSON format (k8s.io/component-base/logs/json, a zap encoder), so a log pipeline
that reads kube-apiserver's or the kubelet's JSON reads ours: one object per line, `ts` (float
milliseconds since the epoch, zap's epochMillisTimeEncoder), `caller` (`file:line`), `msg`, `v`
(the verbosity of an info line: 0, or 4 for debug; absent on errors, as zapr writes them), `err`
(an error line's exception, when it has one), `logger` (the logger's name), then the record's
extra key/values (`log.info("...", extra={"pod": "ns/name"})`). Warnings are info lines at v 0,
as klog has no warning level in structured output; a traceback goes under `stacktrace`.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has: whatever else a record carries came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    """One klog-style JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": record.created * 1000.0,
            "caller": f"{record.filename}:{record.lineno}",
            "msg": record.getMessage(),
        }
        if record.levelno >= logging.ERROR:
            if record.exc_info and record.exc_info[1] is not None:
                out["err"] = str(record.exc_info[1]) or type(record.exc_info[1]).__name__
        else:
            out["v"] = 4 if record.levelno < logging.INFO else 0
        if record.name and record.name != "root":
            out["logger"] = record.name
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["stacktrace"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Set up the root logger as a daemon's main does (stderr, as klog writes)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    elif fmt == "text":
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        raise ValueError(f'--log-format: unknown format "{fmt}" (use one of: {", ".join(FORMATS)})')
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
