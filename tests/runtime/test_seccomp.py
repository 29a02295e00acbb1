"""Seccomp: profiles from the config compiled with libseccomp, cached, loaded before exec."""

from __future__ import annotations

import json
import os

import pytest

DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
              "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                           {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}


def test_rules_errno_and_argument_conditions(bundle):
    bundle.config["linux"]["seccomp"] = DENY_MKDIR
    bundle.config["root"]["readonly"] = False
    result = bundle.run("sh", "-c", "mkdir /made 2>&1; echo status=$?; touch /file && echo touch-ok; "
                                    "linux32 true 2>&1; echo linux32=$?; linux64 true; echo linux64=$?")
    out = result.stdout
    assert "Permission denied" in out and "status=1" in out and "touch-ok" in out
    assert "linux32=1" in out and "linux64=0" in out  # only personality(8) is refused
    assert not (bundle.path / "rootfs/made").exists()
    cached = os.listdir(bundle.root / ".seccomp-cache")
    assert len(cached) == 1 and cached[0].endswith(".bpf")
    again = bundle.run("sh", "-c", "mkdir /made 2>&1; true", name="c2")  # from the cache
    assert "Permission denied" in again.stdout


def test_exec_gets_the_filter_too(bundle):
    bundle.config["linux"]["seccomp"] = DENY_MKDIR
    bundle.config["root"]["readonly"] = False
    bundle.args("sleep", "30")
    bundle.runtime("create", "--bundle", str(bundle.path), "c1", check=True)
    bundle.runtime("start", "c1", check=True)
    result = bundle.runtime("exec", "c1", "sh", "-c", "mkdir /x 2>&1; echo $?")
    assert "Permission denied" in result.stdout
    # The profile cache lives under --root; list shows containers only.
    listed = json.loads(bundle.runtime("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listed] == ["c1"]
    bundle.runtime("delete", "--force", "c1", check=True)


def test_default_errno_action(bundle):
    import pyseccomp

    arch = pyseccomp.system_arch()
    everything = []
    for number in range(0, 460):
        try:
            everything.append(pyseccomp.resolve_syscall(arch, number).decode())
        except ValueError:
            continue  # a gap in the table
    allowed = [name for name in everything if not name.startswith("mkdir")]
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                                         "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}
    result = bundle.run("sh", "-c", "echo allowed; mkdir /tmp/x 2>&1")
    assert "allowed" in result.stdout and "not implemented" in result.stdout.lower(), result


@pytest.mark.parametrize("profile, message", [
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]},
     "unknown system call"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}, "unknown seccomp architecture"),
    ({"defaultAction": "SCMP_ACT_SOMETIMES"}, "unknown or unsupported seccomp action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     "unknown seccomp operator"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WHATEVER"]}, "unknown seccomp flag"),
])
def test_bad_profiles_leave_nothing(bundle, profile, message):
    bundle.config["linux"]["seccomp"] = profile
    bundle.args("true")
    result = bundle.runtime("create", "--bundle", str(bundle.path), "c1")
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert bundle.runtime("list", "-q").stdout == ""
    assert json.loads(bundle.runtime("list", "--format", "json").stdout) == []
