"""The installed ketch-runtime program: CPython embedded and run as ``python -I -S``
(bin/ketch-runtime.c) wherever the package could build it, as it can here."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

RUNTIME = Path(sys.executable).parent / "ketch-runtime"


def test_the_program_is_the_embedded_interpreter():
    assert sysconfig.get_config_var("Py_ENABLE_SHARED"), "this interpreter has no shared libpython to embed"
    assert RUNTIME.read_bytes()[:4] == b"\x7fELF", "ketch-runtime was installed as the Python script"


def test_the_environment_cannot_redirect_its_imports(tmp_path):
    """Isolated: PYTHONPATH, PYTHONSTARTUP and the working directory are not searched (podman
    passes its environment on to the runtime it runs)."""
    planted = tmp_path / "ketch"
    planted.mkdir()
    (planted / "__init__.py").write_text("raise SystemExit('planted ketch imported')\n")
    (tmp_path / "site.py").write_text("raise SystemExit('planted site imported')\n")
    result = subprocess.run([str(RUNTIME), "--version"], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(tmp_path), "PYTHONSTARTUP": str(tmp_path / "site.py"),
                                 "PATH": "/usr/bin:/bin"}, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ketch-runtime version ")


@pytest.mark.parametrize(("args", "status", "text"), [
    (["--root", "/nonexistent-root", "state", "missing"], 1, "container missing does not exist"),
    (["bogus"], 2, "invalid choice: 'bogus'"),
])
def test_exit_status_and_messages_pass_through(args, status, text):
    result = subprocess.run([str(RUNTIME), *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == status and result.stderr.startswith("ketch-runtime: ") and text in result.stderr
