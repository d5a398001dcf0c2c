#!/usr/bin/env bash
# wakeway against nginx as the proxy, side by side in one run: the same upstream (nginx answering
# `return 200`), the same wrk load, alternating rounds, medians. The proxy under test gets --cores
# cores of its own (taskset); wrk and the upstream share the rest. The figure that decides is CPU
# time per request on the proxy's cores (from /proc/stat) — steady where req/s is noisy on a shared
# machine — with the proxy processes' own CPU time (utime+stime) beside it.
#
#   bash benches/load.sh --cores 1                # 5 rounds of 10 s per proxy
#   bash benches/load.sh --cores 2 --rounds 7 --duration 15s --connections 128
#   bash benches/load.sh --cores 1 --baseline /path/to/older/wakeway   # old and new side by side
#
# Bounded: rounds x 2 x duration, plus warm-ups. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

CORES=1 ROUNDS=5 DURATION=10s CONNECTIONS=64 THREADS= BASELINE=
while [ $# -gt 0 ]; do
  case "$1" in
    --cores) CORES=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --baseline) BASELINE=$(realpath "$2"); shift 2 ;;
    *) echo "usage: $0 [--cores N] [--rounds R] [--duration 10s] [--connections C] [--threads T] [--baseline BIN]" >&2; exit 2 ;;
  esac
done

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
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The proxy gets the last CORES cores; wrk and the upstream the others (or share core 0 when
# the machine has no others).
source benches/lib.sh
THREADS=${THREADS:-$LOAD_N}

UP=$(free_port); NG=$(free_port); WW=$(free_port); OLD=$(free_port)

mkdir -p "$work/up" "$work/ng"
cat > "$work/up/nginx.conf" <<NGINX
worker_processes $LOAD_N;
error_log $work/up/error.log;
pid $work/up/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "hello from the upstream\n"; } }
}
NGINX
taskset -c "$LOAD_CPUS" "$NGINX" -c "$work/up/nginx.conf" -g 'daemon off;' -p "$work/up" & pids+=($!)

cat > "$work/ng/nginx.conf" <<NGINX
worker_processes $CORES;
error_log $work/ng/error.log;
pid $work/ng/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$UP; keepalive 256; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
}
NGINX
taskset -c "$PROXY_CPUS" "$NGINX" -c "$work/ng/nginx.conf" -g 'daemon off;' -p "$work/ng" & NGPID=$!; pids+=($NGPID)

wakeway_config() {  # port
cat <<TOML
[proxy]
listen = "127.0.0.1:$1"
workers = $CORES
[admin]
listen = "off"
[[service]]
name = "bench"
hosts = ["*"]
upstreams = ["127.0.0.1:$UP"]
[service.health]
kind = "tcp"
[service.scaling]
max_concurrency = 100000
target_concurrency = 100000
TOML
}
wakeway_config "$WW" > "$work/wakeway.toml"
RUST_LOG=warn taskset -c "$PROXY_CPUS" "$BIN" run -c "$work/wakeway.toml" >"$work/wakeway.log" 2>&1 & WPID=$!; pids+=($WPID)
wait_port "$UP"; wait_port "$NG"; wait_port "$WW"
contenders=(nginx wakeway)
if [ -n "$BASELINE" ]; then
  wakeway_config "$OLD" > "$work/baseline.toml"
  RUST_LOG=warn taskset -c "$PROXY_CPUS" "$BASELINE" run -c "$work/baseline.toml" >"$work/baseline.log" 2>&1 & OPID=$!; pids+=($OPID)
  wait_port "$OLD"
  contenders+=(baseline)
fi
port_of() { case $1 in nginx) echo "$NG" ;; wakeway) echo "$WW" ;; baseline) echo "$OLD" ;; esac; }
pid_of() { case $1 in nginx) echo "$NGPID" ;; wakeway) echo "$WPID" ;; baseline) echo "$OPID" ;; esac; }

results="$work/results.tsv"
one() {  # name port pid
  local name=$1 port=$2 pid=$3
  local b0 p0 b1 p1 out
  b0=$(cores_busy); p0=$(proc_cpu "$pid")
  out=$(taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port/")
  b1=$(cores_busy); p1=$(proc_cpu "$pid")
  python3 - "$name" "$HZ" "$b0" "$b1" "$p0" "$p1" "$out" >>"$results" <<'PY'
import re, sys
name, hz, b0, b1, p0, p1, out = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:7]), sys.argv[7]
def dur(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p50 = dur(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
p99 = dur(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
errs = sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", out)))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errs += int(m.group(1)) if m else 0
cpu_core = (b1 - b0) / hz * 1e6 / max(reqs, 1)
cpu_proc = (p1 - p0) / hz * 1e6 / max(reqs, 1)
print(f"{name}\t{rps:.0f}\t{p50:.3f}\t{p99:.3f}\t{errs}\t{cpu_core:.2f}\t{cpu_proc:.2f}")
PY
  tail -1 "$results" | awk -F'\t' -v r="$round" '{printf "round %s  %-8s %9s req/s  p50 %7s ms  p99 %7s ms  errors %s  CPU/req %6s us (cores) %6s us (process)\n", r, $1, $2, $3, $4, $5, $6, $7}'
}

echo "${contenders[*]} as proxy: --cores $CORES (proxy on cpus $PROXY_CPUS, wrk -t$THREADS -c$CONNECTIONS and upstream on $LOAD_CPUS), $ROUNDS rounds of $DURATION, $(date -u +%F), $(nproc) cores"
for c in "${contenders[@]}"; do taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$(port_of "$c")/" >/dev/null; done
# Each round starts with the next contender, so none always runs first (or last).
n=${#contenders[@]}
for round in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    c=${contenders[$(((round - 1 + k) % n))]}
    one "$c" "$(port_of "$c")" "$(pid_of "$c")"
  done
done

python3 - "$results" <<'PY'
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r[0], []).append([float(x) for x in r[1:]])
def med(name, i): return st.median(r[i] for r in by[name])
print()
print("| proxy   | req/s (median) | p50 ms | p99 ms | errors | CPU µs/req, cores | CPU µs/req, process |")
print("| ------- | -------------- | ------ | ------ | ------ | ----------------- | ------------------- |")
for n in by:
    print(f"| {n:7} | {med(n,0):14.0f} | {med(n,1):6.3f} | {med(n,2):6.3f} | {sum(r[3] for r in by[n]):6.0f} | {med(n,4):17.2f} | {med(n,5):19.2f} |")
print()
def ratios(a, b):
    pairs = list(zip(by[a], by[b]))
    print(f"median of paired ratios ({a} / {b}): req/s {st.median(w[0]/n[0] for w,n in pairs):.3f}, "
          f"CPU/req (cores) {st.median(w[4]/n[4] for w,n in pairs):.3f}, "
          f"CPU/req (process) {st.median(w[5]/n[5] for w,n in pairs):.3f}, "
          f"p99 {st.median(w[2]/n[2] for w,n in pairs):.3f}")
ratios("wakeway", "nginx")
if "baseline" in by:
    ratios("baseline", "nginx")
    ratios("wakeway", "baseline")
PY
echo
echo "resident memory after the runs: wakeway $(awk '/VmRSS/ {print $2}' /proc/$WPID/status) KiB, nginx workers $(for p in $(pgrep -P $NGPID); do awk '/VmRSS/ {print $2}' /proc/$p/status; done | awk '{s+=$1} END {print s}') KiB"
