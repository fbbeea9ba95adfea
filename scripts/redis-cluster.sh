#!/usr/bin/env bash
# A local Redis Cluster for tests: three masters with one replica each.
#
#   scripts/redis-cluster.sh start DIR BASEPORT   # nodes on 127.0.0.1:BASEPORT..BASEPORT+5
#   scripts/redis-cluster.sh stop  DIR
#
# Node state (nodes-PORT.conf, logs, pids) lives in DIR. `start` returns once
# every node answers and `cluster info` reports cluster_state:ok; `stop` kills
# exactly the processes it started (by the pids recorded in DIR).
set -euo pipefail

usage() { echo "usage: $0 start DIR BASEPORT | stop DIR" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
cmd=$1 dir=$2

# Polls "$@" until it succeeds or $1 seconds pass.
wait_for() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 0.1
  done
}

cluster_ok() { redis-cli -h 127.0.0.1 -p "$1" cluster info | grep -q '^cluster_state:ok'; }

case $cmd in
  start)
    [[ $# -eq 3 ]] || usage
    base=$3
    mkdir -p "$dir"
    : >"$dir/pids"
    nodes=()
    for i in 0 1 2 3 4 5; do
      port=$((base + i))
      rm -f "$dir/nodes-$port.conf"
      redis-server --bind 127.0.0.1 --port "$port" --daemonize no \
        --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
        --cluster-node-timeout 2000 --save "" --appendonly no --dir "$dir" \
        --logfile "$dir/redis-$port.log" &
      echo "$!" >>"$dir/pids"
      nodes+=("127.0.0.1:$port")
    done
    for n in "${nodes[@]}"; do
      if ! wait_for 10 redis-cli -h 127.0.0.1 -p "${n#*:}" ping; then
        echo "redis node $n did not start; its log:" >&2
        tail -n 20 "$dir/redis-${n#*:}.log" >&2 || true
        exit 1
      fi
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || {
      cat "$dir/create.log" >&2
      exit 1
    }
    # Every node must agree before tests start (a client may seed from any).
    for n in "${nodes[@]}"; do
      if ! wait_for 30 cluster_ok "${n#*:}"; then
        echo "cluster not ok on $n after 30 s" >&2
        redis-cli -h 127.0.0.1 -p "${n#*:}" cluster info >&2 || true
        exit 1
      fi
    done
    # And every master's replica in sync, or a version bump's WAIT would
    # find no replica to acknowledge it.
    for n in "${nodes[@]}"; do
      if redis-cli -h 127.0.0.1 -p "${n#*:}" role | head -1 | grep -q master; then
        if ! wait_for 30 bash -c "redis-cli -h 127.0.0.1 -p ${n#*:} info replication | grep -q 'state=online'"; then
          echo "master $n has no replica in sync after 30 s" >&2
          exit 1
        fi
      fi
    done
    echo "redis cluster up on 127.0.0.1:$base..$((base + 5))"
    ;;
  stop)
    [[ -f "$dir/pids" ]] || exit 0
    while read -r pid; do
      [[ -n $pid ]] || continue
      kill -CONT "$pid" 2>/dev/null || true # a test may have paused it
      kill "$pid" 2>/dev/null || true
    done <"$dir/pids"
    while read -r pid; do
      [[ -n $pid ]] || continue
      if ! wait_for 10 bash -c "! kill -0 $pid"; then kill -9 "$pid" 2>/dev/null || true; fi
    done <"$dir/pids"
    rm -f "$dir/pids"
    ;;
  *) usage ;;
esac
