"""The OCI runtime a container runs under: ketch's own (``ketch.runtime``, called as a library in
this process, so the container's init is born our descendant) or a runc-compatible binary given
with ``--runtime`` (runc, crun), driven through its command line. Either way the caller is a child
subreaper first, so the container's init is reparented to it and it can wait for its exit status.

Only the runtime library's lean modules are imported here: the detached monitor uses this.
"""

from __future__ import annotations

import os

from ketch.errors import KetchError, OCIRuntimeError
from ketch.runtime.container import Runtime


class OwnRuntime:
    """ketch.runtime, in this process."""

    def __init__(self, root: str) -> None:
        self.runtime = Runtime(root)

    def create(self, container_id: str, bundle: str, *, terminal: bool, stdio: tuple[int, int, int],
               preserve_fds: int) -> tuple[int, int | None]:
        state, master = self.runtime.create_attached(container_id, bundle, terminal=terminal, stdio=stdio,
                                                     preserve_fds=preserve_fds)
        return state.pid, master

    def start(self, container_id: str) -> None:
        self.runtime.start(container_id)

    def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        self.runtime.kill(container_id, signal, all_processes=all_processes)

    def delete(self, container_id: str) -> None:
        from ketch.runtime.state import ContainerNotFound

        try:
            self.runtime.delete(container_id, force=True)
        except ContainerNotFound:
            pass  # not there any more: nothing to delete

    def status(self, container_id: str) -> str | None:
        try:
            return self.runtime.state(container_id)["status"]
        except KetchError:
            return None

    def pause(self, container_id: str) -> None:
        self.runtime.pause(container_id)

    def resume(self, container_id: str) -> None:
        self.runtime.resume(container_id)

    def pids(self, container_id: str) -> list[int]:
        return self.runtime.pids(container_id)

    def update(self, container_id: str, resources: dict) -> None:
        self.runtime.update(container_id, resources)


class ExternalRuntime:
    """A runc-compatible binary (runc, crun), with its state under our run directory."""

    def __init__(self, binary: str, root: str) -> None:
        import shutil

        path = binary if "/" in binary else shutil.which(binary)
        if not path or not os.access(path, os.X_OK):
            raise OCIRuntimeError(f"OCI runtime {binary} not found")
        self.binary = path
        self.root = root

    def _run(self, *args: str, stdio=None, pass_fds=()) -> None:
        """Run one runtime command. Its errors go to a JSON log (``--log``), as podman reads them:
        the runtime's own stdio is the container's."""
        import json
        import subprocess
        import tempfile

        with tempfile.NamedTemporaryFile(prefix="ketch-rt-log-") as log:
            stdin, stdout, stderr = stdio if stdio else (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
            proc = subprocess.run([self.binary, "--root", self.root, "--log", log.name, "--log-format", "json", *args],
                                  stdin=stdin, stdout=stdout, stderr=stderr, pass_fds=pass_fds, check=False)
            if proc.returncode == 0:
                return
            messages = []
            for line in log.read().decode(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") in ("error", "fatal"):
                    messages.append(str(entry.get("msg", "")))
        raise OCIRuntimeError(f"{os.path.basename(self.binary)} {args[0]}: "
                            + (messages[-1] if messages else f"exit status {proc.returncode}"))

    def create(self, container_id: str, bundle: str, *, terminal: bool, stdio: tuple[int, int, int],
               preserve_fds: int) -> tuple[int, int | None]:
        import tempfile

        from ketch.runtime.console import close_listener as _close_listener
        from ketch.runtime.console import receive_fd as _receive_fd

        listener = console = None
        work = tempfile.mkdtemp(prefix="ketch-rt-")
        try:
            pid_file = os.path.join(work, "pid")
            args = ["create", "--bundle", bundle, "--pid-file", pid_file]
            if terminal:
                import socket

                console = os.path.join(work, "console.sock")
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(console)
                listener.listen(1)
                args += ["--console-socket", console]
            if preserve_fds:
                args += ["--preserve-fds", str(preserve_fds)]
            self._run(*args, container_id, stdio=stdio, pass_fds=tuple(range(3, 3 + preserve_fds)))
            master = _receive_fd(listener) if listener is not None else None
            with open(pid_file) as f:
                return int(f.read().strip()), master
        finally:
            if listener is not None:
                _close_listener(listener, console)
            import shutil

            shutil.rmtree(work, ignore_errors=True)

    def start(self, container_id: str) -> None:
        self._run("start", container_id)

    def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        self._run("kill", *(["--all"] if all_processes else []), container_id, str(signal))

    def delete(self, container_id: str) -> None:
        try:
            self._run("delete", "--force", container_id)
        except OCIRuntimeError as exc:
            if "does not exist" not in str(exc) and "not exist" not in str(exc):
                raise

    def pause(self, container_id: str) -> None:
        self._run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self._run("resume", container_id)

    def update(self, container_id: str, resources: dict) -> None:
        import json
        import tempfile

        with tempfile.NamedTemporaryFile("w", prefix="ketch-rt-resources-", suffix=".json") as f:
            json.dump(resources, f)
            f.flush()
            self._run("update", "--resources", f.name, container_id)

    def exec_argv(self, container_id: str, process_file: str) -> list[str]:
        """The command that runs the process described in ``process_file`` in the container."""
        return [self.binary, "--root", self.root, "exec", "--process", process_file, container_id]

    def pids(self, container_id: str) -> list[int]:
        import json
        import subprocess

        proc = subprocess.run([self.binary, "--root", self.root, "ps", "--format", "json", container_id],
                              capture_output=True)
        return json.loads(proc.stdout or b"[]") if proc.returncode == 0 else []

    def status(self, container_id: str) -> str | None:
        import json
        import subprocess

        proc = subprocess.run([self.binary, "--root", self.root, "state", container_id], capture_output=True)
        if proc.returncode != 0:
            return None
        try:
            return json.loads(proc.stdout)["status"]
        except (ValueError, KeyError):
            return None


def for_container(runtime: str | None, run_dir: str):
    """The driver for a container's ``--runtime`` (None: ketch's own)."""
    if not runtime:
        return OwnRuntime(os.path.join(run_dir, "runtime"))
    name = os.path.basename(runtime)
    return ExternalRuntime(runtime, os.path.join(run_dir, f"runtime-{name}"))
