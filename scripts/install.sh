#!/usr/bin/env bash
# Installs everything ketch and its tests need on Debian 12, as root:
# Debian packages (the peers and the registry the tests run) and a virtual
# environment with ketch and its Python dependencies, installed with pip.
# Safe to run again: it installs only what is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${KETCH_VENV:-$PWD/.venv}

# Peers and fixtures used by the tests and benchmarks (see docs/testing.md).
PACKAGES=(
  ca-certificates curl
  python3 python3-venv python3-pip
  python3-dev gcc libc6-dev  # build ketch._linux (the runtime's system calls) and ketch-monitor at install
  docker-registry   # distribution v2, the real registry the tests start on 127.0.0.1
  skopeo            # the peer ketch must interoperate with
  busybox-static    # the offline busybox test image is made from it
  podman buildah runc crun  # load, save, run and build what ketch makes; the peers in tests and benchmarks
  hyperfine
  libseccomp2       # what pyseccomp loads: the runtime's seccomp filters
  catatonit         # ketch run --init (podman's init_path)
  nftables          # nft: masquerading and published ports of bridge networks
  systemd           # systemd-socket-activate (socket-activation tests), systemd-analyze verify of units
  systemd-container # systemd-nspawn: boots a Debian root with systemd, for the system container tests
  xfsprogs          # benchmarks/bench_system.py measures deployments on XFS as well as ext4
  # gcc and libc6-dev (above) also build the tests' small static helper (socket activation, sd_notify)
  debootstrap       # the tests' Debian base image (minbase, from the Debian archive apt uses)
  gnupg             # image sign (GPG simple signing), and the tests' keys
  containernetworking-plugins  # the CNI plugins (bridge, host-local, portmap) the CRI server runs for pods
  containerd        # the CRI peer (containerd 1.6 with its CRI plugin) in tests and benchmarks
  clamav            # ketch scan --scanner clamav (the tests give it an EICAR signature of their own)
  openscap-scanner openscap-utils ssg-debian  # ketch scan --scanner openscap (oscap-chroot, SSG content)
  rpm               # the scan tests make a real rpm database (rpmbuild, rpm --justdb) and read it back with rpm -qa
  uidmap            # newuidmap/newgidmap: rootless ketch's (and podman's) user namespaces
  passt             # pasta: rootless ketch's default network and published ports
  slirp4netns       # rootless podman's network, for the peer side of the rootless tests
  fuse-overlayfs    # rootless storage where native overlay is refused
  golang-go         # the scan tests build a Go program with modules and read its build info back with go version -m
  docker.io         # the docker CLI, a client of ketch system service in the tests (its daemon is never started)
  docker-compose    # compose 1.29, another client of it
  git               # ketch build's git sources (ADD repo.git, git contexts), and the tests' repository
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install.sh: need root to install Debian packages: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "install.sh: installing ${#missing[@]} Debian packages (${missing[*]}); this takes a few minutes"
  apt-get update -qq
  # No service may start from a package's scripts (docker.io would start dockerd where there is
  # no systemd): a policy-rc.d saying so, unless the machine has one already.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install.sh: the Debian packages are installed"
fi

# Any Python >= 3.11 will do (Debian 12 ships 3.11). Debian's own first: the environment must be
# usable by every user (the rootless tests run ketch as an ordinary user), which an interpreter
# under root's home is not; else python3 on PATH.
if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; fi
PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"install.sh: ketch needs Python 3.11 or newer, found {sys.version.split()[0]}")
PY
if [ ! -x "$VENV/bin/python" ]; then
  echo "install.sh: making the virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "install.sh: installing ketch and its Python packages into $VENV (pip)"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q ".[test]"
# On PATH: links in /usr/local/bin (root only; a link of another program is left alone).
if [ "$(id -u)" = 0 ] && [ -d /usr/local/bin ]; then
  for program in ketch ketch-runtime; do
    link=/usr/local/bin/$program
    if [ ! -e "$link" ] || [ -L "$link" ]; then
      ln -sfn "$VENV/bin/$program" "$link"
    fi
  done
  echo "ketch installed in $VENV and linked into /usr/local/bin: run 'ketch version'"
else
  echo "ketch installed in $VENV: put $VENV/bin on your PATH (export PATH=\"$VENV/bin:\$PATH\")"
fi
