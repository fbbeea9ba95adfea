#!/usr/bin/env bash
# The deployment tests (issue 6, parts 1 and 2). From the repository root,
# after `cargo build`:
#
#   bash deploy/test.sh
#
#  a) docker-compose.yml against the Compose Specification's JSON schema (the
#     copy shipped in PyPI's check-jsonschema, installed into deploy/.venv),
#     plus the topology checks a schema cannot express (deploy/check_config.py)
#     and the Dockerfile's dependency-layer recipe;
#  b) `nginx -t` on deploy/nginx.conf exactly as compose mounts it;
#  c) the same topology without Docker (deploy/topology.sh): three replicas
#     and nginx on loopback, and the balanced tests (deploy/balanced_test.py).
#
# No Docker engine is needed (none runs on these machines). Everything it
# starts is stopped again by pid, and its database is dropped. The last line
# is `N passed, M failed`; the exit status is non-zero on any failure.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=$ROOT/deploy/.venv
CHECK_JSONSCHEMA_VERSION=0.39.0
# Its own topology directory, one per run (deploy/.run-test/<pid of this
# script>), apart from deploy/.run (a developer's manual one): two runs in
# one checkout, say a developer's and the full test command's, never touch
# each other's processes.
RUNS=$ROOT/deploy/.run-test
export CALCACHE_TOPOLOGY_DIR=${CALCACHE_TOPOLOGY_DIR:-$RUNS/$$}
# The balanced tests' load generators miss far more often than people do:
# no per-user fill budget for them (limits.feed_fills_per_user).
export CALCACHE__LIMITS__FEED_FILLS_PER_USER=0

PASSED=0
FAILED=0
T0=$(date +%s)
TMP=$(mktemp -d)
TOPOLOGY_STARTED=no

cleanup() {
    if [[ $TOPOLOGY_STARTED == yes ]]; then bash deploy/topology.sh stop >/dev/null 2>&1 || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); echo "PASS: $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $1"; }

# check NAME CMD...: runs CMD, passes on exit 0, shows the end of its output otherwise.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name"
        printf '%s\n' "$out" | tail -n 25 | sed 's/^/    /'
    fi
}

# check_fails NAME CMD...: the opposite (a negative control).
check_fails() {
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then fail "$name (it was accepted)"; else pass "$name"; fi
}

# run_suite PREFIX CMD...: runs a script that prints `PASS: x` / `FAIL: x: why`
# lines and exits 0 (all passed) or 1 (some failed); counts its lines. Any
# other exit status, or no result at all, is a failure of its own.
run_suite() {
    local prefix=$1 out=$TMP/suite.out rc results=0 line
    shift
    "$@" >"$out" 2>&1
    rc=$?
    while IFS= read -r line; do
        case $line in
            PASS:*) pass "$prefix: ${line#PASS: }"; results=$((results + 1)) ;;
            FAIL:*) fail "$prefix: ${line#FAIL: }"; results=$((results + 1)) ;;
            *" passed, "*" failed") ;; # its own summary; ours is the last line
            *) echo "    $line" ;;
        esac
    done <"$out"
    if [[ $rc -gt 1 || $results -eq 0 ]]; then fail "$prefix: $* exited with status $rc after $results result(s)"; fi
}

# --- tools ----------------------------------------------------------------------

setup_venv() {
    (
        flock 9 # concurrent runs share the venv: one builds it, the others wait
        if [[ ! -x $VENV/bin/check-jsonschema ]] ||
            [[ $("$VENV/bin/check-jsonschema" --version 2>/dev/null) != *"$CHECK_JSONSCHEMA_VERSION"* ]]; then
            rm -rf "$VENV"
            python3 -m venv "$VENV" &&
                "$VENV/bin/pip" install -q --disable-pip-version-check "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
        fi
    ) 9>"$ROOT/deploy/.venv.lock"
}

setup_nginx() {
    command -v nginx >/dev/null 2>&1 && return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends nginx >/dev/null
}

check "tools: check-jsonschema $CHECK_JSONSCHEMA_VERSION in deploy/.venv" setup_venv
check "tools: nginx" setup_nginx
if [[ ! -x target/debug/calcache ]]; then
    check "tools: cargo build (target/debug/calcache was missing)" cargo build --quiet --bin calcache
fi

# --- a) compose ------------------------------------------------------------------

validate() { "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$@"; }

check "compose: docker-compose.yml is valid against the Compose Specification schema" validate docker-compose.yml

# Negative controls: the same validation rejects a misspelt key and a bad
# depends_on condition, so a pass above means something.
sed 's/^    restart: "no"$/    restart: "no"\n    restrat: "no"/' docker-compose.yml >"$TMP/typo.yml"
check_fails "compose: schema rejects an unknown service key (negative control)" validate "$TMP/typo.yml"
sed 's/condition: service_completed_successfully/condition: service_completed/' docker-compose.yml >"$TMP/cond.yml"
check_fails "compose: schema rejects an unknown depends_on condition (negative control)" validate "$TMP/cond.yml"

# The topology, balancer and image checks (one PASS/FAIL line each).
run_suite config "$VENV/bin/python" deploy/check_config.py

# The Dockerfile's build: `cargo chef` plans and cooks the dependencies from
# Cargo.toml and Cargo.lock, then `cargo build --release --locked` builds the
# binary from what the image copies (the manifest, the lock, src/, benches/,
# tests/). With exactly those files, the lock file must be up to date
# (`--locked`). `cargo tree --locked` resolves the graph without compiling
# (offline: from what `cargo build` already fetched here).
dependency_layer() {
    local ctx=$TMP/image-context host
    host=$(rustc -vV | sed -n 's/^host: //p')
    mkdir -p "$ctx" && cp -r Cargo.toml Cargo.lock src benches tests "$ctx/" &&
        (cd "$ctx" && cargo tree --locked --offline --target "$host" -e normal,build --prefix none >/dev/null)
}
check "image: what the build stage copies resolves --locked" dependency_layer

# --- b) nginx -t on the compose configuration -----------------------------------

# A prefix laid out as the lb container's /etc/nginx: nginx.conf is a symlink
# to deploy/nginx.conf and calcache/ holds deploy/compose/*, unchanged. The
# upstream names (app1..3) only resolve on the compose network, and nginx -t
# resolves them; so nginx -t runs in a private mount namespace whose
# /etc/hosts maps them to 127.0.0.1. Where unshare is not permitted, the
# copied upstream file has the names replaced by 127.0.0.1 instead (the rest
# of the configuration is still tested as is).
nginx_t_compose() {
    local p=$TMP/nginx-compose hosts
    mkdir -p "$p/calcache" "$p/logs"
    ln -s "$ROOT/deploy/nginx.conf" "$p/nginx.conf"
    cp deploy/compose/*.conf "$p/calcache/"
    hosts=$(grep -oE '^\s*server\s+[A-Za-z][A-Za-z0-9.-]*:' deploy/compose/upstreams.conf |
        awk '{print $2}' | tr -d ':' | sort -u | tr '\n' ' ')
    printf '127.0.0.1 localhost\n127.0.0.1 %s\n' "$hosts" >"$TMP/hosts"
    local args=(-t -p "$p/" -c "$p/nginx.conf" -e "$p/logs/error.log" -g "pid $p/nginx.pid;")
    if unshare --mount true 2>/dev/null; then
        unshare --mount sh -c 'mount --bind "$0" /etc/hosts && exec nginx "$@"' "$TMP/hosts" "${args[@]}"
    else
        echo "unshare not permitted: replacing $hosts by 127.0.0.1 in the copy" >&2
        sed -i -E 's/^(\s*server\s+)[A-Za-z][A-Za-z0-9.-]*:/\1127.0.0.1:/' "$p/calcache/upstreams.conf"
        nginx "${args[@]}"
    fi
}
check "nginx: nginx -t accepts deploy/nginx.conf with the compose upstreams" nginx_t_compose

# --- c) the topology on loopback --------------------------------------------------

# Leftovers of interrupted earlier runs: directories whose test.sh is gone.
# Their processes are stopped by their pid files, their databases dropped.
for dir in "$RUNS"/*/; do
    owner=$(basename "$dir")
    [[ $owner =~ ^[0-9]+$ && $owner != "$$" ]] || continue
    if tr '\0' ' ' <"/proc/$owner/cmdline" 2>/dev/null | grep -q 'deploy/test.sh'; then continue; fi
    CALCACHE_TOPOLOGY_DIR=${dir%/} bash deploy/topology.sh stop >/dev/null 2>&1 || true
    rm -rf "$dir"
done

if bash deploy/topology.sh start >"$TMP/topology.out" 2>&1; then
    TOPOLOGY_STARTED=yes
    pass "topology: three replicas and nginx started ($(tail -n 1 "$TMP/topology.out"))"
    # shellcheck disable=SC1091
    source "$CALCACHE_TOPOLOGY_DIR/topology.env"

    # The image's healthcheck script, against a real replica and a dead port.
    healthcheck_probe() {
        bash deploy/healthcheck.sh /healthz "$APP1_PORT" &&
            bash deploy/healthcheck.sh /readyz "$APP1_PORT" &&
            ! bash deploy/healthcheck.sh /no-such-path "$APP1_PORT" &&
            ! bash deploy/healthcheck.sh /healthz 1
    }
    check "image: calcache-healthcheck passes on /healthz and /readyz, fails on 404 and on a closed port" healthcheck_probe

    run_suite balanced python3 deploy/balanced_test.py

    if bash deploy/topology.sh stop >"$TMP/stop.out" 2>&1; then
        TOPOLOGY_STARTED=no
        leftover=$(psql "$PG_SERVER/postgres" -qAt \
            -c "SELECT count(*) FROM pg_database WHERE datname = '$DB_NAME'" 2>&1)
        if [[ $leftover == 0 ]]; then pass "topology: stopped by pid, database $DB_NAME dropped"
        else fail "topology: database $DB_NAME still exists ($leftover)"; fi
        # keep the logs of a failed run for a look (the next run clears them)
        if [[ $FAILED -eq 0 ]]; then rm -rf "$CALCACHE_TOPOLOGY_DIR"; else echo "    logs: $CALCACHE_TOPOLOGY_DIR/logs"; fi
    else
        fail "topology: stop"
        sed 's/^/    /' "$TMP/stop.out"
    fi
else
    fail "topology: start"
    tail -n 20 "$TMP/topology.out" | sed 's/^/    /'
    TOPOLOGY_STARTED=yes # stop whatever did start
fi

echo "deploy tests took $(($(date +%s) - T0))s"
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
