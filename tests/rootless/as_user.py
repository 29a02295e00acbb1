"""Run parts of the test suite as an ordinary user: ``python -m tests.rootless.as_user PATHS...``.

A user is made for the run (with subordinate ids, as useradd gives them), the fixture images are
made first as root (the cache is root's), and pytest runs as that user, in the user's home, with
the user's own run directory: the same tests that run for root, now rootless. A test that is
about what only root may do is marked ``root_only`` with its reason, and is skipped there. The
user and everything it ran are removed at the end; the exit status is pytest's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import images
from tests.support.rootless import User

REPO = Path(__file__).resolve().parents[2]
FIXTURES = ("busybox", "busybox-ktest", "multiarch", "whiteouts", "derived")


def main(args: list[str]) -> int:
    for name in FIXTURES:
        images.ensure(name)
    for device in ("/dev/net/tun", "/dev/fuse"):  # (0600 on these machines: MACHINE.md)
        if os.stat(device).st_mode & 0o006 != 0o006:
            os.chmod(device, 0o666)
    user = User()
    try:
        temporary = user.home / "tmp"
        temporary.mkdir()
        os.chown(temporary, user.uid, user.gid)
        env = {**user.env, "TMPDIR": str(temporary), "KETCH_TEST_USER": user.name}
        print(f"as_user: running as {user.name} (uid {user.uid}): {' '.join(args)}", flush=True)
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO,
                              user=user.uid, group=user.gid, extra_groups=[], env=env).returncode
    finally:
        user.remove()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
