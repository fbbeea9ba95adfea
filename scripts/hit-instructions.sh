#!/usr/bin/env bash
# Instructions per cached feed hit, counted by valgrind's callgrind: unlike
# a timing, the count is the same from run to run whatever else the machine
# is doing, so two builds can be compared on a busy machine.
#
#   scripts/hit-instructions.sh [BINARY [CONFIG_DIR]]   # default: target/release/calcache, ./config
#
# Starts BINARY under callgrind (one worker, production logging: JSON at
# `info`) on a fresh database with the demo data, fills the demo user's
# month-grid feed, then counts the instructions of every thread while wrk
# (8 connections, 10 s, Accept-Encoding: gzip) asks for that feed again and
# again. Prints instructions per request; everything it started is stopped.
# Needs valgrind and wrk (apt-get install valgrind wrk).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
BIN=${1:-target/release/calcache}
CONFIG=${2:-$ROOT/config}
apt_install valgrind wrk
export RUST_LOG=${RUST_LOG:-info} CALCACHE__REDIS__TIMEOUT_MS=5000
bench_setup callgrind "$BIN" "$CONFIG"
work=$BENCH_WORK port=$BENCH_PORT

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
  "$BIN" serve --port "$port" >"$work/serve.log" 2>&1 &
vg=$!
BENCH_PID=$vg
wait_for "calcache under valgrind" 120 curl -sf "http://127.0.0.1:$port/healthz" -o /dev/null

token=$(demo_token)
read -r start end < <(month_grid)
url="http://127.0.0.1:$port/api/calendar/feed?start=$start&end=$end"
for _ in 1 2 3; do curl -sf -o /dev/null -H "Authorization: Bearer $token" -H 'Accept-Encoding: gzip' "$url"; done

callgrind_control -i on "$vg" >/dev/null 2>&1
requests=$(wrk -t1 -c8 -d10s -H "Authorization: Bearer $token" -H 'Accept-Encoding: gzip' "$url" |
  awk '/requests in/ {print $1}')
callgrind_control -i off "$vg" >/dev/null 2>&1
callgrind_control -d "$vg" >/dev/null 2>&1
total=$(callgrind_annotate "$work/cg.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
((requests > 0)) || die "wrk answered no requests"
echo "$BIN: $((total / requests)) instructions per cached feed ($requests requests, RUST_LOG=$RUST_LOG)"
