# Shared by the benches that pit wakeway against nginx (load.sh, grpc.sh); sourced, not run.
# Needs CORES set; sets PROXY_CPUS, LOAD_CPUS, LOAD_N and HZ.

NPROC=$(nproc)
if [ "$CORES" -ge "$NPROC" ]; then
  PROXY_CPUS="0-$((NPROC - 1))"; LOAD_CPUS="0-$((NPROC - 1))"
  echo "note: $NPROC cores: the proxy shares its cores with the load and the upstream" >&2
else
  PROXY_CPUS="$((NPROC - CORES))-$((NPROC - 1))"; LOAD_CPUS="0-$((NPROC - CORES - 1))"
fi
LOAD_N=$(( NPROC > CORES ? NPROC - CORES : NPROC ))
HZ=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# Busy jiffies of the proxy's cores.
cores_busy() {
  python3 - "$PROXY_CPUS" <<'PY'
import sys
lo, hi = map(int, sys.argv[1].split("-"))
busy = 0
for line in open("/proc/stat"):
    f = line.split()
    if f[0].startswith("cpu") and f[0] != "cpu" and lo <= int(f[0][3:]) <= hi:
        v = list(map(int, f[1:]))
        busy += sum(v) - v[3] - v[4]
print(busy)
PY
}

# utime+stime jiffies of a process and its children (nginx workers).
proc_cpu() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
