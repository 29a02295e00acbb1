"""Benchmark: what checking a signature adds to a pull. The busybox image, signed by skopeo with
a GnuPG key of the benchmark's own into a file:// lookaside, is pulled from a registry on
127.0.0.1 into an empty ketch store under a ``signedBy`` policy and under
``insecureAcceptAnything``, in turns; skopeo copies it to ``dir:`` under the same two policies.
The same image signed by ketch with a sigstore key (into the registry's attachment) is pulled
under ``sigstoreSigned`` and under ``insecureAcceptAnything`` (both read the attachment: the
store keeps signatures; the difference is the check). Reported: the medians and what each check
adds (target: at most 50 ms for ketch). skopeo is measured under ``signedBy`` only: Debian's
skopeo is built with sigstore verification disabled.

Run:  .venv/bin/python -m benchmarks.bench_trust [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import images
from tests.support.registry import run_registry

KETCH = str(Path(sys.executable).parent / "ketch")


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    layout = images.ensure("busybox")
    work = Path(tempfile.mkdtemp(prefix="ketch-bench-trust-"))
    home = work / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Bench <bench@ketch.test>",
                        "ed25519", "sign", "1y"], env=env, check=True, capture_output=True)
        listing = subprocess.run(["gpg", "--list-keys", "--with-colons"], env=env, check=True, capture_output=True,
                                 text=True).stdout
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        (work / "key.gpg").write_bytes(subprocess.run(["gpg", "--export", fingerprint], env=env, check=True,
                                                      capture_output=True).stdout)
        with run_registry(workdir=work) as registry:
            registries_d = work / "registries.d"
            registries_d.mkdir()
            (registries_d / "bench.yaml").write_text(
                f"docker:\n  {registry.host}:\n    lookaside: file://{work}/lookaside\n"
                f"    lookaside-staging: file://{work}/lookaside\n    use-sigstore-attachments: true\n")
            (work / "pass").write_text("bench\n")
            subprocess.run([KETCH, "image", "generate-sigstore-key", "--output-prefix", str(work / "sigstore"),
                            "--passphrase-file", str(work / "pass")], check=True, capture_output=True)
            policies = {}
            for name, requirement in (("signedBy", {"type": "signedBy", "keyType": "GPGKeys",
                                                    "keyPath": str(work / "key.gpg")}),
                                      ("sigstoreSigned", {"type": "sigstoreSigned",
                                                          "keyPath": str(work / "sigstore.pub")}),
                                      ("insecure", {"type": "insecureAcceptAnything"})):
                policies[name] = work / f"{name}.json"
                policies[name].write_text(json.dumps({"default": [requirement]}))
            reference = f"{registry.host}/bench/busybox:1"
            subprocess.run(["skopeo", "--registries.d", str(registries_d), "copy", "-q", "--dest-tls-verify=false",
                            "--sign-by", fingerprint, f"oci:{layout}:latest", f"docker://{reference}"], env=env,
                           check=True, capture_output=True)
            sigstore_reference = f"{registry.host}/bench/sigstore:1"
            subprocess.run([KETCH, "--registries.d", str(registries_d), "--insecure-policy", "image", "copy", "-q",
                            "--dest-tls-verify=false", "--sign-by-sigstore-private-key", str(work / "sigstore.private"),
                            "--sign-passphrase-file", str(work / "pass"), f"oci:{layout}:latest",
                            f"docker://{sigstore_reference}"], check=True, capture_output=True)
            times: dict[tuple[str, str], list[float]] = {}

            def ketch_pull(label: str, policy: str, image: str) -> None:
                """One pull into an empty store under ``policy``, timed under ``label``."""
                root = work / "store"
                times.setdefault((label, policy), []).append(timed(
                    [KETCH, "--root", str(root / "root"), "--runroot", str(root / "run"), "--registries.d",
                     str(registries_d), "--policy", str(policies[policy]), "pull", "-q", "--tls-verify=false",
                     image], env))
                shutil.rmtree(root)

            for _ in range(args.rounds):
                for policy in ("sigstoreSigned", "insecure"):
                    ketch_pull("ketch-sigstore", policy, sigstore_reference)
                for policy in ("signedBy", "insecure"):
                    ketch_pull("ketch", policy, reference)
                    times.setdefault(("skopeo", policy), []).append(timed(
                        ["skopeo", "--registries.d", str(registries_d), "--policy", str(policies[policy]), "copy",
                         "-q", "--src-tls-verify=false", f"docker://{reference}", f"dir:{work / 'dir'}"], env))
                    shutil.rmtree(work / "dir")
        median = {key: statistics.median(value) for key, value in times.items()}
        print(f"{args.rounds} rounds, medians (busybox, one layer, a registry on 127.0.0.1)")
        for tool in ("ketch", "skopeo"):
            added = 1000 * (median[(tool, "signedBy")] - median[(tool, "insecure")])
            print(f"{tool:6}  signedBy {median[(tool, 'signedBy')]:.3f} s   insecureAcceptAnything "
                  f"{median[(tool, 'insecure')]:.3f} s   the check adds {added:+.0f} ms")
        added = 1000 * (median[("ketch-sigstore", "sigstoreSigned")] - median[("ketch-sigstore", "insecure")])
        print(f"ketch   sigstoreSigned {median[('ketch-sigstore', 'sigstoreSigned')]:.3f} s   insecureAcceptAnything "
              f"{median[('ketch-sigstore', 'insecure')]:.3f} s   the check adds {added:+.0f} ms (the sigstore image)")
        print(f"ketch / skopeo under signedBy: {median[('ketch', 'signedBy')] / median[('skopeo', 'signedBy')]:.2f}")
        return 0
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
