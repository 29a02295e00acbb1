import json

import pytest

from ketch.cli.main import build_parser
from tests.conftest import run_ketch


def all_commands(parser=None, prefix=()):
    parser = parser or build_parser()
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from all_commands(sub, prefix + (name,))


def test_every_command_has_help():
    commands = list(all_commands())
    assert ("image", "copy") in commands and ("version",) in commands
    for command in [(), *commands]:
        result = run_ketch(*command, "--help")
        assert result.stdout.startswith("usage: ketch"), command


def test_version():
    """podman's layout, and its --format fields."""
    from ketch import __version__

    assert run_ketch("version").stdout.startswith(f"Client:          ketch\nVersion:         {__version__}\n")
    assert run_ketch("--version").stdout.startswith("ketch version ")
    assert run_ketch("version", "--format", "{{.Client.Version}}").stdout == f"{__version__}\n"
    assert json.loads(run_ketch("version", "--format", "json").stdout)["Client"]["Os"] == "linux"


@pytest.mark.parametrize("args, status, message", [
    (["image", "copy", "nonsense", "oci:/tmp/x"], 1, "expected TRANSPORT:REFERENCE"),
    (["image", "copy", "foo:bar", "oci:/tmp/x"], 1, "unknown transport 'foo'"),
    (["image", "copy", "docker://Busybox", "oci:/tmp/x"], 1, "must be lowercase"),
    (["image", "copy", "docker-archive:/nonexistent.tar", "oci:/tmp/x"], 1, "does not exist"),
    (["image", "copy", "docker-daemon:busybox", "oci:/tmp/x"], 1, "not supported yet"),
    (["image", "inspect", "oci:/nonexistent/layout"], 1, "No such file or directory"),
    # skopeo inspect (a transport): skopeo's 1; podman's image inspect: 125
    (["image", "inspect", "--retry-times", "-1", "docker://busybox"], 1, "must not be negative"),
    (["image", "inspect", "--tls-verify=maybe", "docker://busybox"], 1, "invalid boolean value"),
    (["image", "inspect", "--bogus", "busybox"], 125, "unknown flag: --bogus"),
    (["image", "frobnicate"], 125, "unrecognized command `ketch image frobnicate`"),
    (["image", "copy", "docker://busybox"], 1, "required"),  # skopeo's status for its verbs
    (["image", "copy", "--dest-compress", "docker://busybox"], 1, "required"),
    (["ps", "--bogus"], 125, "unknown flag: --bogus"),
    (["run", "--pids-limi", "1", "busybox"], 125, "unknown flag: --pids-limi"),  # no prefix matching
])
def test_user_errors_are_one_line(args, status, message):
    result = run_ketch(*args, check=False)
    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr


def test_layout_with_several_images_needs_a_name(busybox_layout, tmp_path):
    run_ketch("image", "copy", f"oci:{busybox_layout}:latest", f"oci:{tmp_path}/l:a")
    run_ketch("image", "copy", f"oci:{busybox_layout}:latest", f"oci:{tmp_path}/l:b")
    result = run_ketch("image", "inspect", f"oci:{tmp_path}/l", check=False)
    assert result.returncode == 1 and "holds 2 images" in result.stderr
    missing = run_ketch("image", "inspect", f"oci:{tmp_path}/l:c", check=False)
    assert missing.returncode == 1 and "no image named 'c'" in missing.stderr


def test_digestfile_and_quiet_output(busybox_layout, tmp_path):
    result = run_ketch("image", "copy", "-q", "--digestfile", str(tmp_path / "digest"),
                       f"oci:{busybox_layout}:latest", f"dir:{tmp_path}/d")
    assert result.stdout == "" and result.stderr == ""  # -q: nothing at all
    digest = (tmp_path / "digest").read_text()
    assert digest.startswith("sha256:")
    # without -q, skopeo's report, on stdout, in skopeo's words and order
    result = run_ketch("image", "copy", f"oci:{busybox_layout}:latest", f"dir:{tmp_path}/e")
    lines = result.stdout.splitlines()
    assert lines[0] == "Getting image source signatures" and lines[1].startswith("Copying blob sha256:")
    assert lines[-3].startswith("Copying config sha256:") and lines[-2:] == [
        "Writing manifest to image destination", "Storing signatures"]


def test_progress_on_a_terminal(busybox_layout, tmp_path):
    """With a terminal on stderr, copy draws progress; -q silences it."""
    import os
    import pty
    import subprocess

    from tests.conftest import KETCH

    def run_on_pty(*args):
        master, slave = pty.openpty()
        try:
            proc = subprocess.run([KETCH, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=slave, timeout=60)
            os.close(slave)
            chunks = []
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return proc.returncode, b"".join(chunks).decode(errors="replace")
        finally:
            os.close(master)

    code, text = run_on_pty("image", "copy", f"oci:{busybox_layout}:latest", f"oci:{tmp_path}/a")
    assert code == 0 and "Copying blob" in text
    code, text = run_on_pty("image", "copy", "-q", f"oci:{busybox_layout}:latest", f"oci:{tmp_path}/b")
    assert code == 0 and text == ""


def test_usage_status_is_not_kept_between_calls(capsys):
    """One process, two command lines: the second's status is its own."""
    from ketch.cli.main import main

    assert main(["ps", "--bogus"]) == 125
    assert main(["image", "copy", "nonsense"]) == 1
    assert main(["ps", "--bogus"]) == 125
    capsys.readouterr()


def test_go_booleans_take_a_value_or_none(tmp_path):
    """--flag, --flag=true and --flag=false; a following word is never taken as the value."""
    from ketch.cli.main import build_parser

    def parse(*words):
        return build_parser(list(words)).parse_args(list(words))

    assert parse("run", "--rm", "busybox", "true").rm is True
    assert parse("run", "--rm=false", "busybox").rm is False
    assert parse("run", "--rm=true", "busybox").image == "busybox"
    assert parse("run", "-it", "busybox").tty is True and parse("run", "-it", "busybox").interactive is True
    assert parse("cp", "-a=false", "a", "c:b").archive is False
    assert parse("image", "inspect", "--tls-verify", "docker://x").tls_verify is True
    assert parse("image", "inspect", "--tls-verify=false", "docker://x").tls_verify is False
    assert parse("image", "inspect", "docker://x").tls_verify is None


def test_no_state_leaks_between_calls_of_main(capsys):
    """Each call of main() parses and exits as if it were the process's only one."""
    from ketch.cli.main import main

    alone = {}
    for argv in (["image", "frobnicate"], ["ps", "--bogus"], ["image", "copy", "--bogus"], ["storage", "--bogus"]):
        alone[tuple(argv)] = main(argv)
    assert alone[("image", "frobnicate")] == 125 and alone[("image", "copy", "--bogus")] == 1
    for order in ([("ps", "--bogus"), ("image", "frobnicate")], [("image", "copy", "--bogus"), ("ps", "--bogus")],
                  [("storage", "--bogus"), ("image", "frobnicate"), ("image", "copy", "--bogus")]):
        assert [main(list(argv)) for argv in order] == [alone[argv] for argv in order]
    capsys.readouterr()
