"""ketch build against podman build (buildah 1.28 inside podman 4.3): the same Containerfile in
the same context, the same report (STEP, "--> ID", "--> Using cache", COMMIT), the same
images made, the same history and the same result when run."""

from __future__ import annotations

import re

import pytest

from tests.parity.conftest import normalise

pytestmark = pytest.mark.peer

CONTAINERFILE = """\
FROM busybox
ARG V=1
ENV A=$V
LABEL x=y
WORKDIR /w
RUN echo hi > greeting
COPY f /w/f
CMD ["cat", "/w/greeting"]
"""


def _report(text: str) -> list[str]:
    return [re.sub(r"\b[0-9a-f]{11}\b", "ID", line) for line in normalise(text).splitlines()]


@pytest.fixture
def context(tmp_path):
    (tmp_path / "Containerfile").write_text(CONTAINERFILE)
    (tmp_path / "f").write_text("data\n")
    return tmp_path


def test_build_reports_and_makes_what_podman_does(pair, context):
    first = pair.both("build", "-t", "localhost/built:1", str(context))
    assert (first[0].returncode, first[1].returncode) == (0, 0), (first[0].stderr, first[1].stderr)
    assert _report(first[0].stdout) == _report(first[1].stdout), (first[0].stdout, first[1].stdout)
    assert "--> ID" in _report(first[0].stdout) and "COMMIT localhost/built:1" in first[0].stdout
    again = pair.both("build", "-t", "localhost/built:1", str(context))
    assert _report(again[0].stdout) == _report(again[1].stdout), (again[0].stdout, again[1].stdout)
    assert sum("Using cache" in line for line in again[0].stdout.splitlines()) == 7
    for (ours, _theirs), name in ((first, "first"), (again, "again")):
        assert "sha256:" + ours.stdout.strip().splitlines()[-1] == pair.ketch(
            "images", "-q", "--no-trunc", "localhost/built:1").stdout.strip(), name
    # the same image id again: every step came from the cache
    assert first[0].stdout.splitlines()[-1] == again[0].stdout.splitlines()[-1]
    quiet = pair.both("build", "-q", "-t", "localhost/built:2", str(context))
    assert [len(r.stdout.strip()) for r in quiet] == [64, 64] and [r.stdout.count("\n") for r in quiet] == [1, 1]
    # the intermediate images: as many, hidden from images without -a
    counts = []
    for run in (pair.ketch, pair.peer):
        counts.append((len(run("images", "-a", "-q").stdout.split()), len(run("images", "-q").stdout.split())))
    assert counts[0] == counts[1]
    # the same history, and the same container when run
    fmt = "{{.CreatedBy}}|{{.Size}}"
    ours, theirs = (run("history", "--no-trunc", "--format", fmt, "localhost/built:1").stdout.splitlines()
                    for run in (pair.ketch, pair.peer))
    digests = re.compile(r"(file|dir|multi):[0-9a-f]{64}")  # each tool's own digest of the content
    assert [digests.sub(r"\1:D", line.split("|")[0]) for line in ours] == \
        [digests.sub(r"\1:D", line.split("|")[0]) for line in theirs]
    ours, theirs = pair.both("run", "--rm", "localhost/built:1")
    assert ours.stdout == theirs.stdout == "hi\n"
    ours, theirs = pair.both("run", "--rm", "localhost/built:1", "sh", "-c", "echo $A; pwd; cat f")
    assert ours.stdout == theirs.stdout == "1\n/w\ndata\n"
    ours, theirs = pair.both("image", "inspect", "--format", "{{.Config.Labels.x}} {{.Config.WorkingDir}} "
                                                           "{{.Config.Cmd}} {{.Config.Env}}", "localhost/built:1")
    assert ours.stdout == theirs.stdout


def test_build_errors(pair, context):
    (context / "Bad").write_text("FROM busybox\nRUN exit 7\n")
    ours, theirs = pair.both("build", "-f", str(context / "Bad"), str(context))
    assert ours.returncode == theirs.returncode == 7, (ours.stderr, theirs.stderr)
    for result in (ours, theirs):
        assert 'building at STEP "RUN exit 7"' in result.stderr and "exit status 7" in result.stderr
    ours, theirs = pair.both("build", "-f", str(context / "missing"), str(context))
    assert ours.returncode == theirs.returncode == 125
