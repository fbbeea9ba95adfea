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
#   changes::a_deferred_bump_reaches_the_stream_when_the_drainer_applies_it
#   changes::a_lost_subscription_ends_streams_and_the_reconnect_catches_up
#     The same: a TCP proxy in front of one redis-server.
# The failover test runs on its own, after the suite: it takes a third of the
# cluster's slots away for a few seconds, which would fail unrelated tests
# running in parallel.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

free_base() {
  # Six consecutive free ports and their cluster bus ports (+10000), all
  # below the kernel's ephemeral range: a port in that range can be taken at
  # any moment as the local end of some outgoing connection (one did, and a
  # node failed to bind). "Free" means we could bind it just now.
  python3 - <<'PY'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    base = random.randrange(10000, low - 10006)
    ports = [base + i for i in range(6)] + [base + 10000 + i for i in range(6)]
    socks = []
    try:
        for p in ports:
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
else:
    raise SystemExit("no free ports")
PY
}

dir=$(mktemp -d -t calcache-cluster.XXXXXX)
cleanup() {
  bash scripts/redis-cluster.sh stop "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT
# A node can still lose its port to another process between the pick and
# its bind; then stop what started and try other ports.
for attempt in 1 2 3; do
  base=$(free_base)
  if bash scripts/redis-cluster.sh start "$dir" "$base"; then break; fi
  bash scripts/redis-cluster.sh stop "$dir" || true
  if ((attempt == 3)); then echo "redis cluster did not start" >&2; exit 1; fi
  echo "redis cluster did not start on $base; trying other ports" >&2
done

nodes=""
for i in 0 1 2 3 4 5; do nodes+="${nodes:+,}redis://127.0.0.1:$((base + i))"; done
export CALCACHE__REDIS__MODE=cluster
export CALCACHE__REDIS__CLUSTER_NODES=$nodes

echo "== cargo test --test api against Redis Cluster ($nodes)"
echo "   skipped: partial::, chaos::, faults::redis_down_then_restarted_empty_degrades_and_resurrects_nothing, changes::a_deferred_bump_reaches_the_stream_when_the_drainer_applies_it, changes::a_lost_subscription_ends_streams_and_the_reconnect_catches_up, near::a_local_hit_takes_a_few_dozen_bytes_out_of_redis_whatever_the_feed_size (need a single redis-server of their own), process::a_process_whose_clock_is_a_day_behind_* (finds its keys with KEYS)"
cargo test --quiet --test api -- \
  --skip partial:: \
  --skip chaos:: \
  --skip faults::redis_down_then_restarted_empty_degrades_and_resurrects_nothing \
  --skip changes::a_deferred_bump_reaches_the_stream_when_the_drainer_applies_it \
  --skip changes::a_lost_subscription_ends_streams_and_the_reconnect_catches_up \
  --skip near::a_local_hit_takes_a_few_dozen_bytes_out_of_redis_whatever_the_feed_size \
  --skip process::a_process_whose_clock_is_a_day_behind \
  --skip cluster::

echo "== cluster only: a master fails over mid-run; unreplicated bumps stay in the outbox"
cargo test --quiet --test api -- cluster:: --test-threads 1 --nocapture
