"""The scheduler and the controllers on one replica at a time, through the Lease
kube-system/ketch-controller-manager (kube-controller-manager's --leader-elect).

Every replica serves the API; only the holder of the Lease runs controllers. A term of leading
is a fresh ControllerManager (its own informers, queues and expectations, nothing carried over
from a previous term) whose client goes through a `FencedTransport`. When the lease is lost
(no renewal for the renew deadline) or the process shuts down, the term ends in this order:
the fence shuts (no new call leaves this replica), every controller task is cancelled and
awaited, the writes already sent are drained; only then is the replica free to campaign again.
That has to finish before the lease could expire for another replica (the last successful
renewal was sent at least `lease_duration` before that): since renew deadline < lease duration,
the stop has (lease duration − renew deadline − retry period) seconds, 3 s with the defaults.
If it cannot, `on_stop_overrun` runs: the control plane exits at once then, which is what
kube-controller-manager does on any lost lease (here a replica that stopped in time stays up,
keeps serving the API and campaigns again).

Transitions are logged and recorded as Events on the Lease (reason LeaderElection, "X became
leader" / "X stopped leading", as client-go's resource lock records them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ketch.client.clientset import Client
from ketch.client.events import EventRecorder
from ketch.client.leaderelection import JITTER_FACTOR, LeaderElector
from ketch.client.transport import Transport

from .fence import DeadlineTransport, FencedTransport
from .manager import ControllerManager

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "ketch-controller-manager"
COMPONENT = "ketch-controller-manager"
STOP_SAFETY = 0.25  # seconds kept between the end of a stop and the earliest expiry of the lease


@dataclass(frozen=True)
class LeaderElectionConfig:
    """kube-controller-manager's knobs and defaults."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problems(self) -> list[str]:
        """What is wrong with these durations, in the flags' words (client-go's checks)."""
        out = []
        if self.lease_duration < 1:
            out.append(f"--leader-elect-lease-duration {self.lease_duration:g}s: must be at least 1s")
        if self.retry_period <= 0:
            out.append(f"--leader-elect-retry-period {self.retry_period:g}s: must be positive")
        if self.lease_duration <= self.renew_deadline:
            out.append(f"--leader-elect-lease-duration {self.lease_duration:g}s: must be greater than "
                       f"--leader-elect-renew-deadline {self.renew_deadline:g}s")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            out.append(f"--leader-elect-renew-deadline {self.renew_deadline:g}s: must be greater than "
                       f"{JITTER_FACTOR:g} x --leader-elect-retry-period {self.retry_period:g}s")
        return out


def default_leader_elect(store: str) -> bool:
    """On with etcd (several replicas can share it), off with SQLite or memory (one replica)."""
    return store.strip().startswith("etcd://")


def default_advertise_address(listen: str) -> str:
    """The first listen host; for a wildcard listen (0.0.0.0, ::), the address of the default
    route's interface (as kube-apiserver), else the host name."""
    host = listen.split(",")[0].strip().rpartition(":")[0].strip("[]") or "0.0.0.0"
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host
    if not unspecified:
        return host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(("2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1", 9))  # sends nothing
            return str(s.getsockname()[0])
    except OSError:
        return socket.gethostname()


def check_advertise_address(value: str) -> str | None:
    """None if value can name a replica (an IP or a host name, no port), else the problem."""
    if not value or any(c.isspace() for c in value):
        return f"--advertise-address {value!r}: must be an IP address or a host name"
    if ":" in value:
        try:
            ipaddress.IPv6Address(value.strip("[]"))
        except ValueError:
            return f"--advertise-address {value!r}: a host without a port"
    return None


def holder_identity(advertise_address: str, hostname: str | None = None) -> str:
    """`<hostname>_<uuid>_<advertise address>`: unique per process (kube-controller-manager's
    hostname_uuid) and, as DESIGN.md asks, ending with the replica's address."""
    return f"{hostname or socket.gethostname()}_{uuid.uuid4()}_{advertise_address}"


class _Elector(LeaderElector):
    """Also remembers when the last successful acquire or renew was *sent*: no other replica
    can see the lease expire earlier than lease_duration after that moment."""

    valid_from = 0.0

    async def try_acquire_or_renew(self) -> bool:
        sent = self._now()
        ok = await super().try_acquire_or_renew()
        if ok and self.is_leader():
            self.valid_from = sent
        return ok


@dataclass
class Term:
    """One stint of leading, on the wall clock (for logs and tests)."""

    started: float
    stopped: float | None = None
    stop_seconds: float = 0.0
    margin: float = 0.0  # seconds left before the lease could pass to another when stopped
    lease_valid_until: float = 0.0  # wall clock: the earliest expiry of this term's lease
    renewed: str = ""  # the renewTime of this term's last renewal, as written in the Lease


class LeaderElectedControllers:
    """Campaigns for the Lease and runs a ControllerManager only while holding it."""

    def __init__(self, transport: Transport, make_manager: Callable[[Client], ControllerManager], identity: str,
                 config: LeaderElectionConfig = LeaderElectionConfig(), *,
                 on_stop_overrun: Callable[[], None] | None = None,
                 lease_transport: Transport | None = None) -> None:
        problems = config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.transport = transport
        self.make_manager = make_manager
        self.identity = identity
        self.config = config
        self.on_stop_overrun = on_stop_overrun
        self.lease_client = Client(DeadlineTransport(lease_transport or transport, config.renew_deadline))
        self.recorder = EventRecorder(Client(transport), COMPONENT, host=identity)
        self.elector: _Elector | None = None
        self.manager: ControllerManager | None = None
        self.fence: FencedTransport | None = None
        self.terms: list[Term] = []
        self.leader = ""  # the holder last observed

    @property
    def leading(self) -> bool:
        return bool(self.terms) and self.terms[-1].stopped is None

    async def run(self) -> None:
        """Campaign, lead, and after a lost lease campaign again; until cancelled."""
        try:
            while True:
                self.elector = _Elector(
                    self.lease_client, LEASE_NAMESPACE, LEASE_NAME, self.identity,
                    lease_duration=self.config.lease_duration, renew_deadline=self.config.renew_deadline,
                    retry_period=self.config.retry_period, on_started_leading=self._lead,
                    on_new_leader=self._new_leader, release_on_cancel=True)
                await self.elector.run()
                log.warning("leader election: %s lost lease %s/%s; its controllers are stopped, campaigning "
                            "again", self.identity, LEASE_NAMESPACE, LEASE_NAME)
        finally:
            await self.recorder.close()

    def _new_leader(self, identity: str) -> None:
        self.leader = identity
        if identity != self.identity:
            log.info("leader election: the leader is %s", identity)

    def _event(self, message: str) -> None:
        lease = self.elector.lock.lease if self.elector is not None else None
        if lease is not None:
            self.recorder.event(lease, "Normal", "LeaderElection", message)

    async def _lead(self) -> None:
        """The elector's on_started_leading: run a fresh manager until cancelled, then stop it."""
        fence = FencedTransport(self.transport)
        manager = self.make_manager(Client(fence))
        term = Term(started=time.time())
        self.fence, self.manager = fence, manager
        self.terms.append(term)
        log.info("leader election: %s became leader; starting the controllers", self.identity)
        self._event(f"{self.identity} became leader")
        try:
            await manager.start()
            await asyncio.Event().wait()
        finally:
            await self._stop(manager, fence, term)

    async def _stop(self, manager: ControllerManager, fence: FencedTransport, term: Term) -> None:
        assert self.elector is not None
        began = time.monotonic()
        expires = self.elector.valid_from + self.config.lease_duration
        fence.fence()

        async def stop_all() -> None:
            await manager.stop()
            await fence.drain()

        budget = expires - began - STOP_SAFETY
        # asyncio.wait, not wait_for: on a timeout wait_for cancels the stop and then waits for it
        # to end, which is forever when a controller is stuck; the deadline must hold regardless.
        stopping = asyncio.ensure_future(stop_all())
        done, _ = await asyncio.wait({stopping}, timeout=max(budget, 0.001))
        if not done:
            stopping.cancel()
            log.error("leader election: %s could not stop its controllers within %.2fs, before its lease "
                      "could pass to another replica (%d calls in flight)", self.identity, budget,
                      fence.in_flight)
            if self.on_stop_overrun is not None:
                self.on_stop_overrun()
        else:
            stopping.result()  # a stop that failed fails here, as it did through wait_for
        now = time.monotonic()
        term.stopped = time.time()
        term.stop_seconds = now - began
        term.margin = expires - now
        term.lease_valid_until = term.stopped + term.margin
        if self.elector.is_leader():
            term.renewed = self.elector.observed.renew_time
        log.info("leader election: %s stopped its controllers in %.3fs, %.3fs before its lease could pass to "
                 "another replica", self.identity, term.stop_seconds, term.margin)
        self._event(f"{self.identity} stopped leading")
