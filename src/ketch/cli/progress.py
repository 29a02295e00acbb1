"""Progress bars for long transfers, drawn with rich on a terminal only."""

from __future__ import annotations

import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # (ketch.oci's dataclasses cost ~7 ms: not on ketch run's path)
    from typing import Any

    from ketch.oci import Descriptor


class TerminalProgress:
    """A bar per blob on stderr; rich is imported only when this is used."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=Console(stderr=True), transient=False,
        )
        self._tasks: dict[str, Any] = {}  # digest -> rich's TaskID
        self._lock = threading.Lock()

    def __enter__(self) -> TerminalProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _task(self, descriptor: Descriptor) -> Any:
        key = str(descriptor.digest)
        with self._lock:
            if key not in self._tasks:
                label = f"Copying blob {descriptor.digest.encoded[:12]}"
                self._tasks[key] = self._progress.add_task(label, total=descriptor.size)
            return self._tasks[key]

    def blob_started(self, descriptor: Descriptor) -> None:
        self._task(descriptor)

    def blob_advanced(self, descriptor: Descriptor, nbytes: int) -> None:
        self._progress.advance(self._task(descriptor), nbytes)

    def blob_finished(self, descriptor: Descriptor, *, skipped: bool) -> None:
        task = self._task(descriptor)
        if skipped:
            self._progress.update(task, description=f"Copying blob {descriptor.digest.encoded[:12]} skipped: already exists")
        self._progress.update(task, completed=descriptor.size)

    def message(self, text: str) -> None:
        self._progress.console.print(text)


class LineReport:
    """skopeo's and podman's report of a copy as lines ("Getting image source signatures",
    "Copying blob sha256:...", "Writing manifest to image destination"), to ``stream``; with
    ``bars`` (a TerminalProgress), the blobs' bars are drawn there too."""

    def __init__(self, stream, bars: TerminalProgress | None = None) -> None:
        self._stream = stream
        self._bars = bars
        self._lock = threading.Lock()

    def blob_started(self, descriptor: Descriptor) -> None:
        if self._bars is not None:
            self._bars.blob_started(descriptor)

    def blob_advanced(self, descriptor: Descriptor, nbytes: int) -> None:
        if self._bars is not None:
            self._bars.blob_advanced(descriptor, nbytes)

    def blob_finished(self, descriptor: Descriptor, *, skipped: bool) -> None:
        if self._bars is not None:
            self._bars.blob_finished(descriptor, skipped=skipped)

    def message(self, text: str) -> None:
        if self._bars is not None and text.startswith("Copying blob "):
            return  # its bar says it
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()
