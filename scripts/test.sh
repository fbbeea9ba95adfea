#!/usr/bin/env bash
# The test command: set up what is missing, then lint and run every test
# (unit, integration against real PostgreSQL and Redis, browser, topology,
# fuzzing, Redis Cluster). Every suite runs even when an earlier one failed;
# the closing summary counts the tests of each, and the exit status is
# non-zero when any failed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
ensure_toolchain
ensure_postgres
ensure_redis
# libfaketime: a test runs a process whose clock is a day behind.
apt_install faketime

log "cargo fmt --check"
cargo fmt --check
log "cargo clippy --all-targets -D warnings"
cargo clippy --quiet --all-targets -- -D warnings

LOGS="$STATE_DIR/test-logs"
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log
names=() statuses=() counts=()

# count NAME LOG: "P passed, F failed" out of a suite's log, by its format.
count() {
  local name="$1" log="$2"
  case "$name" in
    "cargo test" | scripts/cluster-test.sh)
      # cargo's `test result: ok. 12 passed; 0 failed; 1 ignored; ...` lines
      grep -Eo '[0-9]+ passed; [0-9]+ failed' "$log" |
        awk '{p+=$1; f+=$3} END {printf "%d passed, %d failed", p, f}' ;;
    e2e/run.sh)
      # node --test: TAP (`# pass 12`) or spec (`ℹ pass 12`) summary lines
      awk '/^(# |ℹ )pass [0-9]+$/ {p+=$NF} /^(# |ℹ )fail [0-9]+$/ {f+=$NF}
           END {printf "%d passed, %d failed", p, f}' "$log" ;;
    deploy/test.sh)
      grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 ;;
    fuzz/run.sh)
      # schemathesis' JUnit reports: one test case per operation and run
      python3 - "$STATE_DIR/fuzz" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
p = f = 0
for path in glob.glob(f"{sys.argv[1]}/report-*/*.xml"):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        n = int(suite.get("tests", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        p += n - bad
        f += bad
print(f"{p} passed, {f} failed", end="")
PY
      ;;
  esac
}

# suite NAME CMD...: runs CMD with its output on the terminal and in a log.
suite() {
  local name="$1" log status
  shift
  log="$LOGS/$(echo "$name" | tr ' /' '--').log"
  log "$name"
  if "$@" 2>&1 | tee "$log"; then status=ok; else status=FAILED; fi
  names+=("$name")
  statuses+=("$status")
  counts+=("$(count "$name" "$log" 2>/dev/null || true)")
}

suite "cargo test" cargo test --quiet
if cargo build --quiet; then
  for script in e2e/run.sh deploy/test.sh fuzz/run.sh scripts/cluster-test.sh; do
    [[ -f "$script" ]] && suite "$script" bash "$script"
  done
else
  names+=("cargo build"); statuses+=(FAILED); counts+=("")
fi

log "summary (logs in ${LOGS#"$ROOT"/})"
failed=0 total_p=0 total_f=0
for i in "${!names[@]}"; do
  printf '  %-26s %-7s %s\n' "${names[$i]}" "${statuses[$i]}" "${counts[$i]:-no test counts found}"
  [[ "${statuses[$i]}" == ok ]] || failed=$((failed + 1))
  if [[ "${counts[$i]}" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    total_p=$((total_p + BASH_REMATCH[1])); total_f=$((total_f + BASH_REMATCH[2]))
  fi
done
printf '  %-26s %-7s %s\n' "all suites" "$( ((failed == 0)) && echo ok || echo FAILED)" "${total_p} passed, ${total_f} failed"
((failed == 0)) || die "$failed suite(s) failed"
log "all suites green"
