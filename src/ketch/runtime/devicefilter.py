"""cgroup v2 device rules: an eBPF program of type CGROUP_DEVICE attached to the container's cgroup.

cgroup v2 has no ``devices.allow``/``devices.deny`` files; the kernel asks a BPF program attached
to the cgroup instead. The program is generated here from the config's rules, as runc's
``devicefilter`` and crun's ``ebpf.c`` do: the kernel hands it ``struct bpf_cgroup_dev_ctx``
(``access_type`` = device type in the low 16 bits and access in the high 16, ``major``,
``minor``) and it returns 1 to allow, 0 to deny. No Python library emits BPF bytecode for this
(bcc and friends compile C with LLVM at run time), and the program is a dozen instructions a
rule, so it is assembled by hand.

OCI rules are read in order with later rules winning; the program tests them last to first and
the first match decides. Without a match, access is denied.
"""

from __future__ import annotations

import ctypes
import os
import struct

from ketch.errors import KetchError

_SYS_BPF = 321  # x86_64
_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2

_DEVCG_DEV_BLOCK, _DEVCG_DEV_CHAR = 1, 2
_DEVCG_ACC = {"m": 1, "r": 2, "w": 4}

# Opcodes (linux/bpf.h, linux/bpf_common.h)
_LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
_ALU32_AND_K = 0x54
_ALU32_RSH_K = 0x74
_ALU32_MOV_X = 0xBC
_ALU64_MOV_K = 0xB7
_JMP_JNE_K = 0x55  # if dst != imm: pc += off
_JMP_JNE_X = 0x5D  # if dst != src: pc += off
_JMP_EXIT = 0x95


class DeviceFilterError(KetchError):
    """The kernel refused the device program."""


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule: dict) -> tuple[list[bytes], bool]:
    """One rule: tests that jump past the block when they fail, then return allow or deny; and
    whether it matches every access (what follows it could never run)."""
    from ketch.runtime.cgroups import device_rule

    device_rule(rule)  # the same checks as for v1's devices.allow (one message for a bad rule)
    kind = rule.get("type", "a") or "a"
    access = rule.get("access", "rwm") or "rwm"
    tests: list[tuple] = []  # (code, dst, src, imm); each jumps to the next rule when it fails
    if kind != "a":
        tests.append((_JMP_JNE_K, 2, 0, _DEVCG_DEV_BLOCK if kind == "b" else _DEVCG_DEV_CHAR))
    bits = sum(_DEVCG_ACC[c] for c in set(access))
    if bits != 7:
        # the asked access must lie within the rule's: (r3 & bits) == r3, with r1 as scratch
        tests.append(("access", bits))
    major, minor = rule.get("major"), rule.get("minor")
    if kind != "a" and major not in (None, -1):
        tests.append((_JMP_JNE_K, 4, 0, int(major)))
    if kind != "a" and minor not in (None, -1):
        tests.append((_JMP_JNE_K, 5, 0, int(minor)))
    body: list[tuple] = []
    for test in tests:
        if test[0] == "access":
            body += [(_ALU32_MOV_X, 1, 3, 0, False), (_ALU32_AND_K, 1, 0, test[1], False),
                     (_JMP_JNE_X, 1, 3, 0, True)]
        else:
            body.append((test[0], test[1], test[2], test[3], True))
    body += [(_ALU64_MOV_K, 0, 0, 1 if rule.get("allow") else 0, False), (_JMP_EXIT, 0, 0, 0, False)]
    out = []
    for index, (code, dst, src, imm, jumps) in enumerate(body):
        out.append(_insn(code, dst, src, len(body) - index - 1 if jumps else 0, imm))
    return out, not tests


def program(rules: list[dict]) -> bytes:
    """The program's instructions for OCI ``linux.resources.devices`` rules."""
    insns = [
        _insn(_LDX_MEM_W, 2, 1, 0), _insn(_ALU32_AND_K, 2, imm=0xFFFF),  # r2 = type
        _insn(_LDX_MEM_W, 3, 1, 0), _insn(_ALU32_RSH_K, 3, imm=16),  # r3 = access
        _insn(_LDX_MEM_W, 4, 1, 4),  # r4 = major
        _insn(_LDX_MEM_W, 5, 1, 8),  # r5 = minor
    ]
    for rule in reversed(rules):
        block, matches_all = _rule_block(rule)
        insns += block
        if matches_all:  # the verifier refuses unreachable instructions
            return b"".join(insns)
    insns += [_insn(_ALU64_MOV_K, 0, imm=0), _insn(_JMP_EXIT)]
    return b"".join(insns)


def _bpf(command: int, attr: ctypes.Array) -> int:
    # bpf(2) through ctypes: its attributes hold the addresses of buffers, which ctypes gives.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(_SYS_BPF, command, attr, len(attr))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def attach(directory: str, rules: list[dict]) -> None:
    """Load the program for ``rules`` and attach it to the cgroup v2 ``directory``."""
    code = program(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(128)
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size, log_buf
    struct.pack_into("<IIQQIIQ", attr, 0, _BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8, ctypes.addressof(insns),
                     ctypes.addressof(license_), 1, len(log), ctypes.addressof(log))
    try:
        prog_fd = _bpf(_BPF_PROG_LOAD, attr)
    except OSError as exc:
        detail = [line for line in log.value.decode(errors="replace").splitlines()
                  if line.strip() and not line.startswith("processed ")]
        raise DeviceFilterError(f"loading the device filter: {exc.strerror}"
                                + (f" ({detail[-1]})" if detail else "")) from exc
    try:
        cgroup_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            attr = ctypes.create_string_buffer(128)
            struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI)
            _bpf(_BPF_PROG_ATTACH, attr)
        except OSError as exc:
            raise DeviceFilterError(f"attaching the device filter to {directory}: {exc.strerror}") from exc
        finally:
            os.close(cgroup_fd)
    finally:
        os.close(prog_fd)  # the attachment holds the program
