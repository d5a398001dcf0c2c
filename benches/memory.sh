#!/usr/bin/env bash
# Memory: resident set of wakeway (1) idle, (2) holding N idle keep-alive clients (each sent one
# request), (3) a minute after they left — for several rounds — and (4) with 1,000 services at
# zero. Loopback only; bounded by ROUNDS x (connect + hold + 60 s).
#
#   bash benches/memory.sh                  # 10,000 clients, 3 rounds
#   CLIENTS=2000 ROUNDS=5 SETTLE=60 bash benches/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-10000}
ROUNDS=${ROUNDS:-3}
SETTLE=${SETTLE:-60}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

source benches/lib.sh
bench_setup

UP=$(free_port); WW=$(free_port)
"$BIN" whoami --port "$UP" >/dev/null 2>&1 & pids+=($!)
upstream_config "$WW" "$UP" mem "" "" "" > "$work/w.toml"
RUST_LOG=warn "$BIN" run -c "$work/w.toml" >"$work/w.log" 2>&1 & WPID=$!; pids+=($WPID)
wait_port "$UP"; wait_port "$WW"

cat > "$work/clients.py" <<'PY'
import asyncio, sys
port, n, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
async def one(held):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET / HTTP/1.1\r\nHost: mem.localhost\r\n\r\n")
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    await r.readexactly(length)
    held.append(w)
async def main():
    held = []
    for i in range(0, n, 500):
        await asyncio.gather(*(one(held) for _ in range(min(500, n - i))))
    print("connected", len(held), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in held:
        w.close()
asyncio.run(main())
PY

base=$(rss "$WPID")
echo "wakeway memory, $(date -u +%F), $(nproc) cores, $CLIENTS idle keep-alive clients per round"
echo "idle: $base KiB"
for round in $(seq "$ROUNDS"); do
  coproc CL { python3 "$work/clients.py" "$WW" "$CLIENTS" hold; }
  read -r line <&"${CL[0]}"
  held=$(rss "$WPID")
  echo "go" >&"${CL[1]}"
  wait "$CL_PID" 2>/dev/null || true
  sleep "$SETTLE"
  after=$(rss "$WPID")
  awk -v r="$round" -v b="$base" -v h="$held" -v a="$after" -v n="$CLIENTS" 'BEGIN {
    printf "round %d: holding %s: %d KiB (+%.1f KiB per connection); %ds after they left: %d KiB (%.0f%% of idle)\n",
      r, n, h, (h - b) / n, '"$SETTLE"', a, 100 * a / b }'
done

# 1,000 services at zero (process runtime: nothing runs until a request comes).
W2=$(free_port)
{
  printf '[proxy]\nlisten = "127.0.0.1:%s"\n[admin]\nlisten = "off"\n' "$W2"
  for i in $(seq 1000); do
    printf '[[service]]\nname = "s%d"\nhosts = ["s%d.localhost"]\ncommand = ["wakeway", "whoami", "--port", "{port}"]\n' "$i" "$i"
  done
} > "$work/many.toml"
RUST_LOG=warn "$BIN" run -c "$work/many.toml" >"$work/many.log" 2>&1 & MPID=$!; pids+=($MPID)
wait_port "$W2"
# Every controller has run its first ticks (and read its executable's version) by then; at 5 s
# some had not, and the figure came out lower than what stays.
sleep 15
echo "1,000 services at zero: $(rss "$MPID") KiB"
