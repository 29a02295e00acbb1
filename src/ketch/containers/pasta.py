"""The default network of rootless containers: ``pasta`` (from passt), as podman 5 has it.

Why pasta rather than slirp4netns: one process per container gives the container its network
and publishes its ports (``-t``/``-u``, bound on the host's addresses the user asks for,
127.0.0.1 included), with loopback traffic spliced in the kernel; slirp4netns needs a port
forwarder of its own beside it (podman's rootlessport) to be as fast and keep addresses.

The container's network namespace is made by ketch and pinned on a file under the run
directory (``netns.make_namespace``); pasta is given that path, configures the interface in it
(``--config-net``: the host's addresses and routes, as pasta copies them) and goes to the
background. It quits by itself when the pinned namespace is removed; ketch also ends it by its
PID (recorded in the container's state) if it is still there then.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess

from ketch.errors import NetworkError


def _free_port(protocol: str, address: str) -> int:
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, kind) as probe:
        probe.bind((address or "0.0.0.0", 0))
        return probe.getsockname()[1]


def assign_ports(ports: list) -> list:
    """A host port for each mapping that asks for any (host port 0), chosen free now; one asked
    for by number is checked free (a clear error, where pasta would say only that it failed)."""
    from ketch.containers.network import check_bindable

    for mapping in ports:
        if not mapping.host_port:
            mapping.host_port = _free_port(mapping.protocol, mapping.host_ip)
        elif ":" not in mapping.host_ip:  # (IPv4 here; pasta itself says so for an IPv6 one)
            check_bindable(mapping.host_ip or "0.0.0.0", mapping.host_port, mapping.protocol)
    return ports


def _forward(mapping) -> list[str]:
    where = f"{mapping.host_ip}/" if mapping.host_ip else ""
    return ["-t" if mapping.protocol == "tcp" else "-u", f"{where}{mapping.host_port}:{mapping.container_port}"]


def start(netns_path: str, ports: list, pid_file: str) -> int:
    """Start pasta for the namespace pinned at ``netns_path``, publishing ``ports``; its PID."""
    program = shutil.which("pasta")
    if program is None:
        raise NetworkError("rootless containers get their network from pasta, which is not installed (Debian: apt "
                           "install passt); or run with --network none or --network host")
    forwards = [arg for mapping in ports for arg in _forward(mapping)]
    if not any(m.protocol == "tcp" for m in ports):
        forwards += ["-t", "none"]
    if not any(m.protocol == "udp" for m in ports):
        forwards += ["-u", "none"]
    command = [program, "--config-net", "--runas", f"{os.geteuid()}:{os.getegid()}", *forwards, "-T", "none", "-U",
               "none", "--quiet", "--pid", pid_file, "--netns", netns_path]
    # (pasta daemonizes once the namespace is configured and the ports are bound)
    result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            timeout=60)
    if result.returncode != 0:
        lines = [line for line in result.stderr.decode(errors="replace").splitlines()
                 if line.strip() and "syslog" not in line]
        raise NetworkError(f"pasta could not set up the network: {lines[-1] if lines else 'it failed'}")
    try:
        with open(pid_file) as f:
            return int(f.read().strip())
    except (OSError, ValueError) as exc:
        raise NetworkError(f"pasta wrote no PID to {pid_file}") from exc


def stop(pid: int | None) -> None:
    """End the pasta of a container if it is still there (and is pasta: the PID is checked)."""
    if not pid:
        return
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() not in ("pasta", "passt", "pasta.avx2", "passt.avx2"):
                return
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
