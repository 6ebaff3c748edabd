from __future__ import annotations

import pytest

from controlplane.apiserver.inflight import MaxInFlight
from ketch.api import errors
from ketch.client.transport import RETRY_BASE, RETRY_CAP, retry_delay


def test_reads_and_writes_have_separate_budgets_and_long_running_calls_none() -> None:
    limiter = MaxInFlight(max_readonly=1, max_mutating=1)
    with limiter.slot("Create"), limiter.slot("Get"), limiter.slot("Watch"), limiter.slot("PodLogs"):
        with pytest.raises(errors.TooManyRequests, match=r"^Too many requests, please try again later\.$"), \
                limiter.slot("Patch"):
            pass
        with pytest.raises(errors.TooManyRequests), limiter.slot("List"):
            pass
    with limiter.slot("Batch"), limiter.slot("Version"):  # freed when the first ones finished
        pass
    assert limiter.refused == 2 and limiter.current == {False: 0, True: 0}


def test_zero_means_no_limit() -> None:
    limiter = MaxInFlight(max_readonly=0, max_mutating=0)
    with limiter.slot("Create"), limiter.slot("Create"), limiter.slot("Get"), limiter.slot("Get"):
        assert limiter.current == {False: 2, True: 2}


def test_a_refused_slot_is_not_held() -> None:
    limiter = MaxInFlight(max_readonly=1, max_mutating=1)
    with limiter.slot("Delete"):
        for _ in range(3):
            with pytest.raises(errors.TooManyRequests), limiter.slot("Update"):
                pass
    assert limiter.current[True] == 0


def test_retry_delays_double_to_the_cap_with_jitter() -> None:
    for attempt in range(12):
        span = min(RETRY_CAP, RETRY_BASE * 2 ** attempt)
        delays = [retry_delay(attempt) for _ in range(50)]
        assert all(span / 2 <= d <= span for d in delays)
    assert len({retry_delay(3) for _ in range(20)}) > 1, "jittered, so clients refused together spread out"
