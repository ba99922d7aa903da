#!/usr/bin/env bash
# The Docker image, built and run the way our machines can: base images from debootstrap imported
# into podman, `buildah bud --isolation chroot` on the vfs driver, `podman run --runtime runc`.
# Checks from outside the container: gRPC health with spindlectl, /metrics over HTTP, the image's
# HEALTHCHECK, spindled as PID 1 and not root, the refusal to serve an open port, and a clean exit
# 0 on SIGTERM. Removes what it made (the vfs store grows by GBs).
#
#   SPINDLE_TEST_IMAGE=1 tests/deploy/image_test.sh REPO_ROOT [SPINDLECTL]
#
# scripts/test runs it (SPINDLE_TEST_IMAGE=1); a bare ctest skips it (exit 77) without that variable.
# Needs root and what scripts/install-deps installs. The build stage compiles through this machine's
# ccache, mounted read-only (SPINDLE_IMAGE_CCACHE=DIR to name another, =none for none): after the
# build on the host it only links, and the test takes minutes instead of the 20-50 a cold compile
# takes on 2 cores. SPINDLE_IMAGE_STORE=DIR uses (and keeps) that containers store, e.g. to reuse
# cached layers; by default a temporary one is used and deleted.
set -euo pipefail
if [ "${SPINDLE_TEST_IMAGE:-0}" != 1 ]; then
  echo "skipped: set SPINDLE_TEST_IMAGE=1 to build and run the image (scripts/test does)"
  exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: debootstrap and rootful podman need root"
  exit 77
fi
root=$(cd "${1:?usage: image_test.sh REPO_ROOT [SPINDLECTL]}" && pwd)
spindlectl=${2:-}
for tool in podman buildah debootstrap runc curl; do
  command -v "$tool" >/dev/null || { echo "FAIL $tool missing: scripts/install-deps"; exit 1; }
done

work=$(mktemp -d /var/tmp/spindle-image-test-XXXXXX)
if [ -n "${SPINDLE_IMAGE_STORE:-}" ]; then
  store=(--root "$SPINDLE_IMAGE_STORE" --storage-driver vfs)
  keep_store=1
else
  store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
  keep_store=0
fi
image=localhost/spindle:image-test
name=spindle-image-test-$$
cleanup() {
  podman "${store[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  if [ "$keep_store" -eq 0 ]; then
    podman "${store[@]}" system reset -f >/dev/null 2>&1 || true
  else
    podman "${store[@]}" rmi -f "$image" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start=$(date +%s)

# Base images under the names the Dockerfile's FROM lines use (no registry here).
if ! podman "${store[@]}" image exists debian:bookworm; then
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian > "$work/debootstrap.log"
  tar -C "$work/rootfs" -c . | podman "${store[@]}" import - debian:bookworm > /dev/null
  rm -rf "$work/rootfs"
fi
podman "${store[@]}" tag debian:bookworm debian:bookworm-slim
echo "base images ready after $(( $(date +%s) - start )) s"

# Build: the HEALTHCHECK only survives in the docker format.
cache=${SPINDLE_IMAGE_CCACHE:-}
if [ -z "$cache" ] && command -v ccache >/dev/null; then cache=$(ccache -k cache_dir); fi
volumes=()
if [ -n "$cache" ] && [ "$cache" != none ] && [ -d "$cache" ]; then
  volumes=(-v "$cache:/ccache:ro")
  echo "compiler cache: $cache"
fi
if buildah "${store[@]}" bud --layers --isolation chroot --format docker "${volumes[@]}" -t "$image" \
     -f "$root/Dockerfile" "$root" > "$work/build.log" 2>&1; then
  grep -E "^\[[0-9]+/[0-9]+\]" "$work/build.log" | tail -1 || true
  ok "image_builds ($(( $(date +%s) - start )) s)"
else
  tail -50 "$work/build.log"
  fail image_builds
  echo "$passed passed, $failed failed"
  exit 1
fi
size=$(podman "${store[@]}" image inspect "$image" --format '{{.Size}}')
echo "image size: $((size / 1024 / 1024)) MiB"
[ "$(podman "${store[@]}" image inspect "$image" --format '{{.Config.User}}')" = "10001:10001" ] \
  && ok runs_as_non_root_user || fail runs_as_non_root_user
podman "${store[@]}" image inspect "$image" --format '{{json .Config.Healthcheck}}' | grep -q spindlectl \
  && ok has_healthcheck || fail has_healthcheck

run=(podman "${store[@]}" run --runtime runc --network host
     --ulimit nofile=1024:20000 --ulimit nproc=1024:1024)

# With no tokens, no TLS and no --insecure, the image refuses to serve 0.0.0.0.
if out=$("${run[@]}" --rm -e SPINDLE_LISTEN=0.0.0.0:$(free_port) -e SPINDLE_METRICS_LISTEN=127.0.0.1:0 \
           "$image" 2>&1); then
  fail refuses_open_port
else
  grep -q "refusing to listen on non-loopback" <<<"$out" && ok refuses_open_port || { echo "$out"; fail refuses_open_port; }
fi

# Serve with a tokens file mounted read-only, on free host ports (host network: the container's
# 0.0.0.0 is the host's, so the checks below come from outside the container).
grpc_port=$(free_port)
metrics_port=$(free_port)
token=image-test-token-0123456789abcdef
printf 'tester read-only %s\n' "$token" > "$work/tokens"
chmod 0644 "$work/tokens"
"${run[@]}" -d --name "$name" -v "$work/tokens:/etc/spindle/tokens:ro" \
  -e SPINDLE_LISTEN=0.0.0.0:$grpc_port -e SPINDLE_METRICS_LISTEN=0.0.0.0:$metrics_port \
  -e SPINDLE_AUTH_TOKENS=/etc/spindle/tokens "$image" > /dev/null

health() {
  if [ -n "$spindlectl" ]; then
    "$spindlectl" --address=127.0.0.1:$grpc_port --timeout-ms=2000 health
  else  # the image's own spindlectl in a second container, still outside the first
    "${run[@]}" --rm --entrypoint /usr/local/bin/spindlectl "$image" \
      --address=127.0.0.1:$grpc_port --timeout-ms=2000 health
  fi
}
serving=0
for _ in $(seq 1 60); do  # bounded: 60 tries, 0.5 s apart
  if [ "$(health 2>/dev/null)" = SERVING ]; then serving=1; break; fi
  sleep 0.5
done
[ "$serving" -eq 1 ] && ok grpc_health_serving || { podman "${store[@]}" logs "$name" | tail -20; fail grpc_health_serving; }
if [ -n "$spindlectl" ]; then
  out=$("$spindlectl" --address=127.0.0.1:$grpc_port --timeout-ms=5000 info 2>&1 || true)
  grep -q UNAUTHENTICATED <<<"$out" && ok info_needs_token || { echo "$out"; fail info_needs_token; }
  "$spindlectl" --address=127.0.0.1:$grpc_port --timeout-ms=5000 --token="$token" info > /dev/null \
    && ok info_with_token || fail info_with_token
fi
metrics=$(curl -fsS --noproxy '*' --max-time 10 "http://127.0.0.1:$metrics_port/metrics" || true)
grep -q '^spindle_build_info{' <<<"$metrics" && grep -q '^grpc_server_handled_total{' <<<"$metrics" \
  && ok metrics_served || fail metrics_served
podman "${store[@]}" healthcheck run "$name" > /dev/null 2>&1 && ok healthcheck_passes || fail healthcheck_passes
[ "$(podman "${store[@]}" exec "$name" cat /proc/1/comm)" = spindled ] && ok spindled_is_pid_1 || fail spindled_is_pid_1
[ "$(podman "${store[@]}" exec "$name" sh -c 'echo $(id -u)')" = 10001 ] && ok not_root || fail not_root

podman "${store[@]}" stop -t 20 "$name" > /dev/null
code=$(podman "${store[@]}" inspect "$name" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] && ok exits_0_on_sigterm || { podman "${store[@]}" logs "$name" | tail -5; fail "exits_0_on_sigterm (exit $code)"; }
podman "${store[@]}" logs "$name" 2>&1 | grep -q "event=stopped" && ok drains_on_sigterm || fail drains_on_sigterm

echo "image test took $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
