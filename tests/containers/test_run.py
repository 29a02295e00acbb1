"""ketch run in the foreground: the container is our child; its status, output, signals and
terminal are ours; podman's 125/126/127; the default security profile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.containers.conftest import IMAGE


def test_exit_status_and_output_pass_through(ketch_env):
    result = ketch_env.cli("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\n" and result.stderr == "err\n"
    assert ketch_env.ps() == []  # --rm


def test_podman_statuses_for_failures(ketch_env):
    missing = ketch_env.cli("run", "--rm", "busybox", "no-such-command")
    assert missing.returncode == 127 and "executable file not found" in missing.stderr
    not_executable = ketch_env.cli("run", "--rm", "busybox", "/etc/passwd")
    assert not_executable.returncode == 126 and "permission denied" in not_executable.stderr
    no_image = ketch_env.cli("run", "--rm", "--pull", "never", "no-such-image", "true")
    assert no_image.returncode == 125 and len(no_image.stderr.strip().splitlines()) == 1
    bad_flag = ketch_env.cli("run", "--memory", "lots", "busybox", "true")
    assert bad_flag.returncode == 125 and "invalid size" in bad_flag.stderr
    unknown_flag = ketch_env.cli("run", "--no-such-flag", "busybox", "true")
    assert unknown_flag.returncode == 125
    assert ketch_env.ps() == []  # nothing half-made was kept
    assert ketch_env.mounts() == []


def test_a_name_in_use_is_refused(ketch_env):
    ketch_env.cli("create", "--name", "taken", "busybox", "true", check=True)
    again = ketch_env.cli("run", "--name", "taken", "busybox", "true")
    assert again.returncode == 125 and "already in use" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert [c["Names"] for c in ketch_env.ps()] == [["taken"]]


def test_the_container_is_our_child_and_gets_our_signals(ketch_env, tmp_path):
    out = tmp_path / "out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(ketch_env.args("run", "--rm", "--name", "sig", "busybox", "sh", "-c",
                                               "trap 'echo got USR1' USR1; trap 'echo got TERM; exit 7' TERM; "
                                               "echo ready; while :; do sleep 0.05; done"),
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while b"ready" not in out.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = json.loads(ketch_env.cli("inspect", "sig", check=True).stdout)[0]["State"]["Pid"]
        with open(f"/proc/{pid}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
        assert parent == proc.pid  # no process stands between ketch run and the container
        proc.send_signal(signal.SIGUSR1)
        while b"got USR1" not in out.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.read_bytes().splitlines() == [b"ready", b"got USR1", b"got TERM"]


def test_sig_proxy_false_keeps_signals_to_ourselves(ketch_env, tmp_path):
    out = tmp_path / "out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(ketch_env.args("run", "--rm", "--sig-proxy=false", "busybox", "sh", "-c",
                                               "trap 'echo got USR1' USR1; echo ready; sleep 1; echo done"),
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while b"ready" not in out.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGWINCH)  # ignored by default: ketch must not die of it either
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.read_bytes().splitlines() == [b"ready", b"done"]


def test_terminal_with_window_size(ketch_env):
    from tests.support.terminal import run_on_pty

    status, output = run_on_pty(ketch_env.args("run", "--rm", "-t", "busybox", "sh", "-c",
                                               "stty size; tty; echo TERM=$TERM; exit 5"), rows=33, columns=101)
    assert status == 5
    text = output.decode(errors="replace").replace("\r", "")
    assert "33 101" in text and "/dev/pts/0" in text and "TERM=xterm" in text


def test_files_and_environment_podman_sets_up(ketch_env):
    result = ketch_env.cli("run", "--rm", "--name", "envy", "--hostname", "box", "-e", "A=1", "busybox", "sh", "-c",
                           "cat /etc/hostname; echo HOSTNAME=$HOSTNAME container=$container A=$A; "
                           "grep box /etc/hosts; cat /run/.containerenv; test -f /etc/resolv.conf && echo resolv; "
                           "test -z \"$TERM\" && echo no-term")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert out.startswith("box\n") and "HOSTNAME=box container=ketch A=1" in out
    assert 'engine="ketch"' in out and 'name="envy"' in out and "resolv" in out and "no-term" in out


def test_default_security_profile(ketch_env):
    result = ketch_env.cli("run", "--rm", "busybox", "sh", "-c",
                           "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; "
                           "mknod /tmp/null c 1 3 2>/dev/null && echo mknod-ok || echo mknod-refused; "
                           "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
                           "touch /proc/sys/kernel/x 2>/dev/null || echo sys-ro; "
                           "ulimit -n")
    fields = dict(line.split(":\t") for line in result.stdout.splitlines() if ":\t" in line)
    podman_caps = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID",
                   "SETPCAP", "SETUID", "SYS_CHROOT"]
    from ketch.runtime import capabilities

    expected = sum(1 << capabilities.NAMES.index("CAP_" + c) for c in podman_caps)
    assert int(fields["CapEff"], 16) == expected and int(fields["CapBnd"], 16) == expected
    assert fields["Seccomp"] == "2"  # a filter (the containers profile)
    assert "mknod-refused" in result.stdout and "sys-ro" in result.stdout
    assert "\n0\n0\n" in result.stdout  # /proc/timer_list and /sys/firmware are masked (empty)
    import resource

    assert result.stdout.splitlines()[-1] == str(resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def test_privileged_read_only_and_capability_flags(ketch_env):
    privileged = ketch_env.cli("run", "--rm", "--privileged", "busybox", "sh", "-c",
                               "grep -E '^(CapEff|Seccomp):' /proc/self/status")
    fields = dict(line.split(":\t") for line in privileged.stdout.splitlines())
    assert fields["Seccomp"] == "0" and int(fields["CapEff"], 16) > 0x800405fb
    read_only = ketch_env.cli("run", "--rm", "--read-only", "busybox", "sh", "-c",
                              "touch /x 2>/dev/null || echo root-ro; touch /tmp/x /run/x /var/tmp/x && echo tmp-rw")
    assert "root-ro" in read_only.stdout and "tmp-rw" in read_only.stdout
    caps = ketch_env.cli("run", "--rm", "--cap-drop", "all", "--cap-add", "net_raw", "--security-opt",
                         "no-new-privileges", "busybox", "grep", "-E", "^(CapEff|NoNewPrivs):", "/proc/self/status")
    fields = dict(line.split(":\t") for line in caps.stdout.splitlines())
    assert int(fields["CapEff"], 16) == 1 << 13 and fields["NoNewPrivs"] == "1"
    unconfined = ketch_env.cli("run", "--rm", "--security-opt", "seccomp=unconfined", "--security-opt",
                               "unmask=/sys/firmware", "busybox", "sh", "-c",
                               "grep Seccomp: /proc/self/status; ls /sys/firmware | grep -q . && echo firmware-visible")
    assert "Seccomp:\t0" in unconfined.stdout and "firmware-visible" in unconfined.stdout
    bad = ketch_env.cli("run", "--rm", "--cap-add", "NOT_A_CAP", "busybox", "true")
    assert bad.returncode == 125 and "unknown capability" in bad.stderr


@pytest.mark.root_only("resource limits need a delegated cgroup, which these machines lack (cgroup v1)")
def test_resources_user_workdir_ulimit_and_init(ketch_env):
    result = ketch_env.cli("run", "--rm", "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5",
                           "--ulimit", "nofile=512:1024", "-u", "nobody", "-w", "/tmp", "--group-add", "10",
                           "--init", "busybox", "sh", "-c",
                           "id; pwd; ulimit -n; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                           "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us; "
                           "tr '\\0' ' ' < /proc/1/cmdline")
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[0].startswith("uid=65534(nobody) gid=65534") and "groups=10" in lines[0]
    assert lines[1:3] == ["/tmp", "512"]
    assert lines[3:6] == [str(64 << 20), "50", "50000"]
    assert lines[6].startswith("/run/ketch-init -- sh -c")  # catatonit is pid 1


def test_containers_conf_is_read(ketch_env, tmp_path):
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_capabilities = ["CHOWN", "KILL"]\nenv = ["FROM_CONF=yes"]\n'
                    'default_ulimits = ["nofile=300:400"]\ndefault_sysctls = ["net.ipv4.ping_group_range=0 0"]\n')
    ketch_env.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    result = ketch_env.cli("run", "--rm", "busybox", "sh", "-c",
                           "grep CapEff /proc/self/status; echo $FROM_CONF; ulimit -n; ulimit -Hn; "
                           "cat /proc/sys/net/ipv4/ping_group_range")
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert int(lines[0].split()[1], 16) == (1 << 0) | (1 << 5)  # CHOWN, KILL
    assert lines[1:4] == ["yes", "300", "400"]
    assert lines[4].split() == ["0", "0"]
    conf.write_text("[containers\n")
    broken = ketch_env.cli("run", "--rm", "busybox", "true")
    assert broken.returncode == 125 and "containers.conf" in broken.stderr


@pytest.mark.peer
def test_other_runtime_keeps_the_container_our_child(ketch_env):
    result = ketch_env.cli("run", "--rm", "--runtime", "runc", "busybox", "sh", "-c", "echo via runc; exit 9")
    assert result.returncode == 9 and result.stdout == "via runc\n", result.stderr


def test_logs_of_a_foreground_run(ketch_env):
    ketch_env.cli("run", "--name", "fg", "busybox", "sh", "-c", "echo one; echo two >&2", check=True)
    logs = ketch_env.cli("logs", "fg", check=True)
    assert logs.stdout == "one\n" and logs.stderr == "two\n"  # each record on its stream, as podman's
    stamped = ketch_env.cli("logs", "-t", "--tail", "1", "fg", check=True).stderr
    assert stamped.endswith("Z two\n") and stamped[:4].isdigit()


def test_python_api(ketch_env):
    import ketch

    result = ketch.run("busybox", ["sh", "-c", "echo api; exit 2"], capture_output=True, remove=True,
                       root=str(ketch_env.root), runroot=str(ketch_env.runroot))
    assert (result.exit_code, result.stdout, result.stderr) == (2, b"api\n", b"")
    engine = ketch_env.engine()
    detached = engine.run(IMAGE, ketch.CreateOptions(command=["sleep", "30"], name="api-d"), detach=True)
    assert detached.exit_code is None
    container_id = detached.container_id
    assert engine.status(container_id)["status"] == "running"
    assert engine.exec("api-d", ["sh", "-c", "exit 4"]) == 4
    engine.stop("api-d", timeout=0)
    assert engine.wait("api-d") == 137
    engine.remove("api-d")


def test_pull_policies_with_a_registry(ketch_env, registry):
    image = registry.url("library/busybox").replace("docker://", "")
    never = ketch_env.cli("run", "--rm", "--pull", "never", image, "true")
    assert never.returncode == 125 and "not known" in never.stderr
    pulled = ketch_env.cli("run", "--rm", "--pull", "missing", "--tls-verify=false", image, "echo", "pulled")
    assert pulled.returncode == 0 and pulled.stdout == "pulled\n", pulled.stderr
    again = ketch_env.cli("run", "--rm", "--pull", "always", "--tls-verify=false", image, "echo", "again")
    assert again.stdout == "again\n", again.stderr


def test_stdin_only_with_interactive(ketch_env):
    assert ketch_env.cli("run", "--rm", "busybox", "cat", input=b"data\n").stdout == ""
    assert ketch_env.cli("run", "--rm", "-i", "busybox", "cat", input=b"data\n").stdout == "data\n"


def test_info_describes_host_and_store(ketch_env):
    info = json.loads(ketch_env.cli("info", "--format", "json", check=True).stdout)
    assert info["host"]["cgroupVersion"] in ("v1", "v2") and info["host"]["os"] == "linux"
    assert info["store"]["graphRoot"] == str(ketch_env.root) and info["store"]["imageStore"]["number"] >= 2
    assert ketch_env.cli("info", "--format", "{{.Store.GraphDriverName}}", check=True).stdout.strip() in (
        "overlay", "vfs")


def test_kill_9_of_run_at_any_moment_leaves_a_removable_truth(ketch_env):
    """ketch run is killed at moments from before the record exists to after the container
    started; whatever it left, ps -a tells and rm -f removes (the fixture checks that nothing
    at all remains afterwards: mounts, runtime state, cgroups)."""
    for delay in (0.03, 0.06, 0.09, 0.12, 0.2, 0.4):
        proc = subprocess.Popen(ketch_env.args("run", "busybox", "sleep", "30"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        for entry in ketch_env.ps():
            assert entry["State"] in ("created", "running", "exited"), entry
            if entry["State"] == "running":
                assert os.path.exists(f"/proc/{entry['Pid']}")
        removed = ketch_env.cli("rm", "-f", "-t", "0", "-a")
        assert removed.returncode == 0, removed.stderr
        assert ketch_env.ps() == [] and ketch_env.mounts() == []


def test_the_library_leaves_the_caller_as_it_was(ketch_env):
    """A foreground run makes the caller a child subreaper only while it waits: a library user's
    process must not go on adopting (and never reaping) other programs' orphans."""
    import ctypes

    def subreaper() -> int:
        value = ctypes.c_int(-1)
        ctypes.CDLL(None).prctl(37, ctypes.byref(value), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
        return value.value

    before = subreaper()
    engine = ketch_env.engine()
    assert engine.run(IMAGE, __import__("ketch").CreateOptions(command=["true"], remove=True),
                      capture_output=True).exit_code == 0
    assert subreaper() == before


def test_more_create_flags(ketch_env, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# settings\nFROM_FILE=1\nOVERRIDDEN=file\n")
    result = ketch_env.cli("run", "--rm", "--env-file", str(env_file), "-e", "OVERRIDDEN=flag",
                           "--tmpfs", "/scratch:size=1m", "--network", "host", "--annotation", "team=blue",
                           "--security-opt", "label=disable", "--entrypoint", '["sh", "-c"]', "busybox",
                           "echo $FROM_FILE $OVERRIDDEN; grep ' /scratch ' /proc/mounts | cut -d' ' -f3; "
                           "readlink /proc/self/ns/net")
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[0] == "1 flag" and lines[1] == "tmpfs"
    assert lines[2] == os.readlink("/proc/self/ns/net")  # --network host: our network namespace
    ketch_env.cli("create", "--name", "quiet", "--log-driver", "none", "--stop-timeout", "1",
                  "--annotation", "team=blue", "busybox", "sh", "-c", "echo hidden; sleep 30", check=True)
    info = json.loads(ketch_env.cli("inspect", "quiet", check=True).stdout)[0]
    assert info["Config"]["Annotations"] == {"team": "blue"} and info["Config"]["StopTimeout"] == 1
    assert info["HostConfig"]["LogConfig"]["Type"] == "none"
    ketch_env.cli("start", "quiet", check=True)
    start = time.monotonic()
    ketch_env.cli("stop", "quiet", check=True)  # sh ignores TERM as pid 1: killed after the 1 s timeout
    assert 0.9 < time.monotonic() - start < 8
    assert "no logs" in ketch_env.cli("logs", "quiet").stderr
    cleared = ketch_env.cli("run", "--rm", "--entrypoint", "", "busybox", "echo", "plain")
    assert cleared.stdout == "plain\n"
