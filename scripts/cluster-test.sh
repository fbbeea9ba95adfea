#!/usr/bin/env bash
# The integration suite against a real Redis Cluster (three masters, one
# replica each) started here on free ports in a temporary directory, then a
# master failover in the middle of a run. The cluster is always stopped.
#
# Skipped here, with the reason:
#   faults::an_invalidation_lost_after_commit_is_applied_when_redis_returns
#   faults::redis_down_then_restarted_empty_degrades_and_resurrects_nothing
#     They cut or restart one single redis-server of their own (TCP proxy,
#     RedisServer); they run in single-Redis mode in the main suite.
# The failover test runs on its own, after the suite: it takes a third of the
# cluster's slots away for a few seconds, which would fail unrelated tests
# running in parallel.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

free_base() {
  # Six consecutive free ports, and their cluster bus ports (+10000).
  local base p ok
  for _ in $(seq 50); do
    base=$((20000 + RANDOM % 20000))
    ok=1
    for p in $(seq "$base" $((base + 5))) $(seq $((base + 10000)) $((base + 10005))); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then ok=0; break; fi
    done
    if ((ok)); then echo "$base"; return; fi
  done
  echo "no free ports" >&2
  return 1
}

dir=$(mktemp -d -t calcache-cluster.XXXXXX)
cleanup() {
  bash scripts/redis-cluster.sh stop "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT
base=$(free_base)
bash scripts/redis-cluster.sh start "$dir" "$base"

nodes=""
for i in 0 1 2 3 4 5; do nodes+="${nodes:+,}redis://127.0.0.1:$((base + i))"; done
export CALCACHE__REDIS__MODE=cluster
export CALCACHE__REDIS__CLUSTER_NODES=$nodes

echo "== cargo test --test api against Redis Cluster ($nodes)"
echo "   skipped: faults::an_invalidation_lost_after_commit_is_applied_when_redis_returns, faults::redis_down_then_restarted_empty_degrades_and_resurrects_nothing (need a single redis-server of their own)"
cargo test --quiet --test api -- \
  --skip faults::an_invalidation_lost_after_commit_is_applied_when_redis_returns \
  --skip faults::redis_down_then_restarted_empty_degrades_and_resurrects_nothing \
  --skip cluster::

echo "== cluster only: a master fails over mid-run; unreplicated bumps stay in the outbox"
cargo test --quiet --test api -- cluster:: --test-threads 1 --nocapture
