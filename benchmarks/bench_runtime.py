"""Benchmark: start-to-exit of ``ketch-runtime run`` against ``runc run`` and
``crun run`` on the same busybox bundle (``true``), interleaved in one run.

crun refuses this machine's hybrid cgroup layout until the hugetlb
controller is mounted as v1 (see shared/MACHINE.md); this script mounts it
when it is missing and says so.

Two scenarios: the bundle as ``spec`` writes it, and the same with podman's default seccomp
profile (in the form podman passes it to a runtime). Each is timed twice: interleaved (every
round runs each tool once) and each tool's runs back to back. runc's start waits for an RCU
grace period or not (its write into cgroup.procs), and cgroup work just before it makes the wait
likelier, so runc does better back to back; both medians are printed.

Run:  .venv/bin/python -m benchmarks.bench_runtime [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ketch.runtime.spec import default_spec
from tests.runtime.conftest import busybox_rootfs

KETCH_RUNTIME = str(Path(sys.executable).parent / "ketch-runtime")


def ensure_hugetlb_v1() -> None:
    path = Path("/sys/fs/cgroup/hugetlb")
    if not (path.exists() and any(path.iterdir())):
        path.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(path)], check=True)
        print("(mounted the hugetlb cgroup controller as v1 so that crun runs here)")


# podman's default capabilities on these machines (see shared/MACHINE.md)
PODMAN_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
               "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"}


def podman_default_seccomp() -> dict:
    """containers/common's default profile (/usr/share/containers/seccomp.json) in the runtime-spec
    form podman hands a runtime: rules kept or dropped by their capability and architecture
    conditions, as podman does for a container with the default capabilities on x86_64."""
    profile = json.loads(Path("/usr/share/containers/seccomp.json").read_text())
    out = {"defaultAction": profile["defaultAction"], "architectures": [], "syscalls": []}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == "SCMP_ARCH_X86_64":
            out["architectures"] = [entry["architecture"], *entry.get("subArchitectures", [])]
    for rule in profile["syscalls"]:
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if includes.get("caps") and not set(includes["caps"]) <= PODMAN_CAPS:
            continue
        if includes.get("arches") and "amd64" not in includes["arches"]:
            continue
        if excludes.get("caps") and set(excludes["caps"]) & PODMAN_CAPS:
            continue
        if excludes.get("arches") and "amd64" in excludes["arches"]:
            continue
        kept = {k: rule[k] for k in ("names", "action", "args", "errnoRet") if k in rule}
        out["syscalls"].append(kept)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    ensure_hugetlb_v1()
    with tempfile.TemporaryDirectory(prefix="ketch-bench-rt-") as tmp:
        bundle = Path(tmp) / "bundle"
        (bundle / "rootfs").mkdir(parents=True)
        busybox_rootfs(bundle / "rootfs")
        tools = {"ketch-runtime": [KETCH_RUNTIME, "--root", f"{tmp}/ketch"], "runc": ["runc", "--root", f"{tmp}/runc"],
                 "crun": ["crun", "--root", f"{tmp}/crun"]}
        for scenario in ("plain", "podman-seccomp"):
            config = default_spec()
            config["process"].update(terminal=False, args=["true"])
            if scenario == "podman-seccomp":
                config["linux"]["seccomp"] = podman_default_seccomp()
            (bundle / "config.json").write_text(json.dumps(config))
            def one_run(name: str, label: str) -> float:
                start = time.perf_counter()
                result = subprocess.run([*tools[name], "run", "--bundle", str(bundle), label],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
                elapsed = time.perf_counter() - start
                if result.returncode != 0:
                    raise SystemExit(f"{name} failed: {result.stderr}")
                return elapsed

            # Interleaved (each round runs every tool once), then each tool's runs back to back:
            # runc's start waits for an RCU grace period or not (its cgroup.procs write), and the
            # other tools' cgroup work between its runs makes the wait likelier, so both are shown.
            interleaved: dict[str, list[float]] = {name: [] for name in tools}
            for n in range(args.rounds + 2):
                for name in tools:
                    elapsed = one_run(name, f"{scenario}{n}")
                    if n >= 2:  # two warm-up rounds (ketch-runtime's first one compiles the profile)
                        interleaved[name].append(elapsed)
            in_blocks = {name: [one_run(name, f"{scenario}-block{n}") for n in range(args.rounds)] for name in tools}
            print(f"-- {scenario}")
            for title, times in (("interleaved", interleaved), ("back to back", in_blocks)):
                medians = {name: statistics.median(values) for name, values in times.items()}
                print(f"{title}: " + ", ".join(f"{name} median {value * 1000:.1f} ms (min "
                                              f"{min(times[name]) * 1000:.1f})" for name, value in medians.items()))
                print(f"  ratio ketch-runtime/runc {medians['ketch-runtime'] / medians['runc']:.2f}, "
                      f"ketch-runtime/crun {medians['ketch-runtime'] / medians['crun']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
