"""How the copy engine reports progress. The library only calls these hooks;
drawing bars is the command line's business."""

from __future__ import annotations

from typing import Protocol

from ketch.oci import Descriptor


class CopyProgress(Protocol):
    def blob_started(self, descriptor: Descriptor) -> None: ...
    def blob_advanced(self, descriptor: Descriptor, nbytes: int) -> None: ...
    def blob_finished(self, descriptor: Descriptor, *, skipped: bool) -> None: ...
    def message(self, text: str) -> None: ...


class NoProgress:
    """Reports nothing (scripts, ``--quiet``, the Python API by default)."""

    def blob_started(self, descriptor: Descriptor) -> None:
        pass

    def blob_advanced(self, descriptor: Descriptor, nbytes: int) -> None:
        pass

    def blob_finished(self, descriptor: Descriptor, *, skipped: bool) -> None:
        pass

    def message(self, text: str) -> None:
        pass
