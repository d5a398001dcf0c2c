#!/usr/bin/env bash
# How fast `wakeway replay` is: a generated day of access log (1,000,000 requests to two
# services, a day-and-night curve with bursts, 20-200 ms each, cold starts at the quiet hours),
# replayed through two configs on one core.
#
#   benches/replay.sh [LINES]        (needs python3; builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
source benches/lib.sh
bench_setup
python3 - "$lines" > "$work/access.log" <<'PY'
import json, math, random, sys
random.seed(7)
n = int(sys.argv[1])
day = 86400.0
t0 = 1795737600  # 2026-11-27T00:00:00Z
# Arrival times: a day-and-night curve (quiet at 04:00, busy at 16:00) plus a few bursts.
weights = [0.02 + (1 - math.cos((h - 4) / 24 * 2 * math.pi)) for h in range(24)]
total = sum(weights)
times = []
for h, w in enumerate(weights):
    k = int(n * w / total)
    times += [h * 3600 + random.random() * 3600 for _ in range(k)]
while len(times) < n:
    burst = random.random() * day
    times += [burst + random.random() * 2 for _ in range(min(500, n - len(times)))]
times.sort()
def stamp(t):
    s = int(t); ms = int((t - s) * 1000)
    d, r = divmod(s, 86400)
    return "2026-11-%02dT%02d:%02d:%02d.%03dZ" % (27 + d, r // 3600, r // 60 % 60, r % 60, ms)
out = sys.stdout
for k, t in enumerate(times):
    svc = "web" if k % 4 else "api"
    dur = random.uniform(20, 200)
    cold = k < 3 or random.random() < 0.00002
    queue = 900.0 if cold else 0.0
    out.write(json.dumps({"time": stamp(t), "service": svc, "revision": svc + "-00001",
        "instance": svc + "-00001-a", "method": "GET", "path": "/", "protocol": "HTTP/1.1",
        "status": 200, "bytes_in": 0, "bytes_out": 512, "duration_ms": round(dur + queue, 3),
        "queue_ms": queue, "cold_start": cold, "upstream_connect_ms": None,
        "client": "10.0.0.7:51234", "user_agent": "bench", "referer": None,
        "request_id": "r%d" % k, "trace_id": None}, separators=(",", ":")) + "\n")
PY
service() {  # name idle_timeout [scaling keys]
  cat <<TOML
[[service]]
name = "$1"
hosts = ["$1.localhost"]
command = ["wakeway", "whoami"]
[service.scaling]
idle_timeout = "$2"
${3:-}
TOML
}
for name in current proposed; do
  idle=$([ "$name" = current ] && echo 5m || echo 15m)
  { service web "$idle" "target_concurrency = 10"; service api "$idle"; } > "$work/$name.toml"
done
echo "$(wc -l < "$work/access.log") lines, $(du -h "$work/access.log" | cut -f1)"
time taskset -c 1 "$BIN" replay "$work/access.log" -c "$work/current.toml" -c "$work/proposed.toml"
