"""A small subset of Go's text/template, enough for ``--format '{{.Digest}}'``.

Scripts written for skopeo and podman pass such formats; the full template
language is not reimplemented (no Python library speaks it). Supported:
``{{.Field}}``, nested ``{{.A.B}}``, and ``{{json .Field}}``; ``{{json .}}``
prints the whole object.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ketch.errors import InvalidInputError

_ACTION = re.compile(r"\{\{\s*(json\s+)?(\.[A-Za-z0-9_.]*)\s*\}\}")


def _lookup(data: Any, path: str) -> Any:
    value = data
    for part in [p for p in path.split(".") if p]:
        if not isinstance(value, dict) or part not in value:
            raise InvalidInputError(f"template: can't evaluate field {part}")
        value = value[part]
    return value


def _go_print(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go_print(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_print(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def render(template: str, data: Any) -> str:
    def action(match: re.Match) -> str:
        is_json, path = match.groups()
        value = _lookup(data, path)
        return json.dumps(value) if is_json else _go_print(value)

    rest = _ACTION.sub(action, template)
    if "{{" in rest:
        raise InvalidInputError(f"template: unsupported action in {template!r}")
    return rest.replace("\\n", "\n").replace("\\t", "\t")
