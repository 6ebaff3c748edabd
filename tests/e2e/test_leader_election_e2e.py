"""--leader-elect on a single control plane (SQLite): the replica elects itself, runs the pi Job,
and the Lease kube-system/ketch-controller-manager names it, ending with its --advertise-address.
Stopped with SIGTERM it releases the Lease, so the restarted control plane leads again at once
instead of waiting out the 15 s lease of its previous self."""

from __future__ import annotations

import signal
import time
from typing import Any

from .harness import Cluster, wait_until
from .test_job_e2e import job_yaml, pods_of, wait_job

FLAGS = ["--leader-elect=true", "--advertise-address", "127.0.0.9"]


def lease(c: Cluster) -> dict[str, Any]:
    return c.get("lease", "ketch-controller-manager", "-n", "kube-system")  # type: ignore[no-any-return]


def test_an_elected_control_plane_runs_the_pi_job_and_names_itself_in_the_lease(cluster_factory: Any) -> None:
    c = cluster_factory(FLAGS)
    c.start_controlplane()
    c.start_agent("node-a")
    c.apply(job_yaml("pi", ["perl", "-Mbignum=bpi", "-wle", "print bpi(100)"], completions=2, parallelism=2))
    pi = wait_job(c, "pi", "Complete")
    assert pi["status"]["succeeded"] == 2
    assert c.ketch("logs", pods_of(c, "pi")[0]["metadata"]["name"]).stdout.startswith("3.14159")

    spec = lease(c)["spec"]
    first = spec["holderIdentity"]
    assert first.endswith("_127.0.0.9") and spec["leaseDurationSeconds"] == 15
    events = c.items("events", "-n", "kube-system")
    assert any(e["reason"] == "LeaderElection" and e["message"] == f"{first} became leader" for e in events)
    assert "became leader; starting the controllers" in c.logs("controlplane")

    # A clean stop stops the controllers and releases the lease: the next start leads at once.
    assert c.stop_process("controlplane", signal.SIGTERM) == 0
    assert "stopped its controllers" in c.logs("controlplane")
    restarted = time.monotonic()
    c.start_controlplane()
    spec = wait_until(lambda: (s := lease(c)["spec"]).get("holderIdentity") not in (None, "", first) and s, 30,
                      "the restarted control plane to lead")
    assert time.monotonic() - restarted < 15
    assert spec["holderIdentity"].endswith("_127.0.0.9") and spec["leaseTransitions"] == 1
    c.apply(job_yaml("again", ["true"]))
    assert wait_job(c, "again", "Complete")["status"]["succeeded"] == 1
