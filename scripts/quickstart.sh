#!/usr/bin/env bash
# The main job, end to end and offline: make the busybox test image, serve it
# from a local registry (Debian's docker-registry on 127.0.0.1), inspect it
# remotely with ketch, copy it into an OCI layout with ketch, and check the
# layout with skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
VENV=${KETCH_VENV:-$PWD/.venv}
KETCH="$VENV/bin/ketch"

work=$(mktemp -d /tmp/ketch-quickstart.XXXXXX)
registry_pid=
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
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
echo "== done: the digests match"
