"""ketch.syscalls over the C extension ketch._linux, and the runtime's choice between creating
the init with one clone3 and going through an intermediate process."""

import subprocess
import sys

import pytest

from ketch import syscalls
from ketch.runtime import init


def test_a_failed_call_is_an_oserror_naming_what_failed(tmp_path):
    with pytest.raises(OSError) as raised:
        syscalls.mount(None, str(tmp_path / "missing"), None, syscalls.MS_REMOUNT)
    assert raised.value.errno == 2 and raised.value.strerror.startswith(f"mount None on {tmp_path}/missing: ")
    with pytest.raises(OSError) as raised:
        syscalls.setns(-1, syscalls.CLONE_NEWNET)
    assert raised.value.errno == 9 and raised.value.strerror.startswith("setns: ")


def test_subreaper_is_reported_and_put_back():
    before = syscalls.set_child_subreaper(True)
    try:
        assert syscalls.set_child_subreaper(True) is True
    finally:
        syscalls.set_child_subreaper(before)
    assert syscalls.set_child_subreaper(before) is before


CLONE_PROGRAM = """
import os, socket
from ketch import syscalls
read_end, write_end = os.pipe()
pid = syscalls.clone(syscalls.CLONE_NEWPID | syscalls.CLONE_NEWUTS)
if pid == 0:
    syscalls.sethostname("cloned-child")
    os.write(write_end, f"{os.getpid()} {socket.gethostname()} {os.stat('/proc/self/ns/uts').st_ino}".encode())
    os._exit(0)
os.close(write_end)
print(os.read(read_end, 200).decode(), os.stat("/proc/self/ns/uts").st_ino, socket.gethostname())
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def test_clone_creates_the_child_in_new_namespaces():
    # In a fresh interpreter: a raw clone is for a single-threaded process, which pytest's may not be.
    result = subprocess.run([sys.executable, "-c", CLONE_PROGRAM], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    (child_pid, child_hostname, child_uts, uts, hostname), (status,) = (
        line.split() for line in result.stdout.splitlines())
    assert child_pid == "1" and child_hostname == "cloned-child" and child_uts != uts
    assert hostname != "cloned-child" and status == "0"


@pytest.mark.parametrize(("namespaces", "extra", "direct"), [
    ([{"type": "pid"}, {"type": "mount"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}], {}, True),
    ([{"type": "pid"}, {"type": "mount"}, {"type": "cgroup"}, {"type": "network", "path": "/proc/1/ns/net"}], {},
     True),
    ([{"type": "pid"}, {"type": "mount"}, {"type": "user"}], {}, False),
    ([{"type": "pid", "path": "/proc/1/ns/pid"}, {"type": "mount"}], {}, False),
    ([{"type": "pid"}, {"type": "time"}], {}, False),
    ([{"type": "pid"}], {"timeOffsets": {"monotonic": {"secs": 1}}}, False),
    ([{"type": "pid"}, {"type": "bogus"}], {}, False),
])
def test_which_configurations_get_their_init_in_one_clone(namespaces, extra, direct):
    flags = init.direct_clone_flags({"namespaces": namespaces, **extra})
    assert (flags is not None) is direct
    if direct:
        expected = 0
        for ns in namespaces:
            if not ns.get("path") and ns["type"] != "cgroup":  # the cgroup namespace comes after the join
                expected |= init.NS_FLAGS[ns["type"]]
        assert flags == expected
