"""Seccomp filters from ``linux.seccomp``: compiled with libseccomp (through pyseccomp), cached,
and loaded by the container's init just before it execs the program.

Compiling a profile the size of podman's default takes longer than runc's whole start (crun found
the same), so the compiled BPF program is kept under the runtime root, keyed by the profile, the
libseccomp version and the host architecture; later containers with the same profile load it
without importing pyseccomp at all. Loading is one ``seccomp(2)`` call (ketch.syscalls).
"""

from __future__ import annotations

import errno
import os

from ketch.errors import InvalidInputError, KetchError
from ketch.runtime import leanjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# linux/seccomp.h
SECCOMP_SET_MODE_FILTER = 1
FILTER_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
           "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
           "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
             "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
ARCHITECTURES = {  # runtime-spec name -> AUDIT_ARCH_* (linux/audit.h), what libseccomp takes
    "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X32": 0x4000003E,
    "SCMP_ARCH_ARM": 0x40000028, "SCMP_ARCH_AARCH64": 0xC00000B7, "SCMP_ARCH_MIPS": 0x00000008,
    "SCMP_ARCH_MIPS64": 0x80000008, "SCMP_ARCH_MIPS64N32": 0xA0000008, "SCMP_ARCH_MIPSEL": 0x40000008,
    "SCMP_ARCH_MIPSEL64": 0xC0000008, "SCMP_ARCH_MIPSEL64N32": 0xE0000008, "SCMP_ARCH_PPC": 0x00000014,
    "SCMP_ARCH_PPC64": 0x80000015, "SCMP_ARCH_PPC64LE": 0xC0000015, "SCMP_ARCH_S390": 0x00000016,
    "SCMP_ARCH_S390X": 0x80000016, "SCMP_ARCH_RISCV64": 0xC00000F3,
}


class SeccompError(KetchError):
    """A seccomp profile could not be compiled or loaded."""


def _action(name: Any, errno_ret: Any, where: str) -> int:
    if name not in ACTIONS:
        raise InvalidInputError(f"config.json: {where}: unknown or unsupported seccomp action {name!r}")
    value = ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        code = errno.EPERM if errno_ret is None else errno_ret
        if not isinstance(code, int) or not 0 <= code <= 0xFFFF:
            raise InvalidInputError(f"config.json: {where}: errnoRet {code!r} is not an errno number")
        value |= code
    return value


def compile_profile(profile: dict[str, Any]) -> bytes:
    """The BPF program of a runtime-spec seccomp object. Every name is checked: an unknown
    action, operator, architecture, flag or syscall is an error."""
    import tempfile

    try:
        import pyseccomp
    except ImportError as exc:  # pragma: no cover - a dependency of ketch
        raise SeccompError("seccomp needs the pyseccomp package (and libseccomp)") from exc
    if not isinstance(profile, dict):
        raise InvalidInputError("config.json: linux.seccomp must be an object")
    default = _action(profile.get("defaultAction"), profile.get("defaultErrnoRet"), "linux.seccomp.defaultAction")
    for flag in profile.get("flags") or []:
        if flag not in FILTER_FLAGS:
            raise InvalidInputError(f"config.json: unknown seccomp flag {flag!r}")
    try:
        syscall_filter = pyseccomp.SyscallFilter(default)
        for arch in profile.get("architectures") or []:
            if arch not in ARCHITECTURES:
                raise InvalidInputError(f"config.json: unknown seccomp architecture {arch!r}")
            if not syscall_filter.exist_arch(ARCHITECTURES[arch]):
                syscall_filter.add_arch(ARCHITECTURES[arch])
        for i, rule in enumerate(profile.get("syscalls") or []):
            where = f"linux.seccomp.syscalls[{i}]"
            if not isinstance(rule, dict) or not isinstance(rule.get("names"), list) or not rule["names"]:
                raise InvalidInputError(f"config.json: {where}.names must be a non-empty list")
            action = _action(rule.get("action"), rule.get("errnoRet"), where)
            if action == default:
                continue  # libseccomp refuses rules that do what the default does
            conditions = []
            for arg in rule.get("args") or []:
                if arg.get("op") not in OPERATORS:
                    raise InvalidInputError(f"config.json: {where}: unknown seccomp operator {arg.get('op')!r}")
                conditions.append(pyseccomp.Arg(arg.get("index", 0), OPERATORS[arg["op"]], arg.get("value", 0),
                                                arg.get("valueTwo", 0)))
            for name in rule["names"]:
                if not isinstance(name, str) or pyseccomp.resolve_syscall(pyseccomp.system_arch(), name) < 0:
                    # libseccomp knows every architecture's names: one it does not know is a typo
                    if not _known_anywhere(pyseccomp, name):
                        raise InvalidInputError(f"config.json: {where}: unknown system call {name!r}")
                    continue  # a call of another architecture (multi-arch profiles list them all)
                try:
                    syscall_filter.add_rule(action, name, *conditions)
                except OSError as exc:
                    if exc.errno != errno.EEXIST:
                        raise
                    # listed twice (podman's default profile does, per capability): the first rule stands
        with tempfile.TemporaryFile() as out:
            syscall_filter.export_bpf(out)
            out.seek(0)
            return out.read()
    except OSError as exc:
        raise SeccompError(f"compiling the seccomp profile: {exc.strerror or exc}") from exc


def _known_anywhere(pyseccomp, name: str) -> bool:
    for arch in ARCHITECTURES.values():
        try:
            if pyseccomp.resolve_syscall(arch, name) >= 0:
                return True
        except (OSError, ValueError):
            continue
    return False


def program_for(profile: dict[str, Any], cache_dir: str) -> bytes:
    """The compiled program, from the cache when this profile was compiled before."""
    from ketch.runtime.private import sha256 as constructor  # (no OpenSSL to load at every start)

    sha256 = constructor()

    key = sha256(leanjson.dumps([profile, os.uname().machine, _libseccomp_version()]).encode()).hexdigest()
    path = os.path.join(cache_dir, f"{key}.bpf")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        pass
    program = compile_profile(profile)
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(program)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only root: compile again next time
    return program


def _libseccomp_version() -> str:
    """Which libseccomp compiled a cached program: the shared library's resolved file name."""
    for directory in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib"):
        path = os.path.join(directory, "libseccomp.so.2")
        if os.path.exists(path):
            return os.path.realpath(path)
    return "unknown"


def flags_of(profile: dict[str, Any]) -> int:
    value = 0
    for flag in profile.get("flags") or []:
        value |= FILTER_FLAGS[flag]
    return value


def load(program: bytes, flags: int) -> None:
    """Install the filter on this thread (seccomp(2), SECCOMP_SET_MODE_FILTER)."""
    from ketch import syscalls

    if len(program) % 8 or not program:
        raise SeccompError("the compiled seccomp program is damaged")
    syscalls.seccomp_set_filter(flags, program)
