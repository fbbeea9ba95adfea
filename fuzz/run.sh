#!/usr/bin/env bash
# Fuzzes the running server against its own OpenAPI document with
# schemathesis: zero 5xx, every status documented, every body, header and
# content type as the document says, schema-invalid input rejected, protected
# routes refusing requests without the session, undocumented methods 405
# with `Allow`, and (stateful phase, links inferred from `Location`) a
# created item readable at once and gone after its DELETE.
#
# Builds nothing: run `cargo build` first (scripts/test.sh does). Starts
# ./target/debug/calcache on a free port with a fresh database (dropped at the
# end) and a fresh Redis key prefix, signs a user up, logs in, fuzzes with
# the bearer token, stops the server by pid. Exits non-zero on any failure.
#
#   FUZZ_MAX_EXAMPLES  cases per operation and phase (default 100)
#   FUZZ_SEED          hypothesis seed (default fixed, so CI is reproducible;
#                      FUZZ_SEED=random draws one and prints it)
#   FUZZ_TIMEOUT       hard limit per schemathesis run, seconds (default 600)
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
cd "$ROOT"

SCHEMATHESIS_VERSION="4.32.5"
VENV="$ROOT/fuzz/.venv"
BIN="$ROOT/target/debug/calcache"
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-100}"
TIMEOUT="${FUZZ_TIMEOUT:-600}"
SEED="${FUZZ_SEED:-20261106}"
[[ "$SEED" == random ]] && SEED="$(( (RANDOM << 15) | RANDOM ))"
OUT="$STATE_DIR/fuzz"

[[ -x "$BIN" ]] || die "$BIN is missing: run 'cargo build' first"

# --- schemathesis in its own venv, pinned --------------------------------
if [[ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into fuzz/.venv"
  command -v python3 >/dev/null || apt_install python3
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
    || apt_install python3-venv
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# --- a fresh database, Redis prefix and port ----------------------------
suffix="$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')"
DB="calcache_fuzz_$suffix"
PREFIX="calcache-fuzz-$suffix"
ADMIN_URL="${DATABASE_URL%/*}/postgres"
FUZZ_DB_URL="${DATABASE_URL%/*}/$DB"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
mkdir -p "$OUT"
rm -rf "${OUT:?}"/*

SERVER_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  if command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" 2>/dev/null \
      | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$ADMIN_URL" -qc "CREATE DATABASE \"$DB\"" >/dev/null
# Login throttling would answer most of the fuzzer's logins with 429 before
# the credentials are even looked at; lift it so the login path itself is
# fuzzed (its 429 is tested in tests/api).
if grep -q '^login_max_failures_per_client' config/default.toml; then
  export CALCACHE__AUTH__LOGIN_MAX_FAILURES_PER_CLIENT=1000000000 CALCACHE__AUTH__LOGIN_MAX_FAILURES_PER_USER_AND_CLIENT=1000000000
fi
log "fuzz: server on $BASE, database $DB, Redis prefix $PREFIX"
CALCACHE_ENV=test DATABASE_URL="$FUZZ_DB_URL" CALCACHE__REDIS__KEY_PREFIX="$PREFIX" \
  "$BIN" serve --bind 127.0.0.1 --port "$PORT" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!

up() { curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null || { kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited; see $OUT/server.log"; false; }; }
wait_for "the server on $BASE" 60 up

# --- a user and a session ------------------------------------------------
USERNAME="fuzzer_$suffix"
PASSWORD="fuzz-password-$suffix"
curl -fsS -o /dev/null -H 'content-type: application/json' \
  -d "{\"username\":\"$USERNAME\",\"password\":\"$PASSWORD\"}" "$BASE/api/signup" || die "signup failed"
TOKEN="$(curl -fsS -H 'content-type: application/json' \
  -d "{\"username\":\"$USERNAME\",\"password\":\"$PASSWORD\"}" "$BASE/api/login" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')" || die "login failed"
[[ -n "$TOKEN" ]] || die "login gave no token"

# --- fuzz ------------------------------------------------------------------
CHECKS="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance"
CHECKS+=",response_schema_conformance,negative_data_rejection,ignored_auth,unsupported_method"
CHECKS+=",allow_header_conformance,use_after_free,ensure_resource_availability"

st() {
  local name="$1"; shift
  log "schemathesis ($name): seed $SEED, $MAX_EXAMPLES examples per operation"
  (cd "$OUT" && timeout "$TIMEOUT" "$VENV/bin/schemathesis" --config-file "$ROOT/fuzz/schemathesis.toml" run \
    "$BASE/api/openapi.json" \
    --header "Authorization: Bearer $TOKEN" \
    --checks "$CHECKS" \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --workers 2 \
    --request-timeout 20 \
    --generation-database none \
    --report junit --report-dir "$OUT/report-$name" \
    --no-color \
    "$@")
}

started=$SECONDS
status=0
# Logging out would end the session the rest of the run uses: fuzz
# /api/logout last, on its own. The change stream (text/event-stream) never
# ends while the session lives, so every accepted request would wait out
# --request-timeout: it is left out (tests/api/changes.rs covers its 400,
# 401, 429 and 503 answers).
st main --exclude-path-regex '^/api/(logout|calendar/changes)$' || status=1
st logout --include-path /api/logout --phases examples,coverage,fuzzing || status=1

# A 5xx is logged with its cause; a panic would be too. (actix-http logs
# malformed requests it refuses itself at ERROR too: those are not ours.)
if grep -E 'ERROR.*calcache|panicked' "$OUT/server.log" >/dev/null; then
  log "the server logged errors during the fuzz run:"
  grep -E 'ERROR.*calcache|panicked' "$OUT/server.log" | head -20 >&2
  status=1
fi
log "fuzz: done in $((SECONDS - started)) s (server log: $OUT/server.log)"
((status == 0)) || die "schemathesis found failures (reports in $OUT)"
