"""Durations and sizes written as the containers tools write them (docker/go-units)."""

from __future__ import annotations

import time

from ketch.containers.views import human_duration  # noqa: F401  (the library's, for the commands)

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def since(timestamp: float) -> str:
    """``human_duration`` of the time since ``timestamp`` (Unix seconds), without "ago"."""
    return human_duration(max(0.0, time.time() - timestamp))


def human_size(size: float, precision: int = 3) -> str:
    """go-units' HumanSizeWithPrecision: "2.13MB", "0B" (powers of 1000)."""
    index = 0
    while size >= 1000 and index < len(_DECIMAL_UNITS) - 1:
        size /= 1000
        index += 1
    return f"{size:.{precision}g}{_DECIMAL_UNITS[index]}"


def spaced_size(size: float) -> str:
    """podman's images SIZE column: "2.13 MB"."""
    text = human_size(size)
    cut = len(text.rstrip("BkMGTPEZY"))
    return text[:cut] + " " + text[cut:]


def bytes_size(size: float, precision: int = 4) -> str:
    """go-units' BytesSize: powers of 1024 ("1.5KiB", "64MiB")."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    index = 0
    while size >= 1024 and index < len(units) - 1:
        size /= 1024
        index += 1
    return f"{size:.{precision}g}{units[index]}"
