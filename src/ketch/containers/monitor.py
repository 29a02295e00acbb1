"""The per-container monitor of a detached container: what conmon is to podman.

``ketch run -d`` and ``ketch start`` prepare the container (root file system, config.json), then
start this as a new session with ``python -S``. It makes itself a child subreaper, creates and
starts the container through the runtime (so the container's init is its child) and reports
``ok PID`` or ``error TEXT`` on the report fd. Then it execs ``ketch-monitor`` (monitor.c, built
at install time): same process, same children, a fraction of Python's memory, for as long as the
container runs. That copies the output into the k8s-file log, writes the exit status to
``userdata/exit-code`` when the init exits, and execs this module again to finish: the status
goes into ``state.json``, then the runtime state, the root file system mount and, with
``--rm``, the container go. Without the C program (no compiler at install time) this process
does the copying itself (``KETCH_MONITOR=python`` asks for that, for tests and debugging). Not a
daemon: one per container, gone with it.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time

EXIT_FILE = "exit-code"
NATIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ketch-monitor")


def main() -> None:
    args = json.loads(sys.argv[1])
    sys.path[:0] = [p for p in args["sys_path"] if p not in sys.path]
    if args.get("mode") == "finish":
        _finish(args)
        return
    if args.get("mode") == "start":  # a restart: stdio and report fd are not there any more
        args["report_fd"] = None
        args["preserve_fds"] = 0
    from ketch import syscalls
    from ketch.containers import driver as drivers
    from ketch.containers import logs, state

    report = args.get("report_fd")
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    container_id, userdata = args["id"], args["userdata"]
    log = logs.LogWriter(args["log_path"]) if args["log_driver"] == "k8s-file" else None
    if log is not None:
        import signal

        signal.signal(signal.SIGHUP, lambda *_: log.reopen())  # as the C monitor: the log was rotated
    devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r = in_w = None
    if args.get("interactive") and not args["tty"]:
        in_r, in_w = os.pipe()  # the container's stdin: what ``ketch attach`` sends comes through here
    fifo = _stdin_fifo(userdata) if args.get("interactive") else None
    try:
        runtime = drivers.for_container(args["runtime"], args["run_dir"])
        pid, master = runtime.create(container_id, args["bundle"], terminal=args["tty"],
                                     stdio=(in_r if in_r is not None else devnull, out_w, err_w),
                                     preserve_fds=args["preserve_fds"])
        for fd in range(3, 3 + args["preserve_fds"]):
            os.close(fd)  # the container has them now
        os.close(out_w)
        os.close(err_w)
        if in_r is not None:
            os.close(in_r)
        state.started(userdata, pid=pid, pid_start=state.start_time(pid), started_at=time.time(),
                      monitor_pid=os.getpid(), monitor_start=state.start_time(os.getpid()),
                      restart_count=args.get("restart_count", 0), restarting=False)
        _event(args, "init")
        if args.get("init_only"):
            state.update(userdata, status="initialized")
            _report(report, f"ok {pid}")
            report = None
            if not _wait_for_start(userdata):
                _cleanup(args, None)  # stopped or removed before it was started
                os._exit(0)
            state.update(userdata, status="running", started_at=time.time())
        runtime.start(container_id)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to ``ketch run -d`` as one line
        _report(report, f"error {exc}")  # ``ketch run -d`` holds the container's lock until it has read this
        if args.get("mode") == "start":
            state.update(userdata, restart_error=str(exc), restarting=False)
        _cleanup(args, None)
        os._exit(1)
    _event(args, "start")
    if args.get("notify_ready"):
        from ketch.containers import systemd

        systemd.notify(f"MAINPID={os.getpid()}\nREADY=1\n", args["notify_ready"])  # --sdnotify=conmon
    _report(report, f"ok {pid}")
    os.close(devnull)
    exit_file = os.path.join(userdata, EXIT_FILE)
    finish = [sys.executable, "-S", "-c", sys.argv[0] if sys.argv[0] != "-c" else _BOOT,
              json.dumps({**args, "mode": "finish", "report_fd": None, "init_only": False}), *sys.argv[2:]]
    stdin_target = in_w if in_w is not None else (master if fifo is not None else None)
    if os.access(NATIVE, os.X_OK) and os.environ.get("KETCH_MONITOR") != "python":
        if log is not None:
            log.close()
        fds = [out_r, err_r] + ([master] if master is not None else []) + ([in_w] if in_w is not None else [])
        for fd in fds:
            os.set_inheritable(fd, True)
        options = []
        if args.get("timeout"):
            options += ["--timeout", str(args["timeout"])]
        if args.get("health_interval"):
            options += ["--health-interval", str(args["health_interval"]), "--health-argv",
                        os.path.join(userdata, HEALTH_ARGV_FILE)]
        if fifo is not None and stdin_target is not None:
            options += ["--stdin-fifo", fifo, "--stdin-fd", str(stdin_target)]
            if args.get("stdin_once"):
                options += ["--stdin-once"]
        if args.get("log_max_size"):
            options += ["--log-max-size", str(args["log_max_size"])]
        os.execv(NATIVE, [NATIVE, *options, args["log_path"] if log is not None else "-", exit_file, str(pid),
                          str(out_r), str(err_r), str(master if master is not None else -1), "--", *finish])
    status = _copy_until_exit(pid, master, out_r, err_r, log, args, fifo, stdin_target)
    if log is not None:
        log.close()
    state.write_exit_file(exit_file, status)
    _finish(args)


HEALTH_ARGV_FILE = "healthcheck.argv"
START_FIFO = "start-fifo"
STDIN_FIFO = "attach-stdin"


def _report(fd: int | None, text: str) -> None:
    if fd is not None:
        os.write(fd, text.encode()[:4000])
        os.close(fd)


def _stdin_fifo(userdata: str) -> str:
    path = os.path.join(userdata, STDIN_FIFO)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)
    return path


def _wait_for_start(userdata: str) -> bool:
    """``ketch init``: the container is created; ``ketch start`` writes "s" to this FIFO to
    start it, a stop or removal writes "q". True to start."""
    path = os.path.join(userdata, START_FIFO)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)
    with open(path, "rb") as f:  # blocks until ``ketch start`` opens it for writing
        word = f.read(1)
    os.unlink(path)
    return word == b"s"


def release_initialized(userdata: str) -> None:
    """Tell the monitor of an initialized container that it will not be started."""
    try:
        fd = os.open(os.path.join(userdata, START_FIFO), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, b"q")
    finally:
        os.close(fd)


def _event(args: dict, status: str, exit_code: int | None = None) -> None:
    """An event of this container, written to the store's log (podman's ``events``)."""
    from ketch.storage.events import EventLog

    EventLog(args["root"]).emit("container", status, id=args["id"], name=args.get("name", ""),
                                image=args.get("image_name", ""), attributes=args.get("labels") or {},
                                exit_code=exit_code)


_BOOT = "import sys; sys.path.insert(0, sys.argv[2]); from ketch.containers.monitor import main; main()"


def _finish(args: dict) -> None:
    """The container has exited: its status into state.json, then the cleanup; or, when its
    restart policy says so, it is started again, by this same monitor."""
    from ketch.containers import state

    status = state.read_exit_file(os.path.join(args["userdata"], EXIT_FILE))
    current = state.read(args["userdata"])
    if current.get("status") == "running" or current.get("exit_code") is None:
        current = state.exited(args["userdata"], status if status is not None else -1)
    _event(args, "died", status if status is not None else -1)
    if _restarts(args, current, status) and _restart(args):
        return
    _cleanup(args, status)


def _restarts(args: dict, current: dict, status: int | None) -> bool:
    """podman's restart policies: always and unless-stopped unless a user stopped it;
    on-failure for a non-zero status, up to its retries."""
    policy = args.get("restart_policy") or "no"
    if policy == "no" or current.get("stopped_by_user") or status is None:
        return False
    if policy == "on-failure":
        if status == 0:
            return False
        retries = args.get("restart_retries") or 0
        return not retries or current.get("restart_count", 0) < retries
    return policy in ("always", "unless-stopped")


def _restart(args: dict) -> bool:
    """Start the container again: release what the last run held, prepare it anew and become
    its monitor again (this process is still the child subreaper its init is born under).
    False when a stop came first; ``restarting`` in the state tells a stop that comes later
    to wait for the new run and stop that."""
    from ketch.containers import state
    from ketch.containers.engine import Engine

    current = state.read(args["userdata"])
    count = current.get("restart_count", 0) + 1
    engine = Engine(root=args["root"], runroot=args["runroot"], storage_driver=args["driver"])
    try:
        record = engine._record(args["id"])
        with engine.store.lock(f"container-{args['id']}"):  # the lock ``stop`` sets stopped_by_user under
            if state.read(args["userdata"]).get("stopped_by_user"):
                return False
            state.update(args["userdata"], restarting=True)
            engine._release(record)
            engine._prepare(record)
            engine._network_ready()
    except Exception as exc:  # noqa: BLE001 - nobody is left to tell but the record
        state.update(args["userdata"], restart_error=str(exc), restarting=False)
        _cleanup(args, None)
        return True
    state.update(args["userdata"], restart_count=count)
    _event(args, "restart")
    os.execv(sys.executable, [sys.executable, "-S", "-c", _BOOT,
                              json.dumps({**args, "mode": "start", "restart_count": count}),
                              *sys.argv[len(sys.argv) - 1:]])
    return True  # not reached


def _copy_until_exit(pid: int, master: int | None, out_r: int, err_r: int, log, args: dict | None = None,
                     fifo: str | None = None, stdin_target: int | None = None) -> int:
    """Copy output into the log until the init has exited and its output is drained; meanwhile
    what ketch-monitor also does: --timeout, periodic health checks, attach's stdin."""
    import subprocess

    args = args or {}
    streams = {out_r: "stdout", err_r: "stderr"}
    if master is not None:
        streams[master] = "stdout"
    # O_RDWR: the FIFO always has a writer (us), so it never reads end-of-file between attaches;
    # stdin_once: read-only, so the first attached client's end closes the container's stdin
    mode = os.O_RDONLY if args.get("stdin_once") else os.O_RDWR
    fifo_fd = os.open(fifo, mode | os.O_NONBLOCK) if fifo and stdin_target is not None else None
    started = time.monotonic()
    interval = args.get("health_interval") or 0
    next_health = started + interval
    timed_out = False
    status = None
    while streams or status is None:
        if status is None:
            try:
                reaped, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                reaped, raw = 0, 0
            if reaped == pid:
                status = os.waitstatus_to_exitcode(raw)
                status = 255 if timed_out else status if status >= 0 else 128 - status
            now = time.monotonic()
            if status is None and args.get("timeout") and not timed_out and now - started >= args["timeout"]:
                timed_out = True
                os.kill(pid, 9)
            if status is None and interval and now >= next_health:
                with open(os.path.join(args["userdata"], HEALTH_ARGV_FILE), "rb") as f:
                    command = [a.decode() for a in f.read().split(b"\0") if a]
                subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
                next_health = now + interval
        watched = list(streams) + ([fifo_fd] if fifo_fd is not None and status is None else [])
        ready = select.select(watched, [], [], 0.2 if status is None else 0.5)[0] if watched else []
        if fifo_fd is not None and fifo_fd in ready:
            ready.remove(fifo_fd)
            try:
                data = os.read(fifo_fd, 65536)
                if data and stdin_target is not None:
                    os.write(stdin_target, data)
                elif not data and stdin_target is not None:  # (stdin_once: the client has gone)
                    os.close(fifo_fd)
                    os.close(stdin_target)
                    fifo_fd = stdin_target = None
            except OSError:
                pass
        if status is not None and streams and not ready:
            break  # exited, and nothing more came: a process it left may hold the pipe
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # a pty's master reads EIO once the container side is gone
                data = b""
            if not data:
                del streams[fd]
                os.close(fd)
            elif log is not None:
                log.write(streams[fd], data)
    return status


def _cleanup(args: dict, status: int | None) -> None:
    """Runtime state, mounts and (with --rm) the container: through the engine, imported only now
    that the container is gone (the store's modules are heavier than the monitor)."""
    from ketch.containers.engine import Engine

    try:
        Engine(root=args["root"], runroot=args["runroot"], storage_driver=args["driver"]).cleanup(
            args["id"], remove=args["remove"] and status is not None)
    except Exception as exc:  # noqa: BLE001 - nobody is left to tell but the log
        try:
            with open(os.path.join(args["userdata"], "cleanup-error"), "w") as f:
                f.write(str(exc))
        except OSError:
            pass


if __name__ == "__main__":
    main()
