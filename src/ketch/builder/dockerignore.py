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
    def load(cls, context_dir: str) -> IgnoreRules:
        for name in (".containerignore", ".dockerignore"):
            path = os.path.join(context_dir, name)
            if os.path.exists(path):
                with open(path) as f:
                    lines = f.read().splitlines()
                rules = []
                for line in lines:
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    negate = line.startswith("!")
                    pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
                    rules.append((negate, re.compile(_translate(pattern)), pattern))
                return cls(rules)
        return cls([])

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
