"""The control plane's leader-election flags and how its controllers start with or without them.

Kept apart from main.py so the process's wiring stays one call: `add_flags(parser)`,
`settings_of(args)` (the defaults resolved, bad values refused naming the flag) and
`start_controllers(...)`, which returns what stops them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ketch.api import durations
from ketch.client.clientset import Client
from ketch.client.transport import Transport

from .controllers.leader import (
    LEASE_NAME,
    LEASE_NAMESPACE,
    LeaderElectedControllers,
    LeaderElectionConfig,
    check_advertise_address,
    default_advertise_address,
    default_leader_elect,
    holder_identity,
)
from .controllers.manager import CONTROLLERS, ControllerManager
from .controllers.options import ControllerOptions

log = logging.getLogger(__name__)


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}: use true or false")


def add_flags(p: argparse.ArgumentParser) -> None:
    le = p.add_argument_group("leader election (kube-controller-manager's flags)")
    le.add_argument("--leader-elect", nargs="?", const=True, default=None, type=boolean, metavar="true|false",
                    help="run the scheduler and controllers only while holding the Lease "
                         f"{LEASE_NAMESPACE}/{LEASE_NAME}, so replicas on one store take turns (default: on "
                         "with an etcd:// store, off otherwise); every replica serves the API either way")
    le.add_argument("--leader-elect-lease-duration", type=durations.argument, default=15.0, metavar="DURATION",
                    help="how long other replicas wait after the last renewal before taking the lease (15s)")
    le.add_argument("--leader-elect-renew-deadline", type=durations.argument, default=10.0, metavar="DURATION",
                    help="the leader stops its controllers when it could not renew for this long (10s)")
    le.add_argument("--leader-elect-retry-period", type=durations.argument, default=2.0, metavar="DURATION",
                    help="between tries to acquire or renew the lease (2s)")
    le.add_argument("--advertise-address", default="", metavar="HOST",
                    help="the address naming this replica, at the end of the Lease's holderIdentity "
                         "(default: the --listen host)")


@dataclass(frozen=True)
class Settings:
    enabled: bool
    config: LeaderElectionConfig
    advertise_address: str


def settings_of(args: argparse.Namespace) -> Settings:
    """The flags with their defaults resolved; ValueError naming the flag when one is wrong."""
    enabled = default_leader_elect(args.store) if args.leader_elect is None else bool(args.leader_elect)
    config = LeaderElectionConfig(lease_duration=args.leader_elect_lease_duration,
                                  renew_deadline=args.leader_elect_renew_deadline,
                                  retry_period=args.leader_elect_retry_period)
    advertise = args.advertise_address or default_advertise_address(args.listen)
    if enabled:
        problems = [*config.problems(), check_advertise_address(advertise) or ""]
        problems = [p for p in problems if p]
        if problems:
            raise ValueError("; ".join(problems))
    return Settings(enabled, config, advertise)


def _exit_now() -> None:
    """Controllers that would not stop before another replica may take the lease: exit at once,
    as kube-controller-manager does on a lost lease (its supervisor restarts it)."""
    log.critical("leader election: exiting so that no controller of this replica writes after another "
                 "replica may have taken the lease")
    logging.shutdown()
    os._exit(1)


async def start_controllers(transport: Transport, options: ControllerOptions, enabled: list[str] | None,
                            settings: Settings, on_elected: Callable[[LeaderElectedControllers], None] | None = None,
                            ) -> Callable[[], Awaitable[None]]:
    """The controllers at once, or (--leader-elect) whenever this replica holds the Lease;
    returns what stops them (a leader then releases the Lease for the next replica at once).
    on_elected gets the campaign (the leaderElection health check reads it)."""
    unknown = [name for name in enabled or () if name not in CONTROLLERS]
    if unknown:  # refused now, not on the day this replica first leads
        raise ValueError(f"unknown controller {unknown[0]!r}; known: {', '.join(CONTROLLERS)}")
    if not settings.enabled:
        manager = ControllerManager(Client(transport), options, enabled)
        await manager.start()
        return manager.stop
    elected = LeaderElectedControllers(transport, lambda client: ControllerManager(client, options, enabled),
                                       holder_identity(settings.advertise_address), settings.config,
                                       on_stop_overrun=_exit_now)
    if on_elected is not None:
        on_elected(elected)
    log.info("leader election: campaigning for lease %s/%s as %s", LEASE_NAMESPACE, LEASE_NAME, elected.identity)
    task = asyncio.create_task(elected.run(), name="leader-election")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return stop
