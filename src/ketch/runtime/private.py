"""CPython's private C modules on a container's start path, behind a version check.

``signal`` and ``socket`` wrap ``_signal`` and ``_socket`` in enums (``enum`` costs milliseconds
to import), ``json`` wraps ``_json`` in code that imports ``re``, and ``hashlib`` loads OpenSSL:
together a large part of ``ketch-runtime run``'s own time. The private modules are used only on
the CPython versions they were checked on (:data:`VERIFIED`); anywhere else, or with
``KETCH_NO_FAST_PATHS=1`` set (what the tests use to run the fallback), the public modules are
used instead, with the same results. ``_sha256`` is gone in 3.12 (``_sha2`` has it since).
"""

from __future__ import annotations

import os
import sys

VERIFIED = ((3, 11), (3, 12), (3, 13))

ENABLED = (sys.implementation.name == "cpython" and sys.version_info[:2] in VERIFIED
           and not os.environ.get("KETCH_NO_FAST_PATHS"))

if ENABLED:
    try:
        import _signal as signal_module  # noqa: F401 - (what this module gives)
        import _socket as socket_module  # noqa: F401
    except ImportError:  # (a build without them)
        ENABLED = False
if not ENABLED:
    import signal as signal_module  # noqa: F401
    import socket as socket_module  # type: ignore[no-redef]  # noqa: F401


def json_accelerator():
    """CPython's ``_json`` (its make_scanner and make_encoder), or None: use :mod:`json`."""
    if not ENABLED:
        return None
    try:
        import _json
    except ImportError:
        return None
    return _json


def sha256():
    """A sha256 constructor: CPython's own C one where verified (no OpenSSL to load), else
    hashlib's."""
    if ENABLED:
        try:
            from _sha256 import sha256 as constructor  # 3.11
            return constructor
        except ImportError:
            pass
        try:
            from _sha2 import sha256 as constructor  # 3.12 and newer
            return constructor
        except ImportError:
            pass
    from hashlib import sha256 as constructor

    return constructor
