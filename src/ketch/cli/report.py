"""``--format`` as the containers tools apply it (containers/common's report package).

- ``json`` (or ``{{json .}}``): the command's JSON instead of a template.
- ``table ...``: a header row, then one row per item, in columns aligned as Go's tabwriter
  aligns them (minimum width 12, padding 2); in such a format every space and ``\\t`` separates
  columns, as in podman 4.
- any other template is run once per item (``{{range .}}`` is added unless the template ranges
  over the items itself) and ends with a newline; ``\\t`` and ``\\n`` mean tab and newline.

The default output of a listing is itself a ``table`` template of the same fields, so the
columns, headers and widths are podman's.
"""

from __future__ import annotations

import re
import sys

from ketch.cli.gotemplate import Template

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing costs ~3 ms to import: not on ps's path)
    from collections.abc import Iterable
    from typing import Any

_JSON = re.compile(r"^\s*(json|\{\{\s*json\s*(\.)?\s*\}\})\s*$")
_RANGE = re.compile(r"(?s)\{\{\s*range\s*\.\s*\}\}.*\{\{\s*end\s*-?\s*\}\}")


def is_json(fmt: str | None) -> bool:
    return fmt is not None and _JSON.match(fmt) is not None


def is_table(fmt: str | None) -> bool:
    return fmt is not None and fmt.startswith("table")


def normalize(fmt: str) -> str:
    """podman's NormalizeFormat: ``table `` dropped (its spaces become tabs), ``\\t`` and ``\\n``
    become a tab and a newline, a newline ends the text. Only outside the template's actions:
    inside one, ``{{"\\n"}}`` is Go's own escape in a string (podman's #15673)."""
    table = fmt.startswith("table ")
    parts = _outside_actions(fmt[len("table "):] if table else fmt)
    text = ""
    for outside, piece in parts:
        if outside:
            piece = piece.replace("\\t", "\t").replace("\\n", "\n")
            if table:
                piece = piece.replace(" ", "\t")
        text += piece
    # a format that ends in a newline, its own or a Go string's ({{"\\n"}}), gets no other (podman's)
    if not text.endswith("\n") and not re.search(r'\\n"\s*}}$', text):
        text += "\n"
    return text


def _outside_actions(fmt: str) -> list[tuple[bool, str]]:
    """The format cut into (outside an action?, text) pieces; an action's quoted strings may hold
    "}}" (so they are skipped whole)."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    while pos < len(fmt):
        start = fmt.find("{{", pos)
        if start < 0:
            pieces.append((True, fmt[pos:]))
            break
        if start > pos:
            pieces.append((True, fmt[pos:start]))
        i = start + 2
        while i < len(fmt) and not fmt.startswith("}}", i):
            if fmt[i] in "\"`'":
                quote, i = fmt[i], i + 1
                while i < len(fmt) and fmt[i] != quote:
                    i += 2 if fmt[i] == "\\" and quote != "`" else 1
            i += 1
        end = min(i + 2, len(fmt))
        pieces.append((False, fmt[start:end]))
        pos = end
    return pieces


def split_camel_case(name: str) -> list[str]:
    """``CreatedAt`` → Created At, ``ImageID`` → Image ID, ``HTTPServer`` → HTTP Server."""
    return re.findall(r"[A-Z]+(?=[A-Z][a-z]|[0-9]|$)|[A-Z]?[a-z]+|[0-9]+|[A-Z]+", name) or [name]


class Headers:
    """What a table's header row is made from: each field gives its column's title (podman's:
    the field name split at its capitals, upper-cased, unless the command says otherwise)."""

    go_type = "map[string]string"

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self._overrides = {k: v.upper() for k, v in (overrides or {}).items()}

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._overrides.get(name) or " ".join(split_camel_case(name)).upper()


class Formatter:
    """One command's output. ``fmt`` None means the command's ``default`` table, headers and all
    (``noheading`` drops them); a user's format gets headers only when it is a table."""

    def __init__(self, fmt: str | None, *, name: str, default: str, headers: dict[str, str] | None = None,
                 noheading: bool = False, funcs: dict | None = None) -> None:
        user = fmt is not None
        text = fmt if fmt is not None else default
        self.table = text.startswith("table ")
        if self.table:
            source = "{{range .}}" + normalize(text) + "{{end -}}"
        elif user:
            source = normalize(text)
            if not _RANGE.search(source):
                source = "{{range .}}" + source + "{{end -}}"
        else:
            source = "{{range .}}" + normalize(text) + "{{end -}}"
        self.template = Template(source, name, funcs)
        self.aligned = self.table or not user
        self.headers = None if noheading or (user and not self.table) else Headers(headers)
        self.text = ""

    def render(self, items: Iterable[Any]) -> str:
        """The whole output for these items (the header row first, where there is one)."""
        out = []
        if self.headers is not None:
            out.append(self.template.execute([self.headers]))
        out.append(self.template.execute(list(items)))
        text = "".join(out)
        return tabwrite(text) if self.aligned else text

    def write(self, items: Iterable[Any], stream=None) -> None:
        (stream or sys.stdout).write(self.render(items))


def tabwrite(text: str, minwidth: int = 12, padding: int = 2) -> str:
    """Go's text/tabwriter (padchar ' ', no flags): cells end at tabs, and a line's last cell
    is not aligned; a column is as wide as its widest cell plus ``padding`` (at least
    ``minwidth``) over each block of consecutive lines that have it; a line without tabs ends
    the blocks above it (Go flushes there)."""
    out: list[str] = []
    block: list[list[str]] = []
    *complete, tail = text.split("\n")
    for raw in complete:
        cells = raw.split("\t")
        block.append(cells)
        if len(cells) == 1:
            out.extend(line + "\n" for line in _format(block, minwidth, padding))
            block = []
    rendered = _format(block, minwidth, padding)
    out.extend(line + "\n" for line in rendered[:len(block) - (1 if tail else 0)])
    if tail:
        block.append(tail.split("\t"))
        out.append(_format(block, minwidth, padding)[-1])
    return "".join(out)


def _format(rows: list[list[str]], minwidth: int, padding: int) -> list[str]:
    rendered: list[str] = []
    _format_block(rows, 0, len(rows), [], rendered, minwidth, padding)
    return rendered


def _format_block(rows: list[list[str]], line0: int, line1: int, widths: list[int], rendered: list[str],
                  minwidth: int, padding: int) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(rows[this]) - 1:
            this += 1
            continue
        _write_lines(rows, line0, this, widths, rendered)
        line0 = this
        width = minwidth
        while this < line1 and column < len(rows[this]) - 1:
            width = max(width, len(rows[this][column]) + padding)
            this += 1
        widths.append(width)
        _format_block(rows, line0, this, widths, rendered, minwidth, padding)
        widths.pop()
        line0 = this
    _write_lines(rows, line0, line1, widths, rendered)


def _write_lines(rows: list[list[str]], line0: int, line1: int, widths: list[int], rendered: list[str]) -> None:
    for i in range(line0, line1):
        parts = []
        for j, cell in enumerate(rows[i]):
            if j < len(widths):
                parts.append(cell + " " * (widths[j] - len(cell)))
            else:
                parts.append(cell)
        rendered.append("".join(parts))
