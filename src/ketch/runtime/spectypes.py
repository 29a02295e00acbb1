"""The OCI runtime spec's ``config.json`` as types, for type checkers (runtime-spec 1.0.2 and the
parts of 1.1 ketch reads).

Imported only under ``TYPE_CHECKING``: the runtime's start path does not import ``typing``. At run
time a config is the plain dict ``json`` gives; these types say which keys it may hold and what
their values are. Keys ketch does not read are left to ``dict[str, Any]``.
"""

from __future__ import annotations

from typing import Any, TypedDict


class User(TypedDict, total=False):
    uid: int
    gid: int
    umask: int
    additionalGids: list[int]
    username: str


class ConsoleSize(TypedDict):
    height: int
    width: int


class Rlimit(TypedDict):
    type: str
    hard: int
    soft: int


class Capabilities(TypedDict, total=False):
    bounding: list[str]
    effective: list[str]
    inheritable: list[str]
    permitted: list[str]
    ambient: list[str]


class Process(TypedDict, total=False):
    terminal: bool
    consoleSize: ConsoleSize
    user: User
    args: list[str]
    commandLine: str
    env: list[str]
    cwd: str
    capabilities: Capabilities
    rlimits: list[Rlimit]
    noNewPrivileges: bool
    apparmorProfile: str
    oomScoreAdj: int
    selinuxLabel: str
    scheduler: dict[str, Any]
    ioPriority: dict[str, Any]


class Root(TypedDict, total=False):
    path: str
    readonly: bool


class Mount(TypedDict, total=False):
    destination: str
    source: str
    type: str
    options: list[str]
    uidMappings: list[dict[str, int]]
    gidMappings: list[dict[str, int]]


class Hook(TypedDict, total=False):
    path: str
    args: list[str]
    env: list[str]
    timeout: int


class Hooks(TypedDict, total=False):
    prestart: list[Hook]
    createRuntime: list[Hook]
    createContainer: list[Hook]
    startContainer: list[Hook]
    poststart: list[Hook]
    poststop: list[Hook]


class Namespace(TypedDict, total=False):
    type: str
    path: str


class IDMapping(TypedDict):
    containerID: int
    hostID: int
    size: int


class Device(TypedDict, total=False):
    type: str
    path: str
    major: int
    minor: int
    fileMode: int
    uid: int
    gid: int


class Linux(TypedDict, total=False):
    namespaces: list[Namespace]
    uidMappings: list[IDMapping]
    gidMappings: list[IDMapping]
    timeOffsets: dict[str, dict[str, int]]
    devices: list[Device]
    cgroupsPath: str
    resources: dict[str, Any]  # cgroup settings: memory, cpu, pids, blockIO, hugepageLimits, devices, unified
    rootfsPropagation: str
    seccomp: dict[str, Any]
    sysctl: dict[str, str]
    maskedPaths: list[str]
    readonlyPaths: list[str]
    mountLabel: str
    personality: dict[str, Any]
    intelRdt: dict[str, Any]


class Spec(TypedDict, total=False):
    """A whole ``config.json``."""

    ociVersion: str
    process: Process
    root: Root
    hostname: str
    domainname: str
    mounts: list[Mount]
    hooks: Hooks
    annotations: dict[str, str]
    linux: Linux
