"""``images --filter`` as podman (libimage) reads it.

Keys: ``reference`` (a name or glob, with or without tag), ``before``/``since`` (``after``) an
image, ``until`` a time, ``dangling``, ``intermediate``, ``label`` (``label!=`` to exclude),
``id``, ``digest``, ``containers`` (true, false, or a container), ``readonly``. The same key
twice matches either value; different keys must all match.
"""

from __future__ import annotations

import datetime
import fnmatch
import time

from ketch.errors import InvalidInputError, KetchError
from ketch.storage.store import ImageRecord

KEYS = ("reference", "before", "since", "after", "until", "dangling", "intermediate", "label", "label!", "id",
        "digest", "containers", "readonly")


def created_of(record: ImageRecord) -> float:
    created = record.parsed_config.created or ""
    try:
        return datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return record.created


def parse_time(text: str) -> float:
    """A Unix time, an RFC 3339 time or date, or a duration back from now (10m, 2h30m)."""
    import re

    if re.fullmatch(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", text):
        seconds = 0.0
        for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text):
            seconds += float(number) * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
        return time.time() - seconds
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInputError(f"invalid time {text!r}: use RFC 3339, Unix seconds or a duration") from exc
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def _truth(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidInputError(f"invalid {key} filter value {value!r}: use true or false")


def split_filters(items: list[str], allowed: tuple[str, ...], *, malformed: str = "invalid filter {item!r}",
                  unknown: str = "invalid filter {key!r}") -> dict[str, list[str]]:
    """``--filter KEY=VALUE`` flags by key (a key given twice keeps both values); ``malformed`` and
    ``unknown`` are each command's own words for a flag without ``=`` and a key it lacks."""
    by_key: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInputError(malformed.format(item=item, key=key))
        if key not in allowed:
            raise InvalidInputError(unknown.format(item=item, key=key))
        by_key.setdefault(key, []).append(value)
    return by_key


class ImageFilter:
    """A predicate over image records, built once for a listing."""

    def __init__(self, filters: list[str], records: list[ImageRecord], containers: dict[str, int],
                 container_images: dict[str, str] | None = None) -> None:
        from ketch.storage import views

        self.by_key = split_filters(filters, KEYS, malformed="invalid image filter {item!r}: want KEY=VALUE",
                                    unknown="unsupported image filter {key!r}")
        self.records = records
        self.containers = containers
        self.container_images = container_images or {}
        self.parents = views.parents(records)
        self.has_children = set(self.parents.values())
        self._anchors: dict[str, float] = {}

    def _anchor(self, name: str) -> float:
        if name not in self._anchors:
            for record in self.records:
                if record.id.startswith(name) or name in record.names or any(
                        n.endswith("/" + name) or n.endswith("/" + name + ":latest") for n in record.names):
                    self._anchors[name] = created_of(record)
                    break
            else:
                raise KetchError(f"{name}: image not known")
        return self._anchors[name]

    def __call__(self, record: ImageRecord) -> bool:
        for key, values in self.by_key.items():
            if key == "label!":
                if any(self._one("label", v, record) for v in values):
                    return False
                continue
            if not any(self._one(key, v, record) for v in values):
                return False
        return True

    def _one(self, key: str, value: str, record: ImageRecord) -> bool:
        if key == "reference":
            return _reference_matches(value, record.names)
        if key in ("before",):
            return created_of(record) < self._anchor(value)
        if key in ("since", "after"):
            return created_of(record) > self._anchor(value)
        if key == "until":
            return created_of(record) < parse_time(value)
        if key == "dangling":
            return _truth(key, value) == (not record.names and record.id not in self.has_children)
        if key == "intermediate":
            return _truth(key, value) == (not record.names and record.id in self.has_children)
        if key == "label":
            labels = record.parsed_config.labels or {}
            name, has_value, wanted = value.partition("=")
            return name in labels and (not has_value or labels[name] == wanted)
        if key == "id":
            return record.id.startswith(value.removeprefix("sha256:"))
        if key == "digest":
            return record.digest == value or record.digest.startswith(value)
        if key == "containers":
            lowered = value.lower()
            if lowered in ("true", "false", "1", "0"):
                return _truth(key, value) == (self.containers.get(record.id, 0) > 0)
            return self.container_images.get(value) == record.id
        if key == "readonly":
            return _truth(key, value) is False
        return False


def _reference_matches(pattern: str, names: list[str]) -> bool:
    """podman's reference filter: the pattern against the full name, its repository (with and
    without the domain), with and without the tag."""
    for name in names:
        repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        candidates = {name, repo}
        if "/" in name:
            short = name.split("/", 1)[1]
            candidates |= {short, short.rsplit(":", 1)[0] if ":" in short.rsplit("/", 1)[-1] else short}
            if short.startswith("library/"):
                bare = short[len("library/"):]
                candidates |= {bare, bare.rsplit(":", 1)[0]}
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            return True
    return False
