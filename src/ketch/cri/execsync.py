"""ExecSync: a command run to its end in a running container, its output captured. The helper
process here also runs the streaming server's execs (:mod:`ketch.cri.remotecommand`), with its
stdio or a console socket as the process's.

It runs in a helper process (forked by a fork server, see :func:`start`) rather than in the server:
running a process in a container in the foreground makes the caller a child subreaper and
forwards its signals, which a multi-threaded server must not have done to it. The helper enforces the timeout
(the process is killed, as containerd does) and reports through a pipe; the server caps what it
keeps of each stream (16 MiB by default, as the CRI asks after CVE-2022-1708).
"""

from __future__ import annotations

import json
import os
import threading

from ketch.records import Record


class Outcome(Record):
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class Helper:
    """One exec's helper process, started by a fork server (see :func:`start`): ``wait()``
    gives its result (``exit_code`` and ``timed_out``, or ``error`` and ``status``)."""

    def __init__(self, process, result_fd: int) -> None:
        self.process = process
        self.result_fd = result_fd

    def wait(self) -> dict:
        with os.fdopen(self.result_fd, "rb") as pipe:
            answer = pipe.read()
        self.process.join()
        exit_code = self.process.exitcode
        with _processes_lock:
            self.process.close()  # (its sentinel fd, now)
        try:
            return json.loads(answer)
        except ValueError:
            return {"error": f"the exec helper died (exit status {exit_code})", "status": 1}


_context_lock = threading.Lock()
_context = None
# multiprocessing is not thread-safe here: start() polls every child it knows while close() of
# another (in another thread) drops its handle ('NoneType' object has no attribute 'poll')
_processes_lock = threading.Lock()


def _fork_server():
    """multiprocessing's fork server, started once per server process with ketch's modules
    imported: a helper is then a fork of a single-threaded process (~2 ms) instead of a new
    interpreter importing them (~50 ms), and never a fork of the multi-threaded server."""
    global _context
    with _context_lock:
        if _context is None:
            import multiprocessing

            context = multiprocessing.get_context("forkserver")
            # (__main__ too: a child whose fork server has imported the main script does not
            # import it again, as multiprocessing otherwise does in every child)
            context.set_forkserver_preload(["__main__", "ketch.cri.execsync", "ketch.containers.engine",
                                            "ketch.runtime.container"])
            _context = context
        return _context


class _Fd:
    """A file descriptor that travels to the helper (multiprocessing sends it beside the pickle)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        from multiprocessing import reduction

        return _received_fd, (reduction.DupFd(self.fd),)


def _received_fd(dup) -> int:
    return dup.detach()


def start(request: dict, stdin: int, stdout: int, stderr: int) -> Helper:
    """Start a helper running ``request`` (see :func:`_main`) with these as its stdio; the
    caller closes its own copies of them after."""
    result_r, result_w = os.pipe()
    try:
        process = _fork_server().Process(target=_helper_main, daemon=False, args=(
            request, _Fd(stdin), _Fd(stdout), _Fd(stderr), _Fd(result_w)))
        with _processes_lock:
            process.start()
    finally:
        os.close(result_w)
    return Helper(process, result_r)


def _helper_main(request: dict, stdin: int, stdout: int, stderr: int, result: int) -> None:
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    _main({**request, "result_fd": result})


def request_for(config, engine, container_id: str, command: list[str], *, tty: bool = False, timeout: int = 0,
                console_socket: str | None = None) -> dict:
    """What a helper is asked to run: the OCI process made here (the server has the store open),
    so that the helper only runs it; a container of another runtime handler goes through the
    engine in the helper."""
    record, process = engine.exec_process(container_id, command, tty=tty)
    request = {"root": config.root, "runroot": config.runroot, "id": record.id, "command": command,
               "timeout": int(timeout or 0), "tty": tty, "console_socket": console_socket}
    if record.options.runtime:
        return request
    engine._record_event("exec", record)
    return {**request, "process": process, "runtime_root": str(engine.store.runroot / "runtime")}


def run(config, engine, record, command: list[str], timeout: int) -> Outcome:
    """Run ``command`` in the container of ``record``; its exit code and output."""
    from ketch.errors import ContainerCommandError, KetchError

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        helper = start(request_for(config, engine, record.id, command, timeout=timeout), null, out_w, err_w)
    finally:
        for fd in (null, out_w, err_w):
            os.close(fd)
    captured: dict[str, bytes] = {}
    readers = [threading.Thread(target=_capture, args=(os.fdopen(fd, "rb"), name, config.max_exec_output, captured))
               for fd, name in ((out_r, "stdout"), (err_r, "stderr"))]
    for reader in readers:
        reader.start()
    result = helper.wait()
    for reader in readers:
        reader.join()
    if "error" in result:
        if result.get("status") in (126, 127):
            raise ContainerCommandError(result["error"])
        raise KetchError(f"exec in container {record.id[:12]}: {result['error']}")
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
        if timer is not None:
            timer.start()
        if "process" in request:  # made by the server: run it
            status = Engine.run_exec_process(
                request["runtime_root"], request["id"], request["process"], stdio=(0, 1, 2), pid_file=pid_file,
                console_socket=request.get("console_socket") if request.get("tty") else None)
        else:
            engine = Engine(root=request["root"], runroot=request["runroot"])
            status = engine.exec(request["id"], request["command"], stdio=(0, 1, 2), pid_file=pid_file,
                                 tty=bool(request.get("tty")), console_socket=request.get("console_socket"))
        result: dict[str, object] = {"exit_code": status, "timed_out": timed_out.is_set()}
    except KetchError as exc:
        result = {"error": str(exc), "status": exc.exit_code}
    except OSError as exc:  # (a system call the runtime did not expect to fail: said, not a silent death)
        result = {"error": f"exec in container {request['id'][:12]}: {exc}", "status": 1}
    finally:
        if timer is not None:
            timer.cancel()
        for name in os.listdir(scratch):
            os.unlink(os.path.join(scratch, name))
        os.rmdir(scratch)
    os.write(result_fd, json.dumps(result).encode())
    return 0


