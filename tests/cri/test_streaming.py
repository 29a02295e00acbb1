"""The streaming server (exec, attach, port-forward) through the real ``ketch cri serve``, with
ketch's own SPDY client (``ketch.cri.streamclient``, written from the SPDY/3 draft) and the
``websockets`` library for the WebSocket protocols."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest

import ketch.cri.api_pb2 as api
from ketch.cri.streamclient import PortForward, RemoteCommand, UpgradeRefused
from tests.cri.helpers import container_config, pod_config, run_pod, start_container, wait_for, wait_state

ECHO_SERVER = ["nc", "-ll", "-p", "9000", "-e", "cat"]  # (-ll: a cat for each connection)


def _pod_with(cri, command: list[str], *, stdin: bool = False, tty: bool = False, name: str = "main",
              stdin_once: bool = False):
    pod = pod_config()
    pod_id = run_pod(cri, pod)
    config = container_config(name, command)
    config.stdin, config.tty, config.stdin_once = stdin, tty, stdin_once
    container_id = start_container(cri, pod_id, pod, config)
    wait_state(cri, container_id, api.CONTAINER_RUNNING)
    return pod_id, container_id


def _exec_url(cri, container_id: str, cmd: list[str], *, stdin=False, stdout=True, stderr=True, tty=False) -> str:
    return cri.runtime.Exec(api.ExecRequest(container_id=container_id, cmd=cmd, stdin=stdin, stdout=stdout,
                                            stderr=stderr, tty=tty)).url


def test_exec_without_terminal_separates_streams_and_reports_the_exit_code(cri):
    _, container_id = _pod_with(cri, ["sleep", "1000"])
    url = _exec_url(cri, container_id, ["sh", "-c", "cat; echo to-err >&2; exit 3"], stdin=True)
    assert url.startswith("http://127.0.0.1:")
    session = RemoteCommand(url, stdin=True)
    assert session.protocol == "v4.channel.k8s.io"
    outcome = session.communicate(b"hello from stdin\n" * 1000)
    assert outcome.stdout == b"hello from stdin\n" * 1000
    assert outcome.stderr == b"to-err\n"
    assert outcome.exit_code == 3
    assert outcome.status["reason"] == "NonZeroExitCode"
    assert outcome.status["message"].startswith("command terminated with non-zero exit code")

    ok = RemoteCommand(_exec_url(cri, container_id, ["true"])).communicate()
    assert (ok.exit_code, ok.status, ok.stdout, ok.stderr) == (0, {"metadata": {}, "status": "Success"}, b"", b"")


@pytest.mark.parametrize("protocol", ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"])
def test_exec_older_protocols_report_the_error_as_text(cri, protocol):
    _, container_id = _pod_with(cri, ["sleep", "1000"])
    outcome = RemoteCommand(_exec_url(cri, container_id, ["sh", "-c", "echo out; exit 5"]),
                            protocols=[protocol]).communicate()
    assert outcome.protocol == protocol
    assert outcome.stdout == b"out\n"
    assert outcome.error.decode().startswith("command terminated with non-zero exit code")
    assert outcome.error.decode().endswith("exit code 5")


def test_exec_with_stdin_closed_at_once_ends(cri):
    _, container_id = _pod_with(cri, ["sleep", "1000"])
    outcome = RemoteCommand(_exec_url(cri, container_id, ["sh", "-c", "cat; echo after-eof"], stdin=True),
                            stdin=True).communicate(None)
    assert (outcome.stdout, outcome.exit_code) == (b"after-eof\n", 0)


def test_exec_with_a_terminal_follows_resizes(cri):
    _, container_id = _pod_with(cri, ["sleep", "1000"])
    script = 'while [ "$(stty size)" != "40 100" ]; do sleep 0.05; done; echo resized; tty'
    url = _exec_url(cri, container_id, ["sh", "-c", script], stdin=True, tty=True)
    session = RemoteCommand(url, stdin=True, tty=True)
    assert session.stderr is None and session.resizer is not None
    session.resize(100, 40)
    outcome = session.communicate(None, close_stdin=False)
    assert b"resized\r\n/dev/pts/" in outcome.stdout  # a terminal's line ends, and a terminal
    assert outcome.exit_code == 0


def test_exec_of_a_missing_command_and_into_a_stopped_container(cri):
    _, container_id = _pod_with(cri, ["sleep", "1000"])
    outcome = RemoteCommand(_exec_url(cri, container_id, ["no-such-command"])).communicate()
    assert outcome.status["status"] == "Failure"
    assert "no-such-command" in outcome.status["message"]

    cri.runtime.StopContainer(api.StopContainerRequest(container_id=container_id, timeout=1))
    with pytest.raises(grpc.RpcError) as failure:
        _exec_url(cri, container_id, ["true"])
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "CONTAINER_EXITED" in failure.value.details()


def test_tokens_are_used_once_and_unknown_ones_are_refused(cri):
    _, container_id = _pod_with(cri, ["sleep", "1000"])
    url = _exec_url(cri, container_id, ["true"])
    assert RemoteCommand(url).communicate().exit_code == 0
    with pytest.raises(UpgradeRefused) as refused:
        RemoteCommand(url)
    assert refused.value.status == 404
    with pytest.raises(urllib.error.HTTPError) as plain:
        urllib.request.urlopen(url.rsplit("/", 1)[0] + "/not-a-token", timeout=10)
    assert plain.value.code == 404


def test_attach_to_a_container_started_with_stdin_and_a_terminal(cri):
    _, container_id = _pod_with(cri, ["sh"], stdin=True, tty=True)
    url = cri.runtime.Attach(api.AttachRequest(container_id=container_id, stdin=True, stdout=True, tty=True)).url
    session = RemoteCommand(url, stdin=True, tty=True)
    session.stdin.write(b"echo attached-$((6*7))\n")
    assert wait_for(lambda: b"attached-42" in _read_some(session.stdout, 1), timeout=20)
    session.stdin.write(b"exit 0\n")
    outcome = session.communicate(None, close_stdin=False)
    assert outcome.exit_code == 0
    wait_state(cri, container_id, api.CONTAINER_EXITED)


def test_attach_without_a_terminal_keeps_stdout_and_stderr_apart(cri):
    _, container_id = _pod_with(cri, ["sh", "-c", "while read l; do echo out-$l; echo err-$l >&2; "
                                                  "[ $l = end ] && exit 0; done"], stdin=True)
    url = cri.runtime.Attach(api.AttachRequest(container_id=container_id, stdin=True, stdout=True,
                                               stderr=True)).url
    session = RemoteCommand(url, stdin=True)
    session.stdin.write(b"a\nend\n")
    outcome = session.communicate(None, close_stdin=False)
    assert outcome.stdout == b"out-a\nout-end\n"
    assert outcome.stderr == b"err-a\nerr-end\n"
    assert outcome.exit_code == 0


@pytest.mark.parametrize("once", [True, False])
def test_attach_stdin_once_closes_the_containers_stdin_when_the_client_closes_its_own(cri, once):
    _, container_id = _pod_with(cri, ["sh", "-c", "cat; echo stdin-closed"], stdin=True, stdin_once=once)
    url = cri.runtime.Attach(api.AttachRequest(container_id=container_id, stdin=True, stdout=True,
                                               stderr=True)).url
    session = RemoteCommand(url, stdin=True)
    session.stdin.write(b"typed\n")
    assert wait_for(lambda: b"typed" in _read_some(session.stdout, 1), timeout=20)
    session.stdin.close()
    if once:
        status = wait_state(cri, container_id, api.CONTAINER_EXITED)
        assert status.exit_code == 0
        assert b"stdin-closed" in _read_some(session.stdout, 5) or b"stdin-closed" in open(status.log_path,
                                                                                             "rb").read()
    else:
        time.sleep(1)  # (what must not happen has had time to: the container still reads)
        assert cri.runtime.ContainerStatus(api.ContainerStatusRequest(
            container_id=container_id)).status.state == api.CONTAINER_RUNNING
    session.close()


_buffers: dict[int, bytes] = {}


def _read_some(stream, timeout: float) -> bytes:
    """What the stream has given so far (kept across calls)."""
    key = id(stream)
    done = threading.Event()
    result: list[bytes] = []

    def read() -> None:
        result.append(stream.read())
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    _buffers[key] = _buffers.get(key, b"") + (result[0] if result else b"")
    return _buffers[key]


def _roundtrip(data_stream, payload: bytes) -> bytes:
    received = []

    def receive() -> None:
        while True:
            chunk = data_stream.read()
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=receive)
    reader.start()
    data_stream.write(payload)
    data_stream.close()
    reader.join(timeout=120)
    return b"".join(received)


def test_port_forward_into_the_pods_network_namespace(cri):
    pod_id, _ = _pod_with(cri, ECHO_SERVER)
    url = cri.runtime.PortForward(api.PortForwardRequest(pod_sandbox_id=pod_id, port=[9000])).url
    forward = PortForward(url)
    try:
        # nothing listens on 9001: an error on the error stream, and the session stays usable
        data, error = forward.open(9001)
        assert data.read() == b""
        message = error.read().decode()
        assert "9001" in message and "refused" in message.lower()

        payload = os.urandom(20 * 1024 * 1024)
        assert wait_for(lambda: _echo_ready(forward), timeout=20)
        data, error = forward.open(9000)
        echoed = _roundtrip(data, payload)
        assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(payload).hexdigest()
        assert error.read() == b""
    finally:
        forward.close()


def _echo_ready(forward: PortForward) -> bool:
    data, error = forward.open(9000)
    return _roundtrip(data, b"ping") == b"ping"


def test_websocket_exec_and_port_forward(cri):
    from websockets.sync.client import connect

    pod_id, container_id = _pod_with(cri, ECHO_SERVER)
    for protocol in ("v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"):
        # (before v5 stdin cannot be closed: the command reads what it needs)
        url = _exec_url(cri, container_id, ["sh", "-c", "head -c 14; echo e >&2; exit 4"], stdin=True)
        with connect(url.replace("http://", "ws://"), subprotocols=[protocol]) as ws:
            assert ws.subprotocol == protocol
            encode = (lambda ch, data: chr(48 + ch) + base64.b64encode(data).decode()) if "base64" in protocol \
                else (lambda ch, data: bytes([ch]) + data)
            ws.send(encode(0, b"via websocket\n"))
            if protocol.startswith("v5"):
                ws.send(b"\xff\x00")  # v5: the client closes stdin
            streams: dict[int, bytes] = {1: b"", 2: b"", 3: b""}
            for message in ws:
                if isinstance(message, str):
                    channel, payload = ord(message[0]) - 48, base64.b64decode(message[1:])
                else:
                    channel, payload = message[0], message[1:]
                if channel in streams:
                    streams[channel] += payload
        assert (streams[1], streams[2]) == (b"via websocket\n", b"e\n"), protocol
        assert json.loads(streams[3])["details"]["causes"][0]["message"] == "4"

    assert wait_for(lambda: _echo_ready(PortForward(
        cri.runtime.PortForward(api.PortForwardRequest(pod_sandbox_id=pod_id)).url)), timeout=20)
    url = cri.runtime.PortForward(api.PortForwardRequest(pod_sandbox_id=pod_id)).url
    with connect(url.replace("http://", "ws://") + "?port=9000", subprotocols=["portforward.k8s.io"]) as ws:
        first = {ws.recv(timeout=30) for _ in range(2)}
        assert first == {b"\x00\x28\x23", b"\x01\x28\x23"}  # each channel opens with the port (9000, LE)
        ws.send(b"\x00" + b"over websocket")
        got = b""
        while got != b"over websocket":
            message = ws.recv(timeout=30)
            assert message[0] == 0, message
            got += message[1:]


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _server_resources(cri) -> dict:
    pid = cri.process.pid
    tasks = os.listdir(f"/proc/{pid}/task")
    own_netns = os.readlink(f"/proc/{pid}/ns/net")
    # (the exec helpers' fork server and multiprocessing's resource tracker live as long as the
    # server: they are not leaks)
    children = [c for c in open(f"/proc/{pid}/task/{pid}/children").read().split()
                if b"from multiprocessing." not in _cmdline(c)]
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    # the store's database: each gRPC worker opens its connection when it first needs one, so
    # these may grow by up to 16 workers' connections; a session's own are closed as it ends
    database = [t for t in targets if t.startswith(str(cri.root / "ketch.db"))]
    foreign = []
    for task in tasks:
        try:
            if os.readlink(f"/proc/{pid}/task/{task}/ns/net") != own_netns:
                foreign.append(task)
        except OSError:
            pass  # (a thread that has just ended)
    return {"fds": len(targets) - len(database), "database": len(database), "threads": len(tasks),
            "children": children, "foreign_netns": foreign}


def test_load_50_concurrent_execs_and_10_port_forwards_leak_nothing(cri):
    from concurrent.futures import ThreadPoolExecutor

    containers, pods = [], []
    for _ in range(10):
        pod_id, container_id = _pod_with(cri, ECHO_SERVER)
        containers.append(container_id)
        pods.append(pod_id)

    def one_exec(index: int) -> tuple[int | None, bytes]:
        url = _exec_url(cri, containers[index % 10], ["sh", "-c", f"cat; echo {index} >&2"], stdin=True)
        outcome = RemoteCommand(url, stdin=True).communicate(f"exec {index}\n".encode() * 1000)
        if outcome.exit_code is None:  # (what failed, in the assertion's message)
            return outcome.exit_code, outcome.status.get("message", "").encode()
        return outcome.exit_code, outcome.stdout + outcome.stderr

    def exec_round() -> None:
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one_exec, range(50)))
        assert results == [(0, f"exec {i}\n".encode() * 1000 + f"{i}\n".encode()) for i in range(50)]

    def forward_round(size: int) -> None:
        forward = PortForward(cri.runtime.PortForward(api.PortForwardRequest(pod_sandbox_id=pods[0])).url)
        try:
            assert wait_for(lambda: _echo_ready(forward), timeout=20)
            payload = os.urandom(1024 * 1024) * size
            digest = hashlib.sha256(payload).hexdigest()

            def one_forward(_: int) -> str:
                data, _error = forward.open(9000)
                return hashlib.sha256(_roundtrip(data, payload)).hexdigest()

            with ThreadPoolExecutor(10) as pool:
                assert list(pool.map(one_forward, range(10))) == [digest] * 10
        finally:
            forward.close()

    # a first round at a small size: the server's pools (gRPC's workers, each with its store
    # connection) grow to what this load needs; the second must leave exactly that behind
    exec_round()
    forward_round(1)
    assert wait_for(lambda: _server_resources(cri)["children"] == [], timeout=30)
    before = _server_resources(cri)
    exec_round()
    forward_round(100)  # 10 connections at once, 100 MB each way
    def no_more_than_before() -> bool:
        now = _server_resources(cri)
        return (now["fds"] <= before["fds"] and now["database"] <= before["database"] + 3 * 16
                and now["threads"] <= before["threads"] and now["children"] == [] and now["foreign_netns"] == [])

    assert wait_for(no_more_than_before, timeout=30), (_server_resources(cri), before)
