#!/usr/bin/env bash
# Cold start of a docker service behind wakeway, against the engine's own start time.
#
#   cargo build --release
#   benches/docker_cold_start.sh [-n RUNS] [--binary PATH] [--build-only]
#
# 1. Builds the image wakeway-whoami:local (and leaves it, for config/docker.toml): FROM
#    scratch, the wakeway binary (stripped) plus the shared libraries `ldd` lists for it, with
#    the command `wakeway whoami`.
# 2. wakeway: one service with min_instances = 0 and idle_timeout = 1s. Each run waits until the
#    service's container is gone, then times one request through wakeway: curl's time to the
#    first byte of the response (create + start + startup probe + the request itself). wakeway's
#    debug log gives the engine's share: how long its create and start API calls took.
# 3. engine: a container of the same image is created (not timed), then timed from before
#    `docker start` to the first byte of the same request straight to its published port
#    (`docker port`, then curl retried until it answers). Each container is removed before the
#    next run. The docker CLI adds ~20 ms per call here (2 calls).
#
# Prints the median, min and max of each, in milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10
binary=target/release/wakeway
build_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    -n) runs="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --build-only) build_only=true; shift ;;
    *) echo "usage: $0 [-n RUNS] [--binary PATH] [--build-only]" >&2; exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "no $binary: run cargo build --release first" >&2; exit 1; }

image=wakeway-whoami:local
scope="bench-$$"
work=$(mktemp -d)
wakeway_pid=""
cleanup() {
  [ -n "$wakeway_pid" ] && kill "$wakeway_pid" 2>/dev/null && wait "$wakeway_pid" 2>/dev/null
  ids=$(docker ps -aq --filter "label=wakeway.scope=$scope"; docker ps -aq --filter "label=wakeway.bench=$scope")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# --- the image -------------------------------------------------------------------------------
mkdir -p "$work/ctx/rootfs"
strip -o "$work/ctx/rootfs/wakeway" "$binary" 2>/dev/null || cp "$binary" "$work/ctx/rootfs/wakeway"
for lib in $(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*'); do
  mkdir -p "$work/ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$work/ctx/rootfs$lib"
done
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["/wakeway", "whoami", "--bind", "0.0.0.0"]\n' >"$work/ctx/Dockerfile"
docker build -q -t "$image" "$work/ctx" >/dev/null 2>&1
echo "image $image built from $binary"
$build_only && exit 0

now_ms() { date +%s%3N; }
stats() { sort -n | awk '{v[NR]=$1} END {printf "median %d ms, min %d ms, max %d ms (%d runs)\n", v[int((NR+1)/2)], v[1], v[NR], NR}'; }
wait_gone() {
  for _ in $(seq 400); do
    [ -z "$(docker ps -aq --filter "label=wakeway.scope=$scope")" ] && return
    sleep 0.05
  done
  echo "the container did not go away" >&2; exit 1
}

# --- through wakeway -------------------------------------------------------------------------
cat >"$work/wakeway.toml" <<EOF
[proxy]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[docker]
scope = "$scope"
stop_on_exit = true
[[service]]
name = "cold"
hosts = ["cold.localhost"]
image = "$image"
stop_grace = "1s"
[service.scaling]
min_instances = 0
idle_timeout = "1s"
stable_window = "2s"
panic_window = "1s"
EOF
RUST_LOG=info,wakeway::runtime::docker=debug NO_COLOR=1 \
  "$binary" run -c "$work/wakeway.toml" >"$work/out" 2>"$work/err" &
wakeway_pid=$!
for _ in $(seq 200); do grep -q '^proxy listening on' "$work/out" && break; sleep 0.05; done
proxy=$(sed -n 's/^proxy listening on //p' "$work/out")
[ -n "$proxy" ] || { cat "$work/err" >&2; exit 1; }

: >"$work/wakeway.ms"
for _ in $(seq "$runs"); do
  wait_gone
  s=$(curl -s -o /dev/null -w '%{http_code} %{time_starttransfer}' -H 'Host: cold.localhost' "http://$proxy/")
  [ "${s% *}" = 200 ] || { echo "wakeway answered ${s% *}" >&2; tail -20 "$work/err" >&2; exit 1; }
  awk -v t="${s#* }" 'BEGIN {printf "%d\n", t * 1000}' >>"$work/wakeway.ms"
done
echo "wakeway, cold request to first byte:    $(stats <"$work/wakeway.ms")"
calls() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" "$work/err" | stats; }
echo "  of which the create API call:          $(calls create_ms)"
echo "  of which the start API call:           $(calls start_ms)"

# --- the engine alone ------------------------------------------------------------------------
: >"$work/engine.ms"
for _ in $(seq "$runs"); do
  id=$(docker create -e PORT=8080 -p 127.0.0.1::8080 --label "wakeway.bench=$scope" "$image")
  t0=$(now_ms)
  docker start "$id" >/dev/null
  port=$(docker port "$id" 8080/tcp | head -1 | sed 's/.*://')
  until curl -s -o /dev/null "http://127.0.0.1:$port/"; do :; done
  t1=$(now_ms)
  echo $((t1 - t0)) >>"$work/engine.ms"
  docker rm -f "$id" >/dev/null
done
echo "docker start to first byte, same image: $(stats <"$work/engine.ms")"
