"""create / start / state / kill / delete / run, as the runtime-spec describes them."""

import json
import os
import signal
import subprocess
import sys
import time

from tests.runtime.conftest import RUNTIME


def state(bundle, name="c1"):
    return json.loads(bundle.runtime("state", name, check=True).stdout)


def test_run_prints_and_returns_the_exit_status(bundle):
    result = bundle.run("sh", "-c", "echo hello; exit 7")
    assert result.stdout == "hello\n" and result.returncode == 7
    assert bundle.runtime("list", "-q").stdout == ""  # run deletes what it created


def test_create_waits_for_start(bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    bundle.config["mounts"].append({"destination": "/shared", "type": "bind", "source": str(shared),
                                    "options": ["rbind", "rw"]})
    bundle.args("sh", "-c", "touch /shared/started; sleep 30")
    pid_file = tmp_path / "pid"
    bundle.runtime("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), "c1", check=True)
    created = state(bundle)
    assert created["status"] == "created" and created["pid"] == int(pid_file.read_text())
    assert created["bundle"] == str(bundle.path) and created["ociVersion"]
    time.sleep(0.3)
    assert not (shared / "started").exists()  # the user's program has not run
    bundle.runtime("start", "c1", check=True)
    deadline = time.monotonic() + 10
    while not (shared / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (shared / "started").exists()
    assert state(bundle)["status"] == "running"
    refused = bundle.runtime("delete", "c1")
    assert refused.returncode == 1 and "running" in refused.stderr
    bundle.runtime("kill", "c1", "KILL", check=True)
    deadline = time.monotonic() + 10
    while state(bundle)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state(bundle)["status"] == "stopped"
    bundle.runtime("delete", "c1", check=True)
    missing = bundle.runtime("state", "c1")
    assert missing.returncode == 1 and "container c1 does not exist" in missing.stderr


def test_unknown_id_and_duplicates(bundle):
    for args in (["state", "nope"], ["start", "nope"], ["kill", "nope"], ["delete", "nope"]):
        result = bundle.runtime(*args)
        assert result.returncode == 1 and "does not exist" in result.stderr, args
    bundle.args("sleep", "30")
    bundle.runtime("create", "--bundle", str(bundle.path), "dup", check=True)
    again = bundle.runtime("create", "--bundle", str(bundle.path), "dup")
    assert again.returncode == 1 and "already exists" in again.stderr
    bundle.runtime("delete", "--force", "dup", check=True)
    bad = bundle.runtime("create", "--bundle", str(bundle.path), "../evil")
    assert bad.returncode == 1 and "invalid container id" in bad.stderr


def test_init_is_a_child_of_a_subreaper_caller(bundle, tmp_path):
    """What conmon relies on: after create returns, the init's parent is the caller."""
    bundle.args("sleep", "30")
    script = f"""
import ctypes, os, subprocess, sys
ctypes.CDLL("libc.so.6").prctl(36, 1, 0, 0, 0)
subprocess.run([{RUNTIME!r}, "--root", {str(bundle.root)!r}, "create", "--bundle", {str(bundle.path)!r},
                "--pid-file", {str(tmp_path / "pid")!r}, "sub"], check=True, stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL)
pid = int(open({str(tmp_path / 'pid')!r}).read())
ppid = int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
print(ppid == os.getpid())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr
    bundle.runtime("delete", "--force", "sub", check=True)


def test_kill_signal_names_and_all(bundle):
    bundle.args("sh", "-c", "trap 'exit 42' TERM; sleep 30 & wait")
    bundle.runtime("run", "-d", "--bundle", str(bundle.path), "k", check=True)
    pids = json.loads(bundle.runtime("ps", "--format", "json", "k", check=True).stdout)
    assert len(pids) >= 2  # sh and sleep
    bundle.runtime("kill", "--all", "k", "9", check=True)
    deadline = time.monotonic() + 10
    while state(bundle, "k")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state(bundle, "k")["status"] == "stopped"
    bad = bundle.runtime("kill", "k", "SIGNOPE")
    assert bad.returncode == 1
    bundle.runtime("delete", "k", check=True)


def test_missing_and_unexecutable_commands_fail_create(bundle):
    result = bundle.run("/no/such/program")
    assert result.returncode == 1 and 'exec: "/no/such/program": stat /no/such/program: no such file or directory' \
        in result.stderr  # runc's words
    os.chmod(bundle.path / "rootfs" / "etc" / "passwd", 0o644)
    result = bundle.run("/etc/passwd")
    assert result.returncode == 1 and "permission denied" in result.stderr
    assert bundle.runtime("list", "-q").stdout == ""


def test_kill_9_of_create_leaves_nothing_healthy(bundle):
    bundle.args("sleep", "30")
    for delay in (0.0, 0.01, 0.03, 0.06, 0.1):
        proc = subprocess.Popen([RUNTIME, "--root", str(bundle.root), "create", "--bundle", str(bundle.path), "kc"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        listing = json.loads(bundle.runtime("list", "--format", "json", check=True).stdout)
        for entry in listing:
            assert entry["status"] in ("stopped", "created")
        if listing:
            bundle.runtime("delete", "--force", "kc", check=True)
        assert bundle.runtime("list", "-q").stdout == ""
    time.sleep(0.2)
    assert _leftovers(str(bundle.path)) == [], "a container init outlived its killed create"


def test_an_init_whose_create_is_killed_before_recording_it_ends(bundle, tmp_path):
    """The init waits for the runtime to record it; killed meanwhile, the runtime must leave
    end-of-file behind, so the init ends instead of waiting forever (the runtime is held in
    that window by a createRuntime hook)."""
    mark = tmp_path / "hook-ran"
    bundle.args("sleep", "30")
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {mark}; sleep 3"]}]}
    bundle.write()
    proc = subprocess.Popen([RUNTIME, "--root", str(bundle.root), "create", "--bundle", str(bundle.path), "kh"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mark.exists(), "the hook never ran"
        assert _leftovers(str(bundle.path)), "no init was waiting"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while _leftovers(str(bundle.path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert _leftovers(str(bundle.path)) == [], "the init outlived its killed create"
    finally:
        bundle.runtime("delete", "--force", "kh")
    assert bundle.runtime("list", "-q").stdout == ""


def _leftovers(bundle_path):
    """Inits that exec'd (``sleep 30``) or still wait before exec (they carry the runtime's command line)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
                status = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if status != "Z" and (cmdline == b"sleep\x0030\x00" or bundle_path.encode() in cmdline):
                found.append(int(entry))
    return found


def test_spec_and_features(tmp_path):
    result = subprocess.run([RUNTIME, "spec", "--bundle", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["process"]["args"] == ["sh"] and config["root"]["path"] == "rootfs"
    again = subprocess.run([RUNTIME, "spec", "--bundle", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr
    rootless = tmp_path / "rl"
    rootless.mkdir()
    subprocess.run([RUNTIME, "spec", "--rootless", "--bundle", str(rootless)], check=True)
    assert {"type": "user"} in json.loads((rootless / "config.json").read_text())["linux"]["namespaces"]
    features = json.loads(subprocess.run([RUNTIME, "features"], capture_output=True, text=True).stdout)
    assert "user" in features["linux"]["namespaces"] and "CAP_CHOWN" in features["linux"]["capabilities"]
    version = subprocess.run([RUNTIME, "--version"], capture_output=True, text=True).stdout.splitlines()
    assert version[0].startswith("ketch-runtime version ") and version[1] == "spec: 1.0.2"


def test_json_log_file(bundle, tmp_path):
    log = tmp_path / "log.json"
    result = \
        subprocess.run([RUNTIME, "--root", str(bundle.root), "--log", str(log), "--log-format",
                        "json", "state", "ghost"], capture_output=True, text=True)
    assert result.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"] and entry["time"]
