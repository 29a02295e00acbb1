"""Where this host's cgroup trees are, for the tests' clean-up and leak checks: every v1
hierarchy and the v2 tree on a hybrid host (``/sys/fs/cgroup/unified``, as here), or the one v2
tree itself on a v2-only host."""

from __future__ import annotations

import os

BASE = "/sys/fs/cgroup"


def v2_only() -> bool:
    return os.path.exists(f"{BASE}/cgroup.controllers")


def roots() -> list[str]:
    """The root directory of every cgroup tree mounted here."""
    if v2_only():
        return [BASE]
    return [os.path.join(BASE, d) for d in sorted(os.listdir(BASE)) if os.path.isdir(os.path.join(BASE, d))]


def v2_root() -> str | None:
    """The v2 tree: the root on a v2-only host, the ``unified`` mount on a hybrid one, or None."""
    if v2_only():
        return BASE
    return f"{BASE}/unified" if os.path.exists(f"{BASE}/unified/cgroup.controllers") else None
