"""Schedules as Kubernetes 1.31 (robfig/cron ParseStandard) reads them, plus the seconds extension."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ketch.api import cron

NY = "America/New_York"


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, tz: str = "UTC") -> float:
    zone = UTC if tz == "UTC" else ZoneInfo(tz)
    return datetime(y, mo, d, h, mi, s, tzinfo=zone).timestamp()


def times(expr: str, start: float, n: int, tz: str | None = "UTC") -> list[str]:
    it = cron.parse(expr, tz).times_after(start)
    return [cron.format_in_zone(next(it), tz) for _ in range(n)]


@pytest.mark.parametrize(("expr", "error"), [
    ("*/5 * * * *", None),
    ("0 0 * * 0", None),
    ("0 0 ? * MON-FRI", None),
    ("0 0 1,15 jan,Jul *", None),
    ("5/15 * * * *", None),
    ("*/5 * * * * *", None),
    ("@hourly", None),
    ("@every 1h30m", None),
    ("@every 1.5s", None),
    ("", "schedule is required"),
    ("* * * *", "expected exactly 5 fields (or 6 with leading seconds), found 4: * * * *"),
    ("* * * * * * *", "expected exactly 5 fields (or 6 with leading seconds), found 7: * * * * * * *"),
    ("61 * * * *", "end of range (61) above maximum (59): 61"),
    ("0 0 * * 7", "end of range (7) above maximum (6): 7"),
    ("0 0 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("*/2/3 * * * *", "too many slashes: */2/3"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("0 0 L * *", 'failed to parse int from L: strconv.Atoi: parsing "L": invalid syntax'),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("@every 5", 'failed to parse duration @every 5: time: missing unit in duration "5"'),
    ("@every 1d", 'failed to parse duration @every 1d: time: unknown unit "d" in duration "1d"'),
    ("TZ=UTC 0 * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
    ("CRON_TZ=Europe/Paris 0 * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
], ids=lambda v: repr(v))
def test_schedule_validation_matches_kubernetes(expr: str, error: str | None) -> None:
    assert cron.schedule_error(expr) == error


@pytest.mark.parametrize(("expr", "error"), [
    # Go reads ASCII digits into an int64; Python's int() read any script's digits, and raised a
    # ValueError (INTERNAL from the API server) past 4300 of them.
    ("\u0663 * * * *", 'failed to parse int from \u0663: strconv.Atoi: parsing "\u0663": invalid syntax'),
    ("*/99999999999999999999 * * * *",
     'failed to parse int from 99999999999999999999: strconv.Atoi: parsing "99999999999999999999": value out of range'),
    ("9" * 5000 + " * * * *",
     f'failed to parse int from {"9" * 5000}: strconv.Atoi: parsing "{"9" * 5000}": value out of range'),
    # A Go Duration is an int64 of nanoseconds: at most 2562047h47m16.854775807s.
    ("@every 2562047h", None),
    ("@every 2562048h", 'failed to parse duration @every 2562048h: time: invalid duration "2562048h"'),
    ("@every " + "9" * 400 + "h",  # float("9" * 400) is infinite: int() raised OverflowError
     f'failed to parse duration @every {"9" * 400}h: time: invalid duration "{"9" * 400}h"'),
    ("@every \u0663s", 'failed to parse duration @every \u0663s: time: invalid duration "\u0663s"'),
], ids=["arabic-indic digit", "step beyond int64", "5000 digits", "longest duration", "duration beyond int64",
        "duration of 400 digits", "arabic-indic duration"])
def test_numbers_go_cannot_read_are_refused_as_kubernetes(expr: str, error: str | None) -> None:
    assert cron.schedule_error(expr) == error


def test_a_kept_tz_schedule_is_allowed_on_update_only_without_time_zone() -> None:
    assert cron.schedule_errors("TZ=UTC 0 * * * *", allow_tz=True) == []
    assert cron.schedule_errors("TZ=UTC 0 * * * *", allow_tz=True, time_zone="UTC") == [
        "cannot use both timeZone field and TZ or CRON_TZ in schedule"]


@pytest.mark.parametrize(("tz", "errors"), [
    ("UTC", []),
    ("Europe/Berlin", []),
    ("America/Argentina/Buenos_Aires", []),
    ("Etc/GMT+5", []),
    ("", ["timeZone must be nil or non-empty string"]),
    ("Local", ["timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"]),
    ("Mars/Olympus_Mons", ["unknown time zone Mars/Olympus_Mons"]),
    ("../etc/passwd", ["unknown time zone ../etc/passwd"]),
    ("-Europe", ["unknown time zone -Europe"]),
    ("Europe/A_name_too_long_for_iana", ["unknown time zone Europe/A_name_too_long_for_iana"]),
], ids=lambda v: repr(v))
def test_time_zone_validation_matches_kubernetes(tz: str, errors: list[str]) -> None:
    assert cron.time_zone_errors(tz) == errors
    assert cron.time_zone_error(tz) == (errors[0] if errors else None)


@pytest.mark.parametrize(("expr", "start", "expected"), [
    ("*/15 * * * *", ts(2026, 1, 1, 0, 7), ["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"]),
    ("*/20 * * * * *", ts(2026, 1, 1, 0, 0, 5), ["2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z"]),
    ("@daily", ts(2026, 1, 1, 0, 0), ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
    ("@weekly", ts(2026, 1, 1), ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    ("5/20 * * * *", ts(2026, 1, 1), ["2026-01-01T00:05:00Z", "2026-01-01T00:25:00Z"]),
    # Both day fields restricted: either matches (Friday the 2nd, Monday the 5th, the 15th).
    ("0 0 15 * MON", ts(2026, 1, 1), ["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z", "2026-01-15T00:00:00Z"]),
    # One of them unrestricted: both must match.
    ("0 0 * * MON", ts(2026, 1, 1), ["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"]),
    ("0 0 ? * MON", ts(2026, 1, 1), ["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"]),
    # `*/2` is a restriction (step > 1), so it ORs with the day of week.
    ("0 0 */2 * MON", ts(2026, 1, 3), ["2026-01-05T00:00:00Z", "2026-01-07T00:00:00Z"]),
    # A full range written out is a restriction too: ORed with Monday it is every day.
    ("0 0 1-31 * MON", ts(2026, 1, 1), ["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
    ("@every 90s", ts(2026, 1, 1, 0, 0, 10), ["2026-01-01T00:01:40Z", "2026-01-01T00:03:10Z"]),
], ids=lambda v: repr(v))
def test_next_times(expr: str, start: float, expected: list[str]) -> None:
    assert times(expr, start, len(expected)) == expected


def test_next_is_strictly_after_the_whole_second() -> None:
    s = cron.parse("*/1 * * * * *", "UTC")
    assert s.next_after(100.0) == 101.0
    assert s.next_after(100.7) == 101.0
    assert cron.parse("@every 5s").next_after(100.7) == 105.0


def test_a_time_in_a_leap_ahead_gap_does_not_run() -> None:
    # 2026-03-08 02:30 does not exist in New York; robfig (so Kubernetes) skips that day.
    assert times("30 2 * * *", ts(2026, 3, 6, 12, tz=NY), 3, NY) == [
        "2026-03-07T02:30:00-05:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
    assert times("30 * * * *", ts(2026, 3, 8, 1, 0, tz=NY), 2, NY) == [
        "2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"]


def test_a_time_in_a_fall_back_fold_runs_twice() -> None:
    assert times("30 1 * * *", ts(2026, 10, 31, 12, tz=NY), 3, NY) == [
        "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00", "2026-11-02T01:30:00-05:00"]


def test_a_schedule_without_next_time_says_so() -> None:
    with pytest.raises(cron.ScheduleError):
        cron.parse("0 0 31 2 *", "UTC").next_after(ts(2026, 1, 1))


def test_time_zone_shifts_the_times() -> None:
    assert times("0 9 * * *", ts(2026, 5, 31, 12), 1, "Asia/Tokyo") == ["2026-06-01T09:00:00+09:00"]
    assert cron.parse("0 9 * * *", "Asia/Tokyo").next_after(ts(2026, 5, 31, 12)) == ts(2026, 6, 1, 0)


def test_a_legacy_tz_prefix_sets_the_zone() -> None:
    s = cron.parse("CRON_TZ=Asia/Tokyo 0 9 * * *", None)
    assert s.next_after(ts(2026, 5, 31, 12)) == ts(2026, 6, 1, 0)


@pytest.mark.parametrize(("expr", "sub_minute"), [
    ("*/5 * * * *", False), ("*/5 * * * * *", True), ("@every 30s", True), ("@every 2m", False), ("@hourly", False),
])
def test_sub_minute_schedules_are_recognised(expr: str, sub_minute: bool) -> None:
    assert cron.parse(expr, "UTC").has_seconds is sub_minute


@pytest.mark.parametrize(("text", "seconds"), [
    ("1h30m", 5400.0), ("1.5h", 5400.0), ("300ms", 0.3), (".5s", 0.5), ("-2s", -2.0), ("0", 0.0), ("1m1s", 61.0),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert cron.parse_go_duration(text) == pytest.approx(seconds)


def test_rfc3339_in_zone() -> None:
    t = ts(2026, 6, 1, 12)
    assert cron.format_in_zone(t, None) == "2026-06-01T12:00:00Z"
    assert cron.format_in_zone(t, "Asia/Kolkata") == "2026-06-01T17:30:00+05:30"
    assert cron.format_in_zone(t, "America/New_York") == "2026-06-01T08:00:00-04:00"
