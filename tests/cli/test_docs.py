"""docs/cli.md stays true: every flag of every ketch command is named there (issue 16 asks the
page to list, per command, the flags supported)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ketch.cli.main import build_parser

DOC = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
HIDDEN = {"--help", "--cgroup-manager"}  # argparse's own; a global flag repeated on run for podman's scripts


def _commands(parser: argparse.ArgumentParser, words: list[str]):
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from _commands(sub, words + [name])


def test_every_flag_is_documented():
    missing = []
    for words, parser in _commands(build_parser(["--help"]), ["ketch"]):
        for action in parser._actions:
            if action.help == argparse.SUPPRESS and action.option_strings and \
                    not any(o in DOC for o in action.option_strings):
                missing.append(f"{' '.join(words)} {action.option_strings[0]} (refused: name it among the refusals)")
                continue
            for option in action.option_strings:
                if option.startswith("--") and option not in HIDDEN and f"`{option}" not in DOC:
                    missing.append(f"{' '.join(words)} {option}")
    assert not missing, "docs/cli.md does not name: " + ", ".join(sorted(set(missing)))
