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
log "building calcache (release)"
cargo build --release --quiet
export CALCACHE_ENV="${CALCACHE_ENV:-local}"
./target/release/calcache demo
log "open http://127.0.0.1:${CALCACHE__SERVER__PORT:-8080}/ and sign in as demo / demo-password"
exec ./target/release/calcache serve "$@"
