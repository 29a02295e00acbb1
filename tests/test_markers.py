"""Every test that runs a peer tool (skopeo, podman, buildah, runc, crun, containerd) carries the ``peer``
marker, so ``-m 'not peer'`` runs what needs no peer."""

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# a peer's binary as a command word, or the helpers and fixtures that run one
PEER = re.compile(r'''[\[(,]\s*["'](skopeo|podman|buildah|runc|crun|containerd)["']|\bPodman\(|\bskopeo_copy\(|\bContainerd\(''')
PEER_FIXTURES = {"podman", "pair", "podman_env", "buildah", "containerd"}


def test_tests_running_a_peer_are_marked():
    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        if path.name == "test_markers.py":
            continue
        source = path.read_text()
        module_marked = re.search(r"^pytestmark\s*=.*\bpeer\b", source, re.M) is not None
        for node in ast.parse(source).body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")) or module_marked:
                continue
            body = ast.get_source_segment(source, node) or ""
            decorators = " ".join(ast.get_source_segment(source, d) or "" for d in node.decorator_list)
            uses_peer = PEER.search(body) or PEER_FIXTURES & {a.arg for a in node.args.args}
            if uses_peer and "peer" not in decorators:
                unmarked.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert unmarked == []


def test_the_check_sees_a_peer():
    assert PEER.search('subprocess.run(["skopeo", "inspect", url])')
    assert not PEER.search('"""podman\'s words"""')
