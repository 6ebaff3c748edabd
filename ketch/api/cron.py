"""CronJob schedules: parsing and validation as Kubernetes 1.31 does it, and next times.

Grammar (robfig/cron v3 `ParseStandard`, which the Kubernetes CronJob controller uses): 5 fields
`minute hour day-of-month month day-of-week`, each a comma list of `*`, `?`, `N`, `A-B`, with an
optional `/STEP` (`N/STEP` means `N-max/STEP`); month names JAN-DEC and day names SUN-SAT (any
case); day-of-week 0-6. Descriptors `@yearly @annually @monthly @weekly @daily @midnight
@hourly` and `@every <Go duration>`. A Ketch extension: 6 fields with a leading seconds field
(`*/5 * * * * *`), which croniter iterates with `second_at_beginning=True`.

Semantics kept from robfig/cron, on which Kubernetes' behaviour rests:
- day-of-month and day-of-week are ANDed when either is unrestricted (`*` or `?`, or `*/1`),
  otherwise ORed;
- times are wall-clock times in the zone: a time inside a daylight-saving leap-ahead gap does
  not exist and is not run; a time inside a fall-back fold exists twice and runs twice;
- `@every D` is `floor(t) + D` (D truncated to whole seconds, at least one second);
- a schedule with no time in the next five years (`0 0 31 2 *`) has no next time.

croniter proposes candidate times (from a normalised numeric expression); each is checked against
the parsed fields in the zone's wall-clock time, which is how leap-ahead gaps are skipped.

Callers: API validation (`schedule_errors`, `time_zone_errors`), the CronJob controller (`parse`),
`ketch get cronjobs`. Times are float epoch seconds.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .goint import atoi

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
EVERY = "@every "
_TZ_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")
# robfig gives up looking for a next time after five years.
_SEARCH_YEARS = 5
_MONTHS = {n: i + 1 for i, n in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


class ScheduleError(ValueError):
    """An unparseable schedule, an unknown zone, or a schedule with no next time."""


@dataclass(frozen=True)
class _Bounds:
    lo: int
    hi: int
    names: dict[str, int] | None = None


_SECOND = _Bounds(0, 59)
_MINUTE = _Bounds(0, 59)
_HOUR = _Bounds(0, 23)
_DOM = _Bounds(1, 31)
_MONTH = _Bounds(1, 12, _MONTHS)
_DOW = _Bounds(0, 6, _DAYS)


@dataclass(frozen=True)
class Fields:
    """The times a field-form schedule matches, as sets of allowed values."""

    second: frozenset[int]
    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]
    dom_star: bool
    dow_star: bool

    def matches(self, dt: datetime) -> bool:
        """Whether a wall-clock time is one of the schedule's times."""
        if (dt.second not in self.second or dt.minute not in self.minute or dt.hour not in self.hour
                or dt.month not in self.month):
            return False
        dom_ok = dt.day in self.dom
        dow_ok = (dt.isoweekday() % 7) in self.dow
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def croniter_expr(self) -> str:
        """A numeric 6-field expression (seconds first) croniter iterates the same times with."""
        dom = _expr(self.dom, _DOM)
        dow = _expr(self.dow, _DOW)
        if self.dom_star or self.dow_star:
            # AND: an unrestricted field must read `*` so that croniter ANDs too.
            dom = "*" if self.dom_star else dom
            dow = "*" if self.dow_star else dow
        elif dom == "*" or dow == "*":
            # OR with an every-day field is every day.
            dom = dow = "*"
        return " ".join((_expr(self.second, _SECOND), _expr(self.minute, _MINUTE), _expr(self.hour, _HOUR),
                         dom, _expr(self.month, _MONTH), dow))


def _expr(values: frozenset[int], b: _Bounds) -> str:
    if len(values) == b.hi - b.lo + 1:
        return "*"
    return ",".join(str(v) for v in sorted(values))


# -- parsing (robfig/cron v3 grammar and messages) -----------------------------------------------

def _number(text: str, b: _Bounds) -> int:
    if b.names is not None and text.lower() in b.names:
        return b.names[text.lower()]
    try:
        n = atoi(text)
    except ValueError as err:
        raise ScheduleError(f"failed to parse int from {text}: {err}") from None
    if n < 0:
        raise ScheduleError(f"negative number ({n}) not allowed: {text}")
    return n


def _range(expr: str, b: _Bounds) -> tuple[set[int], bool]:
    """One comma-separated part: the values it allows and whether it is unrestricted (`*`)."""
    range_step = expr.split("/")
    low_high = range_step[0].split("-")
    single = len(low_high) == 1
    star = False
    if low_high[0] in ("*", "?"):
        start, end, star = b.lo, b.hi, True
    else:
        start = _number(low_high[0], b)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _number(low_high[1], b)
        else:
            raise ScheduleError(f"too many hyphens: {expr}")
    if len(range_step) == 1:
        step = 1
    elif len(range_step) == 2:
        step = _number(range_step[1], _Bounds(0, 0))
        if single:  # `N/STEP` means `N-max/STEP`
            end = b.hi
        if step > 1:
            star = False
    else:
        raise ScheduleError(f"too many slashes: {expr}")
    if start < b.lo:
        raise ScheduleError(f"beginning of range ({start}) below minimum ({b.lo}): {expr}")
    if end > b.hi:
        raise ScheduleError(f"end of range ({end}) above maximum ({b.hi}): {expr}")
    if start > end:
        raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ScheduleError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _field(text: str, b: _Bounds) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in text.split(","):
        vals, s = _range(part, b)
        values |= vals
        star = star or s
    return frozenset(values), star


def parse_fields(text: str) -> Fields:
    """5 fields, or 6 with leading seconds, into Fields; raises ScheduleError."""
    parts = text.split()
    if len(parts) not in (5, 6):
        raise ScheduleError(f"expected exactly 5 fields (or 6 with leading seconds), found {len(parts)}: {text}")
    if len(parts) == 5:
        parts = ["0", *parts]
    second, _ = _field(parts[0], _SECOND)
    minute, _ = _field(parts[1], _MINUTE)
    hour, _ = _field(parts[2], _HOUR)
    dom, dom_star = _field(parts[3], _DOM)
    month, _ = _field(parts[4], _MONTH)
    dow, dow_star = _field(parts[5], _DOW)
    return Fields(second, minute, hour, dom, month, dow, dom_star, dow_star)


_GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                      "h": 3600.0}
_GO_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_GO_UNIT = re.compile(r"[^0-9.]*")
_GO_MAX_DURATION = 2**63  # nanoseconds: a Go Duration is an int64


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration (`1h30m`, `1.5h`, `300ms`, `-2s`, `0`) in seconds, with its messages
    (a duration beyond an int64 of nanoseconds, about 292 years, is invalid there too)."""
    quoted = '"' + text + '"'
    s = text
    negative = False
    if s and s[0] in "+-":
        negative, s = s[0] == "-", s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ScheduleError(f"time: invalid duration {quoted}")
    total = 0.0
    while s:
        num = _GO_NUMBER.match(s)
        assert num is not None  # the pattern matches the empty string
        whole, frac = num.group(1), num.group(2)
        if not whole and not frac:
            raise ScheduleError(f"time: invalid duration {quoted}")
        s = s[num.end():]
        unit_match = _GO_UNIT.match(s)
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            raise ScheduleError(f"time: missing unit in duration {quoted}")
        if unit not in _GO_DURATION_UNITS:
            raise ScheduleError(f'time: unknown unit "{unit}" in duration {quoted}')
        if len(whole.lstrip("0")) > 19:
            raise ScheduleError(f"time: invalid duration {quoted}")
        total += float(f"{whole or '0'}.{frac or '0'}") * _GO_DURATION_UNITS[unit]
        if total * 1e9 > _GO_MAX_DURATION:
            raise ScheduleError(f"time: invalid duration {quoted}")
        s = s[len(unit):]
    return -total if negative else total


def _split_tz(expr: str) -> tuple[str | None, str]:
    """A leading `TZ=zone ` or `CRON_TZ=zone ` (legacy, only for stored schedules) and the rest."""
    if expr.startswith(("TZ=", "CRON_TZ=")):
        eq = expr.index("=")
        space = expr.find(" ")
        if space < 0:
            raise ScheduleError(f"provided bad location {expr[eq + 1:]}: unknown time zone {expr[eq + 1:]}")
        return expr[eq + 1:space], expr[space:].strip()
    return None, expr


def _check_syntax(expr: str) -> tuple[str | None, Fields | None, float | None]:
    """robfig's Parse: (zone from a TZ= prefix, fields, or the @every delay); raises ScheduleError."""
    if not expr:
        raise ScheduleError("empty spec string")
    tz, rest = _split_tz(expr)
    if tz is not None and time_zone_error(tz, strict=False):
        raise ScheduleError(f"provided bad location {tz}: unknown time zone {tz}")
    if rest.startswith("@"):
        if rest in MACROS:
            return tz, parse_fields(MACROS[rest]), None
        if rest.startswith(EVERY):
            try:
                d = parse_go_duration(rest[len(EVERY):])
            except ScheduleError as err:
                raise ScheduleError(f"failed to parse duration {rest}: {err}") from None
            return tz, None, max(1.0, float(int(d)))
        raise ScheduleError(f"unrecognized descriptor: {rest}")
    return tz, parse_fields(rest), None


# -- validation, as API validation calls it --------------------------------------------------------

def schedule_errors(expr: str, allow_tz: bool = False, time_zone: str | None = None) -> list[str]:
    """Every reason Kubernetes gives for refusing a schedule (field `spec.schedule`).

    allow_tz: an update may keep a `TZ=` schedule the old object already had (and no timeZone).
    """
    if not expr:
        return ["schedule is required"]
    out: list[str] = []
    try:
        _check_syntax(expr)
    except ScheduleError as err:
        out.append(str(err))
    if "TZ" in expr:
        if not allow_tz:
            out.append("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
        elif time_zone is not None:
            out.append("cannot use both timeZone field and TZ or CRON_TZ in schedule")
    return out


def schedule_error(expr: str, allow_tz: bool = False, time_zone: str | None = None) -> str | None:
    """Why a schedule is invalid (the first reason), or None."""
    errs = schedule_errors(expr, allow_tz, time_zone)
    if not errs:
        return None
    # A TZ schedule's most useful message is the TZ one.
    tz_msgs = [e for e in errs if "TZ or CRON_TZ" in e]
    return tz_msgs[0] if tz_msgs else errs[0]


def time_zone_errors(tz: str) -> list[str]:
    """Every reason Kubernetes gives for refusing spec.timeZone (set, i.e. not nil)."""
    if tz == "":
        return ["timeZone must be nil or non-empty string"]
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            return [f"unknown time zone {tz}"]
    out = []
    if tz.lower() == "local":
        out.append("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")
    if tz != "Local" and _load_zone(tz) is None:
        out.append(f"unknown time zone {tz}")
    return out


def time_zone_error(tz: str, strict: bool = True) -> str | None:
    """Why a time zone name is refused (Kubernetes' rules), or None.

    strict=False only asks whether the zone loads (a `TZ=` prefix in a stored schedule).
    """
    if not strict:
        return None if _load_zone(tz) is not None else f"unknown time zone {tz}"
    errs = time_zone_errors(tz)
    return errs[0] if errs else None


@functools.lru_cache(maxsize=256)
def _load_zone(tz: str) -> tzinfo | None:
    if tz == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@functools.lru_cache(maxsize=1)
def local_zone() -> tzinfo:
    """The control plane's zone (what a CronJob without timeZone runs in): $TZ, /etc/localtime, UTC."""
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        z = _load_zone(env)
        if z is not None:
            return z
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


def zone(tz: str | None) -> tzinfo:
    """The zone named by spec.timeZone (None: the control plane's own); raises ScheduleError."""
    if not tz:
        return local_zone()
    z = _load_zone(tz)
    if z is None:
        raise ScheduleError(f"unknown time zone {tz}")
    return z


# -- iteration -----------------------------------------------------------------------------------

class Schedule:
    """A parsed schedule in a zone. `next_after(t)`: the first time strictly after whole-second t."""

    def __init__(self, expr: str, zone_: tzinfo, fields: Fields | None, every: float | None) -> None:
        self.expr = expr
        self.zone = zone_
        self.fields = fields
        self.every = every
        body = _split_tz(expr)[1]
        # Sub-minute schedules (6 fields, or @every under a minute) name their Jobs by seconds.
        self.has_seconds = (every is not None and every < 60) or len(body.split()) == 6
        self._cron = fields.croniter_expr() if fields is not None else ""

    def times_after(self, t: float) -> Iterator[float]:
        """Successive schedule times strictly after t (robfig: after t rounded down to the second)."""
        start = float(int(t // 1))
        if self.every is not None:
            while True:
                start += self.every
                yield start
        assert self.fields is not None
        limit = start + _SEARCH_YEARS * 366 * 86400.0
        it = croniter(self._cron, datetime.fromtimestamp(start, self.zone), second_at_beginning=True)
        fields, zone_ = self.fields, self.zone
        while True:
            try:
                cand = float(it.get_next(float))
            except Exception as err:  # croniter's own "no next date"
                raise ScheduleError(f"no next time for {self.expr!r}: {err}") from err
            if cand > limit:
                raise ScheduleError(f"no time in the next {_SEARCH_YEARS} years for {self.expr!r}")
            # croniter moves a time that falls in a leap-ahead gap to after the gap; such a time
            # no longer matches on the wall clock, and robfig (so Kubernetes) skips it.
            if cand > start and fields.matches(datetime.fromtimestamp(cand, zone_)):
                start = cand
                yield cand

    def next_after(self, t: float) -> float:
        return next(self.times_after(t))


def parse(expr: str, tz: str | None = None) -> Schedule:
    """The schedule a CronJob runs on: its spec.schedule in spec.timeZone (or a legacy TZ= prefix)."""
    prefix_tz, fields, every = _check_syntax(expr)
    zone_name = prefix_tz if prefix_tz is not None else tz
    return Schedule(expr, zone(zone_name), fields, every)


def format_in_zone(ts: float, tz: str | None) -> str:
    """RFC 3339 (Go's time.RFC3339: `Z` for UTC, else `+hh:mm`) in zone tz; None means UTC, as
    Kubernetes formats the scheduled-timestamp annotation of a CronJob without timeZone."""
    z = _load_zone(tz) if tz else UTC
    dt = datetime.fromtimestamp(int(ts // 1), z or UTC)
    off = dt.utcoffset()
    if not off:
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    return text[:-2] + ":" + text[-2:]
