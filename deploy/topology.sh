#!/usr/bin/env bash
# The docker-compose topology without Docker: three calcache replicas and
# nginx (deploy/nginx.conf, unchanged) on loopback, sharing one fresh
# PostgreSQL database and one fresh Redis key prefix.
#
#   deploy/topology.sh start            migrate once, start app1..3 and nginx, wait until ready
#   deploy/topology.sh stop             stop everything it started (by pid), drop the database
#                                       and the key prefix
#   deploy/topology.sh status           what runs, where
#   deploy/topology.sh start-app N      start replica N again on its port, wait for /readyz
#   deploy/topology.sh stop-app N [SIG] send SIG (TERM: graceful, the default; KILL) to
#                                       replica N and wait until it has exited
#   deploy/topology.sh drain N          take replica N out of the balancer (`down` in the
#                                       upstream file, nginx reload) and wait until no nginx
#                                       worker of the old configuration is left
#   deploy/topology.sh undrain N        put it back the same way
#   deploy/topology.sh rolling-restart  for each replica: drain, SIGTERM and wait for the exit,
#                                       start, wait for /readyz, undrain
#
# State (pid files, logs, the generated nginx files, topology.env) lives in
# $CALCACHE_TOPOLOGY_DIR (default deploy/.run). Other settings:
#   CALCACHE_BIN              the binary (default target/debug/calcache)
#   CALCACHE_TOPOLOGY_PG      PostgreSQL server URL without a database (default: the
#                             server of DATABASE_URL, else postgres://postgres@127.0.0.1:5432)
#   CALCACHE_TOPOLOGY_REDIS   Redis URL (default: REDIS_URL, else redis://127.0.0.1:6379)
#   CALCACHE_TOPOLOGY_ENV     CALCACHE_ENV of the replicas (default production,
#                             as in docker-compose.yml)
#   CALCACHE_TOPOLOGY_WORKERS actix workers per replica (default 2)
# Any CALCACHE__SECTION__KEY variable in the caller's environment reaches the
# replicas too (e.g. CALCACHE__CACHE__STRATEGY=ttl).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${CALCACHE_TOPOLOGY_DIR:-$ROOT/deploy/.run}
BIN=${CALCACHE_BIN:-$ROOT/target/debug/calcache}
# The servers: as DATABASE_URL and REDIS_URL name them (like the rest of the
# project's test commands), else the local defaults.
url_server() { python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(f"{p.scheme}://{p.netloc}")' "$1"; }
if [[ -n ${DATABASE_URL:-} ]]; then PG_DEFAULT=$(url_server "$DATABASE_URL"); else PG_DEFAULT=postgres://postgres@127.0.0.1:5432; fi
PG=${CALCACHE_TOPOLOGY_PG:-$PG_DEFAULT}
REDIS=${CALCACHE_TOPOLOGY_REDIS:-${REDIS_URL:-redis://127.0.0.1:6379}}
APP_ENV=${CALCACHE_TOPOLOGY_ENV:-production}
WORKERS=${CALCACHE_TOPOLOGY_WORKERS:-2}
REPLICAS=3
READY_DEADLINE_SECS=${CALCACHE_TOPOLOGY_READY_SECS:-60}
STOP_DEADLINE_SECS=${CALCACHE_TOPOLOGY_STOP_SECS:-45}

log() { printf 'topology: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

now_ms() { date +%s%3N; }

# --- processes --------------------------------------------------------------

# A pid counts as running unless it is gone or a zombie waiting to be reaped.
# A killed multi-threaded process shows its main thread as a zombie while its
# other threads are still exiting, and its sockets close only with the last
# one: it is gone when the zombie main thread is the only task left.
alive() {
    local pid=$1 state tasks
    [[ -r /proc/$pid/stat ]] || return 1
    state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $state != Z && $state != X ]] && return 0
    tasks=$(ls "/proc/$pid/task" 2>/dev/null | wc -l)
    (( tasks > 1 ))
}

# The pid in file $1 if that process is alive and is the program named $2
# (guards against a stale pid file whose number was reused).
live_pid() {
    local file=$1 name=$2 pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name" || return 1
    echo "$pid"
}

# Waits until pid $1 has exited; false if still alive after $2 seconds.
wait_exit() {
    local pid=$1 deadline=$(( $(now_ms) + $2 * 1000 ))
    while alive "$pid"; do
        (( $(now_ms) < deadline )) || return 1
        sleep 0.05
    done
}

# Sends $3 to the process in pid file $1 (program $2) and waits until it exits;
# escalates to SIGKILL after the deadline.
stop_pidfile() {
    local file=$1 name=$2 sig=${3:-TERM} pid
    if pid=$(live_pid "$file" "$name"); then
        kill "-$sig" "$pid" 2>/dev/null || true
        if ! wait_exit "$pid" "$STOP_DEADLINE_SECS"; then
            log "$name (pid $pid) still running ${STOP_DEADLINE_SECS}s after SIG$sig; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_exit "$pid" 10 || die "pid $pid does not exit"
        fi
    fi
    rm -f "$file"
}

# --- helpers ----------------------------------------------------------------

# The program a pid file belongs to: nginx.pid -> nginx, appN.pid -> calcache.
pid_program() {
    if [[ $(basename "$1") == nginx.pid ]]; then echo nginx; else echo calcache; fi
}

load_env() {
    [[ -r $DIR/topology.env ]] || die "no topology at $DIR (run: $0 start)"
    # shellcheck disable=SC1091
    source "$DIR/topology.env"
    PG=${PG_SERVER:-$PG} # the server the topology's database was created on
}

# Prints N distinct free loopback ports (all held open at once while picking).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

ensure_nginx() {
    command -v nginx >/dev/null 2>&1 && return 0
    log "nginx not found; installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends nginx >/dev/null
    command -v nginx >/dev/null 2>&1 || die "nginx could not be installed"
}

psql_admin() {
    psql "$PG/postgres" -v ON_ERROR_STOP=1 -qAt -c "$1"
}

# The replicas' environment (what docker-compose.yml sets, with local addresses).
app_env() {
    APP_VARS=(
        CALCACHE_ENV="$APP_ENV"
        CALCACHE_CONFIG_DIR="$ROOT/config"
        CALCACHE__SERVER__WEB_DIR="$ROOT/web"
        DATABASE_URL="$DATABASE_URL"
        REDIS_URL="$REDIS_URL"
        CALCACHE__REDIS__KEY_PREFIX="$KEY_PREFIX"
        CALCACHE__REDIS__MAC_KEY="$MAC_KEY"
        CALCACHE__SERVER__WORKERS="$WORKERS"
    )
}

# Polls GET $1 until it answers 200; false after $2 seconds or if pid $3 died.
wait_http_ok() {
    local url=$1 secs=$2 pid=${3:-} deadline=$(( $(now_ms) + $2 * 1000 ))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        if [[ -n $pid ]] && ! alive "$pid"; then return 1; fi
        (( $(now_ms) < deadline )) || return 1
        sleep 0.05
    done
}

# --- replicas ---------------------------------------------------------------

launch_app() {
    local n=$1 port_var="APP${1}_PORT" pid
    local port=${!port_var}
    if live_pid "$DIR/pids/app$n.pid" calcache >/dev/null; then die "app$n is already running"; fi
    app_env
    # exec all the way down, so $! is the calcache process itself.
    (
        cd "$ROOT"
        exec env "${APP_VARS[@]}" "$BIN" serve --port "$port" --bind 127.0.0.1
    ) >>"$DIR/logs/app$n.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$DIR/pids/app$n.pid"
    log "app$n: pid $pid, http://127.0.0.1:$port"
}

wait_app_ready() {
    local n=$1 port_var="APP${1}_PORT" pid
    pid=$(<"$DIR/pids/app$n.pid")
    if ! wait_http_ok "http://127.0.0.1:${!port_var}/readyz" "$READY_DEADLINE_SECS" "$pid"; then
        log "app$n did not become ready; last lines of $DIR/logs/app$n.log:"
        tail -n 5 "$DIR/logs/app$n.log" | cut -c1-400 >&2 || true
        return 1
    fi
}

# --- commands ---------------------------------------------------------------

cmd_start() {
    [[ -x $BIN ]] || die "$BIN not found: run cargo build first"
    if [[ -r $DIR/topology.env ]]; then
        local f
        for f in "$DIR"/pids/*.pid; do
            [[ -e $f ]] || continue
            if live_pid "$f" "$(pid_program "$f")" >/dev/null; then
                die "a topology is already running in $DIR (run: $0 stop)"
            fi
        done
    fi
    ensure_nginx
    command -v psql >/dev/null || die "psql not found"
    # Only ever wipe a directory this script made (it leaves a marker).
    if [[ -e $DIR && ! -e $DIR/.calcache-topology ]] && [[ -n $(ls -A "$DIR" 2>/dev/null) ]]; then
        die "$DIR exists and is not a topology directory; refusing to clear it"
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/nginx/calcache"
    touch "$DIR/.calcache-topology"

    local suffix ports
    suffix=$(python3 -c 'import secrets; print(secrets.token_hex(6))')
    read -r -a ports <<<"$(free_ports $((REPLICAS + 1)))"
    DB_NAME="calcache_topo_$suffix"
    DATABASE_URL="$PG/$DB_NAME"
    REDIS_URL=$REDIS
    KEY_PREFIX="topo-$suffix"
    MAC_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    LB_PORT=${ports[0]}
    {
        echo "# written by deploy/topology.sh start"
        echo "PG_SERVER=$PG"
        echo "DB_NAME=$DB_NAME"
        echo "DATABASE_URL=$DATABASE_URL"
        echo "REDIS_URL=$REDIS_URL"
        echo "KEY_PREFIX=$KEY_PREFIX"
        echo "MAC_KEY=$MAC_KEY"
        echo "LB_PORT=$LB_PORT"
        echo "LB_URL=http://127.0.0.1:$LB_PORT"
        for n in $(seq 1 $REPLICAS); do
            echo "APP${n}_PORT=${ports[$n]}"
            echo "APP${n}_URL=http://127.0.0.1:${ports[$n]}"
        done
        echo "REPLICAS=$REPLICAS"
        echo "CALCACHE_BIN=$BIN"
        echo "TOPOLOGY_DIR=$DIR"
    } >"$DIR/topology.env"
    load_env
    # From here on a failed start undoes itself (processes, database, keys).
    trap 'rc=$?; if (( rc != 0 )); then log "start failed; stopping what it started"; cmd_stop; fi' EXIT

    psql_admin "CREATE DATABASE \"$DB_NAME\"" || die "cannot create database $DB_NAME"
    log "database $DB_NAME, Redis key prefix $KEY_PREFIX"

    # As in docker-compose.yml: one migration run, then the replicas (which
    # would also migrate safely under their advisory lock).
    app_env
    env "${APP_VARS[@]}" "$BIN" migrate >>"$DIR/logs/migrate.log" 2>&1 || { tail -n 20 "$DIR/logs/migrate.log" >&2; die "migrate failed"; }

    for n in $(seq 1 $REPLICAS); do launch_app "$n"; done
    for n in $(seq 1 $REPLICAS); do wait_app_ready "$n" || die "app$n not ready"; done

    # nginx runs deploy/nginx.conf itself (a symlink, so it is provably the
    # same file); only the included topology files are generated, from the
    # compose ones with each appN:8080 replaced by this replica's address.
    ln -s "$ROOT/deploy/nginx.conf" "$DIR/nginx/nginx.conf"
    local sed_args=()
    for n in $(seq 1 $REPLICAS); do
        local port_var="APP${n}_PORT"
        sed_args+=(-e "s/\\bapp$n:8080\\b/127.0.0.1:${!port_var}/")
    done
    sed "${sed_args[@]}" "$ROOT/deploy/compose/upstreams.conf" >"$DIR/nginx/calcache/upstreams.conf"
    grep -q 'app[0-9]*:8080' "$DIR/nginx/calcache/upstreams.conf" && die "upstreams.conf names a replica this topology lacks"
    printf '# written by deploy/topology.sh\nlisten 127.0.0.1:%s;\n' "$LB_PORT" >"$DIR/nginx/calcache/listen.conf"

    local nginx_args=(-p "$DIR/nginx/" -c "$DIR/nginx/nginx.conf" -e "$DIR/logs/nginx-error.log"
        -g "daemon off; pid $DIR/nginx/nginx.pid;")
    nginx -t -q "${nginx_args[@]}" || die "nginx -t failed"
    nginx "${nginx_args[@]}" >>"$DIR/logs/nginx-access.log" 2>>"$DIR/logs/nginx-error.log" </dev/null &
    echo $! >"$DIR/pids/nginx.pid"
    if ! wait_http_ok "$LB_URL/readyz" "$READY_DEADLINE_SECS" "$(<"$DIR/pids/nginx.pid")"; then
        tail -n 20 "$DIR/logs/nginx-error.log" >&2 || true
        die "nginx did not come up on $LB_URL"
    fi
    log "nginx: pid $(<"$DIR/pids/nginx.pid"), $LB_URL -> $(for n in $(seq 1 $REPLICAS); do v="APP${n}_PORT"; printf '%s ' "${!v}"; done)"
    trap - EXIT
    echo "$LB_URL"
}

cmd_stop() {
    if [[ ! -r $DIR/topology.env ]]; then log "nothing to stop in $DIR"; return 0; fi
    load_env
    # The balancer first (QUIT = finish in-flight requests), then the replicas.
    stop_pidfile "$DIR/pids/nginx.pid" nginx QUIT
    for n in $(seq 1 "$REPLICAS"); do stop_pidfile "$DIR/pids/app$n.pid" calcache TERM; done
    if [[ -n ${DB_NAME:-} ]]; then
        psql_admin "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" || log "could not drop $DB_NAME"
    fi
    if [[ -n ${KEY_PREFIX:-} ]] && command -v redis-cli >/dev/null; then
        # Only this topology's own keys (its unique prefix), never a flush.
        redis-cli -u "$REDIS_URL" --scan --pattern "$KEY_PREFIX:*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null || true
    fi
    rm -f "$DIR/topology.env"
    log "stopped; logs kept in $DIR/logs"
}

cmd_status() {
    load_env
    local f name pid
    for f in "$DIR"/pids/*.pid; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .pid)
        if pid=$(live_pid "$f" "$(pid_program "$f")"); then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"
        fi
    done
    echo "balancer: $LB_URL, database: $DB_NAME, key prefix: $KEY_PREFIX"
}

cmd_start_app() {
    local n=${1:?replica number}
    load_env
    [[ $n =~ ^[0-9]+$ ]] && (( n >= 1 && n <= REPLICAS )) || die "no replica $n"
    launch_app "$n"
    wait_app_ready "$n" || die "app$n not ready"
}

cmd_stop_app() {
    local n=${1:?replica number} sig=${2:-TERM}
    load_env
    [[ $n =~ ^[0-9]+$ ]] && (( n >= 1 && n <= REPLICAS )) || die "no replica $n"
    live_pid "$DIR/pids/app$n.pid" calcache >/dev/null || die "app$n is not running"
    stop_pidfile "$DIR/pids/app$n.pid" calcache "$sig"
}

# --- balancer membership ----------------------------------------------------

nginx_master() {
    live_pid "$DIR/pids/nginx.pid" nginx || die "nginx is not running"
}

# Reloads nginx (SIGHUP) and waits until every worker of the previous
# configuration has finished its in-flight requests and exited, so that from
# then on only the new configuration routes requests.
reload_nginx() {
    local master old pid deadline
    master=$(nginx_master)
    nginx -t -q -p "$DIR/nginx/" -c "$DIR/nginx/nginx.conf" -e "$DIR/logs/nginx-error.log" \
        -g "daemon off; pid $DIR/nginx/nginx.pid;" || die "nginx -t failed; not reloading"
    old=$(pgrep -P "$master" | tr '\n' ' ')
    kill -HUP "$master"
    deadline=$(( $(now_ms) + STOP_DEADLINE_SECS * 1000 ))
    for pid in $old; do
        while alive "$pid"; do
            (( $(now_ms) < deadline )) || die "nginx worker $pid of the old configuration is still running"
            sleep 0.02
        done
    done
}

# Marks replica $1 down (yes) or up (no) in the generated upstream file.
set_down() {
    local n=$1 down=$2 port_var="APP${1}_PORT" file="$DIR/nginx/calcache/upstreams.conf"
    local addr="127.0.0.1:${!port_var}"
    grep -q "^server $addr " "$file" || die "app$n ($addr) is not in $file"
    sed -i -E "/^server $addr /{s/ down;/;/; }" "$file"
    if [[ $down == yes ]]; then sed -i -E "/^server $addr /s/;\s*\$/ down;/" "$file"; fi
}

cmd_drain() {
    local n=${1:?replica number}
    load_env
    set_down "$n" yes
    reload_nginx
}

cmd_undrain() {
    local n=${1:?replica number}
    load_env
    set_down "$n" no
    reload_nginx
}

cmd_rolling_restart() {
    load_env
    local n t
    for n in $(seq 1 "$REPLICAS"); do
        t=$(now_ms)
        set_down "$n" yes
        reload_nginx
        stop_pidfile "$DIR/pids/app$n.pid" calcache TERM
        launch_app "$n"
        wait_app_ready "$n" || die "app$n not ready"
        set_down "$n" no
        reload_nginx
        log "app$n restarted in $(( $(now_ms) - t )) ms"
    done
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    start-app) shift; cmd_start_app "$@" ;;
    stop-app) shift; cmd_stop_app "$@" ;;
    drain) shift; cmd_drain "$@" ;;
    undrain) shift; cmd_undrain "$@" ;;
    rolling-restart) cmd_rolling_restart ;;
    *) echo "usage: $0 start|stop|status|start-app N|stop-app N [TERM|KILL]|drain N|undrain N|rolling-restart" >&2; exit 2 ;;
esac
