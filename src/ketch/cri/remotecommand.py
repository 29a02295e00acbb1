"""What runs behind a streaming session (:mod:`ketch.cri.streaming`): exec, attach and
port-forward, whichever protocol carries their streams.

- exec runs in a helper process (:func:`ketch.cri.execsync.start`, as ExecSync does, and for the
  same reason: a foreground exec makes its caller a subreaper). Without a terminal the helper's
  stdin, stdout and stderr are pipes to this server, handed on to the process; with one, the
  runtime sends the terminal's master to a console socket this server listens on, and a resize
  sets its size. The exit status comes back through a pipe of its own.
- attach follows the container's log from its end (the monitor writes everything the container
  prints there) and writes what the client sends into the monitor's stdin FIFO; a resize sets
  the size of the container's terminal through its init's fd 0 (the slave side: setting the
  size there resizes the pair and signals the foreground process group, as the master would).
- port-forward connects from a socket made inside the pod's network namespace: a short-lived
  thread enters the namespace, makes the socket and ends (a socket keeps the namespace it was
  made in, and no thread of the server's is left in another namespace).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import sys
import tempfile
import termios
import threading
import time

from ketch.cri import execsync
from ketch.cri.streaming import Channels, StreamRequest, exit_status, internal_error, read_sizes, success
from ketch.errors import KetchError

log = logging.getLogger(__name__)

POLL = 0.05  # how often attach looks at the log and the container's state


class Backend:
    """``sandboxes`` gives the calling thread's :class:`ketch.cri.sandboxes.Sandboxes`,
    ``release`` lets it go when the thread's session ends."""

    def __init__(self, config, sandboxes, release=lambda: None) -> None:
        self.config = config
        self.sandboxes = sandboxes
        self.release = release

    def run(self, request: StreamRequest, channels: Channels) -> None:
        try:
            if request.kind == "exec":
                status = self._exec(request, channels)
            else:
                status = self._attach(request, channels)
        except KetchError as exc:
            status = internal_error(str(exc))
        except Exception as exc:  # noqa: BLE001 - the client gets the failure, the server goes on
            log.exception("streaming %s into %s", request.kind, request.container_id)
            status = internal_error(str(exc))
        finally:
            self.release()
        if status.get("reason") == "InternalError":
            log.warning("streaming session failed", extra={"fields": {
                "kind": request.kind, "container": request.container_id, "error": status["details"]["causes"][0]["message"]}})
        channels.finish(status)

    # -- exec ------------------------------------------------------------------------------

    def _exec(self, request: StreamRequest, channels: Channels) -> dict:
        scratch = tempfile.mkdtemp(prefix="ketch-exec-")
        console_path = os.path.join(scratch, "console.sock")
        listener = None
        if request.tty:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(console_path)
            listener.listen(1)
        try:
            helper_request = execsync.request_for(self.config, self.sandboxes().engine, request.container_id,
                                                  request.cmd, tty=request.tty,
                                                  console_socket=console_path if request.tty else None)
        except BaseException:
            if listener is not None:
                listener.close()
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        local: dict[str, int] = {}  # our ends of the helper's stdio pipes
        given: list[int] = []  # its ends, closed here once it has them

        def stdio(name: str, wanted: bool, ours_reads: bool) -> int:
            if not wanted or request.tty:
                fd = os.open("/dev/null", os.O_RDWR)
            else:
                read_end, write_end = os.pipe()
                local[name], fd = (read_end, write_end) if ours_reads else (write_end, read_end)
            given.append(fd)
            return fd

        try:
            helper = execsync.start(helper_request, stdio("stdin", request.stdin, False),
                                    stdio("stdout", request.stdout, True), stdio("stderr", request.stderr, True))
        finally:
            for fd in given:
                os.close(fd)
        pumps: list[threading.Thread] = []
        master = None
        try:
            if listener is not None:
                master = _receive_console(listener, helper.result_fd)
            if master is not None:
                pumps.append(_start(_copy_out, _reading(master), channels.stdout))
                if channels.stdin is not None:
                    _start(_copy_in, channels.stdin, lambda data: _write_all(master, data), None)
                if channels.resize is not None:
                    _start(_resize_from, channels.resize, master)
            for name, channel in (("stdout", channels.stdout), ("stderr", channels.stderr)):
                if name in local:
                    pumps.append(_start(_copy_out, _reading(local[name]), channel, local[name]))
            if "stdin" in local:
                stdin_fd = local["stdin"]
                if channels.stdin is not None:
                    _start(_copy_in, channels.stdin, lambda data: _write_all(stdin_fd, data),
                           lambda: os.close(stdin_fd))
                else:
                    os.close(stdin_fd)
            result = helper.wait()
            for pump in pumps:
                pump.join()
        finally:
            if master is not None:
                os.close(master)
            if listener is not None:
                listener.close()
            for name in os.listdir(scratch):
                os.unlink(os.path.join(scratch, name))
            os.rmdir(scratch)
        if "error" in result:
            return internal_error(result["error"])
        code = result["exit_code"]
        return success() if code == 0 else exit_status(code, request.cmd)

    # -- attach ----------------------------------------------------------------------------

    def _attach(self, request: StreamRequest, channels: Channels) -> dict:
        from ketch.containers import logs as logfiles
        from ketch.containers.monitor import STDIN_FIFO

        sb = self.sandboxes()
        record = sb.container(request.container_id)
        engine = sb.engine
        current = engine._status(record)
        if current["status"] != "running":
            raise KetchError(f"container {record.id} is not running: cannot attach to it")
        follower = logfiles.LogFollower(engine._log_path(record))
        if channels.stdin is not None:
            fifo_path = os.path.join(engine._userdata(record.id), STDIN_FIFO)
            try:
                fifo = os.open(fifo_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                raise KetchError(f"container {record.id} has no stdin to attach to: it was not created with "
                                 "stdin, or its stdin was closed (stdin_once) by an earlier attach") from exc
            os.set_blocking(fifo, True)
            _start(_copy_in, channels.stdin, lambda data: _write_all(fifo, data), lambda: os.close(fifo))
        if channels.resize is not None and current.get("pid"):
            terminal = _container_terminal(current["pid"])
            if terminal is not None:
                _start(_resize_from, channels.resize, terminal, True)
        while True:
            entries = follower.new_records()
            for _stamp, stream, partial, text in entries:
                target = channels.stderr if stream == "stderr" and channels.stderr is not None else channels.stdout
                if target is not None:
                    try:
                        target.write(text + (b"" if partial else b"\n"))
                    except (OSError, KetchError):
                        return success()  # the client has gone
            if channels.gone():
                return success()
            if not entries:
                current = engine._status(record)
                if current["status"] not in ("running", "paused"):
                    for _stamp, stream, partial, text in follower.new_records():  # the last words
                        target = channels.stderr if stream == "stderr" and channels.stderr else channels.stdout
                        if target is not None:
                            target.write(text + (b"" if partial else b"\n"))
                    return success()
                time.sleep(POLL)

    # -- port-forward ----------------------------------------------------------------------

    def forward(self, request: StreamRequest, port: int, data, error) -> None:
        """Copy between ``data`` (the client's stream) and a connection to ``port`` inside the
        pod; a failure to connect is written to ``error``, the session goes on."""
        try:
            target = self._connect(request.pod_id, port)
        except (OSError, KetchError) as exc:
            self.release()
            message = f"error forwarding port {port} to pod {request.pod_id}: {exc}"
            try:
                error.write(message.encode())
                error.close()
            except (OSError, KetchError):
                pass
            _discard(data)  # what the client sent already: it must not wait in the session unread
            return
        try:
            upstream = _start(_copy_in, data, target.sendall, lambda: _shutdown_write(target))
            _copy_out(_socket_reader(target), data)
            upstream.join()
        finally:
            target.close()
            error.close()

    def _connect(self, pod_id: str, port: int) -> socket.socket:
        sb = self.sandboxes()
        pod = sb.sandbox(pod_id)
        netns = pod.namespace_path("net")
        if netns is None:
            made = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # the node's network
        else:
            made = _socket_in(netns)
        try:
            made.settimeout(10)
            made.connect(("127.0.0.1", port))
            made.settimeout(None)
        except OSError as exc:
            made.close()
            raise KetchError(f"failed to connect to localhost:{port} inside the pod's network namespace: "
                             f"{exc.strerror or exc}") from exc
        finally:
            self.release()
        made.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return made


def _socket_in(netns: str) -> socket.socket:
    """A TCP socket made inside the network namespace at ``netns`` (by a thread that enters it
    and ends)."""
    from ketch import syscalls

    made: list = []

    def enter_and_make() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, syscalls.CLONE_NEWNET)
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except OSError as exc:
            made.append(exc)

    worker = threading.Thread(target=enter_and_make, name="cri-netns")
    worker.start()
    worker.join()
    if isinstance(made[0], OSError):
        raise KetchError(f"entering the pod's network namespace {netns}: {made[0].strerror or made[0]}")
    return made[0]


def _start(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True, name="cri-pump")
    thread.start()
    return thread


def _copy_out(read, channel, fd: int | None = None) -> None:
    """From a local reader to a client's stream, until the reader ends; then the stream is
    closed (and ``fd``, the reader's)."""
    try:
        while True:
            try:
                data = read(65536)
            except OSError:  # a terminal's master reads EIO once its process is gone
                data = b""
            if not data:
                break
            if channel is not None:
                channel.write(data)
    except (OSError, KetchError):
        pass  # the client went away: the process goes on until it ends (as with the kubelet)
    finally:
        if fd is not None:
            os.close(fd)
        if channel is not None:
            try:
                channel.close()
            except (OSError, KetchError):
                pass


def _copy_in(stream, write, done) -> None:
    """From a client's stream to a local writer until the client closes it. Once the writer
    fails (the process or connection is gone), what still comes is read and dropped: one
    stream's unread data would hold up the whole session."""
    try:
        while True:
            data = stream.read(65536)
            if not data:
                break
            write(data)
    except (OSError, ValueError, KetchError):
        if done is not None:
            try:
                done()
            except OSError:
                pass
            done = None
        _discard(stream)
    finally:
        if done is not None:
            try:
                done()
            except OSError:
                pass


def _discard(stream) -> None:
    """Read a client's stream to its end, dropping what comes."""
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except (OSError, KetchError):
            pass
    try:
        while stream.read(65536):
            pass
    except (OSError, KetchError):
        pass


def _reading(fd: int):
    return lambda size: os.read(fd, size)


def _socket_reader(sock: socket.socket):
    return lambda size: sock.recv(size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _shutdown_write(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _set_size(fd: int, width: int, height: int) -> None:
    winsize = height.to_bytes(2, sys.byteorder) + width.to_bytes(2, sys.byteorder) + bytes(4)  # struct winsize
    fcntl.ioctl(fd, termios.TIOCSWINSZ, winsize)


def _resize_from(reader, fd: int, close_after: bool = False) -> None:
    try:
        for width, height in read_sizes(reader):
            if width > 0 and height > 0:
                try:
                    _set_size(fd, width, height)
                except OSError:
                    return
    finally:
        if close_after:
            os.close(fd)


def _container_terminal(pid: int) -> int | None:
    try:
        return os.open(f"/proc/{pid}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None


def _receive_console(listener: socket.socket, result_fd: int) -> int | None:
    """The terminal master the runtime sends to the console socket; None when the helper ends
    first (its exec failed: the result pipe says why)."""
    import select

    while True:
        ready: list = select.select([listener.fileno(), result_fd], [], [], 30)[0]
        if listener.fileno() in ready:
            conn, _ = listener.accept()
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
            return fds[0] if fds else None
        if result_fd in ready or not ready:
            return None
