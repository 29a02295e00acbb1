#!/usr/bin/env bash
# The main job, end to end and offline: make the busybox test image, serve it
# from a local registry (Debian's docker-registry on 127.0.0.1), inspect it
# remotely with ketch, copy it into an OCI layout with ketch, check the layout
# with skopeo, then run a container of it with ketch (pulled from the registry
# into a store of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV=${KETCH_VENV:-$PWD/.venv}
KETCH="$VENV/bin/ketch"

work=$(mktemp -d /tmp/ketch-quickstart.XXXXXX)
registry_pid=
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  if [ -d "$work/store" ]; then
    # containers, mounts, and the bridge and nftables table a bridge network made on the host
    "$KETCH" --root "$work/store" --runroot "$work/run" system reset -f >/dev/null 2>&1 || true
    umount -R -l "$work/store/mounts" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== making the busybox test image (offline, from busybox-static)"
layout=$("$VENV/bin/python" -m tests.support.images busybox)
echo "   $layout"

port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== registry on 127.0.0.1:$port; pushing the image with skopeo"
skopeo copy -q --dest-tls-verify=false "oci:$layout:latest" "docker://127.0.0.1:$port/library/busybox:latest"

echo "== ketch image inspect (manifest and config only, no layers)"
"$KETCH" image inspect --tls-verify=false "docker://127.0.0.1:$port/library/busybox:latest"

echo "== ketch image copy into an OCI layout"
"$KETCH" image copy --src-tls-verify=false --digestfile "$work/digest" \
  "docker://127.0.0.1:$port/library/busybox:latest" "oci:$work/layout:busybox"
echo "   manifest digest: $(cat "$work/digest")"

echo "== skopeo reads what ketch wrote"
skopeo inspect --format '   {{.Digest}} {{.Architecture}} {{.Os}} layers={{len .Layers}}' "oci:$work/layout:busybox"
test "$(skopeo inspect --format '{{.Digest}}' "oci:$work/layout:busybox")" = "$(cat "$work/digest")"
echo "   the digests match"

echo "== ketch run: a container of the image, pulled from the registry into a fresh store"
out=$("$KETCH" --root "$work/store" --runroot "$work/run" run --rm --tls-verify=false \
  "127.0.0.1:$port/library/busybox:latest" sh -c 'echo "hello from $(hostname), pid $$"; exit 7') && status=0 || status=$?
echo "   $out"
test "$status" = 7 || { echo "quickstart: the container's exit status was $status, not 7" >&2; exit 1; }
echo "   exit status $status, as the container's"
test -z "$("$KETCH" --root "$work/store" --runroot "$work/run" ps -a -q)"
echo "== done"
