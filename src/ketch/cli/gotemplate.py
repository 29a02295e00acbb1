"""Go's text/template, the part podman, buildah and skopeo users write in ``--format``.

No maintained Python library implements Go's template language, and every script written for
the Go tools passes such templates, so this is written by hand, after the language's
documentation: text and actions with trim markers (``{{- ... -}}``) and comments; pipelines
with ``|``; fields (``.A.B``), methods with arguments (``.Label "k"``), variables (``$``,
``$x := ...``, ``$x = ...``), parenthesized pipelines; ``if``/``else if``/``else``, ``range``
(with ``$i, $v :=``, ``else``, ``break``, ``continue``), ``with``/``else``, ``define``,
``template`` and ``block``; string, raw string, character, number, boolean and nil literals; the
builtin functions (and, or, not, len, index, slice, print, printf, println, eq, ne, lt, le, gt,
ge, html, js, urlquery, call) and the functions the containers tools add (json, lower, upper,
title, split, join, truncate, pad). Values print as Go's ``fmt`` prints them (``[a b]``,
``map[k:v]``, ``{a b}`` for structs, ``<no value>`` for a missing map key).

Python values stand for Go values: ``str``, ``int``, ``float``, ``bool``, ``None`` (nil), lists
(slices), dicts (maps), :class:`GoStruct` (a struct: a missing field is an error) and any other
object (a struct whose exported fields and methods are its public attributes).
"""

from __future__ import annotations

import datetime
import json
import re

from ketch.errors import InvalidInputError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing costs ~3 ms to import: not on ps's path)
    from collections.abc import Callable
    from typing import Any


class TemplateError(InvalidInputError):
    """A template does not parse, or fails while it runs (Go's messages)."""


class GoStruct(dict):
    """A Go struct: fields in declaration order; looking up a field it lacks is an error."""

    go_type = "struct"


class GoTime:
    """A time.Time: prints as Go's ``Time.String()``."""

    __slots__ = ("moment", "nanos")

    def __init__(self, moment: datetime.datetime, nanos: int | None = None) -> None:
        self.moment = moment
        self.nanos = moment.microsecond * 1000 if nanos is None else nanos

    @classmethod
    def from_unix(cls, seconds: float) -> GoTime:
        whole = int(seconds // 1)
        moment = datetime.datetime.fromtimestamp(whole, datetime.UTC)
        return cls(moment, int(round((seconds - whole) * 1e9)) % 1_000_000_000)

    def __str__(self) -> str:
        if self.moment.year <= 1:  # Go's zero time
            return "0001-01-01 00:00:00 +0000 UTC"
        local = self.moment.astimezone()
        fraction = f".{self.nanos:09d}".rstrip("0").rstrip(".")
        offset = local.strftime("%z")
        zone = local.tzname() or offset
        if zone.startswith(("+", "-")) and zone.replace(":", "") == offset:
            zone = offset
        return local.strftime("%Y-%m-%d %H:%M:%S") + fraction + f" {offset} {zone}"

    def Unix(self) -> int:  # noqa: N802 - Go's method name
        return int(self.moment.timestamp())

    def Format(self, layout: str) -> str:  # noqa: N802
        return go_time_format(self.moment.astimezone(), layout, self.nanos)


class _Missing:
    """What a missing map key evaluates to (Go's invalid reflect.Value)."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


# -- printing, as Go's fmt ------------------------------------------------------------


def go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64): what %v prints for a float64."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0" if str(value)[0] != "-" else "-0"
    text = repr(value)
    sign = "-" if text.startswith("-") else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + int(exponent or 0)  # position of the decimal point in whole+fraction
    if whole.strip("0") == "":
        point -= len(whole + fraction) - len((whole + fraction).lstrip("0"))
    digits = digits.rstrip("0") or "0"
    exp = point - 1
    if exp < -4 or exp >= 6:  # %v is %g at the shortest precision, which switches to %e at 6
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_print(value: Any, top: bool = True) -> str:
    """``fmt.Sprint(value)`` (``%v``)."""
    if isinstance(value, str):
        return value
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, GoStruct):
        return "{" + " ".join(go_print(v, False) for v in value.values()) + "}"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_print(k, False)}:{go_print(v, False)}" for k, v in _sorted_items(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_print(v, False) for v in value) + "]"
    if isinstance(value, GoTime):
        return str(value)
    fields = getattr(value, "go_fields", None)
    if fields is not None:
        return "{" + " ".join(go_print(getattr(value, f), False) for f in fields) + "}"
    return str(value)


def _sorted_items(mapping: dict) -> list:
    try:
        return sorted(mapping.items(), key=lambda kv: kv[0])
    except TypeError:
        return sorted(mapping.items(), key=lambda kv: str(kv[0]))


def _type_name(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, GoStruct):
        return value.go_type
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return getattr(value, "go_type", type(value).__name__)


def go_json(value: Any) -> str:
    """The ``json`` function: encoding/json without HTML escaping, no trailing newline."""
    return json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, GoTime):
        return value.moment.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is MISSING:
        return None
    fields = getattr(value, "go_fields", None)
    if fields is not None:
        return {f: _jsonable(getattr(value, f)) for f in fields}
    return value


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+)?)?([a-zA-Z%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """``fmt.Sprintf`` for the verbs templates use: v s d q t x X o b c e E f F g G U, with
    flags, width and precision."""
    out = []
    pos = 0
    index = 0
    for match in _VERB.finditer(fmt):
        out.append(fmt[pos:match.start()])
        pos = match.end()
        flags, width, precision, verb = match.groups()
        if verb == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(args[index]) if index < len(args) else None
            index += 1
        if precision == "*":
            precision = str(args[index]) if index < len(args) else None
            index += 1
        if index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        value = args[index]
        index += 1
        out.append(_format_one(value, flags, int(width) if width else None,
                               None if precision is None else int(precision or 0), verb))
    out.append(fmt[pos:])
    if index < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_type_name(a)}={go_print(a)}" for a in args[index:]) + ")")
    return "".join(out)


def _format_one(value: Any, flags: str, width: int | None, precision: int | None, verb: str) -> str:
    if value is MISSING:
        value = None
    if verb == "T":
        pass
    elif verb in "dboxXc" and isinstance(value, bool) or verb in "dboxXc" and not isinstance(value, int) and \
            not (verb in "xX" and isinstance(value, str)):
        if verb in "xX" and isinstance(value, float):
            text = value.hex()
        else:
            return f"%!{verb}({_type_name(value)}={go_print(value)})"
    if verb == "v" or verb == "s":
        text = go_print(value)
        if precision is not None:
            text = text[:precision]
    elif verb == "q":
        text = json.dumps(go_print(value), ensure_ascii=False) if not isinstance(value, int) or isinstance(
            value, bool) else "'" + chr(value) + "'"
    elif verb == "t":
        text = ("true" if value else "false") if isinstance(value, bool) else f"%!t({_type_name(value)}={go_print(value)})"
    elif verb == "d":
        text = str(value)
        if "+" in flags and value >= 0:
            text = "+" + text
    elif verb in "xX":
        if isinstance(value, str):
            text = value.encode().hex()
        elif isinstance(value, int):
            text = format(value, "x")
            if "#" in flags:
                text = "0x" + text
        if verb == "X":
            text = text.upper()
    elif verb == "o":
        text = format(value, "o")
    elif verb == "b":
        text = format(value, "b")
    elif verb == "c":
        text = chr(value)
    elif verb == "T":
        text = _type_name(value)
    elif verb == "U":
        text = f"U+{value:04X}"
    elif verb in "eEfFgG":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"%!{verb}({_type_name(value)}={go_print(value)})"
        number = float(value)
        if verb in "gG" and precision is None:
            text = go_float(number)
            if verb == "G":
                text = text.upper()
        else:
            spec = verb if verb != "F" else "f"
            text = format(number, f".{6 if precision is None else precision}{spec}")
            if verb in "eE":
                text = re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", text)
        if "+" in flags and number >= 0:
            text = "+" + text
    else:
        return f"%!{verb}({_type_name(value)}={go_print(value)})"
    if width is not None and len(text) < width:
        if "-" in flags:
            text = text.ljust(width)
        elif "0" in flags and verb in "dxXobeEfFgG":
            sign = text[0] if text[:1] in "+-" else ""
            text = sign + text[len(sign):].rjust(width - len(sign), "0")
        else:
            text = text.rjust(width)
    return text


# -- lexing -------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<comment>/\*.*?\*/)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?)i?)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<variable>\$[A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE | re.DOTALL)

_KEYWORDS = {"block", "break", "continue", "define", "else", "end", "if", "range", "nil", "template", "with"}


class _Tok:
    __slots__ = ("kind", "text", "line")

    def __init__(self, kind: str, text: str, line: int) -> None:
        self.kind, self.text, self.line = kind, text, line

    def __repr__(self) -> str:
        return f"{self.kind}:{self.text!r}"


def _lex(source: str, name: str) -> list[tuple[str, Any, int]]:
    """(``text``, str, line) and (``action``, [tokens], line) items, with trim markers applied."""
    items: list[tuple[str, Any, int]] = []
    pos = 0
    line = 1
    trim_next = False
    while True:
        start = source.find("{{", pos)
        text = source[pos:] if start < 0 else source[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        trim_next = False
        if start < 0:
            if text:
                items.append(("text", text, line))
            return items
        inner_start = start + 2
        if source.startswith("- ", inner_start) or source.startswith("-\t", inner_start) or \
                source.startswith("-\n", inner_start) or source.startswith("-\r", inner_start):
            text = text.rstrip(" \t\r\n")
            inner_start += 1
        if text:
            items.append(("text", text, line))
        line += source.count("\n", pos, start)
        action_line = line
        tokens, end, trim_next = _lex_action(source, inner_start, name, line)
        line += source.count("\n", start, end)
        pos = end
        if tokens is not None:
            items.append(("action", tokens, action_line))


def _lex_action(source: str, pos: int, name: str, line: int) -> tuple[list[_Tok] | None, int, bool]:
    """The tokens of one action starting at ``pos`` (after ``{{``), the position after ``}}``
    and whether the text after it is trimmed (`` -}}``). A comment action gives no tokens."""
    tokens: list[_Tok] = []
    depth = 0
    stripped = source[pos:].lstrip(" \t\r\n")
    if stripped.startswith("/*"):
        close = source.find("*/", pos)
        if close < 0:
            raise TemplateError(f"template: {name}:{line}: unclosed comment")
        after = close + 2
        rest = source[after:]
        trimmed = rest.lstrip(" \t\r\n")
        if trimmed.startswith("-}}") and len(rest) != len(trimmed):
            return None, after + (len(rest) - len(trimmed)) + 3, True
        if rest.startswith("}}"):
            return None, after + 2, False
        raise TemplateError(f"template: {name}:{line}: comment ends before closing delimiter")
    while True:
        if pos >= len(source):
            raise TemplateError(f"template: {name}:{line}: unclosed action")
        if source.startswith("}}", pos) and depth == 0:
            return tokens, pos + 2, False
        if source[pos:pos + 1] in (" ", "\t", "\n", "\r") and source.startswith("-}}", pos + 1) and depth == 0:
            return tokens, pos + 4, True
        match = _TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"template: {name}:{line}: unexpected {source[pos]!r} in command")
        kind = match.lastgroup or ""
        text = match.group()
        pos = match.end()
        if kind == "space":
            if "\n" in text and depth == 0:
                pass  # newlines are allowed inside actions since Go 1.16
            tokens.append(_Tok("space", text, line))
            continue
        if kind == "comment":
            continue
        if kind == "lparen":
            depth += 1
        elif kind == "rparen":
            depth -= 1
            if depth < 0:
                raise TemplateError(f"template: {name}:{line}: unexpected right paren")
        elif kind == "ident" and text in ("true", "false"):
            kind = "bool"
        elif kind == "ident" and text in _KEYWORDS:
            kind = "keyword"
        elif kind == "number" and source[pos:pos + 1] == "." and source[pos + 1:pos + 2].isalpha():
            pass
        tokens.append(_Tok(kind, text, line))


# -- parsing ------------------------------------------------------------------------------

class _Node:
    __slots__ = ()


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Pipeline(_Node):
    __slots__ = ("decl", "assign", "commands", "line", "source")

    def __init__(self, decl: list[str], assign: bool, commands: list, line: int, source: str) -> None:
        self.decl, self.assign, self.commands, self.line, self.source = decl, assign, commands, line, source


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pipe: _Pipeline) -> None:
        self.pipe = pipe


class _Branch(_Node):
    __slots__ = ("kind", "pipe", "body", "else_body")

    def __init__(self, kind: str, pipe: _Pipeline, body: list, else_body: list | None) -> None:
        self.kind, self.pipe, self.body, self.else_body = kind, pipe, body, else_body


class _Call(_Node):
    __slots__ = ("name", "pipe")

    def __init__(self, name: str, pipe: _Pipeline | None) -> None:
        self.name, self.pipe = name, pipe


class _Control(_Node):
    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


# operands: ("field", [names]), ("var", name, [names]), ("dot",), ("lit", value), ("ident", name),
# ("pipe", _Pipeline, [names]), ("nil",)


class _Parser:
    def __init__(self, items: list, name: str, source: str) -> None:
        self.items = items
        self.pos = 0
        self.name = name
        self.source = source
        self.defines: dict[str, list] = {}
        self.vars: list[list[str]] = [["$"]]

    def error(self, line: int, message: str) -> TemplateError:
        return TemplateError(f"template: {self.name}:{line}: {message}")

    def parse(self) -> list:
        body, end = self.list_until(set())
        if end is not None:
            kind, line = end
            raise self.error(line, f"unexpected {{{{{kind}}}}}")
        return body

    def list_until(self, stops: set[str]) -> tuple[list, tuple[str, int] | None]:
        """Nodes up to one of the ``stops`` keywords (end, else); the keyword met, or None at EOF."""
        nodes: list = []
        while self.pos < len(self.items):
            kind, value, line = self.items[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(_Text(value))
                continue
            significant = [t for t in value if t.kind != "space"]
            if not significant:
                raise self.error(line, "missing value for command")
            head = significant[0]
            if head.kind == "keyword":
                word = head.text
                rest = value[value.index(head) + 1:]  # spaces kept: they separate operands
                if word in stops:
                    self.pending = rest
                    return nodes, (word, line)
                if word in ("if", "range", "with"):
                    nodes.append(self.branch(word, rest, line))
                elif word in ("end", "else"):
                    raise self.error(line, f"unexpected {{{{{word}}}}}")
                elif word in ("break", "continue"):
                    nodes.append(_Control(word))
                elif word == "define":
                    self.define(rest, line)
                elif word in ("template", "block"):
                    nodes.append(self.template_call(word, rest, line))
                elif word == "nil":
                    raise self.error(line, "nil is not a command")
                continue
            nodes.append(_Action(self.pipeline(value, line)))
        return nodes, None

    def branch(self, kind: str, tokens: list, line: int) -> _Branch:
        self.vars.append([])
        try:
            pipe = self.pipeline(tokens, line, allow_range_decl=(kind == "range"))
            body, end = self.list_until({"end", "else"})
            if end is None:
                raise self.error(line, "unexpected EOF")
            else_body = None
            if end[0] == "else":
                rest = [t for t in self.pending if t.kind != "space"]
                if rest and rest[0].kind == "keyword" and rest[0].text in ("if", "with") and kind in ("if", "with"):
                    # else if / else with: a nested branch that ends with this one's {{end}}
                    if rest[0].text != kind:
                        raise self.error(end[1], f"expected end; found {rest[0].text}")
                    tail = self.pending[self.pending.index(rest[0]) + 1:]
                    else_body = [self.branch(kind, tail, end[1])]
                    return _Branch(kind, pipe, body, else_body)
                if rest:
                    raise self.error(end[1], f"unexpected {rest[0].text!r} in else")
                else_body, end = self.list_until({"end"})
                if end is None:
                    raise self.error(line, "unexpected EOF")
            return _Branch(kind, pipe, body, else_body)
        finally:
            self.vars.pop()

    def define(self, tokens: list, line: int) -> None:
        tokens = [t for t in tokens if t.kind != "space"]
        if len(tokens) != 1 or tokens[0].kind not in ("string", "raw"):
            raise self.error(line, "define takes a name")
        name = _unquote(tokens[0].text)
        body, end = self.list_until({"end"})
        if end is None:
            raise self.error(line, "unexpected EOF")
        self.defines[name] = body

    def template_call(self, word: str, tokens: list, line: int) -> _Call:
        significant = [t for t in tokens if t.kind != "space"]
        if not significant or significant[0].kind not in ("string", "raw"):
            raise self.error(line, f"{word} takes a template name")
        name = _unquote(significant[0].text)
        rest = tokens[tokens.index(significant[0]) + 1:]
        pipe = self.pipeline(rest, line) if len(significant) > 1 else None
        if word == "block":
            body, end = self.list_until({"end"})
            if end is None:
                raise self.error(line, "unexpected EOF")
            self.defines.setdefault(name, body)
        return _Call(name, pipe)

    # pipelines ---------------------------------------------------------------------------

    def pipeline(self, tokens: list, line: int, allow_range_decl: bool = False) -> _Pipeline:
        source = "".join(t.text for t in tokens).strip()
        toks = list(tokens)
        decl: list[str] = []
        assign = False
        significant = [t for t in toks if t.kind != "space"]
        # $x := ..., $x = ..., $i, $v := ...
        if significant and significant[0].kind == "variable":
            if len(significant) > 1 and significant[1].kind in ("declare", "assign"):
                decl = [significant[0].text]
                assign = significant[1].kind == "assign"
                toks = toks[toks.index(significant[1]) + 1:]
            elif allow_range_decl and len(significant) > 3 and significant[1].kind == "comma" and \
                    significant[2].kind == "variable" and significant[3].kind == "declare":
                decl = [significant[0].text, significant[2].text]
                toks = toks[toks.index(significant[3]) + 1:]
        if decl and not assign:
            self.vars[-1].extend(decl)
        elif decl and assign and not self._known(decl[0]):
            raise self.error(line, f"undefined variable {decl[0]!r}")
        commands = []
        current: list = []
        for tok in toks:
            if tok.kind == "pipe":
                commands.append(current)
                current = []
            else:
                current.append(tok)
        commands.append(current)
        parsed = []
        for command in commands:
            operands = self.operands(command, line)
            if not operands:
                raise self.error(line, "missing value for command")
            parsed.append(operands)
        for command in parsed[1:]:
            if command[0][0] in ("lit", "nil"):
                raise self.error(line, "non executable command in pipeline stage 2")
        return _Pipeline(decl, assign, parsed, line, source)

    def _known(self, name: str) -> bool:
        return any(name in scope for scope in self.vars)

    def operands(self, tokens: list, line: int) -> list:
        out = []
        i = 0
        tokens = list(tokens)
        while i < len(tokens):
            tok = tokens[i]
            if tok.kind == "space":
                i += 1
                continue
            operand, i = self.operand(tokens, i, line)
            # a term must be followed by space, a field chain or the end
            if i < len(tokens) and tokens[i].kind not in ("space",):
                raise self.error(line, f"unexpected {tokens[i].text!r} in operand")
            out.append(operand)
        return out

    def operand(self, tokens: list, i: int, line: int) -> tuple[tuple, int]:
        tok = tokens[i]
        kind = tok.kind
        i += 1
        if kind == "field":
            operand: tuple = ("field", tok.text.split(".")[1:])
        elif kind == "dot":
            operand = ("dot",)
        elif kind == "variable":
            if not self._known(tok.text):
                raise self.error(line, f"undefined variable {tok.text!r}")
            operand = ("var", tok.text, [])
        elif kind in ("string", "raw"):
            operand = ("lit", _unquote(tok.text))
        elif kind == "char":
            operand = ("lit", ord(_unquote('"' + tok.text[1:-1] + '"')))
        elif kind == "bool":
            operand = ("lit", tok.text == "true")
        elif kind == "number":
            operand = ("lit", _number(tok.text, self.error(line, f"bad number syntax: {tok.text!r}")))
        elif kind == "keyword" and tok.text == "nil":
            operand = ("nil",)
        elif kind == "ident":
            operand = ("ident", tok.text)
        elif kind == "lparen":
            depth = 1
            j = i
            while j < len(tokens) and depth:
                if tokens[j].kind == "lparen":
                    depth += 1
                elif tokens[j].kind == "rparen":
                    depth -= 1
                j += 1
            if depth:
                raise self.error(line, "unclosed left paren")
            operand = ("pipe", self.pipeline(tokens[i:j - 1], line), [])
            i = j
        else:
            raise self.error(line, f"unexpected {tok.text!r} in operand")
        # a chain of fields after a variable or a parenthesized pipeline: $x.A.B, (...).A
        if i < len(tokens) and tokens[i].kind == "field":
            chain = tokens[i].text.split(".")[1:]
            if operand[0] == "var":
                operand = ("var", operand[1], chain)
            elif operand[0] == "pipe":
                operand = ("pipe", operand[1], chain)
            elif operand[0] == "dot":
                operand = ("field", chain)
            else:
                raise self.error(line, f"unexpected . after term {tok.text!r}")
            i += 1
        return operand, i


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    try:
        return json.loads(text.replace("\\'", "'").replace("\\a", "\\u0007").replace("\\v", "\\u000b")
                          .replace("\\x", "\\u00"), strict=False)
    except ValueError as exc:
        raise TemplateError(f"template: bad string {text}") from exc


def _number(text: str, error: TemplateError) -> int | float:
    clean = text.replace("_", "")
    try:
        if clean.lower().lstrip("+-").startswith(("0x", "0b", "0o")):
            return int(clean, 0)
        if re.fullmatch(r"[+-]?\d+", clean):
            return int(clean)
        return float(clean)
    except ValueError as exc:
        raise error from exc


# -- execution ----------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def truthy(value: Any) -> bool:
    if value is None or value is MISSING:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple)):
        return bool(value)
    if isinstance(value, GoStruct):
        return True
    if isinstance(value, dict):
        return bool(value)
    return True


def _want(value: Any, kind: type, fname: str, position: int = 1) -> Any:
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is str and value is MISSING:
        return ""
    want = {str: "string", int: "int", list: "[]string"}[kind]
    raise TemplateError(f"wrong type for value; expected {want}; got {_type_name(value)}")


def _title(text: str) -> str:
    """strings.Title: every letter that follows a separator (anything but a letter, digit or
    underscore) upper-cased."""
    out = []
    previous = " "
    for ch in text:
        separator = not (previous.isalnum() or previous == "_")
        out.append(ch.upper() if separator else ch)
        previous = ch
    return "".join(out)


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict) and not isinstance(item, GoStruct):
            item = item.get(key, "" if isinstance(item, dict) and all(isinstance(v, str) for v in item.values())
                            else None)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"error calling index: cannot index slice/array with type {_type_name(key)}")
            if not 0 <= key < len(item.encode() if isinstance(item, str) else item):
                raise TemplateError(f"error calling index: index out of range: {key}")
            item = item.encode()[key] if isinstance(item, str) else item[key]  # a string's bytes
        elif item is None:
            raise TemplateError("error calling index: index of untyped nil")
        else:
            raise TemplateError(f"error calling index: can't index item of type {_type_name(item)}")
    return item


def _slice(item: Any, *bounds: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise TemplateError(f"error calling slice: can't slice item of type {_type_name(item)}")
    if len(bounds) > 3:
        raise TemplateError("error calling slice: too many slice indexes")
    values = list(bounds) + [None] * (2 - len(bounds))
    start = values[0] or 0
    end = len(item) if values[1] is None else values[1]
    if not 0 <= start <= end <= len(item):
        raise TemplateError(f"error calling slice: index out of range: {end}")
    return item[start:end]


def _compare(op: str):
    def compare(a: Any, *others: Any) -> bool:
        if op == "eq":
            if not others:
                raise TemplateError("error calling eq: missing argument for comparison")
            return any(_basic(a) == _basic(b) for b in others)
        if len(others) != 1:
            raise TemplateError(f"wrong number of args for {op}: want 2 got {len(others) + 1}")
        b = others[0]
        a, b = _basic(a), _basic(b)
        if op == "ne":
            return a != b
        if isinstance(a, bool) or isinstance(b, bool) or type(a) is not type(b) and not (
                isinstance(a, (int, float)) and isinstance(b, (int, float))):
            raise TemplateError(f"error calling {op}: incompatible types for comparison")
        try:
            return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
        except TypeError as exc:
            raise TemplateError(f"error calling {op}: invalid type for comparison") from exc
    return compare


def _basic(value: Any) -> Any:
    if value is MISSING:
        return None
    return value


def _sprint(*args: Any) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_print(arg))
    return "".join(out)


def _html(*args: Any) -> str:
    import html

    return html.escape(_sprint(*args)).replace("&#x27;", "&#39;")


def _js(*args: Any) -> str:
    text = _sprint(*args)
    out = []
    for ch in text:
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "<>&=" or ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_sprint(*args))


def _len(value: Any) -> int:
    if isinstance(value, (str, list, tuple, dict)) and not isinstance(value, GoStruct):
        return len(value.encode() if isinstance(value, str) else value)
    raise TemplateError(f"error calling len: len of type {_type_name(value)}")


def _truncate(text: Any, length: Any) -> str:
    text = _want(text, str, "truncate")
    length = _want(length, int, "truncate", 2)
    return text if len(text) < length else text[:length]


def _pad(text: Any, prefix: Any, suffix: Any) -> str:
    text = _want(text, str, "pad")
    return text if not text else " " * prefix + text + " " * suffix


def _split(text: Any, sep: Any) -> list[str]:
    text, sep = _want(text, str, "split"), _want(sep, str, "split", 2)
    if sep == "":
        return list(text)
    return text.split(sep)


def _join(items: Any, sep: Any) -> str:
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise TemplateError(f"wrong type for value; expected []string; got {_type_name(items)}")
    return _want(sep, str, "join", 2).join(items)


def _call(fn: Any, *args: Any) -> Any:
    if not callable(fn):
        raise TemplateError(f"error calling call: non-function of type {_type_name(fn)}")
    return fn(*args)


BUILTINS: dict[str, Callable[..., Any]] = {
    "print": _sprint,
    "printf": lambda fmt, *args: go_sprintf(_want(fmt, str, "printf"), *args),
    "println": lambda *args: " ".join(go_print(a) for a in args) + "\n",
    "len": _len,
    "index": _index,
    "slice": _slice,
    "not": lambda value: not truthy(value),
    "eq": _compare("eq"), "ne": _compare("ne"), "lt": _compare("lt"), "le": _compare("le"),
    "gt": _compare("gt"), "ge": _compare("ge"),
    "html": _html, "js": _js, "urlquery": _urlquery,
    "call": _call,
    # containers/common's report functions
    "json": go_json,
    "lower": lambda text: _want(text, str, "lower").lower(),
    "upper": lambda text: _want(text, str, "upper").upper(),
    "title": lambda text: _title(_want(text, str, "title")),
    "split": _split,
    "join": _join,
    "truncate": _truncate,
    "pad": _pad,
}


class Template:
    """A parsed template; ``execute(data)`` gives its text."""

    def __init__(self, source: str, name: str = "", funcs: dict[str, Callable[..., Any]] | None = None) -> None:
        self.name = name
        self.source = source
        self.funcs = {**BUILTINS, **(funcs or {})}
        parser = _Parser(_lex(source, name), name, source)
        self.body = parser.parse()
        self.defines = parser.defines
        self._check_functions(self.body)
        for body in self.defines.values():
            self._check_functions(body)

    def _check_functions(self, nodes: list) -> None:
        for node in nodes:
            if isinstance(node, _Action):
                self._check_pipe(node.pipe)
            elif isinstance(node, _Branch):
                self._check_pipe(node.pipe)
                self._check_functions(node.body)
                self._check_functions(node.else_body or [])
            elif isinstance(node, _Call) and node.pipe is not None:
                self._check_pipe(node.pipe)

    def _check_pipe(self, pipe: _Pipeline) -> None:
        for command in pipe.commands:
            for operand in command:
                if operand[0] == "ident" and operand[1] not in self.funcs and operand[1] not in ("and", "or"):
                    raise TemplateError(f'template: {self.name}:{pipe.line}: function "{operand[1]}" not defined')
                if operand[0] == "pipe":
                    self._check_pipe(operand[1])

    def execute(self, data: Any) -> str:
        out: list[str] = []
        state = _State(self, data)
        state.walk(self.body, data, out)
        return "".join(out)


class _State:
    def __init__(self, template: Template, root: Any) -> None:
        self.template = template
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.depth = 0

    def error(self, pipe: _Pipeline, message: str) -> TemplateError:
        return TemplateError(f'template: {self.template.name}:{pipe.line}: executing "{self.template.name}" at '
                             f"<{pipe.source}>: {message}")

    def walk(self, nodes: list, dot: Any, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipeline(node.pipe, dot)
                if not node.pipe.decl:
                    out.append(go_print(value))
            elif isinstance(node, _Branch):
                self.branch(node, dot, out)
            elif isinstance(node, _Control):
                raise _Break() if node.kind == "break" else _Continue()
            elif isinstance(node, _Call):
                body = self.template.defines.get(node.name)
                if body is None:
                    raise TemplateError(f'template: {self.template.name}: no such template "{node.name}"')
                self.depth += 1
                if self.depth > 100000:
                    raise TemplateError("template: exceeded maximum template depth")
                value = self.pipeline(node.pipe, dot) if node.pipe is not None else None
                saved = self.vars
                self.vars = [("$", value)]
                try:
                    self.walk(body, value, out)
                finally:
                    self.vars = saved
                    self.depth -= 1

    def branch(self, node: _Branch, dot: Any, out: list[str]) -> None:
        mark = len(self.vars)
        try:
            if node.kind == "range":
                self.range(node, dot, out, mark)
                return
            value = self.pipeline(node.pipe, dot)
            if truthy(value):
                self.walk(node.body, value if node.kind == "with" else dot, out)
            elif node.else_body is not None:
                self.walk(node.else_body, dot, out)
        finally:
            del self.vars[mark:]

    def range(self, node: _Branch, dot: Any, out: list[str], mark: int) -> None:
        pipe = node.pipe
        decl = pipe.decl
        value = self._pipeline_value(pipe, dot)
        if isinstance(value, dict) and not isinstance(value, GoStruct):
            items = _sorted_items(value)
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif value is None or value is MISSING:
            items = []
        else:
            raise self.error(pipe, f"range can't iterate over {go_print(value)}")
        if not items:
            if node.else_body is not None:
                self.walk(node.else_body, dot, out)
            return
        for key, element in items:
            del self.vars[mark:]
            if len(decl) == 1:
                self.vars.append((decl[0], element))
            elif len(decl) == 2:
                self.vars.append((decl[0], key))
                self.vars.append((decl[1], element))
            try:
                self.walk(node.body, element, out)
            except _Break:
                break
            except _Continue:
                continue

    def _pipeline_value(self, pipe: _Pipeline, dot: Any) -> Any:
        value = None
        for n, command in enumerate(pipe.commands):
            value = self.command(pipe, command, dot, value, n > 0)
        return value

    def pipeline(self, pipe: _Pipeline, dot: Any) -> Any:
        value = self._pipeline_value(pipe, dot)
        if pipe.decl:
            if pipe.assign:
                for i in range(len(self.vars) - 1, -1, -1):
                    if self.vars[i][0] == pipe.decl[0]:
                        self.vars[i] = (pipe.decl[0], value)
                        break
            else:
                self.vars.append((pipe.decl[0], value))
        return value

    def variable(self, pipe: _Pipeline, name: str) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise self.error(pipe, f"undefined variable: {name}")

    def command(self, pipe: _Pipeline, command: list, dot: Any, final: Any, has_final: bool) -> Any:
        head = command[0]
        args = command[1:]
        if head[0] == "ident":
            name = head[1]
            if name in ("and", "or"):
                values = []
                operands = list(args)
                for operand in operands:
                    value = self.operand(pipe, operand, dot)
                    if (name == "and") != truthy(value):
                        return value
                    values.append(value)
                if has_final:
                    return final
                if not operands:
                    raise self.error(pipe, f"wrong number of args for {name}: want at least 1 got 0")
                return values[-1]
            fn = self.template.funcs[name]
            values = [self.operand(pipe, a, dot) for a in args] + ([final] if has_final else [])
            try:
                return fn(*values)
            except TemplateError as exc:
                message = str(exc)
                if message.startswith("template:"):
                    raise
                raise self.error(pipe, f"error calling {name}: {message}" if not message.startswith(
                    ("error calling", "wrong number")) else message) from exc
            except TypeError as exc:
                raise self.error(pipe, f"wrong number of args for {name}: {exc}") from exc
        if head[0] in ("field", "var", "pipe") and (args or has_final):
            # a method call with arguments: .Label "key", or "x" | .Method
            values = [self.operand(pipe, a, dot) for a in args] + ([final] if has_final else [])
            return self.operand(pipe, head, dot, values)
        if args or has_final:
            if head[0] in ("lit", "nil", "dot"):
                raise self.error(pipe, f"can't give argument to non-function {self._describe(head)}")
        if head[0] == "nil":
            raise self.error(pipe, "nil is not a command")
        return self.operand(pipe, head, dot)

    @staticmethod
    def _describe(operand: tuple) -> str:
        if operand[0] == "lit":
            return go_print(operand[1])
        return "." if operand[0] == "dot" else "nil"

    def operand(self, pipe: _Pipeline, operand: tuple, dot: Any, call_args: list | None = None) -> Any:
        kind = operand[0]
        if kind == "lit":
            return operand[1]
        if kind == "nil":
            return None  # as an argument; alone it is refused in command()
        if kind == "dot":
            return dot
        if kind == "ident":
            fn = self.template.funcs[operand[1]]
            return fn() if operand[1] not in ("and", "or") else None
        if kind == "field":
            return self.fields(pipe, dot, operand[1], call_args)
        if kind == "var":
            return self.fields(pipe, self.variable(pipe, operand[1]), operand[2], call_args)
        if kind == "pipe":
            return self.fields(pipe, self._pipeline_value(operand[1], dot), operand[2], call_args)
        raise self.error(pipe, "bad operand")

    def fields(self, pipe: _Pipeline, value: Any, names: list[str], call_args: list | None) -> Any:
        if not names and call_args:
            raise self.error(pipe, "can't give argument to non-function")
        for n, name in enumerate(names):
            last = n == len(names) - 1
            value = self.field(pipe, value, name, call_args if last else None)
        return value

    def field(self, pipe: _Pipeline, value: Any, name: str, args: list | None) -> Any:
        if value is None or value is MISSING:
            raise self.error(pipe, f"nil pointer evaluating {_type_name(value)}.{name}")
        if isinstance(value, GoStruct):
            if name not in value:
                raise self.error(pipe, f"can't evaluate field {name} in type {value.go_type}")
            result = value[name]
        elif isinstance(value, dict):
            if args:
                raise self.error(pipe, f"{name} is not a method but has arguments")
            return value.get(name, MISSING)
        elif isinstance(value, (str, int, float, bool, list, tuple)):
            raise self.error(pipe, f"can't evaluate field {name} in type {_type_name(value)}")
        else:
            if name.startswith("_") or not name[:1].isupper() and not getattr(value, "go_lowercase", False):
                raise self.error(pipe, f"can't evaluate field {name} in type {_type_name(value)}")
            try:
                result = getattr(value, name)
            except AttributeError as exc:
                raise self.error(pipe, f"can't evaluate field {name} in type {_type_name(value)}") from exc
            if callable(result) and not isinstance(result, type):
                try:
                    return result(*(args or []))
                except TypeError as exc:
                    raise self.error(pipe, f"wrong number of args for {name}: {exc}") from exc
        if args:
            if callable(result):
                return result(*args)
            raise self.error(pipe, f"{name} is not a method but has arguments")
        return result


def go_time_format(moment: datetime.datetime, layout: str, nanos: int = 0) -> str:
    """time.Format for the common layout elements."""
    table = [("2006", "%Y"), ("January", "%B"), ("Jan", "%b"), ("Monday", "%A"), ("Mon", "%a"),
             ("MST", "%Z"), ("-0700", "%z"), ("01", "%m"), ("02", "%d"), ("15", "%H"), ("03", "%I"),
             ("04", "%M"), ("05", "%S"), ("06", "%y"), ("PM", "%p")]
    out = ""
    i = 0
    while i < len(layout):
        if layout.startswith((".000000000", ".999999999"), i):
            digits = f"{nanos:09d}"
            out += "." + digits if layout[i + 1] == "0" else ("." + digits.rstrip("0") if nanos else "")
            i += 10
            continue
        for token, code in table:
            if layout.startswith(token, i):
                out += moment.strftime(code)
                i += len(token)
                break
        else:
            out += layout[i]
            i += 1
    return out
