#!/usr/bin/env bash
# Two builds on the same hit, interleaved (A, B, A, B, …), so that the
# machine's drift between runs falls on both alike: each with its own
# database of demo data and its own config directory, 2 workers, wrk -c64
# for 8 s per round on the demo month grid (gzip).
#   scripts/build-ab.sh BIN_A CONFIG_A BIN_B CONFIG_B [ROUNDS]   # default 3 rounds each
# e.g. an older commit built in a worktree against target/release/calcache:
#   scripts/build-ab.sh /tmp/calcache-old /work/wt-old/config target/release/calcache config
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
(( $# >= 4 )) || die "usage: scripts/build-ab.sh BIN_A CONFIG_A BIN_B CONFIG_B [ROUNDS]"
apt_install wrk
cd "$ROOT"
bin_a=$(realpath "$1") config_a=$(realpath "$2") bin_b=$(realpath "$3") config_b=$(realpath "$4") rounds=${5:-3}
bench_setup buildab "$bin_b" "$config_b"
db_b=$DATABASE_URL
# A gets a database of its own: the builds' migrations may differ.
db_a="${DATABASE_URL%/*}/${BENCH_DB}_a"
psql "$BENCH_ADMIN_URL" -qAt -c "CREATE DATABASE \"${BENCH_DB}_a\"" >/dev/null
trap 'bench_cleanup; psql "$BENCH_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS \"${BENCH_DB}_a\" WITH (FORCE)" >/dev/null 2>&1' EXIT
# An older build may not know every section bench_setup's variables set.
a_env=(DATABASE_URL="$db_a" CALCACHE_CONFIG_DIR="$config_a")
grep -q '^\[limits\]' "$config_a/default.toml" || a_env=(-u CALCACHE__LIMITS__FEED_FILLS_PER_USER "${a_env[@]}")
env "${a_env[@]}" "$bin_a" demo >"$BENCH_WORK/demo-a.log" 2>&1 \
  || { tail "$BENCH_WORK/demo-a.log" >&2; die "calcache demo failed for A"; }
for ((i = 1; i <= rounds; i++)); do
  ab_round "A" "$bin_a" "${a_env[@]}"
  ab_round "B" "$bin_b" DATABASE_URL="$db_b" CALCACHE_CONFIG_DIR="$config_b"
done
