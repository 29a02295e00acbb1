"""ExecSync: a command run to its end in a running container, its output captured. The helper
process here also runs the streaming server's execs (:mod:`ketch.cri.remotecommand`), with its
stdio or a console socket as the process's.

It runs in a helper process (``python -m ketch.cri.execsync``) rather than in the server: running
a process in a container in the foreground makes the caller a child subreaper and forwards its
signals, which a multi-threaded server must not have done to it. The helper enforces the timeout
(the process is killed, as containerd does) and reports through a pipe; the server caps what it
keeps of each stream (16 MiB by default, as the CRI asks after CVE-2022-1708).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from ketch.records import Record


class Outcome(Record):
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


def run(config, record, command: list[str], timeout: int) -> Outcome:
    """Run ``command`` in the container of ``record``; its exit code and output."""
    from ketch.errors import ContainerCommandError, KetchError

    result_r, result_w = os.pipe()
    request = json.dumps({"root": config.root, "runroot": config.runroot, "id": record.id, "command": command,
                          "timeout": int(timeout or 0), "result_fd": result_w})
    helper = subprocess.Popen([sys.executable, "-m", "ketch.cri.execsync", request], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(result_w,))
    os.close(result_w)
    captured: dict[str, bytes] = {}
    readers = [threading.Thread(target=_capture, args=(stream, name, config.max_exec_output, captured))
               for stream, name in ((helper.stdout, "stdout"), (helper.stderr, "stderr"))]
    for reader in readers:
        reader.start()
    with os.fdopen(result_r, "rb") as pipe:
        answer = pipe.read()
    for reader in readers:
        reader.join()
    helper.wait()
    try:
        result = json.loads(answer)
    except ValueError as exc:
        raise KetchError(f"exec in container {record.id[:12]}: the helper died (exit status {helper.returncode})") \
            from exc
    if "error" in result:
        if result.get("status") in (126, 127):
            raise ContainerCommandError(result["error"])
        raise KetchError(result["error"])
    return Outcome(result["exit_code"], captured.get("stdout", b""), captured.get("stderr", b""),
                   result.get("timed_out", False))


def _capture(stream, name: str, limit: int, into: dict[str, bytes]) -> None:
    kept = bytearray()
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            break
        if len(kept) < limit:
            kept += chunk[:limit - len(kept)]  # beyond the cap: read and dropped, the command goes on
    stream.close()
    into[name] = bytes(kept)


def _main(request: dict) -> int:
    import signal
    import tempfile

    from ketch.containers.engine import Engine
    from ketch.errors import KetchError

    result_fd = request["result_fd"]
    timed_out = threading.Event()
    scratch = tempfile.mkdtemp(prefix="ketch-execsync-")
    pid_file = os.path.join(scratch, "pid")

    def expire() -> None:
        timed_out.set()
        try:
            with open(pid_file) as f:
                os.kill(int(f.read().strip()), signal.SIGKILL)
        except (OSError, ValueError):
            pass

    timer = threading.Timer(request["timeout"], expire) if request["timeout"] > 0 else None
    try:
        engine = Engine(root=request["root"], runroot=request["runroot"])
        if timer is not None:
            timer.start()
        stdin = 0 if request.get("stdin") else os.open("/dev/null", os.O_RDONLY)
        status = engine.exec(request["id"], request["command"], stdio=(stdin, 1, 2), pid_file=pid_file,
                             tty=bool(request.get("tty")), console_socket=request.get("console_socket"))
        result: dict[str, object] = {"exit_code": status, "timed_out": timed_out.is_set()}
    except KetchError as exc:
        result = {"error": str(exc), "status": exc.exit_code}
    finally:
        if timer is not None:
            timer.cancel()
        for name in os.listdir(scratch):
            os.unlink(os.path.join(scratch, name))
        os.rmdir(scratch)
    os.write(result_fd, json.dumps(result).encode())
    return 0


if __name__ == "__main__":
    sys.exit(_main(json.loads(sys.argv[1])))
