"""The CRI server's own log: one JSON object per line (``time``, ``level``, ``msg``, and the
record's ``fields``), as node agents' logs are collected; ``log_format = "text"`` for people.

A formatter of a few lines on the standard ``logging`` rather than a structured-logging
library: the records are the standard library's, and nothing else is wanted of them."""

from __future__ import annotations

import json
import logging
import sys
import time


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs * 1000):06d}Z",
                 "level": record.levelname.lower(), "msg": record.getMessage(), "logger": record.name}
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(config) -> None:
    """Log to stderr at ``config.log_level`` in ``config.log_format`` (called again on SIGHUP)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if config.log_format == "json"
                         else logging.Formatter("ketch cri: %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(config.log_level.upper())
