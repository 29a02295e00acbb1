"""JSON for the runtime's start path, through CPython's own C accelerator (``_json``).

Written by hand, in a few lines, for one reason: ``import json`` imports ``re``, and ``re``
imports ``enum``, which together cost about 6 ms at every ``ketch-runtime`` start -- a quarter
of runc's whole ``run`` here. ``_json`` is the C half of the json package: the same scanner and
encoder ``json.loads`` and ``json.dumps`` use, minus their pure-Python set-up. Pretty-printed
output (``state``, ``spec``, ``features``) still uses :mod:`json`. ``_json`` is private to
CPython: it is used only where :mod:`ketch.runtime.private` says it was verified; elsewhere
:func:`loads` and :func:`dumps` are the json package's, with the same results.
"""

from __future__ import annotations

from ketch.runtime.private import json_accelerator

_json = json_accelerator()  # None: not a verified CPython (see private.py): the json package then
_WHITESPACE = " \t\n\r"


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


class _DecoderSettings:
    """The attributes _json.make_scanner reads off a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constants)


def _not_serializable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


if _json is not None:
    _scan = _json.make_scanner(_DecoderSettings())
    # markers=None skips the cycle check: the runtime only encodes trees it built itself.
    _encode = _json.make_encoder(None, _not_serializable, _json.encode_basestring_ascii, None, ": ", ", ",
                                 False, False, True)


def loads(text: str | bytes) -> object:
    """Like json.loads; every error is a ValueError."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    if _json is None:
        return _public_loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
        if not text[end:].strip(_WHITESPACE):
            return value
    except (StopIteration, ValueError, SystemError, RecursionError):
        # The C scanner builds its error from json.decoder, which is not imported here
        # (it then fails with SystemError): the json package tells what is wrong.
        pass
    _public_loads(text)  # raises json.JSONDecodeError, a ValueError that says where
    raise ValueError("not valid JSON")


def _public_loads(text: str) -> object:
    import json

    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def dumps(value: object) -> str:
    """Like json.dumps with its default separators (ASCII output)."""
    if _json is None:
        import json

        return json.dumps(value, check_circular=False)
    return "".join(_encode(value, 0))
