"""Exit statuses and error messages, ketch against podman 4.3: the same command on the same
store contents, the same status, and where podman's words are what scripts look for, the same
words."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.peer

MISSING_CONTAINER = 'no container with name or ID "nothere" found: no such container'

# (arguments, podman's status, words both must print; "" for: nothing on stderr)
CASES = [
    (["rm", "nothere"], 1, MISSING_CONTAINER),
    (["rm", "--ignore", "nothere"], 0, ""),
    (["rm", "-f", "nothere"], 0, ""),
    (["stop", "nothere"], 125, MISSING_CONTAINER),
    (["start", "nothere"], 125, MISSING_CONTAINER),
    (["kill", "nothere"], 125, MISSING_CONTAINER),
    (["pause", "nothere"], 125, MISSING_CONTAINER),
    (["restart", "nothere"], 125, MISSING_CONTAINER),
    (["port", "nothere"], 125, MISSING_CONTAINER),
    (["top", "nothere"], 125, MISSING_CONTAINER),
    (["wait", "nothere"], 125, MISSING_CONTAINER),
    (["logs", "nothere"], 125, MISSING_CONTAINER),
    (["exec", "nothere", "true"], 125, MISSING_CONTAINER),
    (["mount", "nothere"], 125, MISSING_CONTAINER),
    (["inspect", "nothere"], 125, 'inspecting object: no such object: "nothere"'),
    (["container", "inspect", "nothere"], 125, "inspecting object: no such container nothere"),
    (["image", "inspect", "nothere"], 125, "inspecting object: nothere: image not known"),
    (["volume", "inspect", "nothere"], 125, "inspecting object: no such volume nothere"),
    (["network", "inspect", "nothere"], 125,
     "inspecting object: network nothere: unable to find network with name or ID nothere: network not found"),
    (["secret", "inspect", "nothere"], 125, 'inspecting secret: no secret with name or id "nothere": no such secret'),
    (["container", "exists", "nothere"], 1, ""),
    (["image", "exists", "nothere"], 1, ""),
    (["volume", "exists", "nothere"], 1, ""),
    (["network", "exists", "nothere"], 1, ""),
    (["image", "exists", "busybox"], 0, ""),
    (["rmi", "nothere"], 1, "nothere: image not known"),
    (["rmi", "--ignore", "nothere"], 0, ""),
    (["rmi", "-f", "nothere"], 0, ""),
    (["volume", "rm", "nothere"], 1, 'no volume with name "nothere" found: no such volume'),
    (["network", "rm", "nothere"], 1, "unable to find network with name or ID nothere: network not found"),
    (["secret", "rm", "nothere"], 125, 'no secret with name or id "nothere": no such secret'),
    (["history", "nothere"], 125, "nothere: image not known"),
    (["tag", "nothere", "x"], 125, "nothere: image not known"),
    (["nosuchcommand"], 125, "unrecognized command `{tool} nosuchcommand`"),
    (["volume", "nosuchverb"], 125, "unrecognized command `{tool} volume nosuchverb`"),
    (["run", "--no-such-flag", "busybox", "true"], 125, "unknown flag: --no-such-flag"),
    (["ps", "--no-such-flag"], 125, "unknown flag: --no-such-flag"),
    (["run", "--rm", "busybox", "/nonexistent"], 127,
     'exec: "/nonexistent": stat /nonexistent: no such file or directory'),
    (["run", "--rm", "busybox", "nonexistent"], 127, 'exec: "nonexistent": executable file not found in $PATH'),
    (["run", "--rm", "busybox", "/etc"], 126, 'exec: "/etc": permission denied'),
    (["run", "--rm", "busybox", "/etc/passwd"], 126, 'exec: "/etc/passwd": permission denied'),
    (["run", "--rm", "busybox", "sh", "-c", "exit 3"], 3, ""),
    (["run", "--rm", "--pid=host", "busybox", "true"], 0, ""),  # never read as a prefix of --pids-limit
    (["run", "--rm", "--pull", "never", "no-such-image", "true"], 125, ""),
]


@pytest.mark.parametrize("args,status,words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_status_and_words(pair, args, status, words):
    ours, theirs = pair.both(*args)
    assert theirs.returncode == status, f"podman changed: {theirs.stderr}"  # the table is podman's
    assert ours.returncode == status, ours.stderr
    if words:
        assert words.format(tool="podman") in theirs.stderr
        assert words.format(tool="ketch") in ours.stderr
        assert ours.stderr.startswith("Error: ")
    elif status in (0, 1, 3) and args[0] != "run":
        assert ours.stderr == theirs.stderr == ""


def test_statuses_on_containers_in_the_wrong_state(pair):
    for run in (pair.ketch, pair.peer):
        run("run", "-d", "--name", "busy", "busybox", "sleep", "100", check=True)
        run("create", "--name", "made", "busybox", "true", check=True)
        run("run", "--name", "done", "busybox", "true", check=True)
    cases = [  # (arguments, the container the words name, podman's status, its words)
        (["rm", "busy"], "busy", 2, "cannot remove container {id} as it is running - running or paused containers "
                                    "cannot be removed without force: container state improper"),
        (["exec", "done", "true"], "done", 255,
         "can only create exec sessions on running containers: container state improper"),
        (["exec", "-d", "done", "true"], "done", 125, "container state improper"),
        (["pause", "done"], "done", 125, "\"exited\" is not running, can't pause: container state improper"),
        (["unpause", "busy"], "busy", 125, "\"{id}\" is not paused, can't unpause: container state improper"),
        (["kill", "made"], "made", 125,
         "can only kill running containers. {id} is in state created: container state improper"),
        (["run", "--name", "busy", "busybox", "true"], "busy", 125, 'the container name "busy" is already in use'),
    ]
    for args, target, status, words in cases:
        ours, theirs = pair.both(*args)
        assert (ours.returncode, theirs.returncode) == (status, status), (args, ours.stderr, theirs.stderr)
        for result, run in ((ours, pair.ketch), (theirs, pair.peer)):
            full_id = run("inspect", "--format", "{{.Id}}", target, check=True).stdout.strip()
            assert words.format(id=full_id) in result.stderr, (args, result.stderr)
