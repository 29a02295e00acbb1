"""Container names: podman's rules, and generated names for containers created without one."""

from __future__ import annotations

import os

from ketch.errors import InvalidInputError

_FIRST = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_REST = _FIRST | set("_.-")

# Two short word lists, as podman (Docker's namesgenerator) makes adjective_noun names.
_ADJECTIVES = ["brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nifty",
               "proud", "quirky", "sharp", "sleepy", "tender", "upbeat", "vivid", "witty", "zealous"]
_NOUNS = ["albatross", "badger", "curlew", "dolphin", "egret", "ferret", "gannet", "heron", "ibis", "jackdaw",
          "kestrel", "lapwing", "marten", "newt", "osprey", "plover", "quail", "raven", "stoat", "tern"]


def check_name(name: str) -> str:
    if not name or name[0] not in _FIRST or not _REST.issuperset(name):
        raise InvalidInputError(f"invalid container name {name!r}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    return name


def generate() -> str:
    # os.urandom rather than secrets: its import (random, hmac) costs milliseconds on every run
    a, n, number = os.urandom(3)
    return f"{_ADJECTIVES[a % len(_ADJECTIVES)]}_{_NOUNS[n % len(_NOUNS)]}{number}"
