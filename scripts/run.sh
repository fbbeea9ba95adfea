#!/usr/bin/env bash
# The run command: set up what is missing, load demo data, serve on
# 127.0.0.1:8080 (override with CALCACHE__SERVER__PORT / --port).
#   scripts/run.sh [extra `calcache serve` flags]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_toolchain
ensure_postgres
ensure_redis
if [[ -f web/package.json && ! -d web/node_modules ]]; then
  command -v npm >/dev/null || apt_install nodejs npm
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
# Not --quiet: a clean release build takes minutes on two cores, and cargo's
# progress shows it is working.
log "building calcache (release; a clean build takes a few minutes)"
cargo build --release
export CALCACHE_ENV="${CALCACHE_ENV:-local}"
./target/release/calcache demo
log "open http://127.0.0.1:${CALCACHE__SERVER__PORT:-8080}/ and sign in as demo / demo-password"
log "Ctrl-C stops calcache; scripts/stop.sh stops the PostgreSQL and Redis this script started"
exec ./target/release/calcache serve "$@"
