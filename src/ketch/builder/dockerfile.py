"""Dockerfile (Containerfile) parsing, as BuildKit's and buildah's parsers read it: parser
directives (``syntax``, ``escape``), comments, line continuations, heredocs (``<<EOF``,
``<<-EOF``, quoted delimiters), instruction flags (``--from=``, ``--mount=``...), JSON (exec)
and shell forms, and variable expansion (``$VAR``, ``${VAR}``, ``${VAR:-default}``,
``${VAR:+alt}``, ``${VAR-default}``, ``${VAR+alt}``). Errors name the file, the line and the
instruction. No library parses Dockerfiles in Python, hence this module.
"""

from __future__ import annotations

import json

from ketch.errors import InvalidInputError
from ketch.records import Record, field

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
FLAGS = {"FROM": {"platform"}, "RUN": {"mount", "network", "security"},
         "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
         "ADD": {"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"},
         "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"}}
# Instructions whose arguments are expanded with the build's variables (as BuildKit does).
EXPANDED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR", "ONBUILD"}


class DockerfileError(InvalidInputError):
    """A Dockerfile that does not parse: ``file:line: INSTRUCTION: what``."""


class Instruction(Record):
    name: str  # upper case
    flags: dict  # --name=value (a name given twice keeps a list)
    args: str  # the text after the flags (not yet expanded)
    json: list | None  # the exec form's words, when the text is a JSON array
    original: str
    line: int
    heredocs: list = field(default_factory=list)  # (name, content, expand)


def parse(text: str, filename: str = "Dockerfile") -> list[Instruction]:
    lines = text.splitlines()
    escape = "\\"
    n = 0
    # parser directives: only at the very top, before any instruction, comment or blank line
    while n < len(lines):
        stripped = lines[n].strip()
        if not stripped.startswith("#") or "=" not in stripped:
            break
        key, _, value = stripped[1:].partition("=")
        key = key.strip().lower()
        if not key.isidentifier():
            break
        if key == "escape":
            if value.strip() not in ("\\", "`"):
                raise DockerfileError(f"{filename}:{n + 1}: invalid escape directive {value.strip()!r}")
            escape = value.strip()
        elif key not in ("syntax", "check"):
            break
        n += 1
    out: list[Instruction] = []
    while n < len(lines):
        start = n
        raw = lines[n]
        n += 1
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        logical = raw
        # continuation: the line ends in the escape character (comments and blank lines inside skipped)
        while logical.rstrip().endswith(escape) and n <= len(lines):
            logical = logical.rstrip()[:-1]
            while n < len(lines) and (lines[n].lstrip().startswith("#") or not lines[n].strip()):
                n += 1
            if n >= len(lines):
                break
            logical += lines[n]
            n += 1
        word, _, rest = logical.strip().partition(" ")
        if "\t" in word:
            word, _, more = word.partition("\t")
            rest = more + " " + rest
        name = word.upper()
        if name not in INSTRUCTIONS:
            raise DockerfileError(f"{filename}:{start + 1}: unknown instruction {word}")
        rest = rest.strip()
        flags: dict = {}
        while rest.startswith("--"):
            token, _, remainder = rest.partition(" ")
            key, sep, value = token[2:].partition("=")
            allowed = FLAGS.get(name, set())
            if key not in allowed:
                raise DockerfileError(f"{filename}:{start + 1}: {name}: unknown flag --{key}")
            value = value if sep else "true"
            if key in flags:
                flags[key] = (flags[key] if isinstance(flags[key], list) else [flags[key]]) + [value]
            else:
                flags[key] = value
            rest = remainder.strip()
        heredocs = []
        if name in ("RUN", "COPY", "ADD") and "<<" in rest:
            rest, heredocs, n = _heredocs(rest, lines, n, filename, start)
        exec_form = None
        if rest.startswith("[") and name in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"):
            try:
                parsed = json.loads(rest)
                if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
                    exec_form = parsed
            except ValueError as exc:
                if name == "SHELL":
                    raise DockerfileError(f"{filename}:{start + 1}: SHELL: not a JSON array: {rest}") from exc
        if name == "SHELL" and exec_form is None:
            raise DockerfileError(f"{filename}:{start + 1}: SHELL needs a JSON array")
        if not rest and not heredocs and name not in ("RUN",):
            raise DockerfileError(f"{filename}:{start + 1}: {name} needs arguments")
        out.append(Instruction(name, flags, rest, exec_form, logical.strip(), start + 1, heredocs))
    if not out or out[0].name not in ("FROM", "ARG"):
        first = out[0] if out else None
        raise DockerfileError(f"{filename}:{first.line if first else 1}: the first instruction must be FROM (or ARG)"
                              + (f", not {first.name}" if first else ""))
    return out


def _heredocs(rest: str, lines: list[str], n: int, filename: str, start: int):
    """``<<EOF`` markers in ``rest``; their bodies follow the instruction's line."""
    words = rest.split()
    found = []
    kept = []
    for word in words:
        if word.startswith("<<") and len(word) > 2:
            marker = word[2:]
            strip_tabs = marker.startswith("-")
            marker = marker[1:] if strip_tabs else marker
            expand = not (marker[:1] in "'\"" and marker[-1:] == marker[:1])
            marker = marker.strip("'\"")
            if not marker or not (marker[0].isalpha() or marker[0] == "_"):
                kept.append(word)
                continue
            found.append((marker, strip_tabs, expand))
            kept.append(word)
        else:
            kept.append(word)
    bodies = []
    for marker, strip_tabs, expand in found:
        body = []
        while True:
            if n >= len(lines):
                raise DockerfileError(f"{filename}:{start + 1}: heredoc {marker} is not closed")
            line = lines[n]
            n += 1
            if (line.lstrip("\t") if strip_tabs else line) == marker:
                break
            body.append(line.lstrip("\t") if strip_tabs else line)
        bodies.append((marker, "\n".join(body) + "\n", expand))
    return " ".join(kept), bodies, n


def expand(text: str, variables: dict[str, str], *, escape: str = "\\", filename: str = "", line: int = 0) -> str:
    """Shell-like expansion of ``$VAR`` and ``${...}`` forms with the build's variables; quotes are
    kept as they are (the instruction's own parsing handles them)."""
    out = []
    i = 0
    single = False
    while i < len(text):
        c = text[i]
        if c == escape and i + 1 < len(text) and text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if c == "'" :
            single = not single
        if c == "$" and not single and i + 1 < len(text):
            if text[i + 1] == "{":
                end = text.find("}", i + 2)
                if end < 0:
                    raise DockerfileError(f"{filename}:{line}: missing '}}' in {text!r}")
                out.append(_substitute(text[i + 2:end], variables, filename, line))
                i = end + 1
                continue
            j = i + 1
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j > i + 1:
                out.append(variables.get(text[i + 1:j], ""))
                i = j
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _substitute(body: str, variables: dict[str, str], filename: str, line: int) -> str:
    for op in (":-", ":+", "-", "+"):
        name, sep, word = body.partition(op)
        if sep and name and (name.replace("_", "a").isalnum()):
            value = variables.get(name)
            if op == ":-":
                return value if value else expand(word, variables)
            if op == ":+":
                return expand(word, variables) if value else ""
            if op == "-":
                return value if value is not None else expand(word, variables)
            return expand(word, variables) if value is not None else ""
    if not body.replace("_", "a").isalnum():
        raise DockerfileError(f"{filename}:{line}: unsupported substitution ${{{body}}}")
    return variables.get(body, "")


def split_words(text: str) -> list[str]:
    """Words as the shell would split them (quotes removed), for ENV/LABEL/ARG/EXPOSE/VOLUME."""
    import shlex

    try:
        return shlex.split(text, posix=True)
    except ValueError as exc:
        raise InvalidInputError(f"cannot split {text!r}: {exc}") from exc


def key_values(text: str, instruction: str) -> list[tuple[str, str | None]]:
    """ENV/LABEL/ARG pairs: ``K=V K2="v 2"``, or the old ``ENV K some value`` form."""
    words = split_words(text)
    if instruction in ("ENV", "LABEL") and words and "=" not in words[0]:
        if len(words) < 2 and instruction == "ENV":
            raise InvalidInputError(f"{instruction} {text}: want KEY=VALUE")
        return [(words[0], text.split(None, 1)[1].strip() if len(words) > 1 else "")]
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not key:
            raise InvalidInputError(f"{instruction} {text}: an empty name")
        pairs.append((key, value) if sep else (key, None))
    return pairs
