#!/usr/bin/env bash
# The near cache on and off in one build, interleaved (on, off, on, off):
# one calcache process with 2 workers and the demo data, wrk -c64 for 8 s
# per run on the demo month grid (gzip), calcache CPU per hit from /proc.
#   scripts/near-ab.sh        # needs target/release/calcache, wrk
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
apt_install wrk
cd "$ROOT"
BIN=target/release/calcache
bench_setup nearab "$BIN" "$ROOT/config"
for near in 33554432 0 33554432 0; do
  ab_round "near_bytes=$near" "$BIN" CALCACHE__CACHE__NEAR_BYTES=$near
done
