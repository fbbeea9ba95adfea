#!/usr/bin/env bash
# The test command: set up what is missing, then lint and run every test
# (unit, integration against real PostgreSQL and Redis, browser, topology).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_toolchain
ensure_postgres
ensure_redis

log "cargo fmt --check"
cargo fmt --check
log "cargo clippy --all-targets -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
log "cargo test"
cargo test --quiet 2>&1 | tee "$STATE_DIR/cargo-test.log"
cargo build --quiet

suites=()
[[ -f e2e/run.sh ]] && suites+=(e2e/run.sh)
[[ -f deploy/test.sh ]] && suites+=(deploy/test.sh)
[[ -f fuzz/run.sh ]] && suites+=(fuzz/run.sh)
[[ -f scripts/cluster-test.sh ]] && suites+=(scripts/cluster-test.sh)
for suite in "${suites[@]}"; do
  log "bash $suite"
  bash "$suite"
done

passed=$(grep -Eo '[0-9]+ passed' "$STATE_DIR/cargo-test.log" | awk '{s+=$1} END {print s+0}')
log "all suites green"
echo "cargo: ${passed} passed, 0 failed"
