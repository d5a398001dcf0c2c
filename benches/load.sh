#!/usr/bin/env bash
# Load comparison: wrk against the upstream directly, through nginx, and through wakeway, all on
# loopback, same upstream (`wakeway whoami`). Prints requests/s, latency percentiles and the
# proxies' resident memory. Bounded: each run lasts DURATION.
#   bash benches/load.sh            # defaults: 10s per run, 64 connections, 2 wrk threads
#   DURATION=30s CONNECTIONS=128 bash benches/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q
BIN=target/release/wakeway
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

UP=$(free_port); NG=$(free_port); WW=$(free_port)
"$BIN" whoami --port "$UP" >/dev/null 2>&1 & pids+=($!)
wait_port "$UP"

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
error_log $work/nginx-error.log;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server 127.0.0.1:$UP; keepalive 256; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
NGINX
"$NGINX" -c "$work/nginx.conf" -g 'daemon off;' -p "$work" & pids+=($!)
wait_port "$NG"

cat > "$work/wakeway.toml" <<TOML
[proxy]
listen = "127.0.0.1:$WW"
[admin]
listen = "off"
[[service]]
name = "bench"
hosts = ["*"]
upstreams = ["127.0.0.1:$UP"]
[service.scaling]
max_concurrency = 1000
target_concurrency = 1000
TOML
RUST_LOG=warn "$BIN" run -c "$work/wakeway.toml" >/dev/null 2>&1 & WPID=$!; pids+=($WPID)
wait_port "$WW"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
run() {
  local name=$1 port=$2
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null  # warm-up
  local out; out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '| %-8s | %10s | %8s | %8s |\n' "$name" "$rps" "$p50" "$p99"
}
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, upstream: wakeway whoami, $(nproc) cores"
echo "| target   | requests/s | p50      | p99      |"
echo "| -------- | ---------- | -------- | -------- |"
run direct "$UP"
run nginx "$NG"
run wakeway "$WW"
NGINX_WORKER=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
echo
echo "resident memory after the runs: wakeway $(rss_kib "$WPID") KiB, nginx worker $(rss_kib "$NGINX_WORKER") KiB"
