#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 60) with libFuzzer through
# cargo fuzz, on the stable toolchain.
#
#   fuzz/run.sh [SECONDS|seeds] [TARGET...]
#
# cargo fuzz wants nightly for its sanitizer flags; with `-s none` (no sanitizer:
# Rust is memory-safe, we are after panics, hangs and unbounded allocation) the
# only unstable flags left are accepted by stable rustc under RUSTC_BOOTSTRAP=1.
# libFuzzer itself is built from source by the libfuzzer-sys crate with the
# machine's C++ compiler. cargo-fuzz is installed from crates.io if missing.
#
# Seeds come from fixtures/ and the captured CBOR vectors (make_seeds.py); new
# inputs libFuzzer finds are kept in fuzz/corpus/ (not committed), crashes in
# fuzz/artifacts/TARGET/. Exits non-zero if any target found a crash.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(banana negotiate urls gbs_bodies gbs_headers sniff announcement
             announcement_store nodedir accounting)
fi
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
export RUSTC_BOOTSTRAP=1

python3 make_seeds.py
cargo fuzz build -s none -O

failed=()
# `seeds` instead of a duration replays the seed corpus once through each target
# (deterministic: builds every target and checks no seed fails) without mutating.
if [ "$SECONDS_EACH" = seeds ]; then
    LIMIT=(-runs=0)
else
    LIMIT=(-max_total_time="$SECONDS_EACH")
fi
for t in "${TARGETS[@]}"; do
    echo "== fuzz $t (${SECONDS_EACH})"
    # -rss_limit_mb: an input that makes a decoder allocate past 512 MiB is a finding.
    # -timeout: one input taking over 10 s is a finding (a hang).
    if cargo fuzz run -s none -O "$t" "corpus/$t" -- \
        "${LIMIT[@]}" -rss_limit_mb=512 -timeout=10 \
        -max_len=65536 -print_final_stats=1 2>"$t.log"; then
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$t.log" | sed "s/^/$t: /"
    else
        echo "$t: FAILED, see fuzz/$t.log and fuzz/artifacts/$t/"
        tail -n 30 "$t.log"
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: findings in ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets (${SECONDS_EACH}), no findings"
