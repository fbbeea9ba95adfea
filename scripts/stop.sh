#!/usr/bin/env bash
# Stops the private PostgreSQL and Redis servers that scripts/run.sh or
# scripts/test.sh started (each left `$STATE_DIR/<name>-<port>.started`);
# servers the scripts found already running and reused are left alone. Their
# data stays (PostgreSQL's cluster in $STATE_DIR/pg-<port>, or
# /var/tmp/calcache-pg-<port> as root), so the next run starts them again with
# the same databases; `rm -rf .local` afterwards forgets everything.
#   scripts/stop.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stopped=0
for marker in "$STATE_DIR"/postgres-*.started; do
  [[ -e "$marker" ]] || continue
  data="$(cat "$marker")"
  if [[ -f "$data/postmaster.pid" ]]; then
    bin="$(find_pg_bin)" || die "no pg_ctl found to stop the PostgreSQL in $data"
    run_as=()
    [[ $EUID -eq 0 ]] && run_as=(runuser -u postgres --)
    log "stopping PostgreSQL ($data)"
    "${run_as[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    stopped=$((stopped + 1))
  fi
  rm -f "$marker"
done

for marker in "$STATE_DIR"/redis-*.started; do
  [[ -e "$marker" ]] || continue
  pidfile="$(cat "$marker")"
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  # Only that pid, and only while it still is a redis-server.
  if [[ -n "$pid" ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == redis-server* ]]; then
    log "stopping Redis (pid $pid)"
    kill -TERM "$pid"
    wait_for "Redis (pid $pid) to exit" 30 eval "! kill -0 $pid 2>/dev/null"
    stopped=$((stopped + 1))
  fi
  rm -f "$marker"
done

if ((stopped == 0)); then
  log "nothing to stop: no PostgreSQL or Redis started by these scripts is running"
fi
