#!/usr/bin/env bash
# Cold start of a process service behind wakeway, against the app's own start.
#
#   cargo build --release
#   benches/cold_start.sh [-n RUNS] [--binary PATH]
#
# 1. app alone: `wakeway whoami --port P` is spawned and connected to in a tight loop; the time
#    from just before the spawn to the first byte of the answer to `GET /`.
# 2. through wakeway: one service running `wakeway whoami` with min_instances = 0 and
#    idle_timeout = 1s. Each run waits until the service has no instance, then times one request
#    through the proxy: from just before the connect to the first byte of the answer (wakeway
#    spawns the app, probes it until it answers, forwards the request).
# 3. warm: the same request again at once, for reference.
#
# The three alternate within each run, so all see the same machine. Prints the median, min and
# max of each, in milliseconds, and of the cold-start overhead (cold request minus the app alone,
# run by run). Run it a few times on an idle machine; it is not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10
binary=target/release/wakeway
while [ $# -gt 0 ]; do
  case "$1" in
    -n) runs="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    *) echo "usage: $0 [-n RUNS] [--binary PATH]" >&2; exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "no $binary: run cargo build --release first" >&2; exit 1; }

exec python3 - "$(realpath "$binary")" "$runs" <<'PY'
import json, os, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, "benches")
from lib import first_byte, free_port, wait

binary, runs = sys.argv[1], int(sys.argv[2])

def ms(xs):
    return f"median {statistics.median(xs):6.2f}  min {min(xs):6.2f}  max {max(xs):6.2f}"

def app_alone():
    port = free_port()
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "whoami", "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    took = (first_byte(port, "x", retry_refused=True)[0] - t0) * 1000
    p.terminate()
    p.wait()
    return took

proxy, admin = free_port(), free_port()
work = tempfile.mkdtemp()
cfg = os.path.join(work, "wakeway.toml")
with open(cfg, "w") as f:
    f.write(f"""
[proxy]
listen = "127.0.0.1:{proxy}"

[admin]
listen = "127.0.0.1:{admin}"

[[service]]
name = "cold"
hosts = ["cold.localhost"]
command = ["{binary}", "whoami"]

[service.scaling]
min_instances = 0
idle_timeout = "1s"
""")
wk = subprocess.Popen([binary, "run", "-c", cfg], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)

def instances():
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/v1/services/cold", timeout=2) as r:
        return json.load(r)["instances"]

# Alternating, so both see the same machine.
alone, cold, warm = [], [], []
try:
    wait(lambda: instances() == [], "wakeway's admin API")
    for _ in range(runs):
        wait(lambda: instances() == [], "the service to scale to zero")
        alone.append(app_alone())
        t0 = time.perf_counter()
        cold.append((first_byte(proxy, "cold.localhost")[0] - t0) * 1000)
        t0 = time.perf_counter()
        warm.append((first_byte(proxy, "cold.localhost")[0] - t0) * 1000)
finally:
    wk.terminate()
    wk.wait()

print(f"runs: {runs}, binary: {binary}")
print(f"app alone, spawn to first byte:    {ms(alone)} ms")
print(f"through wakeway, cold request:     {ms(cold)} ms")
print(f"through wakeway, warm request:     {ms(warm)} ms")
diff = [c - a for c, a in zip(cold, alone)]
print(f"cold-start overhead (paired):      {ms(diff)} ms")
PY
