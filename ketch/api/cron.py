"""CronJob schedules: parsing, validation and next/previous times, with croniter.

Standard 5-field cron, the @yearly..@hourly macros, and (a Ketch extension) 6 fields with
leading seconds (`*/5 * * * * *`), which croniter reads with second_at_beginning=True.
Times are epoch seconds; the schedule is evaluated in the CronJob's time zone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_TZ_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


class ScheduleError(ValueError):
    pass


class Schedule:
    """A parsed schedule in a zone; `next_after(t)` and `previous_at_or_before(t)` in epoch seconds."""

    def __init__(self, expr: str, zone: tzinfo) -> None:
        self.expr = expr
        self.zone = zone
        self.has_seconds = len(expr.split()) == 6
        self._base = MACROS.get(expr.strip(), expr.strip())

    def _iter(self, start: float) -> croniter:
        dt = datetime.fromtimestamp(start, self.zone)
        return croniter(self._base, dt, second_at_beginning=self.has_seconds)

    def next_after(self, t: float) -> float:
        """The first schedule time strictly after t."""
        try:
            return float(self._iter(t).get_next(float))
        except Exception as err:  # croniter raises its own errors for impossible dates
            raise ScheduleError(f"no next time for {self.expr!r}: {err}") from err

    def previous_at_or_before(self, t: float) -> float:
        """The latest schedule time <= t."""
        try:
            return float(self._iter(t + (0 if self.has_seconds else 0) + 1e-6).get_prev(float))
        except Exception as err:
            raise ScheduleError(f"no previous time for {self.expr!r}: {err}") from err


def schedule_error(expr: str) -> str | None:
    """Why a schedule is invalid, or None."""
    if not expr.strip():
        return "schedule is required"
    if "TZ" in expr:
        return "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    text = expr.strip()
    if text.startswith("@"):
        if text in MACROS:
            return None
        if text.startswith("@every"):
            return None
        return f"unrecognized descriptor: {text}"
    fields = text.split()
    if len(fields) not in (5, 6):
        return f"expected exactly 5 fields (or 6 with leading seconds), found {len(fields)}: {text}"
    if not croniter.is_valid(text, second_at_beginning=len(fields) == 6):
        return f"invalid schedule: {text}"
    return None


def time_zone_error(tz: str) -> str | None:
    """Why a time zone name is refused (Kubernetes' rules), or None."""
    if tz == "Local":
        return "unknown time zone Local"
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            return f"unknown time zone {tz}"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {tz}"
    return None


def zone(tz: str | None) -> tzinfo:
    if not tz:
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    return ZoneInfo(tz)


def parse(expr: str, tz: str | None = None) -> Schedule:
    err = schedule_error(expr)
    if err:
        raise ScheduleError(err)
    if tz:
        tz_err = time_zone_error(tz)
        if tz_err:
            raise ScheduleError(tz_err)
    return Schedule(expr, zone(tz))
