"""The CLI's start-up cost and `ketch run` (issue 14).

CPU time (user + system, from wait4) of each child process, the median of alternating rounds so
that load on the machine falls on every command alike:

    ketch version --client   vs  python -c pass          (goal: <= 3x)
    ketch get pods           vs  python -c "import grpc"  (goal: <= 1.5x)

then the wall time of `ketch run --rm --restart=Never NAME -- true` against `ketch apply` +
`ketch wait` for the same pod, on a local cluster (one agent) that the bench starts. Wall times
depend on the machine's load; the CPU ratios much less. Every child runs with compiled bytecode
cached (as an installed ketch has: PYTHONDONTWRITEBYTECODE is dropped, the cache goes to a
temporary PYTHONPYCACHEPREFIX, filled by one round that is not counted), else each run would
compile Ketch's sources again and the bench would measure the compiler.

    .venv/bin/python bench/cli.py [--rounds 15] [--insecure]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cluster import ROOT, BenchCluster, wait_for_ready_nodes

PYTHON = sys.executable
KETCH = str(Path(PYTHON).with_name("ketch"))


def child_cpu(argv: list[str], env: dict[str, str]) -> float:
    """CPU seconds the child used (its own, from wait4), failing loudly if it failed."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()}")
    return usage.ru_utime + usage.ru_stime


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--insecure", action="store_true", help="plaintext, no kubeconfig (default: TLS as admin)")
    args = parser.parse_args()
    with BenchCluster("cli", insecure=args.insecure) as c:
        c.start_controlplane()
        c.start_agent("node-a")
        client = c.client(wait_for_ready=True)
        import asyncio

        asyncio.run(wait_for_ready_nodes(client, 1))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(KETCH_SERVER=c.server, PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="ketch-bench-pycache-"))
        commands = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "python -c 'import grpc'": [PYTHON, "-c", "import grpc"],
            "ketch version --client": [KETCH, "version", "--client"],
            "ketch get pods": [KETCH, "get", "pods"],
        }
        for argv in commands.values():  # fills the bytecode cache; not counted
            child_cpu(argv, env)
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                cpu[name].append(child_cpu(argv, env))
        med = {name: statistics.median(v) for name, v in cpu.items()}
        print(f"CPU time, median of {args.rounds} alternating rounds ({'plaintext' if args.insecure else 'TLS'}):")
        for name, value in med.items():
            print(f"  {name:28s} {value * 1000:6.1f} ms")
        version = med["ketch version --client"] / med["python -c pass"]
        get = med["ketch get pods"] / med["python -c 'import grpc'"]
        print(f"  ketch version --client / python -c pass        = {version:.2f}x (goal <= 3x)")
        print(f"  ketch get pods / python -c 'import grpc'       = {get:.2f}x (goal <= 1.5x)")

        runs: list[float] = []
        applies: list[float] = []
        for i in range(args.rounds):
            runs.append(wall([KETCH, "run", "--rm", "--restart=Never", f"run-{i}", "--", "true"], env))
            manifest = (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: apply-{i}}}\n"
                        "spec: {restartPolicy: Never, containers: [{name: c, command: ['true']}]}\n")
            start = time.perf_counter()
            subprocess.run([KETCH, "apply", "-f", "-"], input=manifest, text=True, check=True, env=env,
                           stdout=subprocess.DEVNULL)
            subprocess.run([KETCH, "wait", "--for=jsonpath={.status.phase}=Succeeded", f"pod/apply-{i}",
                            "--timeout=60s"], check=True, env=env, stdout=subprocess.DEVNULL)
            applies.append(time.perf_counter() - start)
        print(f"Wall time, median of {args.rounds} alternating rounds (load on the machine changes these):")
        print(f"  ketch run --rm --restart=Never NAME -- true  {statistics.median(runs) * 1000:6.0f} ms")
        print(f"  ketch apply + ketch wait (Succeeded)         {statistics.median(applies) * 1000:6.0f} ms")
        asyncio.run(client.close())
        shutil.rmtree(env["PYTHONPYCACHEPREFIX"], ignore_errors=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
