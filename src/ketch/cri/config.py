"""The CRI server's settings: a TOML file (``--config``, default /etc/ketch/cri.toml when it
exists), then the command line's flags over it. See docs/cri.md for the file's keys."""

from __future__ import annotations

import os
import shutil
import tomllib
from typing import Any

from ketch.errors import InvalidInputError
from ketch.records import Record, field

DEFAULT_CONFIG = "/etc/ketch/cri.toml"
DEFAULT_LISTEN = "unix:///run/ketch/cri.sock"
DEFAULT_HANDLER = "ketch"
# A container's capabilities when its security context adds and drops none: containerd's (and
# Docker's) set, which Kubernetes workloads are written against (ping needs NET_RAW).
DEFAULT_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"]


class Handler(Record):
    """A runtime handler (the kubelet's RuntimeClass): ``ketch`` is ketch's own runtime; others
    name a runc-compatible binary."""

    name: str
    path: str = ""  # "" for ketch's own


class CRIConfig(Record):
    listen: str = DEFAULT_LISTEN
    root: str | None = None  # the store (default: ketch's)
    runroot: str | None = None
    default_handler: str = DEFAULT_HANDLER
    handlers: dict[str, Handler] = field(default_factory=dict)
    cni_conf_dirs: list[str] = field(default_factory=lambda: ["/etc/cni/net.d"])
    cni_bin_dirs: list[str] = field(default_factory=lambda: ["/opt/cni/bin", "/usr/lib/cni"])
    cni_cache_dir: str = "/var/lib/cni"
    log_directory: str = "/var/log/ketch-cri"  # a container's log when its pod names no directory
    cgroup_driver: str = "cgroupfs"  # or systemd: how cgroup parents are read
    restrict_oom_score_adj: bool | None = None  # None: when this process cannot lower its own
    max_exec_output: int = 16 * 1024 * 1024  # ExecSync's cap per stream, as the CRI asks
    default_capabilities: list[str] = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    pid_namespace_holder: str = "catatonit"  # PID 1 of a pod's shared PID namespace (run with -P), a name or path
    # the streaming server (exec, attach, port-forward): 127.0.0.1 and any free port by default,
    # as containerd's; its URLs carry one-use tokens that expire after stream_token_ttl seconds
    stream_address: str = "127.0.0.1"
    stream_port: int = 0
    stream_token_ttl: float = 60.0
    log_level: str = "info"
    log_format: str = "json"  # or text
    source: str | None = None  # the file read, for SIGHUP

    def handler(self, name: str) -> Handler:
        name = name or self.default_handler
        found = self.handlers.get(name)
        if found is None:
            raise InvalidInputError(f"unknown runtime handler {name!r}: configured are "
                                    f"{', '.join(sorted(self.handlers))}")
        return found


def _default_handlers() -> dict[str, Handler]:
    handlers = {DEFAULT_HANDLER: Handler(DEFAULT_HANDLER)}
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path:
            handlers[name] = Handler(name, path)
    return handlers


def load(path: str | None = None, **overrides: Any) -> CRIConfig:
    """The settings: defaults, then the file (``path``, or the default file when it exists), then
    ``overrides`` (the flags given; None values are not given)."""
    data: dict[str, Any] = {}
    file = path or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    if file:
        try:
            with open(file, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise InvalidInputError(f"reading the CRI config {file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"the CRI config {file} is not valid TOML: {exc}") from exc
    config = CRIConfig(handlers=_default_handlers())
    known = {"listen", "root", "runroot", "runtime", "cni", "logs", "pod", "cgroup_driver", "restrict_oom_score_adj",
             "max_exec_output", "default_capabilities", "streaming", "log_level", "log_format"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInputError(f"the CRI config {file}: unknown key {unknown[0]!r}")
    config.source = file
    for key in ("listen", "root", "runroot", "cgroup_driver", "restrict_oom_score_adj", "max_exec_output",
                "default_capabilities", "log_level", "log_format"):
        if key in data:
            setattr(config, key, data[key])
    runtime = data.get("runtime") or {}
    if "default_handler" in runtime:
        config.default_handler = runtime["default_handler"]
    for name, table in (runtime.get("handlers") or {}).items():
        binary = table.get("path", "")
        if binary and not os.access(binary, os.X_OK):
            raise InvalidInputError(f"the CRI config {file}: runtime handler {name!r}: {binary} is not an "
                                    "executable")
        config.handlers[name] = Handler(name, binary)
    streaming = data.get("streaming") or {}
    for key in ("address", "port", "token_ttl"):
        if key in streaming:
            setattr(config, f"stream_{key}", streaming[key])
    cni = data.get("cni") or {}
    if "conf_dirs" in cni:
        config.cni_conf_dirs = list(cni["conf_dirs"])
    if "bin_dirs" in cni:
        config.cni_bin_dirs = list(cni["bin_dirs"])
    if "cache_dir" in cni:
        config.cni_cache_dir = cni["cache_dir"]
    if "pid_namespace_holder" in (data.get("pod") or {}):
        config.pid_namespace_holder = data["pod"]["pid_namespace_holder"]
    if "directory" in (data.get("logs") or {}):
        config.log_directory = data["logs"]["directory"]
    for key, value in overrides.items():
        if value is not None:
            setattr(config, key, value)
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise InvalidInputError(f"invalid log_level {config.log_level!r}: debug, info, warning or error")
    if config.log_format not in ("json", "text"):
        raise InvalidInputError(f"invalid log_format {config.log_format!r}: json or text")
    if config.cgroup_driver not in ("cgroupfs", "systemd"):
        raise InvalidInputError(f"invalid cgroup_driver {config.cgroup_driver!r}: cgroupfs or systemd")
    config.handler(config.default_handler)  # the default must exist
    return config
