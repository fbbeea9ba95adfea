#!/usr/bin/env bash
# The near cache on and off in one build, interleaved (on, off, on, off):
# one calcache process with 2 workers and the demo data, wrk -c64 for 8 s
# per run on the demo month grid (gzip), calcache CPU per hit from /proc.
#   scripts/near-ab.sh        # needs target/release/calcache, wrk
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
apt_install wrk
cd "$ROOT"
BIN=target/release/calcache
bench_setup nearab "$BIN" "$ROOT/config"
export CALCACHE__SERVER__WORKERS=2 RUST_LOG=info
token=""
for near in 33554432 0 33554432 0; do
  CALCACHE__CACHE__NEAR_BYTES=$near "$BIN" serve --port "$BENCH_PORT" > "$BENCH_WORK/serve.log" 2>&1 &
  pid=$!; BENCH_PID=$pid
  wait_for calcache 30 curl -sf "http://127.0.0.1:$BENCH_PORT/healthz" -o /dev/null
  [[ -n $token ]] || token=$(demo_token)
  read -r start end < <(month_grid)
  url="http://127.0.0.1:$BENCH_PORT/api/calendar/feed?start=$start&end=$end"
  for _ in 1 2 3; do curl -sf -o /dev/null -H "Authorization: Bearer $token" -H 'Accept-Encoding: gzip' "$url"; done
  wrk -t1 -c64 -d2s -H "Authorization: Bearer $token" -H 'Accept-Encoding: gzip' "$url" >/dev/null
  c0=$(awk '{print $14+$15}' /proc/$pid/stat)
  out=$(wrk -t1 -c64 -d8s --latency -H "Authorization: Bearer $token" -H 'Accept-Encoding: gzip' "$url")
  c1=$(awk '{print $14+$15}' /proc/$pid/stat)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  bytes=$(curl -sf -H "Authorization: Bearer $token" -H 'Accept-Encoding: gzip' "$url" | wc -c)
  echo "near_bytes=$near gzip=${bytes}B req/s=$((reqs/8)) p99=$p99 cpu_us_per_hit=$(( (c1-c0)*10000*1000/reqs/1000 ))"
  kill $pid; wait $pid 2>/dev/null; BENCH_PID=""
done
