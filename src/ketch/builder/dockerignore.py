""".containerignore and .dockerignore rules, as buildah reads them (Go's filepath.Match with
``**``, ``!`` exceptions, the last matching pattern decides)."""

from __future__ import annotations

import os
import re


class IgnoreRules:
    """.containerignore / .dockerignore: patterns (``**`` for any depth), ``!`` exceptions; the
    last pattern matching a path decides."""

    def __init__(self, rules: list[tuple[bool, re.Pattern, str]]) -> None:
        self.rules = rules

    @classmethod
    def load(cls, context_dir: str, ignorefile: str | None = None) -> IgnoreRules:
        """The context's .containerignore (else .dockerignore), or ``ignorefile`` (--ignorefile)."""
        from ketch.errors import InvalidInputError

        if ignorefile is not None:
            try:
                with open(ignorefile) as f:
                    return cls.from_patterns(f.read().splitlines())
            except OSError as exc:
                raise InvalidInputError(f"--ignorefile {ignorefile}: {exc.strerror}") from exc
        for name in (".containerignore", ".dockerignore"):
            path = os.path.join(context_dir, name)
            if os.path.exists(path):
                with open(path) as f:
                    return cls.from_patterns(f.read().splitlines())
        return cls([])

    @classmethod
    def from_patterns(cls, lines: list[str]) -> IgnoreRules:
        rules = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
            rules.append((negate, re.compile(_translate(pattern)), pattern))
        return cls(rules)

    def ignored(self, relative: str) -> bool:
        relative = os.path.normpath(relative)
        if relative == ".":
            return False
        result = False
        parts = relative.split(os.sep)
        for negate, regex, _ in self.rules:
            # a pattern matching a parent directory excludes what is below it
            for n in range(1, len(parts) + 1):
                if regex.fullmatch("/".join(parts[:n])):
                    result = not negate
                    break
        return result

    def may_include_below(self, relative: str) -> bool:
        """Whether an exception may re-include something under an ignored directory."""
        prefix = os.path.normpath(relative) + "/"
        return any(negate and (pattern.startswith(prefix) or "*" in pattern) for negate, _, pattern in self.rules)


def _translate(pattern: str) -> str:
    """A Go filepath.Match pattern with ``**`` to a regular expression over /-separated paths."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i)
            if end < 0:
                out.append(re.escape(c))
            else:
                out.append("[" + pattern[i + 1:end].replace("!", "^", 1) + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class Excluding:
    """The context's ignore rules (or none) and a step's ``--exclude`` patterns, as one rule set
    for copy_tree: an excluded path is matched relative to the context and to the copied source
    (``prefix``), and nothing under an excluded directory comes back."""

    def __init__(self, ignore: IgnoreRules | None, exclude: IgnoreRules, prefix: str | None) -> None:
        self.ignore, self.exclude, self.prefix = ignore, exclude, prefix

    def excluded(self, relative: str) -> bool:
        if self.exclude.ignored(relative):
            return True
        if self.prefix and self.prefix not in (".", ""):
            inner = os.path.relpath(relative, self.prefix)
            return not inner.startswith("..") and self.exclude.ignored(inner)
        return False

    def ignored(self, relative: str) -> bool:
        return self.excluded(relative) or (self.ignore is not None and self.ignore.ignored(relative))

    def may_include_below(self, relative: str) -> bool:
        return not self.excluded(relative) and self.ignore is not None and self.ignore.may_include_below(relative)
