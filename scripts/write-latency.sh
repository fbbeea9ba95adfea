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
[[ -x $BIN ]] || die "no binary at $BIN (cargo build --release)"
apt_install wrk
ensure_postgres
ensure_redis

work=$(mktemp -d -t calcache-writes.XXXXXX)
db="calcache_writes_$(date +%s)_$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=""
cleanup() {
  [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  psql "${DATABASE_URL%/*}/postgres" -qAt -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "${DATABASE_URL%/*}/postgres" -qAt -c "CREATE DATABASE \"$db\"" >/dev/null

export DATABASE_URL="${DATABASE_URL%/*}/$db" CALCACHE_ENV=local CALCACHE_CONFIG_DIR=$CONFIG
export CALCACHE__SERVER__WORKERS=1 CALCACHE__LOG__FORMAT=json RUST_LOG=${RUST_LOG:-warn}
export CALCACHE__REDIS__KEY_PREFIX="writes-$db"
"$BIN" demo >"$work/demo.log" 2>&1 || { tail "$work/demo.log" >&2; die "calcache demo failed"; }
"$BIN" serve --port "$port" >"$work/serve.log" 2>&1 &
server=$!
wait_for "calcache" 60 curl -sf "http://127.0.0.1:$port/healthz" -o /dev/null
token=$(curl -sf -XPOST "http://127.0.0.1:$port/api/login" -H 'content-type: application/json' \
  -d '{"username":"demo","password":"demo-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"title":"bench","work_type":"task","start":"2026-10-06T09:00:00Z","end":"2026-10-06T10:00:00Z"}'
LUA
wrk -t1 -c4 -d10s --latency -s "$work/post.lua" "http://127.0.0.1:$port/api/work-items" |
  grep -E "Latency|50%|99%|Requests/sec|Non-2xx" | sed "s|^|$BIN: |"
