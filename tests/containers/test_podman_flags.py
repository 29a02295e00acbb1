"""podman's run/create flags and container commands beyond the everyday ones: restart
policies (the monitor restarts), health checks, init, attach, secrets, cid/pid files, --replace,
--timeout, time zones, DNS settings, sysctls, devices, mounts of images and pseudo file systems,
joined namespaces, anonymous volumes, events and stats."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.conftest import AS_USER
from tests.support import cgroups


def _inspect(env, name: str, template: str) -> str:
    return env.cli("inspect", "--format", template, name, check=True).stdout.strip()


def _wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_restart_on_failure_counts_and_stops(ketch_env):
    ketch_env.cli("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3",
                  check=True)
    _wait_for(lambda: _inspect(ketch_env, "flaky", "{{.RestartCount}} {{.State.Status}}") == "2 exited",
              what="two restarts then exited")
    assert _inspect(ketch_env, "flaky", "{{.HostConfig.RestartPolicy}} {{.State.ExitCode}}") == "{on-failure 2} 3"
    time.sleep(0.5)
    assert _inspect(ketch_env, "flaky", "{{.RestartCount}}") == "2"  # no third
    restarts = [e for e in _events(ketch_env, "container=flaky") if e["Status"] == "restart"]
    assert len(restarts) == 2


def test_restart_always_until_stopped(ketch_env):
    ketch_env.cli("run", "-d", "--name", "forever", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2",
                  check=True)
    _wait_for(lambda: int(_inspect(ketch_env, "forever", "{{.RestartCount}}")) >= 2, what="restarts")
    ketch_env.cli("stop", "-t", "0", "forever", check=True)
    count = _inspect(ketch_env, "forever", "{{.RestartCount}}")
    time.sleep(1)
    assert _inspect(ketch_env, "forever", "{{.RestartCount}} {{.State.Status}}") == f"{count} exited"
    bad = ketch_env.cli("run", "--rm", "--restart", "always", "busybox", "true")
    assert bad.returncode == 125 and "--rm" in bad.stderr
    bad = ketch_env.cli("run", "--restart", "always:3", "busybox", "true")
    assert bad.returncode == 125 and "on-failure" in bad.stderr


def test_health_checks(ketch_env):
    ketch_env.cli("run", "-d", "--name", "doc", "--health-cmd", "test -e /tmp/ok", "--health-interval", "1s",
                  "--health-retries", "1", "busybox", "sleep", "100", check=True)
    assert ketch_env.cli("healthcheck", "run", "doc").returncode == 1
    assert _inspect(ketch_env, "doc", "{{.State.Health.Status}}") == "unhealthy"
    ketch_env.cli("exec", "doc", "touch", "/tmp/ok", check=True)
    # the monitor runs the check every interval: no one else runs it here
    _wait_for(lambda: _inspect(ketch_env, "doc", "{{.State.Health.Status}}") == "healthy", what="healthy")
    assert "(healthy)" in ketch_env.cli("ps", "--format", "{{.Status}}", check=True).stdout
    assert ketch_env.cli("ps", "-q", "--filter", "health=healthy", check=True).stdout.strip()
    assert ketch_env.cli("healthcheck", "run", "doc").returncode == 0
    none = ketch_env.cli("run", "-d", "--name", "nocheck", "busybox", "sleep", "100", check=True)
    assert none.returncode == 0
    assert ketch_env.cli("healthcheck", "run", "nocheck").returncode == 125
    bad = ketch_env.cli("run", "--health-cmd", "true", "--health-timeout", "0.5s", "busybox", "true")
    assert bad.returncode == 125 and "at least 1 second" in bad.stderr


def test_init_then_start_or_remove(ketch_env):
    ketch_env.cli("create", "--name", "ready", "busybox", "sh", "-c", "echo started; sleep 100", check=True)
    ketch_env.cli("init", "ready", check=True)
    assert _inspect(ketch_env, "ready", "{{.State.Status}}") == "initialized"
    assert ketch_env.cli("logs", "ready", check=True).stdout == ""  # created, not started
    ketch_env.cli("start", "ready", check=True)
    assert _inspect(ketch_env, "ready", "{{.State.Status}}") == "running"
    _wait_for(lambda: ketch_env.cli("logs", "ready").stdout == "started\n", what="output")
    ketch_env.cli("create", "--name", "never", "busybox", "true", check=True)
    ketch_env.cli("init", "never", check=True)
    monitor = json.loads(ketch_env.cli("inspect", "never", check=True).stdout)[0]["State"]["ConmonPid"]
    ketch_env.cli("rm", "-f", "never", check=True)
    _wait_for(lambda: not os.path.exists(f"/proc/{monitor}"), what="the initialized container's monitor to end")


def test_attach_sends_input_and_returns_the_status(ketch_env):
    ketch_env.cli("run", "-d", "-i", "--name", "talk", "busybox", "sh", "-c",
                  'while read line; do echo "got $line"; [ "$line" = quit ] && exit 4; done', check=True)
    attached = ketch_env.cli("attach", "talk", input=b"hello\nquit\n", timeout=30)
    assert attached.returncode == 4 and attached.stdout == "got hello\ngot quit\n"
    not_running = ketch_env.cli("attach", "talk")
    assert not_running.returncode == 125 and "running" in not_running.stderr


def test_secrets_reach_the_container_and_never_its_image(ketch_env, tmp_path):
    assert ketch_env.cli("secret", "create", "token", "-", input=b"s3cr3t", check=True).stdout.strip()
    (tmp_path / "file").write_text("from-a-file")
    ketch_env.cli("secret", "create", "other", str(tmp_path / "file"), check=True)
    listing = ketch_env.cli("secret", "ls", "--format", "{{.Name}} {{.Driver}}", check=True).stdout.split("\n")
    assert sorted(filter(None, listing)) == ["other file", "token file"]
    out = ketch_env.cli("run", "--rm", "--secret", "token", "--secret", "other,type=env,target=OTHER",
                        "--secret", "source=token,target=/etc/tok,mode=0400,uid=5", "busybox", "sh", "-c",
                        "cat /run/secrets/token; echo; echo $OTHER; stat -c '%a %u' /etc/tok", check=True).stdout
    assert out == "s3cr3t\nfrom-a-file\n400 5\n"
    ketch_env.cli("run", "--name", "holder", "--secret", "token", "busybox", "true", check=True)
    refused = ketch_env.cli("secret", "rm", "token")
    assert refused.returncode != 0 and "in use" in refused.stderr
    image = ketch_env.cli("commit", "holder", "localhost/with-secret", check=True).stdout.strip()
    saved = tmp_path / "image.tar"
    ketch_env.cli("save", "-o", str(saved), image, check=True)
    assert b"s3cr3t" not in _all_bytes(saved)
    ketch_env.cli("rm", "holder", check=True)
    ketch_env.cli("rmi", image, check=True)
    ketch_env.cli("secret", "rm", "token", "other", check=True)
    missing = ketch_env.cli("secret", "inspect", "token")
    assert missing.returncode == 125 and "no such secret" in missing.stderr
    unknown = ketch_env.cli("run", "--rm", "--secret", "token", "busybox", "true")
    assert unknown.returncode == 125 and "no such secret" in unknown.stderr


def _all_bytes(tar_path) -> bytes:
    """Every member of a docker archive, layers unpacked, as one byte string."""
    import gzip
    import tarfile

    out = b""
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.isfile():
                data = tar.extractfile(member).read()
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                out += data
    return out


def test_cidfile_pidfile_replace_and_timeout(ketch_env, tmp_path):
    cidfile, pidfile = tmp_path / "cid", tmp_path / "pid"
    cid = ketch_env.cli("run", "-d", "--name", "one", "--cidfile", str(cidfile), "--pidfile", str(pidfile),
                        "busybox", "sleep", "100", check=True).stdout.strip()
    assert cidfile.read_text() == cid
    assert pidfile.read_text() == _inspect(ketch_env, "one", "{{.State.Pid}}")
    again = ketch_env.cli("create", "--cidfile", str(cidfile), "busybox", "true")
    assert again.returncode == 125 and "container id file exists" in again.stderr
    assert ketch_env.cli("stop", "-t", "0", "--cidfile", str(cidfile), check=True).returncode == 0
    replaced = ketch_env.cli("run", "-d", "--replace", "--name", "one", "busybox", "sleep", "100", check=True)
    assert replaced.stdout.strip() != cid and len(ketch_env.ps()) == 1
    started = time.monotonic()
    timed = ketch_env.cli("run", "--rm", "--timeout", "1", "busybox", "sleep", "30")
    assert timed.returncode == 255 and time.monotonic() - started < 20
    ketch_env.cli("run", "-d", "--name", "bounded", "--timeout", "1", "busybox", "sleep", "30", check=True)
    _wait_for(lambda: _inspect(ketch_env, "bounded", "{{.State.Status}}") == "exited", what="the timeout")
    assert _inspect(ketch_env, "bounded", "{{.State.ExitCode}}") == "255"


def test_process_settings(ketch_env):
    out = ketch_env.cli("run", "--rm", "--tz", "Europe/Paris", "--umask", "0077", "--shm-size", "2m",
                        "--sysctl", "net.ipv4.ip_forward=1", "--unsetenv", "PATH", "-e", "KEEP=1",
                        "busybox", "sh", "-c",
                        "date +%Z; umask; df -k /dev/shm | tail -1 | awk '{print $2}'; "
                        "cat /proc/sys/net/ipv4/ip_forward; echo path=${PATH:-unset} keep=$KEEP",
                        check=True).stdout.split("\n")
    assert out[0] in ("CET", "CEST") and out[1] == "0077" and out[2] == "2048" and out[3] == "1"
    assert out[4].startswith("path=") and "/usr/local/sbin" not in out[4] and out[4].endswith("keep=1")
    env = {**os.environ, "http_proxy": "http://proxy.example:3128", "KETCH_HOST_VAR": "seen"}
    with_proxy = ketch_env.cli("run", "--rm", "busybox", "sh", "-c", "echo $http_proxy", env=env, check=True)
    assert with_proxy.stdout == "http://proxy.example:3128\n"
    without = ketch_env.cli("run", "--rm", "--http-proxy=false", "busybox", "sh", "-c", "echo ${http_proxy:-none}",
                            env=env, check=True)
    assert without.stdout == "none\n"
    host_env = ketch_env.cli("run", "--rm", "--env-host", "busybox", "sh", "-c", "echo $KETCH_HOST_VAR", env=env,
                             check=True)
    assert host_env.stdout == "seen\n"
    # /dev/kmsg: a node no container gets by default, and writable by root without a capability
    read_only = ketch_env.cli("run", "--rm", "--device", "/dev/kmsg:/dev/k:r", "busybox", "sh", "-c",
                              "stat -c %t:%T /dev/k; echo ketch-device-test > /dev/k && echo written")
    assert read_only.stdout == "1:b\n"  # the cgroup allows reading only, as podman's does
    # (a user's: the host's node bound in read-only, as rootless podman binds devices)
    denied = ("Read-only file system", "Permission denied") if AS_USER else ("Operation not permitted",)
    assert any(reason in read_only.stderr for reason in denied), read_only.stderr
    if not AS_USER:  # (writing /dev/kmsg is root's on the host)
        writable = ketch_env.cli("run", "--rm", "--device", "/dev/kmsg:/dev/k:rw", "busybox", "sh", "-c",
                                 "echo ketch-device-test > /dev/k && echo written", check=True)
        assert writable.stdout == "written\n"
    relative = ketch_env.cli("run", "--rm", "-w", "/bin", "busybox", "./busybox", "true")
    assert relative.returncode == 0, relative.stderr
    root_mode = ketch_env.cli("run", "--rm", "busybox", "stat", "-c", "%a", "/", check=True).stdout
    assert root_mode == "555\n"  # the image's root: its layer says nothing, so containers/storage's 0555
    no_limit = ketch_env.cli("run", "--rm", "--memory", "0", "busybox", "true")
    assert no_limit.returncode == 0


def test_dns_and_hosts_settings(ketch_env, tmp_path):
    out = ketch_env.cli("run", "--rm", "--network", "none", "--dns", "192.0.2.1", "--dns-search", "example.com",
                        "--dns-option", "ndots:3", "busybox", "cat", "/etc/resolv.conf", check=True).stdout
    assert out == "search example.com\nnameserver 192.0.2.1\noptions ndots:3\n"
    conf = tmp_path / "containers.conf"
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.9 from-base\n")
    conf.write_text(f'[containers]\ndns_servers = ["192.0.2.2"]\ndns_searches = ["corp.example"]\n'
                    f'dns_options = ["timeout:2"]\nbase_hosts_file = "{hosts}"\n')
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    out = ketch_env.cli("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                        "cat /etc/resolv.conf; grep from-base /etc/hosts", env=env, check=True).stdout
    assert out == "search corp.example\nnameserver 192.0.2.2\noptions timeout:2\n192.0.2.9 from-base\n"
    conf.write_text("[containers]\nno_hosts = true\n")
    image_hosts = ketch_env.cli("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                                "mount | grep -c ' /etc/hosts ' || true", env=env, check=True).stdout
    assert image_hosts.strip() == "0"  # not ketch's: the image's own /etc/hosts


def test_mounts_of_images_pseudo_file_systems_and_anonymous_volumes(ketch_env):
    out = ketch_env.cli("run", "--rm", "--mount", "type=image,source=busybox,target=/img",
                        "--mount", "type=ramfs,target=/ram", "--mount", "type=devpts,target=/dev/pts2",
                        "busybox", "sh", "-c", "test -x /img/bin/busybox && echo image; "
                        "grep -E ' /ram | /dev/pts2 ' /proc/mounts | cut -d' ' -f3 | sort | tr '\\n' ' '; "
                        "touch /img/x 2>/dev/null || echo read-only", check=True).stdout
    assert out == "image\ndevpts ramfs read-only\n"
    assert ketch_env.mounts() == []  # the image's mount went with the container
    ketch_env.cli("run", "--name", "anon", "-v", "/data", "busybox", "sh", "-c", "echo kept > /data/f", check=True)
    volume = json.loads(ketch_env.cli("inspect", "anon", check=True).stdout)[0]["Mounts"][0]["Name"]
    assert ketch_env.cli("volume", "inspect", "--format", "{{.Anonymous}}", volume, check=True).stdout == "true\n"
    ketch_env.cli("rm", "-v", "anon", check=True)
    assert ketch_env.cli("volume", "exists", volume).returncode == 1
    ketch_env.cli("run", "--rm", "-v", "/data", "busybox", "true", check=True)  # --rm takes its anonymous ones
    assert ketch_env.cli("volume", "ls", "-q", check=True).stdout == ""
    twice = ketch_env.cli("run", "--rm", "-v", "/tmp:/data", "--tmpfs", "/data", "busybox", "true")
    assert twice.returncode == 125 and "duplicate mount destination" in twice.stderr


def test_joined_namespaces(ketch_env):
    ketch_env.cli("run", "-d", "--name", "host-of-ns", "--network", "none", "--hostname", "shared", "busybox",
                  "sleep", "100", check=True)
    pid = _inspect(ketch_env, "host-of-ns", "{{.State.Pid}}")
    ours = os.readlink(f"/proc/{pid}/ns/net")
    joined = ketch_env.cli("run", "--rm", "--network", "container:host-of-ns", "--uts", "container:host-of-ns",
                           "busybox", "sh", "-c", "readlink /proc/self/ns/net; hostname", check=True).stdout.split()
    assert joined == [ours, "shared"]
    by_path = ketch_env.cli("run", "--rm", "--network", f"ns:/proc/{pid}/ns/net", "busybox", "readlink",
                            "/proc/self/ns/net", check=True).stdout.strip()
    assert by_path == ours
    with open("/proc/1/comm") as f:
        host_init = f.read().strip()
    seen = ketch_env.cli("run", "--rm", "--pid", "host", "busybox", "cat", "/proc/1/comm", check=True).stdout.strip()
    assert seen == host_init  # the host's pid 1, not the container's own
    warned = ketch_env.cli("run", "--rm", "--network", "host", "-p", "8080:80", "busybox", "true")
    assert warned.returncode == 0 and "Port mappings have been discarded" in warned.stderr


def test_exec_detached_does_not_hold_our_output(ketch_env):
    ketch_env.cli("run", "-d", "--name", "bg", "busybox", "sleep", "100", check=True)
    started = time.monotonic()
    result = subprocess.run(["sh", "-c", f"x=$({' '.join(ketch_env.args('exec', '-d', 'bg', 'sleep', '20'))}); "
                                         "echo done"], capture_output=True, text=True, timeout=15)
    assert result.stdout == "done\n" and time.monotonic() - started < 10


def test_log_options_and_attached_streams(ketch_env, tmp_path):
    path = tmp_path / "my.log"
    ketch_env.cli("run", "--name", "logged", "--log-opt", f"path={path}", "--log-opt", "tag=mine", "busybox", "sh",
                  "-c", "echo one; echo two >&2", check=True)
    assert path.exists() and b" stdout F one" in path.read_bytes()
    assert ketch_env.cli("logs", "logged", check=True).stdout == "one\n"
    assert _inspect(ketch_env, "logged", "{{.HostConfig.LogConfig.Path}} {{.HostConfig.LogConfig.Tag}}") == \
        f"{path} mine"
    only_out = ketch_env.cli("run", "--rm", "-a", "stdout", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert only_out.stdout == "out\n" and only_out.stderr == ""


def _events(env, *filters: str) -> list[dict]:
    args = ["events", "--stream=false", "--format", "json"] + [f"--filter={f}" for f in filters]
    return [json.loads(line) for line in env.cli(*args, check=True).stdout.splitlines()]


def test_events_tell_a_container_s_life(ketch_env):
    start = time.time()
    ketch_env.cli("run", "--rm", "--name", "brief", "-l", "team=red", "busybox", "true", check=True)
    statuses = [e["Status"] for e in _events(ketch_env, "container=brief")]
    assert statuses == ["create", "init", "start", "attach", "died", "cleanup", "remove"]
    assert all(e["Attributes"].get("team") == "red" for e in _events(ketch_env, "container=brief"))
    assert [e["Status"] for e in _events(ketch_env, "container=brief", "event=died")] == ["died"]
    lines = ketch_env.cli("events", "--stream=false", "--filter", "container=brief", "--format",
                          "{{.Type}} {{.Status}} {{.Name}}", check=True).stdout.splitlines()
    assert lines[0] == "container create brief" and lines[-1] == "container remove brief"
    human = ketch_env.cli("events", "--stream=false", "--filter", "event=remove", "--filter", "container=brief",
                          check=True).stdout
    assert " container remove " in human and "(image=docker.io/library/busybox:latest, name=brief" in human
    later = ketch_env.cli("events", "--stream=false", "--since", str(int(time.time()) + 5), check=True).stdout
    assert later == ""
    assert _events(ketch_env, "container=brief") == [e for e in _events(ketch_env, "container=brief")
                                                     if e["Time"] >= time.strftime("%Y", time.gmtime(start))]
    bad = ketch_env.cli("events", "--stream=false", "--filter", "colour=red")
    assert bad.returncode == 125


def test_events_follow(ketch_env):
    with open(os.devnull, "wb") as null:
        follower = subprocess.Popen(ketch_env.args("events", "--format", "{{.Status}} {{.Name}}", "--filter",
                                                   "container=followed"), stdout=subprocess.PIPE, stderr=null)
    try:
        time.sleep(0.5)
        ketch_env.cli("create", "--name", "followed", "busybox", "true", check=True)
        line = follower.stdout.readline().decode()
        assert line == "create followed\n"
    finally:
        follower.kill()
        follower.wait()


@pytest.mark.root_only("stats needs a cgroup: none is delegated to users on these machines (cgroup v1)")
def test_stats_and_top(ketch_env):
    ketch_env.cli("run", "-d", "--name", "busy", "busybox", "sh", "-c", "while :; do :; done", check=True)
    rows = json.loads(ketch_env.cli("stats", "--no-stream", "--format", "json", check=True).stdout)
    assert [r["name"] for r in rows] == ["busy"] and rows[0]["pids"] == "1"
    assert float(rows[0]["cpu_percent"].rstrip("%")) > 1
    table = ketch_env.cli("stats", "--no-stream", check=True).stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "CPU", "%"] and "busy" in table[1]
    assert ketch_env.cli("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", check=True).stdout == "busy 1\n"
    top = ketch_env.cli("top", "busy", "pid", "user", "args", check=True).stdout.splitlines()
    assert top[0].split() == ["PID", "USER", "COMMAND"] and top[1].split()[:2] == ["1", "root"]
    bad = ketch_env.cli("top", "busy", "nonsense")
    assert bad.returncode == 125 and "unknown descriptor" in bad.stderr


@pytest.mark.parametrize("flag", ["--pod-id-file=x", "--uidmap=0:100000:65536", "--ip6=fd00::2"])
def test_what_ketch_does_not_do_is_refused_with_the_reason(ketch_env, flag):
    refused = ketch_env.cli("run", "--rm", flag, "busybox", "true")
    assert refused.returncode == 125 and refused.stderr.startswith("Error: --")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_keep_id_is_for_rootless_users(ketch_env):
    """As podman says it to root; a user gets the user's own uid inside (more: tests/rootless)."""
    if AS_USER:
        import pwd

        user = pwd.getpwnam(os.environ["KETCH_TEST_USER"])
        kept = ketch_env.cli("run", "--rm", "--userns=keep-id", "busybox", "sh", "-c", "id -u; id -g", check=True)
        assert kept.stdout.split() == [str(user.pw_uid), str(user.pw_gid)]
        return
    refused = ketch_env.cli("run", "--rm", "--userns=keep-id", "busybox", "true")
    assert refused.returncode == 125 and refused.stderr == "Error: keep-id is only supported in rootless mode\n"


@pytest.mark.root_only("--memory-swappiness and --cgroup-parent need a delegated cgroup, which these machines lack (cgroup v1)")
def test_resource_and_environment_flags(ketch_env, tmp_path):
    """podman's further run flags: --env-merge, --memory-swappiness, --device-cgroup-rule,
    --device-read-bps, --cgroup-parent, --personality, --conmon-pidfile, --requires, --rmi, and a
    clear refusal for what ketch does not do."""
    parent = f"/ketch-test-parent-{os.getpid()}"
    memory_root = "/sys/fs/cgroup/memory"
    try:
        out = ketch_env.cli("run", "--rm", "--env-merge", "PATH=/app/bin:${PATH}", "--memory-swappiness", "7",
                            "--cgroup-parent", parent, "--personality", "LINUX32", "busybox", "sh", "-c",
                            "echo $PATH; uname -m; grep -E '^[0-9]+:memory:' /proc/self/cgroup", check=True)
        lines = out.stdout.split("\n")
        assert lines[0] == "/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        assert lines[1] in ("i686", "i386")  # LINUX32's uname
        assert lines[2].split(":", 2)[2].startswith(parent + "/")
    finally:
        for root in cgroups.roots():
            try:
                os.rmdir(os.path.join(root, parent.lstrip("/")))
            except OSError:
                pass
    if os.path.isdir(memory_root):  # v1 memory controller (this machine's): the swappiness the cgroup got
        ketch_env.cli("run", "-d", "--name", "swappy", "--memory-swappiness", "7", "busybox", "sleep", "100",
                      check=True)
        cid = _inspect(ketch_env, "swappy", "{{.Id}}")
        path = next(os.path.join(top, "memory.swappiness") for top, dirs, _ in os.walk(memory_root)
                    if top.endswith("/" + cid))
        with open(path) as f:
            assert f.read().strip() == "7"
        ketch_env.cli("rm", "-f", "-t", "0", "swappy", check=True)
    # a device given read-only (--device ...:r refuses writes, see above), made writable by a rule
    ruled = ketch_env.cli("run", "--rm", "--device", "/dev/kmsg:/dev/k:r", "--device-cgroup-rule", "c 1:11 rw",
                          "busybox", "sh", "-c", "echo ketch-device-test > /dev/k && echo written")
    assert ruled.stdout == "written\n", ruled.stderr
    bad = ketch_env.cli("run", "--rm", "--device-cgroup-rule", "q 1:11 r", "busybox", "true")
    assert bad.returncode == 125 and "invalid device cgroup rule" in bad.stderr
    root_device = os.stat("/").st_dev
    block = f"/dev/block/{os.major(root_device)}:{os.minor(root_device)}"
    if os.path.exists(block) and os.path.isdir("/sys/fs/cgroup/blkio"):
        throttled = ketch_env.cli("run", "--rm", "--device-read-bps", f"{block}:1mb", "busybox", "cat",
                                  "/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device", check=True)
        assert f"{os.major(root_device)}:{os.minor(root_device)} 1048576" in throttled.stdout
    # --conmon-pidfile: the monitor's pid; --requires: started first
    ketch_env.cli("create", "--name", "dependency", "busybox", "sleep", "100", check=True)
    pidfile = tmp_path / "monitor.pid"
    ketch_env.cli("run", "-d", "--name", "dependent", "--requires", "dependency", "--conmon-pidfile", str(pidfile),
                  "busybox", "sleep", "100", check=True)
    assert _inspect(ketch_env, "dependency", "{{.State.Status}}") == "running"
    assert int(pidfile.read_text()) == int(_inspect(ketch_env, "dependent", "{{.State.ConmonPid}}"))
    missing = ketch_env.cli("create", "--requires", "nothere", "busybox", "true")
    assert missing.returncode == 125 and "nothere" in missing.stderr
    ketch_env.cli("rm", "-f", "-t", "0", "dependent", "dependency", check=True)
    # --rmi: the image goes with the container when nothing else uses it (and --rm is implied)
    ketch_env.cli("tag", "busybox", "localhost/rmi-me:1", check=True)
    ketch_env.cli("run", "--rmi", "localhost/rmi-me:1", "true", check=True)
    assert ketch_env.cli("image", "exists", "localhost/rmi-me:1").returncode == 1
    assert ketch_env.cli("image", "exists", "busybox").returncode == 0  # its other name stays
    assert ketch_env.ps() == []
    for flags, words in ((["--cgroups", "disabled"], "own cgroup"),
                         (["--subuidname", "u"], "explicit id maps"), (["--seccomp-policy", "image"], "seccomp")):
        refused = ketch_env.cli("run", "--rm", *flags, "busybox", "true")
        assert refused.returncode == 125 and words in refused.stderr, (flags, refused.stderr)


def test_image_volume_modes(ketch_env):
    ketch_env.cli("create", "--name", "base", "busybox", "true", check=True)
    ketch_env.cli("commit", "-q", "-c", 'VOLUME ["/data"]', "base", "localhost/with-volume:1", check=True)
    ketch_env.cli("rm", "base", check=True)
    script = "m=$(grep ' /data ' /proc/mounts | cut -d' ' -f3); echo ${m:-none}"
    volumes_before = ketch_env.cli("volume", "ls", "-q", check=True).stdout.split()
    default = ketch_env.cli("run", "--rm", "localhost/with-volume:1", "sh", "-c", script, check=True).stdout
    tmpfs = ketch_env.cli("run", "--rm", "--image-volume", "tmpfs", "localhost/with-volume:1", "sh", "-c", script,
                          check=True).stdout
    ignored = ketch_env.cli("run", "--rm", "--image-volume", "ignore", "localhost/with-volume:1", "sh", "-c", script,
                            check=True).stdout
    assert default.strip() != "none" and tmpfs == "tmpfs\n" and ignored == "none\n"
    assert ketch_env.cli("volume", "ls", "-q", check=True).stdout.split() == volumes_before  # --rm took its own
    ketch_env.cli("rmi", "localhost/with-volume:1", check=True)


LIMITS = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
          "/sys/fs/cgroup/cpu/cpu.shares")


@pytest.mark.peer
@pytest.mark.root_only("resource limits need a delegated cgroup, which these machines lack (cgroup v1)")
def test_update_changes_limits_as_podman_update_does(ketch_env, podman, busybox_layout):
    image = podman.run("pull", "-q", f"oci:{busybox_layout}").stdout.strip()
    podman.run("run", "-d", "--name", "limited", "-m", "64m", image, "sleep", "100")
    ketch_env.cli("run", "-d", "--name", "limited", "-m", "64m", "busybox", "sleep", "100", check=True)
    flags = ("-m", "128m", "--cpus", "0.5", "--cpu-shares", "512")
    theirs = podman.run("update", *flags, "limited")
    ours = ketch_env.cli("update", *flags, "limited", check=True)
    assert ours.stdout == _inspect(ketch_env, "limited", "{{.Id}}") + "\n"  # the id, as podman prints it
    assert theirs.stdout.strip() == podman.run("inspect", "--format", "{{.Id}}", "limited").stdout.strip()
    seen = ketch_env.cli("exec", "limited", "sh", "-c", LIMITS, check=True).stdout
    assert seen == podman.run("exec", "limited", "sh", "-c", LIMITS).stdout == "134217728\n50000\n512\n"
    # what later starts get, and what inspect says
    ketch_env.cli("update", "--pids-limit", "40", "--restart", "on-failure:3", "limited", check=True)
    ketch_env.cli("restart", "-t", "0", "limited", check=True)
    after = ketch_env.cli("exec", "limited", "sh", "-c", LIMITS + " /sys/fs/cgroup/pids/pids.max", check=True)
    assert after.stdout == "134217728\n50000\n512\n40\n"
    assert _inspect(ketch_env, "limited", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} "
                    "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}") == \
        "134217728 500000000 on-failure:3"
    # --cpu-quota replaces --cpus
    ketch_env.cli("update", "--cpu-quota", "20000", "limited", check=True)
    assert ketch_env.cli("exec", "limited", "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", check=True).stdout == \
        "20000\n"
    for bad, words in ((("limited",), "nothing to change"), (("--memory", "lots", "limited"), "lots"),
                       (("--restart", "sometimes", "limited"), "restart policy"),
                       (("-m", "10m", "not-there"), "not-there")):
        refused = ketch_env.cli("update", *bad)
        assert refused.returncode == 125 and words in refused.stderr and refused.stderr.count("\n") == 1, bad
    ketch_env.cli("rm", "-f", "-t", "0", "limited", check=True)
    podman.run("rm", "-f", "-t", "0", "limited")


def test_update_as_a_user_changes_the_restart_policy_and_refuses_limits(ketch_env):
    ketch_env.cli("create", "--name", "later", "busybox", "true", check=True)
    ketch_env.cli("update", "--restart", "always", "later", check=True)
    assert _inspect(ketch_env, "later", "{{.HostConfig.RestartPolicy.Name}}") == "always"
    limited = ketch_env.cli("update", "-m", "100m", "later")
    if AS_USER:
        assert limited.returncode == 125 and "delegated" in limited.stderr and limited.stderr.count("\n") == 1
    else:
        assert limited.returncode == 0 and _inspect(ketch_env, "later", "{{.HostConfig.Memory}}") == "104857600"
    ketch_env.cli("rm", "later", check=True)
