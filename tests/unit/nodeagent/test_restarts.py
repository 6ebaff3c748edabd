"""Which exited containers restart, by restartPolicy and exit code (regular and init)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nodeagent.runtime.restarts import init_should_restart, should_restart


@dataclass(frozen=True)
class RestartCase:
    policy: str
    exit_code: int
    regular: bool
    init: bool


RESTARTS = [
    RestartCase("Always", 0, True, False),
    RestartCase("Always", 1, True, True),
    RestartCase("OnFailure", 0, False, False),
    RestartCase("OnFailure", 2, True, True),
    RestartCase("Never", 0, False, False),
    RestartCase("Never", 1, False, False),
]


@pytest.mark.parametrize("case", RESTARTS, ids=[f"{c.policy}-exit{c.exit_code}" for c in RESTARTS])
def test_restart_policy(case: RestartCase) -> None:
    assert should_restart(case.policy, case.exit_code) is case.regular
    assert init_should_restart(case.policy, case.exit_code) is case.init
