"""Durations and sizes written as the containers tools write them (docker/go-units)."""

from __future__ import annotations

import time

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration: "Less than a second", "5 minutes", "About an hour", "3 days"..."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


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
