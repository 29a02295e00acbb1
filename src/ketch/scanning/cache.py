"""The scan cache: one JSON file per layer scan, keyed by what the result depends on — the
layer's diff_id (the chain id for a vfs snapshot, which holds the whole tree up to it) and the
built-in scanner's version — and per external scanner run, by the image's layers and the
scanner's name and version. Vulnerabilities are matched after the cache, from its packages, so a
new database re-matches without re-reading a file. Entries are written whole (a temporary file,
then a rename) and an entry that does not read is scanned again; the directory can be removed
at any time."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from ketch.filelocks import file_lock


class ScanCache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    @staticmethod
    def key(*parts: str) -> str:
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:48]

    def get(self, key: str) -> dict | None:
        if self.directory is None:
            return None
        try:
            with open(self.directory / f"{key}.json", "rb") as file:
                data = json.load(file)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, value: dict) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{key}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w") as file:
                json.dump(value, file, separators=(",", ":"))
            os.replace(temporary, self.directory / f"{key}.json")
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()

    @contextlib.contextmanager
    def computing(self, key: str):
        """Held while one process computes an entry, so another scan of the same layer waits for
        it and reads the result instead of computing it again."""
        if self.directory is None:
            yield
            return
        with file_lock(self.directory / "locks" / f"{key}.lock"):
            yield
