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
    from ketch import syscalls
    from ketch.containers import driver as drivers
    from ketch.containers import logs, state

    report = args["report_fd"]
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    container_id, userdata = args["id"], args["userdata"]
    log = logs.LogWriter(args["log_path"]) if args["log_driver"] == "k8s-file" else None
    devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        runtime = drivers.for_container(args["runtime"], args["run_dir"])
        pid, master = runtime.create(container_id, args["bundle"], terminal=args["tty"],
                                     stdio=(devnull, out_w, err_w), preserve_fds=args["preserve_fds"])
        for fd in range(3, 3 + args["preserve_fds"]):
            os.close(fd)  # the container has them now
        os.close(out_w)
        os.close(err_w)
        state.started(userdata, pid=pid, pid_start=state.start_time(pid), started_at=time.time(),
                      monitor_pid=os.getpid(), monitor_start=state.start_time(os.getpid()))
        runtime.start(container_id)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to ``ketch run -d`` as one line
        os.write(report, f"error {exc}".encode()[:4000])
        os.close(report)  # ``ketch run -d`` holds the container's lock until it has read this
        _cleanup(args, None)
        os._exit(1)
    if args.get("notify_ready"):
        _notify_ready(args["notify_ready"], os.getpid())
    os.write(report, f"ok {pid}".encode())
    os.close(report)
    os.close(devnull)
    exit_file = os.path.join(userdata, EXIT_FILE)
    finish = [sys.executable, "-S", "-c", sys.argv[0] if sys.argv[0] != "-c" else _BOOT,
              json.dumps({**args, "mode": "finish"}), *sys.argv[2:]]
    if os.access(NATIVE, os.X_OK) and os.environ.get("KETCH_MONITOR") != "python":
        if log is not None:
            log.close()
        fds = [out_r, err_r] + ([master] if master is not None else [])
        for fd in fds:
            os.set_inheritable(fd, True)
        os.execv(NATIVE, [NATIVE, args["log_path"] if log is not None else "-", exit_file, str(pid), str(out_r),
                          str(err_r), str(master if master is not None else -1), "--", *finish])
    status = _copy_until_exit(pid, master, out_r, err_r, log)
    if log is not None:
        log.close()
    state.write_exit_file(exit_file, status)
    _finish(args)


_BOOT = "import sys; sys.path.insert(0, sys.argv[2]); from ketch.containers.monitor import main; main()"


def _finish(args: dict) -> None:
    """The container has exited: its status into state.json, then the cleanup."""
    from ketch.containers import state

    status = state.read_exit_file(os.path.join(args["userdata"], EXIT_FILE))
    current = state.read(args["userdata"])
    if current.get("status") == "running" or current.get("exit_code") is None:
        state.exited(args["userdata"], status if status is not None else -1)
    _cleanup(args, status)


def _copy_until_exit(pid: int, master: int | None, out_r: int, err_r: int, log) -> int:
    """Copy output into the log until the init has exited and its output is drained."""
    streams = {out_r: "stdout", err_r: "stderr"}
    if master is not None:
        streams[master] = "stdout"
    status = None
    while streams or status is None:
        if status is None:
            try:
                reaped, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                reaped, raw = 0, 0
            if reaped == pid:
                status = os.waitstatus_to_exitcode(raw)
                status = status if status >= 0 else 128 - status
        ready = select.select(list(streams), [], [], 0.2 if status is None else 0.5)[0] if streams else []
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


def _notify_ready(socket_path: str, main_pid: int) -> None:
    """--sdnotify=conmon: tell systemd we are ready (the container runs)."""
    import socket

    address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(f"MAINPID={main_pid}\nREADY=1\n".encode(), address)
        except OSError:
            pass


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
