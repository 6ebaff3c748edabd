"""The runtime confines what it starts, as a Confinement asks: each setting read back from the
child's own /proc/self/status (or tried), and a setting it cannot make refuses the start with
the step and the reason."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ketch.api import capabilities
from nodeagent.runtime import confine
from nodeagent.runtime.confine import Bind, Confinement, Mount
from nodeagent.runtime.interface import LaunchSpec, StartError
from nodeagent.runtime.process import ProcessRuntime

ROOT_DIR = Path(__file__).resolve().parents[3]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users, dropping capabilities and mount "
                                                          "namespaces need the agent to be root")
STATUS = "grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs):' /proc/self/status"
NOBODY = 65534


def cap(*names: str) -> int:
    return sum(1 << capabilities.NUMBERS[n] for n in names)


async def run(runtime: ProcessRuntime, tmp_path: Path, c: Confinement | None, script: str,
              cwd: Path | None = None) -> tuple[int | None, str]:
    """Run script with sh, confined by c; (exit code, what it printed)."""
    cwd = cwd or tmp_path / "sandbox"
    cwd.mkdir(exist_ok=True)
    os.chmod(cwd, 0o777)
    log = tmp_path / "out.log"
    log.unlink(missing_ok=True)
    handle = runtime.start(LaunchSpec(["sh", "-c", script], {"PATH": "/usr/bin:/bin"}, str(cwd), str(log), c))
    info = await handle.exited
    return info.exit_code, log.read_text()


def status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def own_mask(key: str) -> int:
    return int(status(Path("/proc/self/status").read_text())[key], 16)


# -- no child code: nothing or only oom_score_adj and the open-files limit ------------------------

async def test_an_unconfined_start_execs_the_command_itself(runtime: ProcessRuntime, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    handle = runtime.start(LaunchSpec(["sleep", "30"], {"PATH": "/usr/bin:/bin"}, str(tmp_path), str(log)))
    try:
        # A vfork parent resumes once the child's exec is past the point of no return, before the
        # new image's arguments are set up: the kernel shows an empty cmdline for that moment.
        cmdline = Path(f"/proc/{handle.pid}/cmdline")
        deadline = time.monotonic() + 10
        while not cmdline.read_bytes() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert cmdline.read_bytes() == b"sleep\x0030\x00"  # sleep itself, no shell before it
    finally:
        await runtime.stop(handle, 0)


async def test_oom_score_adj_and_open_files_without_the_agents(runtime: ProcessRuntime, tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    c = Confinement(oom_score_adj=900, nofile=(min(1000, hard), hard))
    code, out = await run(runtime, tmp_path, c, "cat /proc/self/oom_score_adj; ulimit -Sn; ulimit -Hn")
    assert (code, out.split()) == (0, ["900", str(min(1000, hard)), str(hard)])


# -- child code ---------------------------------------------------------------------------------

@needs_root
async def test_user_group_and_exactly_these_groups(runtime: ProcessRuntime, tmp_path: Path) -> None:
    code, out = await run(runtime, tmp_path, Confinement(uid=NOBODY, gid=4242, groups=(4343, 4242)),
                          f"{STATUS}; touch mine; stat -c '%u %g' mine")
    st = status(out)
    assert code == 0, out
    assert st["Uid"].split() == [str(NOBODY)] * 4
    assert st["Gid"].split() == ["4242"] * 4
    assert st["Groups"].split() == ["4242", "4343"]
    assert out.splitlines()[-1] == f"{NOBODY} 4242"


@needs_root
async def test_root_without_capabilities_cannot_chown(runtime: ProcessRuntime, tmp_path: Path) -> None:
    keep = cap("NET_BIND_SERVICE")
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "sandbox" / "f").touch()
    code, out = await run(runtime, tmp_path, Confinement(bounding=keep, caps=keep), f"{STATUS}; chown {NOBODY} f")
    st = status(out)
    assert st["Uid"].split()[0] == "0"
    assert int(st["CapBnd"], 16) == int(st["CapEff"], 16) == int(st["CapPrm"], 16) == keep
    assert code != 0 and "Operation not permitted" in out


@needs_root
async def test_a_non_root_user_keeps_added_capabilities_across_exec(runtime: ProcessRuntime,
                                                                   tmp_path: Path) -> None:
    chown = cap("CHOWN")
    bounding = cap("CHOWN", "NET_BIND_SERVICE")
    (tmp_path / "sandbox").mkdir()
    os.chown(tmp_path / "sandbox", NOBODY, NOBODY)
    c = Confinement(uid=NOBODY, gid=NOBODY, groups=(), bounding=bounding, caps=chown, ambient=chown)
    code, out = await run(runtime, tmp_path, c, f"{STATUS}; touch f; chown 0:0 f && stat -c '%u' f")
    st = status(out)
    assert (int(st["CapEff"], 16), int(st["CapPrm"], 16), int(st["CapAmb"], 16)) == (chown, chown, chown)
    assert int(st["CapBnd"], 16) == bounding
    assert (code, out.splitlines()[-1]) == (0, "0")  # a file handed to root: only CAP_CHOWN allows it
    # Without the ambient capability the same user cannot.
    code, out = await run(runtime, tmp_path, Confinement(uid=NOBODY, gid=NOBODY, groups=()), "touch g; chown 0 g")
    assert code != 0 and "Operation not permitted" in out


@needs_root
async def test_no_new_privs(runtime: ProcessRuntime, tmp_path: Path) -> None:
    _, out = await run(runtime, tmp_path, Confinement(no_new_privs=True), STATUS)
    assert status(out)["NoNewPrivs"] == "1"
    _, out = await run(runtime, tmp_path, Confinement(uid=NOBODY, gid=NOBODY, groups=()), STATUS)
    assert status(out)["NoNewPrivs"] == "0"


@needs_root
async def test_read_only_root_but_a_writable_sandbox(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    before = Path("/proc/self/mountinfo").read_text()
    c = Confinement(read_only_root=True, writable=(str(sandbox),), oom_score_adj=500)
    script = (f"touch {tmp_path}/outside; echo outside=$?; touch inside; echo inside=$?; "
              "echo x > /dev/null; echo devnull=$?; cat /proc/self/oom_score_adj")
    code, out = await run(runtime, tmp_path, c, script)
    assert code == 0, out
    assert "Read-only file system" in out
    assert out.splitlines()[1:] == ["outside=1", "inside=0", "devnull=0", "500"]
    assert (sandbox / "inside").exists() and not (tmp_path / "outside").exists()
    # The host's mounts are untouched: the namespace was the child's alone.
    assert Path("/proc/self/mountinfo").read_text() == before


@needs_root
async def test_a_read_only_root_in_a_working_dir_elsewhere(runtime: ProcessRuntime, tmp_path: Path) -> None:
    sandbox, workdir = tmp_path / "sandbox", tmp_path / "work"
    sandbox.mkdir()
    workdir.mkdir()
    c = Confinement(read_only_root=True, writable=(str(sandbox),))
    code, out = await run(runtime, tmp_path, c, f"pwd; touch here || touch {sandbox}/there", cwd=workdir)
    assert code == 0 and out.splitlines()[0] == str(workdir)
    assert (sandbox / "there").exists() and not (workdir / "here").exists()


@needs_root
async def test_volumes_are_bound_in_the_childs_namespace_alone(runtime: ProcessRuntime, tmp_path: Path) -> None:
    vol, ro_vol, sandbox = tmp_path / "vol", tmp_path / "ro-vol", tmp_path / "sandbox"
    for d in (vol, ro_vol, sandbox):
        d.mkdir()
    (ro_vol / "in.txt").write_text("ro\n")
    target, ro_target = tmp_path / "mnt" / "data", tmp_path / "mnt" / "conf"
    target.mkdir(parents=True)
    ro_target.mkdir()
    before = Path("/proc/self/mountinfo").read_text()
    c = Confinement(read_only_root=True, writable=(str(sandbox),),
                    binds=(Bind(str(vol), str(target)), Bind(str(ro_vol), str(ro_target), read_only=True)))
    script = (f"echo hi > {target}/out; echo data=$?; cat {ro_target}/in.txt; touch {ro_target}/x; echo conf=$?; "
              f"touch {tmp_path}/outside; echo outside=$?")
    code, out = await run(runtime, tmp_path, c, script)
    assert code == 0, out
    lines = [line for line in out.splitlines() if "Read-only file system" not in line]
    assert lines == ["data=0", "ro", "conf=1", "outside=1"]
    assert (vol / "out").read_text() == "hi\n", "written through the bind into the volume"
    assert not (target / "out").exists() and not (ro_vol / "x").exists()
    assert Path("/proc/self/mountinfo").read_text() == before


@needs_root
async def test_a_volume_that_cannot_be_bound_is_named(runtime: ProcessRuntime, tmp_path: Path) -> None:
    c = Confinement(binds=(Bind(str(tmp_path / "nope"), str(tmp_path), what='volume "input"'),))
    with pytest.raises(StartError, match=f'^volume "input": cannot mount {tmp_path}/nope at {tmp_path}: '
                                         "No such file or directory$"):
        await run(runtime, tmp_path, c, "true")


@needs_root
async def test_a_subpath_swapped_before_the_mount_refuses_the_start(runtime: ProcessRuntime, tmp_path: Path) -> None:
    """The parent checked one inode; the child mounted another (a container swapped a path
    component for a symlink meanwhile): the start fails rather than expose what it leads to."""
    checked, swapped, target = tmp_path / "checked", tmp_path / "swapped", tmp_path / "target"
    for d in (checked, swapped, target):
        d.mkdir()
    st = checked.stat()
    c = Confinement(binds=(Bind(str(swapped), str(target), what='volume "v"', expect=(st.st_dev, st.st_ino)),))
    with pytest.raises(StartError, match=f'^volume "v": {swapped} changed before it was mounted at {target}'):
        await run(runtime, tmp_path, c, "true")
    same = Confinement(binds=(Bind(str(checked), str(target), expect=(st.st_dev, st.st_ino)),))
    assert (await run(runtime, tmp_path, same, "true"))[0] == 0


@needs_root
async def test_oom_and_open_files_after_a_user_switch(runtime: ProcessRuntime, tmp_path: Path) -> None:
    c = Confinement(uid=NOBODY, gid=NOBODY, groups=(), oom_score_adj=1000, nofile=(1024, 2048))
    code, out = await run(runtime, tmp_path, c, "cat /proc/self/oom_score_adj; ulimit -Sn; ulimit -Hn")
    assert (code, out.split()) == (0, ["1000", "1024", "2048"])


@needs_root
def test_without_mount_namespaces_a_read_only_root_is_refused_with_the_reason(tmp_path: Path) -> None:
    """An agent without CAP_SYS_ADMIN (here: a process whose bounding set lacks it) cannot unshare."""
    helper = (
        "import os, sys\n"
        "from nodeagent.runtime.confine import Confinement\n"
        "from nodeagent.runtime.interface import StartError\n"
        "from nodeagent.runtime.process import ProcessRuntime\n"
        "c = Confinement(read_only_root=True, writable=(sys.argv[1],))\n"
        "try:\n"
        "    ProcessRuntime().launch(['true'], sys.argv[1], {'PATH': '/usr/bin:/bin'}, 1, c)\n"
        "except StartError as err:\n"
        "    print(err)\n"
    )
    without = own_mask("CapBnd") & ~cap("SYS_ADMIN")
    setup = confine.ChildSetup(Confinement(bounding=without, caps=without), str(tmp_path))
    try:
        out = subprocess.run([sys.executable, "-c", helper, str(tmp_path)], capture_output=True, text=True,
                             cwd=ROOT_DIR, preexec_fn=setup, timeout=60, check=True).stdout
    finally:
        setup.close()
    assert out.strip() == "readOnlyRootFilesystem: cannot make a private mount namespace: Operation not permitted"


async def test_a_step_that_fails_is_named(runtime: ProcessRuntime, tmp_path: Path) -> None:
    # A soft limit above the hard one: setrlimit refuses it in the child.
    with pytest.raises(StartError, match=r"^cannot set RLIMIT_NOFILE to 2048/1024: Invalid argument$"):
        await run(runtime, tmp_path, Confinement(no_new_privs=True, nofile=(2048, 1024)), "true")


# -- pure helpers ----------------------------------------------------------------------------------------

def test_mountinfo_keeps_per_mount_flags_and_the_top_mount_of_a_path() -> None:
    text = (b"22 27 0:21 / /proc rw,relatime - proc proc rw\n"
            b"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
            b"28 27 0:25 / /mnt/a\\040b ro,nosuid,nodev,relatime - tmpfs t ro\n"
            b"29 27 0:26 / /srv rw,nosuid,noexec - tmpfs t rw\n"
            b"30 27 0:27 / /srv rw,noatime - tmpfs t rw\n"
            b"31 27 0:28 / /var/lib/ketch/pods/u1/cache rw - tmpfs t rw\n")
    mounts = confine.parse_mountinfo(text)
    assert Mount(b"/mnt/a b", confine.MS_NOSUID | confine.MS_NODEV | confine.MS_RELATIME, True) in mounts
    assert [m for m in mounts if m.path == b"/srv"] == [Mount(b"/srv", confine.MS_NOATIME, False)]
    remounted = [m.path for m in confine.to_make_read_only(mounts, ["/var/lib/ketch/pods/u1"])]
    assert remounted == [b"/", b"/srv"]


def test_a_read_only_root_leaves_the_volumes_and_what_is_below_them() -> None:
    mounts = [Mount(b"/", confine.MS_NOSUID, False), Mount(b"/data", 0, False), Mount(b"/data/sub", 0, False),
              Mount(b"/var", confine.MS_NODEV, False)]
    assert [m.path for m in confine.to_make_read_only(mounts, ("/data",))] == [b"/", b"/var"]
    assert confine.mount_flags(mounts, "/var/lib/x") == confine.MS_NODEV
    assert confine.mount_flags(mounts, "/variable") == confine.MS_NOSUID


def test_shell_commands_for_the_resets() -> None:
    assert confine.shell_commands(Confinement(oom_score_adj=-997, nofile=(1024, 4096))) == [
        "ulimit -S -n 1024", "ulimit -H -n 4096", "echo -997 > /proc/self/oom_score_adj"]
    assert confine.shell_commands(Confinement()) == []
    assert Confinement().trivial and not Confinement(oom_score_adj=0).trivial


def test_only_what_cpython_and_the_shell_cannot_do_runs_python_in_the_child() -> None:
    assert not Confinement(oom_score_adj=-997, nofile=(1024, 4096)).needs_preexec(0)
    assert not Confinement(uid=NOBODY, gid=NOBODY, groups=(), oom_score_adj=1000).needs_preexec(0)
    # A non-root shell could not lower it below the agent's.
    assert Confinement(uid=NOBODY, gid=NOBODY, groups=(), oom_score_adj=-997).needs_preexec(0)
    assert not Confinement(uid=NOBODY, gid=NOBODY, groups=(), oom_score_adj=-997).needs_preexec(-999)
    for c in (Confinement(bounding=0), Confinement(caps=0), Confinement(no_new_privs=True),
              Confinement(read_only_root=True), Confinement(binds=(Bind("/a", "/b"),))):
        assert c.needs_preexec(0)
