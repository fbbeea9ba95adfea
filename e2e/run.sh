#!/usr/bin/env bash
# Browser tests of the calendar page: headless Debian Chromium, driven by
# playwright-core, against a real calcache with its own PostgreSQL database
# and Redis key prefix. Run from anywhere after `cargo build`:
#
#   bash e2e/run.sh                      # all tests
#   bash e2e/run.sh --test-name-pattern=delete    # extra args go to `node --test`
#
# Environment: CALCACHE_BIN (default ./target/debug/calcache), DATABASE_URL
# (the server its database is created on, as every suite; default
# postgres://postgres@127.0.0.1:5432/calcache; E2E_PG_BASE, a server URL
# without a database, wins), REDIS_URL (default redis://127.0.0.1:6379), E2E_UPDATE_SCREENSHOT=1 to refresh
# docs/screenshot.png. Artifacts (screenshot, server log) go to e2e/artifacts/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
E2E="$ROOT/e2e"
ARTIFACTS="$E2E/artifacts"
mkdir -p "$ARTIFACTS"

BIN="${CALCACHE_BIN:-./target/debug/calcache}"
# The server of DATABASE_URL: scheme://user@host:port, without /database or ?params.
DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/calcache}"
PG_BASE="${E2E_PG_BASE:-${DATABASE_URL%/*}}"
REDIS="${REDIS_URL:-redis://127.0.0.1:6379}"
START_SECONDS=$SECONDS

log() { printf 'e2e: %s\n' "$*" >&2; }

if [[ ! -x "$BIN" ]]; then
  log "no calcache binary at $BIN; build it first (cargo build) or set CALCACHE_BIN"
  exit 2
fi

# --- dependencies ------------------------------------------------------------

# npm ci when node_modules is missing or older than the lock file.
npm_ci_if_needed() {
  local dir="$1"
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    log "npm ci in ${dir#"$ROOT"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}
npm_ci_if_needed "$E2E"
npm_ci_if_needed "$ROOT/web" # its postinstall copies FullCalendar into web/assets/vendor/
if ! compgen -G "$ROOT/web/assets/vendor/fullcalendar-*/index.global.min.js" >/dev/null; then
  (cd "$ROOT/web" && npm run --silent build)
fi

if [[ ! -x /usr/bin/chromium ]]; then
  log "installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }
fi

# --- a fresh database, key prefix and port -------------------------------------

RUN_ID="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
DB="calcache_e2e_${RUN_ID}"
PREFIX="calcache_e2e_${RUN_ID}"
PORT="$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
SERVER_PID=""

cleanup() {
  local status=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    # Graceful stop first (in-flight requests finish), then no mercy.
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  psql "$PG_BASE/postgres" -qAtX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null ||
    log "could not drop database $DB"
  if command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS" --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli -u "$REDIS" DEL >/dev/null || true
  fi
  log "finished in $((SECONDS - START_SECONDS)) s with status $status"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$PG_BASE/postgres" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB\"" >/dev/null
export CALCACHE_ENV=local
export DATABASE_URL="$PG_BASE/$DB"
export REDIS_URL="$REDIS"
export CALCACHE__REDIS__KEY_PREFIX="$PREFIX"
export CALCACHE__SERVER__WEB_DIR="$ROOT/web"
# Every test signs up its users from 127.0.0.1: lift the per-client sign-up
# throttle (tested in tests/api/auth.rs) for this run.
export CALCACHE__AUTH__SIGNUP_MAX_PER_CLIENT=100000

log "database $DB, key prefix $PREFIX, port $PORT"
"$BIN" demo >"$ARTIFACTS/demo.log" 2>&1 || { log "calcache demo failed:"; tail -n 20 "$ARTIFACTS/demo.log" >&2; exit 1; }
"$BIN" serve --port "$PORT" >"$ARTIFACTS/server.log" 2>&1 &
SERVER_PID=$!

# --- ready? --------------------------------------------------------------------

BASE_URL="http://127.0.0.1:$PORT"
deadline=$((SECONDS + 60))
until curl -fsS -o /dev/null --max-time 2 "$BASE_URL/readyz"; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "calcache exited before it was ready:"; tail -n 30 "$ARTIFACTS/server.log" >&2; exit 1
  fi
  if ((SECONDS > deadline)); then
    log "calcache not ready after 60 s:"; tail -n 30 "$ARTIFACTS/server.log" >&2; exit 1
  fi
  sleep 0.1 # a poll interval, not a wait for readiness
done
log "calcache ready at $BASE_URL"

# --- the tests -------------------------------------------------------------------

cd "$E2E"
E2E_BASE_URL="$BASE_URL" E2E_KEY_PREFIX="$PREFIX" REDIS_URL="$REDIS" node --test --test-concurrency="${E2E_CONCURRENCY:-1}" --test-timeout=300000 "$@" tests/
