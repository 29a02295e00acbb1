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
    assert run_ketch("version").stdout.startswith("ketch version ")
    assert run_ketch("--version").stdout.startswith("ketch version ")


@pytest.mark.parametrize("args, status, message", [
    (["image", "copy", "nonsense", "oci:/tmp/x"], 1, "expected TRANSPORT:REFERENCE"),
    (["image", "copy", "foo:bar", "oci:/tmp/x"], 1, "unknown transport 'foo'"),
    (["image", "copy", "docker://Busybox", "oci:/tmp/x"], 1, "must be lowercase"),
    (["image", "copy", "docker-archive:/nonexistent.tar", "oci:/tmp/x"], 1, "does not exist"),
    (["image", "copy", "containers-storage:busybox", "oci:/tmp/x"], 1, "not supported yet"),
    (["image", "inspect", "oci:/nonexistent/layout"], 1, "No such file or directory"),
    (["image", "inspect", "--retry-times", "-1", "docker://busybox"], 2, "must not be negative"),
    (["image", "inspect", "--tls-verify=maybe", "docker://busybox"], 2, "invalid boolean value"),
    (["image", "frobnicate"], 2, "invalid choice"),
    (["image", "copy", "docker://busybox"], 2, "required"),
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
    result = run_ketch("image", "copy", "--digestfile", str(tmp_path / "digest"),
                       f"oci:{busybox_layout}:latest", f"dir:{tmp_path}/d")
    assert result.stdout == "" and result.stderr == ""  # not a terminal: quiet
    assert (tmp_path / "digest").read_text().startswith("sha256:")


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
    assert code == 0 and "Copying blob" in text and "Writing manifest" in text
    code, text = run_on_pty("image", "copy", "-q", f"oci:{busybox_layout}:latest", f"oci:{tmp_path}/b")
    assert code == 0 and text == ""
