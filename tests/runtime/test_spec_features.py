"""The runtime-spec's core, one feature at a time: namespaces, mounts, process settings."""

import os
import socket
import subprocess
import threading

import pytest

from tests.runtime.conftest import RUNTIME


def out(bundle, *argv):
    result = bundle.run("sh", "-c", *argv)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_namespaces_and_hostname(bundle):
    bundle.config["hostname"] = "box"
    bundle.config["domainname"] = "example.org"
    text = out(bundle, "echo $$; hostname; cat /proc/sys/kernel/domainname; ls /sys/class/net")
    assert text.split() == ["1", "box", "example.org", "lo"]
    host = os.readlink("/proc/self/ns/ipc")
    assert out(bundle, "readlink /proc/self/ns/ipc").strip() != host


def test_join_a_namespace_by_path(bundle):
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != "network"]
    bundle.config["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{os.getpid()}/ns/net"})
    assert out(bundle, "readlink /proc/self/ns/net").strip() == os.readlink("/proc/self/ns/net")


def test_user_namespace_mappings(bundle):
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    subprocess.run(["chown", "-R", "100000:100000", str(bundle.path / "rootfs")], check=True)
    text = out(bundle, "cat /proc/self/uid_map; id -u")
    assert text.split() == ["0", "100000", "65536", "0"]


def test_mounts_masked_and_readonly_paths(bundle, tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    (source / "file").write_text("from the host\n")
    bundle.config["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(source), "options": ["rbind", "ro"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=1777"]},
    ]
    text = out(bundle, "cat /data/file; (touch /data/x) 2>&1 | grep -c Read-only; "
                       "stat -c %s /proc/keys; (echo 1 > /proc/sys/vm/drop_caches) 2>&1 | grep -c Read-only; "
                       "df /scratch | tail -1 | awk '{print $2}'; (touch /root/x) 2>&1 | grep -c Read-only; "
                       "ls -l /dev/null | cut -c1; readlink /dev/ptmx; readlink /dev/fd")
    lines = text.split("\n")
    assert lines[0] == "from the host" and lines[1] == "1"
    assert lines[2] == "0"  # /proc/keys is masked by /dev/null
    assert lines[3] == "1" and lines[4] == "1024" and lines[5] == "1"  # root.readonly is true in the default spec
    assert lines[6] == "c" and lines[7:9] == ["pts/ptmx", "/proc/self/fd"]


def test_mount_destination_through_a_symlink_stays_inside(bundle, tmp_path):
    os.symlink("/../../../../../tmp", bundle.path / "rootfs" / "escape")
    source = tmp_path / "src"
    source.mkdir()
    bundle.config["mounts"].append({"destination": "/escape/inside", "type": "bind", "source": str(source),
                                    "options": ["rbind"]})
    out(bundle, "true")
    assert (bundle.path / "rootfs" / "tmp" / "inside").exists()  # made inside the root file system
    assert not os.path.exists("/tmp/inside")


def test_process_user_env_cwd_umask_and_groups(bundle):
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 0o077}
    bundle.config["process"]["env"] = ["PATH=/bin:/usr/bin", "ANSWER=42"]
    bundle.config["process"]["cwd"] = "/tmp"
    text = out(bundle, "id -u; id -g; id -G; echo $ANSWER; pwd; umask")
    assert text.split() == ["1000", "1000", "1000", "5", "6", "42", "/tmp", "0077"]


def test_capabilities_and_no_new_privileges(bundle):
    caps = ["CAP_CHOWN", "CAP_KILL"]
    bundle.config["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    bundle.config["process"]["noNewPrivileges"] = True
    text = out(bundle, "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status")
    assert "CapEff:\t0000000000000021" in text and "CapBnd:\t0000000000000021" in text
    assert "NoNewPrivs:\t1" in text
    bundle.config["process"]["capabilities"]["bounding"] = ["CAP_BOGUS"]
    result = bundle.run("true")
    assert result.returncode == 1 and "unknown capability 'CAP_BOGUS'" in result.stderr


def test_rlimits_and_oom_score(bundle):
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    bundle.config["process"]["oomScoreAdj"] = 300
    assert out(bundle, "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj").split() == ["100", "200", "300"]
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 10**9, "hard": 10**9}]
    result = bundle.run("true")
    assert result.returncode == 1 and "hard limit" in result.stderr
    bundle.config["process"]["rlimits"] = []
    bundle.config["process"]["oomScoreAdj"] = -500
    result = bundle.run("true")
    assert result.returncode == 1 and "oomScoreAdj" in result.stderr


def test_clean_process_state_before_exec(bundle, tmp_path):
    """Signals default and unblocked, only 0-2 open (plus --preserve-fds), cwd inside the root."""
    text = out(bundle, "grep -E '^(SigIgn|SigBlk)' /proc/self/status; ls /proc/self/fd; readlink /proc/self/cwd")
    assert "SigIgn:\t0000000000000000" in text and "SigBlk:\t0000000000000000" in text
    fds = text.split("\n")[2:-2]
    assert sorted(fds) == ["0", "1", "2", "3"]  # 3 is ls's own directory fd
    assert text.strip().endswith("/")
    extra = tmp_path / "extra"
    extra.write_text("passed on\n")
    bundle.args("sh", "-c", "cat <&3")
    # A shell opens fd 3 and execs the runtime with it, as systemd passes LISTEN_FDS.
    result = subprocess.run(["sh", "-c", f'exec 3<"{extra}"; exec "$@"', "sh", RUNTIME, "--root", str(bundle.root),
                             "run", "--preserve-fds", "1", "--bundle", str(bundle.path), "fds"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.stdout == "passed on\n", result.stderr


def test_console_socket_protocol(bundle, tmp_path):
    """The pty master arrives over SCM_RIGHTS, as runc sends it to conmon."""
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    received = {}

    def accept():
        conn, _ = server.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        received["name"], received["fd"] = msg, fds[0]
        conn.close()

    thread = threading.Thread(target=accept)
    thread.start()
    bundle.config["process"]["terminal"] = True
    bundle.args("sh", "-c", "tty; echo through-the-pty")
    bundle.runtime("run", "-d", "--console-socket", path, "--bundle", str(bundle.path), "tty", check=True)
    thread.join(10)
    data = b""
    master = received["fd"]
    import select
    while b"through-the-pty" not in data:
        ready, _, _ = select.select([master], [], [], 10)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    server.close()
    assert received["name"].startswith(b"/dev/pts/")
    assert b"/dev/pts/0" in data and b"through-the-pty" in data
    missing = bundle.runtime("create", "--bundle", str(bundle.path), "tty2")
    assert missing.returncode == 1 and "--console-socket" in missing.stderr


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("ociVersion"), "ociVersion"),
    (lambda c: c["process"].update(args=[]), "process.args"),
    (lambda c: c["root"].update(path="nonexistent"), "does not exist"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "unknown namespace type"),
    (lambda c: c["mounts"].append({"destination": "relative", "type": "tmpfs"}), "absolute path"),
    (lambda c: c["process"].update(cwd="relative"), "cwd"),
])
def test_bad_configs_leave_nothing(bundle, change, message):
    change(bundle.config)
    bundle.write()
    result = bundle.runtime("create", "--bundle", str(bundle.path), "bad")
    assert result.returncode == 1 and message in result.stderr
    assert bundle.runtime("list", "-q").stdout == ""
    (bundle.path / "config.json").write_text("{not json")
    result = bundle.runtime("create", "--bundle", str(bundle.path), "bad")
    assert result.returncode == 1 and "not valid JSON" in result.stderr


def test_cgroup_and_time_namespaces_and_sysctl(bundle):
    bundle.config["linux"]["namespaces"] += [{"type": "cgroup"}, {"type": "time"}]
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    # sysctls are written before /proc/sys becomes read-only (the default spec lists it)
    text = out(bundle, "readlink /proc/self/ns/cgroup; readlink /proc/self/ns/time; cat /proc/sys/net/ipv4/ip_forward")
    cgroup, time_ns, forward = text.split()
    assert cgroup != os.readlink("/proc/self/ns/cgroup") and time_ns != os.readlink("/proc/self/ns/time")
    assert forward == "1"


def test_hostname_needs_a_uts_namespace(bundle):
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != "uts"]
    bundle.config["hostname"] = "nope"
    result = bundle.run("true")
    assert result.returncode == 1 and "uts namespace" in result.stderr


@pytest.mark.parametrize("systemd, path, ok", [
    (True, "machine.slice:libpod:abc", True), (True, ":ketch:abc", True), (True, "bad", False),
    (True, "notaslice:x:y", False), (False, "/ketch/abc", True), (False, "../escape", False),
])
def test_cgroups_path_is_read(bundle, systemd, path, ok):
    bundle.config["linux"]["cgroupsPath"] = path
    bundle.args("true")
    flags = ["--systemd-cgroup"] if systemd else []
    result = bundle.runtime(*flags, "create", "--bundle", str(bundle.path), "cg")
    assert (result.returncode == 0) == ok, result.stderr
    if ok:
        bundle.runtime("delete", "--force", "cg", check=True)
    else:
        assert "cgroupsPath" in result.stderr


def test_foreground_run_with_a_terminal(bundle):
    """No console socket: the runtime proxies the container's pty to its own terminal, as runc does."""
    import pty

    bundle.config["process"]["terminal"] = True
    bundle.args("sh", "-c", "tty; stty size; echo done")
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(RUNTIME, [RUNTIME, "--root", str(bundle.root), "run", "--bundle", str(bundle.path), "fg"])
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, data
    assert b"/dev/pts/0" in data and b"done" in data


def test_no_pivot_devices_personality_and_console_size(bundle, tmp_path):
    bundle.config["linux"]["devices"] = [{"path": "/dev/kmsg-like", "type": "c", "major": 1, "minor": 11,
                                          "fileMode": 0o600, "uid": 0, "gid": 0}]
    bundle.config["linux"]["personality"] = {"domain": "LINUX32"}
    bundle.args("sh", "-c", "ls -l /dev/kmsg-like | cut -c1-10; uname -m")
    result = bundle.runtime("run", "--no-pivot", "--bundle", str(bundle.path), "np")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["crw-------", "i686"]
    # consoleSize reaches the pty
    import socket
    import threading

    path = str(tmp_path / "c.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    got = {}
    thread = threading.Thread(target=lambda: got.update(fd=socket.recv_fds(server.accept()[0], 64, 1)[1][0]))
    thread.start()
    bundle.config["process"].update(terminal=True, consoleSize={"height": 33, "width": 111})
    bundle.config["linux"].pop("personality")
    bundle.args("sh", "-c", "stty size")
    bundle.runtime("run", "-d", "--console-socket", path, "--bundle", str(bundle.path), "size", check=True)
    thread.join(10)
    import select
    data = b""
    while b"111" not in data:
        if not select.select([got["fd"]], [], [], 10)[0]:
            break
        try:
            chunk = os.read(got["fd"], 1024)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.close(got["fd"])
    server.close()
    assert b"33 111" in data


def test_rootfs_propagation(bundle):
    bundle.config["linux"]["rootfsPropagation"] = "rprivate"
    root_line = [line for line in out(bundle, "cat /proc/self/mountinfo").splitlines() if line.split()[4] == "/"]
    assert root_line and "shared:" not in root_line[0]
    bundle.config["linux"]["rootfsPropagation"] = "bogus"
    result = bundle.run("true")
    assert result.returncode == 1 and "rootfsPropagation" in result.stderr


def test_time_namespace_offsets(bundle):
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0},
                                             "monotonic": {"secs": 1000, "nanosecs": 0}}
    result = bundle.run("cat", "/proc/uptime")
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    assert float(result.stdout.split()[0]) - host > 86400 * 364
    bundle.config["linux"]["namespaces"].pop()
    bundle.write()
    refused = bundle.runtime("run", "--bundle", str(bundle.path), "c2")
    assert refused.returncode == 1 and "new time namespace" in refused.stderr


def test_a_config_without_namespaces_is_refused_at_create(bundle):
    """No namespaces at all (everything shared with the host): create refuses it with a clear
    error, and nothing is left (runc and crun would mount /proc and /dev on the host instead)."""
    bundle.config["linux"]["namespaces"] = []
    bundle.config.pop("hostname", None)
    bundle.args("true")
    before = open("/proc/self/mountinfo").read().count(str(bundle.path))
    refused = bundle.runtime("create", "--bundle", str(bundle.path), "c-nons")
    assert refused.returncode == 1 and "no mount namespace" in refused.stderr
    assert bundle.runtime("state", "c-nons").returncode == 1
    assert open("/proc/self/mountinfo").read().count(str(bundle.path)) == before
    bundle.config["linux"]["namespaces"] = [{"type": "mount"}]  # only a mount namespace: it runs
    bundle.write()
    ran = bundle.runtime("run", "--bundle", str(bundle.path), "c-mnt")
    assert ran.returncode == 0, ran.stderr
