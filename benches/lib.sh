# Shared by the shell benches; sourced (from the repository's root), not run.

# Parses `--some-name VALUE` options into the variables named (SOME_NAME), which hold their
# defaults already; anything else is a usage error.
options() {  # "NAME ..." args...
  local names=" $1 " var usage=""
  shift
  for var in $names; do usage+=" [--$(tr 'A-Z_' 'a-z-' <<<"$var") $var]"; done
  while [ $# -gt 0 ]; do
    var=$(tr 'a-z-' 'A-Z_' <<<"${1#--}")
    if [[ $1 == --* && $# -ge 2 && $names == *" $var "* ]]; then
      printf -v "$var" '%s' "$2"
      shift 2
    else
      echo "usage: $0$usage" >&2
      exit 2
    fi
  done
}

# Installs what is missing, from the `apt` packages named: each argument is COMMAND:PACKAGE (a
# command found on PATH or in /usr/sbin is there).
need() {
  local missing=() c
  for c in "$@"; do
    command -v "${c%%:*}" >/dev/null || [ -x "/usr/sbin/${c%%:*}" ] || missing+=("${c#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Builds the release binary (BIN) and makes a work directory (work) that goes on exit, with every
# process whose pid is added to pids.
bench_setup() {
  cargo build --release -q
  BIN=$PWD/target/release/wakeway
  work=$(mktemp -d)
  pids=()
  trap cleanup EXIT
}
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

# The proxy under test gets the last CORES cores; the load and the upstream the others (or share
# them all when the machine has no others). Sets PROXY_CPUS, LOAD_CPUS, LOAD_N and HZ.
split_cores() {
  local nproc
  nproc=$(nproc)
  if [ "$CORES" -ge "$nproc" ]; then
    PROXY_CPUS="0-$((nproc - 1))"; LOAD_CPUS="0-$((nproc - 1))"
    echo "note: $nproc cores: the proxy shares its cores with the load and the upstream" >&2
  else
    PROXY_CPUS="$((nproc - CORES))-$((nproc - 1))"; LOAD_CPUS="0-$((nproc - CORES - 1))"
  fi
  LOAD_N=$(( nproc > CORES ? nproc - CORES : nproc ))
  HZ=$(getconf CLK_TCK)
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# A wakeway config: the proxy on 127.0.0.1:PORT (with PROXY_KEYS), no admin listener, and one
# service NAME for every host in front of the upstream 127.0.0.1:UP, checked by TCP connect, with
# SERVICE_KEYS in its table and SUBTABLES after.
upstream_config() {  # port up name proxy_keys service_keys subtables
  cat <<TOML
[proxy]
listen = "127.0.0.1:$1"
$4
[admin]
listen = "off"
[[service]]
name = "$3"
hosts = ["*"]
upstreams = ["127.0.0.1:$2"]
$5
[service.health]
kind = "tcp"
$6
TOML
}

# So that the proxy, not wakeway's autoscaler, is what a load bench measures.
UNCAPPED='[service.scaling]
max_concurrency = 100000
target_concurrency = 100000'

# The top of an nginx.conf with WORKERS processes whose files are in DIR; the caller adds its
# `http` block.
nginx_main() {  # dir workers
  cat <<NGINX
worker_processes $2;
error_log $1/error.log;
pid $1/nginx.pid;
events { worker_connections 8192; }
NGINX
}

# Runs nginx on DIR/nginx.conf, pinned to CPUS, in the background (NGINX_PID).
start_nginx() {  # cpus dir
  local nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  taskset -c "$1" "$nginx" -c "$2/nginx.conf" -g 'daemon off;' -p "$2" & NGINX_PID=$!
  pids+=("$NGINX_PID")
}

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
