#!/usr/bin/env bash
# gRPC through wakeway against nginx's grpc_pass, side by side in one run: the same upstream
# (`wakeway whoami`'s tonic server over h2c), the same h2load load (unary calls of
# wakeway.whoami.v1.Whoami/Unary, many streams per connection), alternating rounds, medians. The
# proxy under test gets --cores cores of its own (taskset); h2load and the upstream share the
# rest. The figure that decides is CPU time per call on the proxy's cores (from /proc/stat), with
# the proxy processes' own CPU time beside it; req/s is noisy on a shared machine.
#
#   bash benches/grpc.sh --cores 1                 # 5 rounds of 10 s per proxy
#   bash benches/grpc.sh --cores 1 --rounds 7 --duration 15 --connections 16 --streams 16
#
# Bounded: rounds x 2 x duration, plus warm-ups. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

source benches/lib.sh
CORES=1 ROUNDS=5 DURATION=10 CONNECTIONS=16 STREAMS=16
options "CORES ROUNDS DURATION CONNECTIONS STREAMS" "$@"
need h2load:nghttp2-client nginx:nginx-light
bench_setup
split_cores

UP=$(free_port); NG=$(free_port); WW=$(free_port)

# The upstream: whoami's tonic server.
WAKEWAY_INSTANCE=bench taskset -c "$LOAD_CPUS" "$BIN" whoami --port "$UP" >"$work/whoami.log" 2>&1 & pids+=($!)

mkdir -p "$work/ng"
{ nginx_main "$work/ng" "$CORES"; cat <<NGINX; } > "$work/ng/nginx.conf"
http {
  access_log off;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG http2;
    http2_max_concurrent_streams 1024;
    keepalive_requests 1000000;
    location / { grpc_pass grpc://app; }
  }
}
NGINX
start_nginx "$PROXY_CPUS" "$work/ng"; NGPID=$NGINX_PID

upstream_config "$WW" "$UP" bench "workers = $CORES" 'protocol = "h2c"' "$UNCAPPED" > "$work/wakeway.toml"
RUST_LOG=warn taskset -c "$PROXY_CPUS" "$BIN" run -c "$work/wakeway.toml" >"$work/wakeway.log" 2>&1 & WPID=$!; pids+=($WPID)
wait_port "$UP"; wait_port "$NG"; wait_port "$WW"

# One unary call's body: a gRPC frame holding Call { message: "hi" }.
printf '\x00\x00\x00\x00\x04\x0a\x02hi' > "$work/call.bin"

load() {  # port seconds
  taskset -c "$LOAD_CPUS" h2load -D "$2" -c "$CONNECTIONS" -m "$STREAMS" -t "$LOAD_N" \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$work/call.bin" \
    "http://127.0.0.1:$1/wakeway.whoami.v1.Whoami/Unary"
}

results="$work/results.tsv"
one() {  # name port pid
  local name=$1 port=$2 pid=$3 b0 p0 b1 p1 out
  b0=$(cores_busy); p0=$(proc_cpu "$pid")
  out=$(load "$port" "$DURATION")
  b1=$(cores_busy); p1=$(proc_cpu "$pid")
  python3 - "$name" "$HZ" "$b0" "$b1" "$p0" "$p1" "$out" >>"$results" <<'PY'
import re, sys
name, hz, b0, b1, p0, p1, out = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:7]), sys.argv[7]
done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out).group(2))
bad = sum(int(x) for x in re.search(r"\d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out).groups())
rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
m = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
def dur(s):
    v = re.match(r"([\d.]+)(us|ms|s)", s)
    return float(v.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[v.group(2)]
mean = dur(m.group(1)) if m else 0.0
cpu_core = (b1 - b0) / hz * 1e6 / max(done, 1)
cpu_proc = (p1 - p0) / hz * 1e6 / max(done, 1)
print(f"{name}\t{rps:.0f}\t{mean:.3f}\t{bad}\t{cpu_core:.2f}\t{cpu_proc:.2f}")
PY
  tail -1 "$results" | awk -F'\t' -v r="$round" '{printf "round %s  %-8s %9s calls/s  mean %7s ms  failed %s  CPU/call %6s us (cores) %6s us (process)\n", r, $1, $2, $3, $4, $5, $6}'
}

echo "gRPC unary through wakeway vs nginx grpc_pass: --cores $CORES (proxy on cpus $PROXY_CPUS, h2load -c$CONNECTIONS -m$STREAMS and the upstream on $LOAD_CPUS), $ROUNDS rounds of ${DURATION}s, $(date -u +%F), $(nproc) cores"
# Both must answer the call before anything is measured.
for w in "$NG" "$WW"; do
  out=$(load "$w" 2)
  echo "$out" | grep -q " 0 failed, 0 errored" || { echo "warm-up against port $w failed:"; echo "$out"; exit 1; }
done
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then one nginx "$NG" "$NGPID"; one wakeway "$WW" "$WPID"
  else one wakeway "$WW" "$WPID"; one nginx "$NG" "$NGPID"; fi
done

python3 - "$results" <<'PY'
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {"nginx": [], "wakeway": []}
for r in rows:
    by[r[0]].append([float(x) for x in r[1:]])
def med(name, i): return st.median(r[i] for r in by[name])
print()
print("| proxy   | calls/s (median) | mean ms | failed | CPU µs/call, cores | CPU µs/call, process |")
print("| ------- | ---------------- | ------- | ------ | ------------------ | -------------------- |")
for n in ("nginx", "wakeway"):
    print(f"| {n:7} | {med(n,0):16.0f} | {med(n,1):7.3f} | {sum(r[2] for r in by[n]):6.0f} | {med(n,3):18.2f} | {med(n,4):20.2f} |")
pairs = list(zip(by["wakeway"], by["nginx"]))
print()
print(f"median of paired ratios (wakeway / nginx): calls/s {st.median(w[0]/n[0] for w,n in pairs):.3f}, "
      f"CPU/call (cores) {st.median(w[3]/n[3] for w,n in pairs):.3f}, "
      f"CPU/call (process) {st.median(w[4]/n[4] for w,n in pairs):.3f}")
PY
