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

source benches/lib.sh
CORES=1 ROUNDS=5 DURATION=10s CONNECTIONS=64 THREADS= BASELINE=
options "CORES ROUNDS DURATION CONNECTIONS THREADS BASELINE" "$@"
[ -z "$BASELINE" ] || BASELINE=$(realpath "$BASELINE")
need wrk:wrk nginx:nginx-light
bench_setup
split_cores
THREADS=${THREADS:-$LOAD_N}

UP=$(free_port); NG=$(free_port); WW=$(free_port); OLD=$(free_port)

mkdir -p "$work/up" "$work/ng"
{ nginx_main "$work/up" "$LOAD_N"; cat <<NGINX; } > "$work/up/nginx.conf"
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { return 200 "hello from the upstream\n"; } }
}
NGINX
start_nginx "$LOAD_CPUS" "$work/up"

{ nginx_main "$work/ng" "$CORES"; cat <<NGINX; } > "$work/ng/nginx.conf"
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
start_nginx "$PROXY_CPUS" "$work/ng"; NGPID=$NGINX_PID

wakeway_config() { upstream_config "$1" "$UP" bench "workers = $CORES" "" "$UNCAPPED"; }  # port
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
echo "resident memory after the runs: wakeway $(rss "$WPID") KiB, nginx workers $(for p in $(pgrep -P "$NGPID"); do rss "$p"; done | awk '{s+=$1} END {print s}') KiB"
