"""``ketch attach``: a detached container's output as it comes, and our input into its stdin.

There is no daemon holding the container's stdio: its monitor writes the output to the log
(read here as it grows, as ``logs -f`` reads it) and, for a container created with ``-i``,
copies whatever is written into the FIFO ``userdata/attach-stdin`` to the container's stdin
(its pipe, or its terminal). Attaching is therefore reading the log and writing the FIFO; any
number of ketch processes may do it, and leaving (``ctrl-p ctrl-q`` on a terminal, or the end of
our input) never touches the container.
"""

from __future__ import annotations

import os
import signal as signals
import time

from ketch.containers import logs as logfiles
from ketch.containers import state as states

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ketch.containers.engine import ContainerRecord

DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q (podman's default)


def attach(engine, record: ContainerRecord, *, stdin: bool, stdio: tuple[int, int, int], sig_proxy: bool) -> int:
    from ketch.containers.monitor import STDIN_FIFO

    userdata = engine._userdata(record.id)
    follower = logfiles.LogFollower(engine._log_path(record))
    fifo = None
    if stdin:
        try:
            fifo = os.open(os.path.join(userdata, STDIN_FIFO), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            fifo = None
    current = states.read(userdata)
    pid = current.get("pid")
    previous = {}
    if sig_proxy and pid and not record.options.tty:
        for number in (signals.SIGINT, signals.SIGTERM, signals.SIGHUP, signals.SIGUSR1, signals.SIGUSR2,
                       signals.SIGQUIT):
            previous[number] = signals.signal(number, lambda n, _f: _kill(pid, n))
    terminal = _RawTerminal(stdio[0]) if fifo is not None and os.isatty(stdio[0]) else None
    stdin_open = fifo is not None
    try:
        while True:
            import select

            ready = select.select([stdio[0]] if stdin_open else [], [], [], 0.1)[0]
            if ready:
                data = os.read(stdio[0], 65536)
                if not data:
                    stdin_open = False
                elif terminal is not None and DETACH_KEYS in data:
                    _write(fifo, data[:data.index(DETACH_KEYS)])
                    return 0
                else:
                    _write(fifo, data)
            # The state first, then the log: the monitor has written all the output before it
            # records the exit, so an exit seen here means this read is the last one needed.
            current = engine._status(record)
            if current.get("stale"):  # gone, but its monitor has not recorded how yet
                engine._wait_recorded(record, 0, None)
                current = engine._status(record)
            for entry in follower.new_records():
                os.write(stdio[2] if entry[1] == "stderr" else stdio[1], logfiles.render(entry, False))
            if current["status"] not in ("running", "paused"):
                code = current.get("exit_code")
                return -1 if code is None else code
    finally:
        if terminal is not None:
            terminal.restore()
        if fifo is not None:
            os.close(fifo)
        for number, handler in previous.items():
            signals.signal(number, handler)


def _write(fd: int | None, data: bytes) -> None:
    if fd is None or not data:
        return
    deadline = time.monotonic() + 5
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            if time.monotonic() > deadline:
                return  # nobody reads: the container does not take input
            time.sleep(0.01)


def _kill(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


class _RawTerminal:
    def __init__(self, fd: int) -> None:
        import termios
        import tty

        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        tty.setraw(fd)

    def restore(self) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
