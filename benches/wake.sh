#!/usr/bin/env bash
# Waking a service at zero, side by side in one run: the first request's time to first byte
# after a cold start (idle_action = "stop"), a socket-activated cold start, and a thaw from
# frozen (idle_action = "freeze"), against the app's own start.
#
#   cargo build --release
#   .ci/needs/20-python-apps.sh          # gunicorn + Flask from PyPI in /opt/wakeway-test-venv
#   benches/wake.sh [-n RUNS] [--binary PATH] [--venv DIR]
#
# Apps: gunicorn + Flask (one worker), the same with a 1 s import before Flask loads (a heavy
# framework's start), and `wakeway whoami`. Each app runs as three services of one wakeway:
#   stop    idle_action = "stop", the default tcp probe: spawn, probe until it answers, forward.
#   socket  socket_activation = true: wakeway binds the socket, the request waits in its
#           backlog while the app boots; no probe.
#   freeze  idle_action = "freeze": the instance idles into the cgroup freezer; the request
#           thaws it, one readiness check, forward.
# and, for reference, "alone": the app spawned by hand on a port, connected to in a tight loop.
#
# Each run waits until every service is at zero (no instance) or frozen, then times one request
# per service in turn (the order rotates from run to run): from just before the connect to the
# first byte of the answer; after a thaw, the same request again at once ("warm": what the
# request itself costs, through wakeway, on a running instance). Prints the median and p99 (nearest rank:
# with 20 runs, the slowest) of each in milliseconds, with the thaw time wakeway reports in
# `Server-Timing` (thaw, readiness check, until the request has its slot), then the memory a frozen instance holds (its cgroup's figure, as
# `wakeway_frozen_memory_bytes` reports it, and its processes' RSS) and the CPU time its
# processes used over 5 s while frozen. Not part of the tests; run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=20
binary=target/release/wakeway
venv="${WAKEWAY_TEST_VENV:-/opt/wakeway-test-venv}"
while [ $# -gt 0 ]; do
  case "$1" in
    -n) runs="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --venv) venv="$2"; shift 2 ;;
    *) echo "usage: $0 [-n RUNS] [--binary PATH] [--venv DIR]" >&2; exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "no $binary: run cargo build --release first" >&2; exit 1; }
[ -x "$venv/bin/gunicorn" ] || { echo "no gunicorn in $venv: run .ci/needs/20-python-apps.sh" >&2; exit 1; }

exec python3 - "$(realpath "$binary")" "$runs" "$venv" <<'PY'
import json, math, os, re, shutil, statistics, subprocess, sys, tempfile, time
import urllib.request

sys.path.insert(0, "benches")
from lib import first_byte, free_port, wait

binary, runs, venv = sys.argv[1], int(sys.argv[2]), sys.argv[3]
HZ = os.sysconf("SC_CLK_TCK")
work = tempfile.mkdtemp(prefix="wake-bench-")

# The apps: how each is started on a port, and on the inherited socket.
apps = {}
for name, slow in (("flask", 0), ("flask-1s-import", 1)):
    d = os.path.join(work, name)
    os.makedirs(d)
    with open(os.path.join(d, "app.py"), "w") as f:
        f.write(f"import os, time\ntime.sleep({slow})\nfrom flask import Flask\n"
                "app = Flask(__name__)\n@app.route('/')\ndef index():\n"
                "    return f'pid {os.getpid()}\\n'\n")
    gunicorn = [f"{venv}/bin/gunicorn", "-w", "1", "--chdir", d, "app:app"]
    apps[name] = {
        # gunicorn's systemd support takes the socket from LISTEN_FDS (no --bind).
        "socket": gunicorn,
        "port": lambda port, g=gunicorn: g[:1] + ["-b", f"127.0.0.1:{port}"] + g[1:],
    }
apps["whoami"] = {
    "socket": [binary, "whoami"],
    "port": lambda port: [binary, "whoami", "--port", str(port)],
}
MODES = ("stop", "socket", "freeze")

def toml_list(argv):
    return "[" + ", ".join(json.dumps(a) for a in argv) + "]"

proxy, admin = free_port(), free_port()
services = []
for app, a in apps.items():
    for mode in MODES:
        name = f"{app}-{mode}"
        services.append((app, mode, name))
        command = a["socket"] if mode == "socket" else a["port"]("{port}")
        extra = "socket_activation = true\n" if mode == "socket" else ""
        action = "freeze" if mode == "freeze" else "stop"
        services_toml = f"""
[[service]]
name = "{name}"
hosts = ["{name}.localhost"]
command = {toml_list(command)}
{extra}
[service.scaling]
idle_timeout = "1s"
idle_action = "{action}"
frozen_timeout = "1h"
"""
        with open(os.path.join(work, "services.toml"), "a") as f:
            f.write(services_toml)
cfg = os.path.join(work, "wakeway.toml")
with open(cfg, "w") as f:
    f.write(f'[proxy]\nlisten = "127.0.0.1:{proxy}"\n\n[admin]\nlisten = "127.0.0.1:{admin}"\n')
    f.write(open(os.path.join(work, "services.toml")).read())

def api(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=5) as r:
        return r.read().decode()

def instances(name):
    return json.loads(api(f"/v1/services/{name}"))["instances"]

def at_rest(mode, name):
    inst = instances(name)
    if mode == "freeze":
        return len(inst) == 1 and inst[0]["state"] == "frozen"
    return inst == []

def app_alone(app):
    port = free_port()
    t0 = time.perf_counter()
    p = subprocess.Popen(apps[app]["port"](port), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        took, _ = first_byte(port, "x", retry_refused=True)
    finally:
        p.terminate()
        p.wait()
    return (took - t0) * 1000

def cgroup_pids(pid):
    """The processes of the cgroup `pid` is in (the freezer's, or the v2 one)."""
    for line in open(f"/proc/{pid}/cgroup"):
        _, ctrl, path = line.rstrip("\n").split(":", 2)
        if ctrl == "freezer":
            procs = f"/sys/fs/cgroup/freezer{path}/cgroup.procs"
        elif ctrl == "":
            procs = f"/sys/fs/cgroup{path}/cgroup.procs"
        else:
            continue
        if os.path.exists(procs):
            return [int(p) for p in open(procs).read().split()]
    return [pid]

def cpu_jiffies(pids):
    total = 0
    for p in pids:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        total += int(f[11]) + int(f[12])  # utime, stime
    return total

def rss_bytes(pids):
    total = 0
    for p in pids:
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total

results = {(app, mode): [] for app in apps for mode in MODES + ("alone", "warm")}
thaw_said = {app: [] for app in apps}
wk = subprocess.Popen([binary, "run", "-c", cfg], stdout=subprocess.DEVNULL,
                      stderr=open(os.path.join(work, "wakeway.log"), "w"))
try:
    wait(lambda: instances(services[0][2]) == [], "wakeway's admin API")
    # The frozen ones need a first instance to freeze.
    for app, mode, name in services:
        if mode == "freeze":
            first_byte(proxy, f"{name}.localhost")
    for run in range(runs):
        for app, mode, name in services:
            wait(lambda: at_rest(mode, name), f"{name} at rest")
        order = services[run % len(services):] + services[:run % len(services)]
        for app, mode, name in order:
            t0 = time.perf_counter()
            took, head = first_byte(proxy, f"{name}.localhost")
            results[(app, mode)].append((took - t0) * 1000)
            if mode == "freeze":
                m = re.search(r"thaw;dur=([0-9.]+)", head)
                if not m:
                    raise SystemExit(f"{name}: no thaw in Server-Timing: {head}")
                thaw_said[app].append(float(m.group(1)))
                # The same request again at once, on the thawed instance: the app's own time.
                t0 = time.perf_counter()
                took, _ = first_byte(proxy, f"{name}.localhost")
                results[(app, "warm")].append((took - t0) * 1000)
        for app in apps:
            results[(app, "alone")].append(app_alone(app))
        print(f"run {run + 1}/{runs} done", file=sys.stderr)

    # What a frozen instance holds, and the CPU it takes, all three frozen at once.
    for app, mode, name in services:
        if mode == "freeze":
            wait(lambda: at_rest(mode, name), f"{name} frozen")
    held = {}
    metrics = api("/metrics")
    for app in apps:
        name = f"{app}-freeze"
        pid = instances(name)[0]["pid"]
        pids = cgroup_pids(pid)
        m = re.search(rf'wakeway_frozen_memory_bytes{{service="{re.escape(name)}"}} (\S+)', metrics)
        held[app] = {"pids": pids, "cgroup": float(m.group(1)) if m else None,
                     "rss": rss_bytes(pids), "cpu0": cpu_jiffies(pids)}
    time.sleep(5)
    for app in apps:
        h = held[app]
        h["cpu_ms"] = (cpu_jiffies(h["pids"]) - h["cpu0"]) * 1000 / HZ
        h["still_frozen"] = at_rest("freeze", f"{app}-freeze")
finally:
    wk.terminate()
    wk.wait()
    shutil.rmtree(work, ignore_errors=True)

def p99(xs):
    s = sorted(xs)
    return s[math.ceil(0.99 * len(s)) - 1]

def cell(xs):
    return f"{statistics.median(xs):.1f} / {p99(xs):.1f}"

print(f"\n{runs} runs, binary {binary}, {os.cpu_count()} cores; median / p99 in ms, "
      "time to first byte of the first request\n")
print("| app | app alone (spawn to first byte) | stop: cold start | socket activation | freeze: thaw | wakeway's own thaw (Server-Timing) | warm request |")
print("|---|---|---|---|---|---|---|")
for app in apps:
    print(f"| {app} | {cell(results[(app, 'alone')])} | {cell(results[(app, 'stop')])} | "
          f"{cell(results[(app, 'socket')])} | {cell(results[(app, 'freeze')])} | "
          f"{cell(thaw_said[app])} | {cell(results[(app, 'warm')])} |")
print("\n| app | frozen: memory (cgroup) | frozen: RSS of its processes | CPU used over 5 s frozen |")
print("|---|---|---|---|")
mib = lambda b: "?" if b is None else f"{b / 2**20:.1f} MiB"
for app in apps:
    h = held[app]
    print(f"| {app} | {mib(h['cgroup'])} | {mib(h['rss'])} | {h['cpu_ms']:.0f} ms"
          f"{'' if h['still_frozen'] else ' (thawed meanwhile!)'} |")
PY
