# Shared set-up for scripts/run.sh and scripts/test.sh: install what a fresh
# Debian/Ubuntu machine lacks, start PostgreSQL and Redis when nothing answers
# on the configured addresses, reuse them when something does. A server started
# here leaves a `<name>-<port>.started` file in $STATE_DIR; scripts/stop.sh
# stops exactly those.
# shellcheck shell=bash

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${CALCACHE_STATE_DIR:-$ROOT/.local}"
mkdir -p "$STATE_DIR"

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/calcache}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

log() { printf '\033[1m[calcache]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# host and port out of scheme://[user@]host:port[/...]
url_host() { local rest="${1#*://}"; rest="${rest#*@}"; rest="${rest%%/*}"; echo "${rest%%:*}"; }
url_port() { local rest="${1#*://}"; rest="${rest#*@}"; rest="${rest%%/*}"; [[ "$rest" == *:* ]] && echo "${rest##*:}" || echo "$2"; }
url_db() { local rest="${1#*://}"; rest="${rest#*/}"; echo "${rest%%\?*}"; }

PG_HOST="$(url_host "$DATABASE_URL")"; PG_PORT="$(url_port "$DATABASE_URL" 5432)"; PG_DB="$(url_db "$DATABASE_URL")"
REDIS_HOST="$(url_host "$REDIS_URL")"; REDIS_PORT="$(url_port "$REDIS_URL" 6379)"

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Polls a condition until a deadline (no fixed sleeps).
wait_for() {
  local what="$1" seconds="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

SUDO=""
[[ $EUID -ne 0 ]] && command -v sudo >/dev/null && SUDO="sudo"
APT_UPDATED=""
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "please install: ${missing[*]}"
  log "installing ${missing[*]}"
  if [[ -z "$APT_UPDATED" ]]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_toolchain() {
  apt_install build-essential pkg-config libpq-dev postgresql-client curl ca-certificates
  if ! command -v cargo >/dev/null; then
    [[ -x "$HOME/.cargo/bin/cargo" ]] || {
      log "installing the Rust toolchain (rustup)"
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt >/dev/null
    }
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

find_pg_bin() {
  local d
  for d in /usr/local/bin /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_postgres() {
  if answers "$PG_HOST" "$PG_PORT"; then
    log "PostgreSQL answers on $PG_HOST:$PG_PORT; reusing it"
  else
    [[ "$PG_HOST" == "127.0.0.1" || "$PG_HOST" == "localhost" ]] || die "PostgreSQL at $PG_HOST:$PG_PORT does not answer"
    find_pg_bin >/dev/null || apt_install postgresql
    local bin; bin="$(find_pg_bin)" || die "no initdb/pg_ctl found"
    local data="$STATE_DIR/pg-$PG_PORT" run_as=()
    if [[ $EUID -eq 0 ]]; then
      id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
      run_as=(runuser -u postgres --)
      # PostgreSQL refuses to run as root: give it a directory it owns.
      data="/var/tmp/calcache-pg-$PG_PORT"
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
      log "initializing a PostgreSQL cluster in $data"
      mkdir -p "$data"; [[ $EUID -eq 0 ]] && chown postgres "$data"
      "${run_as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
    fi
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    "${run_as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=300" start >/dev/null
    wait_for "PostgreSQL" 30 answers "$PG_HOST" "$PG_PORT"
    # What scripts/stop.sh stops: only servers these scripts started.
    echo "$data" >"$STATE_DIR/postgres-$PG_PORT.started"
    log "scripts/stop.sh stops it again"
  fi
  local admin="${DATABASE_URL%/*}/postgres"
  if ! psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    log "creating database $PG_DB"
    psql "$admin" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
  fi
}

ensure_redis() {
  if answers "$REDIS_HOST" "$REDIS_PORT"; then
    log "Redis answers on $REDIS_HOST:$REDIS_PORT; reusing it"
    return 0
  fi
  [[ "$REDIS_HOST" == "127.0.0.1" || "$REDIS_HOST" == "localhost" ]] || die "Redis at $REDIS_HOST:$REDIS_PORT does not answer"
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  # No eviction of keys without a TTL (the feed versions): volatile-lru.
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --maxmemory-policy volatile-lru --pidfile "$STATE_DIR/redis-$REDIS_PORT.pid" \
    --logfile "$STATE_DIR/redis-$REDIS_PORT.log" --dir "$STATE_DIR"
  wait_for "Redis" 30 answers "$REDIS_HOST" "$REDIS_PORT"
  echo "$STATE_DIR/redis-$REDIS_PORT.pid" >"$STATE_DIR/redis-$REDIS_PORT.started"
  log "scripts/stop.sh stops it again"
}

# For the benchmark scripts: a throw-away database with the demo data loaded
# by BIN (config from CONFIG_DIR), a free port in $BENCH_PORT, a scratch
# directory in $BENCH_WORK, and a trap that stops $BENCH_PID and drops the
# database on exit. Set RUST_LOG and CALCACHE__* before calling.
#   bench_setup NAME BIN CONFIG_DIR
bench_setup() {
  local name="$1" bin="$2" config="$3"
  [[ -x $bin ]] || die "no binary at $bin (cargo build --release)"
  ensure_postgres
  ensure_redis
  BENCH_WORK=$(mktemp -d -t "calcache-$name.XXXXXX")
  BENCH_DB="calcache_${name}_$(date +%s)_$$"
  BENCH_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  BENCH_PID=""
  BENCH_ADMIN_URL="${DATABASE_URL%/*}/postgres"
  trap bench_cleanup EXIT
  psql "$BENCH_ADMIN_URL" -qAt -c "CREATE DATABASE \"$BENCH_DB\"" >/dev/null
  export DATABASE_URL="${DATABASE_URL%/*}/$BENCH_DB" CALCACHE_ENV=local CALCACHE_CONFIG_DIR=$config
  export CALCACHE__SERVER__WORKERS=1 CALCACHE__LOG__FORMAT=json CALCACHE__REDIS__KEY_PREFIX="$name-$BENCH_DB"
  export CALCACHE__LIMITS__FEED_FILLS_PER_USER=0  # benchmarks miss far more often than people
  "$bin" demo >"$BENCH_WORK/demo.log" 2>&1 || { tail "$BENCH_WORK/demo.log" >&2; die "calcache demo failed"; }
}

bench_cleanup() {
  [[ -n $BENCH_PID ]] && kill "$BENCH_PID" 2>/dev/null && wait "$BENCH_PID" 2>/dev/null
  psql "$BENCH_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS \"$BENCH_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$BENCH_WORK"
}

# The demo user's session token from the server on $BENCH_PORT.
# month_grid: "START END" of this month's 6-week grid as FullCalendar asks
# for it (from the Sunday on or before the 1st), in UTC.
month_grid() {
  python3 -c '
import datetime as d
first = d.date.today().replace(day=1)
start = first - d.timedelta(days=(first.weekday() + 1) % 7)
print(f"{start}T00:00:00Z", f"{start + d.timedelta(days=42)}T00:00:00Z")'
}
demo_token() {
  curl -sf -XPOST "http://127.0.0.1:$BENCH_PORT/api/login" -H 'content-type: application/json' \
    -d '{"username":"demo","password":"demo-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# ab_round LABEL BIN [ENV=VALUE…]: one round of an interleaved A/B on the
# demo month grid (gzip): starts BIN (2 workers) with the current
# environment plus the given variables, warms it, then wrk -c64 for 8 s.
# Prints req/s, p99, calcache CPU per hit (from /proc) and, with perf,
# context switches and page faults per hit. Uses bench_setup's variables.
ab_round() {
  local label="$1" bin="$2"; shift 2
  env "$@" CALCACHE__SERVER__WORKERS=2 RUST_LOG=info "$bin" serve --port "$BENCH_PORT" > "$BENCH_WORK/serve.log" 2>&1 &
  local pid=$!; BENCH_PID=$pid
  wait_for calcache 30 curl -sf "http://127.0.0.1:$BENCH_PORT/healthz" -o /dev/null
  local token start end url
  token=$(demo_token)
  read -r start end < <(month_grid)
  url="http://127.0.0.1:$BENCH_PORT/api/calendar/feed?start=$start&end=$end"
  local h=(-H "Authorization: Bearer $token" -H 'Accept-Encoding: gzip')
  for _ in 1 2 3; do curl -sf -o /dev/null "${h[@]}" "$url"; done
  wrk -t1 -c64 -d2s "${h[@]}" "$url" >/dev/null
  local perf_out="$BENCH_WORK/perf.txt" perf_pid=""
  if command -v perf >/dev/null; then
    perf stat -x, -e context-switches,page-faults -p "$pid" -o "$perf_out" 2>/dev/null & perf_pid=$!
  fi
  local c0 c1 out reqs p99 bytes
  c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  out=$(wrk -t1 -c64 -d8s --latency "${h[@]}" "$url")
  c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  if [[ -n $perf_pid ]]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  bytes=$(curl -sf "${h[@]}" "$url" | wc -c)
  local extra=""
  if [[ -s $perf_out ]]; then
    extra=$(awk -F, -v n="$reqs" '$3=="context-switches" {printf " ctx_switches_per_hit=%.2f", $1/n} $3=="page-faults" {printf " page_faults_per_hit=%.3f", $1/n}' "$perf_out")
  fi
  echo "$label gzip=${bytes}B req/s=$((reqs/8)) p99=$p99 cpu_us_per_hit=$(( (c1-c0)*10000*1000/reqs/1000 ))$extra"
  kill "$pid"; wait "$pid" 2>/dev/null; BENCH_PID=""
}

