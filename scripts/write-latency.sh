#!/usr/bin/env bash
# What a write costs from outside: wrk creating work items (POST
# /api/work-items) through one calcache process for 10 s, 4 connections,
# with the demo data loaded. Prints wrk's throughput and latency lines.
#
#   scripts/write-latency.sh [BINARY [CONFIG_DIR]]   # default: target/release/calcache, ./config
#
# For comparing two builds (e.g. with and without the write fence) in one
# run; everything it started is stopped, its database dropped.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
BIN=${1:-target/release/calcache}
CONFIG=${2:-$ROOT/config}
apt_install wrk
export RUST_LOG=${RUST_LOG:-warn}
bench_setup writes "$BIN" "$CONFIG"
work=$BENCH_WORK port=$BENCH_PORT
"$BIN" serve --port "$port" >"$work/serve.log" 2>&1 &
BENCH_PID=$!
wait_for "calcache" 60 curl -sf "http://127.0.0.1:$port/healthz" -o /dev/null
token=$(demo_token)
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"title":"bench","work_type":"task","start":"2026-10-06T09:00:00Z","end":"2026-10-06T10:00:00Z"}'
LUA
wrk -t1 -c4 -d10s --latency -s "$work/post.lua" "http://127.0.0.1:$port/api/work-items" |
  grep -E "Latency|50%|99%|Requests/sec|Non-2xx" | sed "s|^|$BIN: |"
