"""`ketch run` end to end: a real control plane and agent, the CLI as a process. What a user
relies on: one Pod (never a Job) created, its output streamed, the container's exit code as the
CLI's, `--rm` deleting the pod afterwards, and kubectl's refusal of an unknown --restart."""

from __future__ import annotations

from .harness import Cluster


def test_run_streams_output_and_propagates_the_exit_code(cluster: Cluster) -> None:
    script = "for i in 1 2 3; do echo line $i; sleep 0.2; done; echo oops >&2; exit 3"
    result = cluster.ketch("run", "worker", "--restart=Never", "--", "sh", "-c", script, check=False)
    assert result.returncode == 3, result.stderr
    # The log's stdout lines in order, and stderr's line too; where stderr's falls among them is
    # not fixed (two pipes, read apart, as in the kubelet).
    lines = result.stdout.splitlines()
    assert [x for x in lines if x != "oops"] == ["line 1", "line 2", "line 3"] and lines.count("oops") == 1
    assert "pod default/worker terminated (Error)" in result.stderr
    pod = cluster.get("pod", "worker")
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["containers"][0]["command"] == ["sh", "-c", script]
    assert pod["metadata"]["labels"] == {"run": "worker"}
    assert pod["status"]["phase"] == "Failed"
    assert cluster.items("job") == []  # a Pod, never a Job


def test_run_rm_deletes_the_pod_and_exits_zero(cluster: Cluster) -> None:
    result = cluster.ketch("run", "--rm", "--restart=Never", "hello", "-n", "default", "--", "echo", "hi there")
    assert result.returncode == 0
    assert result.stdout == 'hi there\npod "hello" deleted\n'
    assert cluster.try_get("pod", "hello") is None
    failed = cluster.ketch("run", "--rm", "--restart=Never", "bad", "--", "sh", "-c", "exit 7", check=False)
    assert failed.returncode == 7
    assert cluster.try_get("pod", "bad") is None


def test_run_refuses_an_unknown_restart_policy(cluster: Cluster) -> None:
    result = cluster.ketch("run", "x", "--restart=Sometimes", "--", "true", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: invalid restart policy: Sometimes"
    assert cluster.try_get("pod", "x") is None
    # --rm needs an attached pod, as kubectl says (restart Always, no -i).
    result = cluster.ketch("run", "y", "--rm", "--", "true", check=False)
    assert result.stderr.strip() == "error: --rm should only be used for attached containers"
    assert cluster.try_get("pod", "y") is None


def test_run_of_a_missing_executable_says_why(cluster: Cluster) -> None:
    result = cluster.ketch("run", "--rm", "--restart=Never", "nobin", "--", "no-such-binary-here", check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "pod default/nobin terminated (ContainerCannotRun)", result.stderr
    assert "no-such-binary-here" in lines[1] and "not found" in lines[1]
    assert cluster.try_get("pod", "nobin") is None


def test_run_i_feeds_stdin_to_the_container_and_its_end_closes_it(cluster: Cluster) -> None:
    # kubectl run -i --rm: the CLI's stdin is the container's, and its end is the container's EOF.
    result = cluster.ketch("run", "-i", "--rm", "--restart=Never", "x", "--", "cat", input="a\nb\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'a\nb\npod "x" deleted\n'
    assert cluster.try_get("pod", "x") is None
    # The exit code is the container's, and its input decided it.
    code = cluster.ketch("run", "-i", "--restart=Never", "reader", "--", "sh", "-c", "read x; exit $x",
                         input="3\n", check=False)
    assert code.returncode == 3, code.stderr
    container = cluster.get("pod", "reader")["spec"]["containers"][0]
    assert (container.get("stdin"), container.get("stdinOnce")) == (True, True)
    # Without -i the container reads /dev/null, whatever the CLI's stdin holds.
    plain = cluster.ketch("run", "--rm", "--restart=Never", "plain", "--", "sh", "-c", "cat; echo end",
                          input="never read\n")
    assert plain.stdout == 'end\npod "plain" deleted\n'
