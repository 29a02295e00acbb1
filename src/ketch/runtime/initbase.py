"""What the container's init, its set-up of the root file system and of the process share: the
error a set-up step raises, and writing a small file. (Imported before the fork, as all of the
init's code: after ``pivot_root`` the host's Python library is out of reach.)"""

from __future__ import annotations

from ketch.runtime.paths import write_bytes


class SetupError(Exception):
    """A set-up step failed. ``exit_status`` is set when the program itself cannot be run:
    127 when it is not found, 126 when it cannot be executed (as a shell and podman report it)."""

    def __init__(self, message: str, exit_status: int | None = None) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())
