#!/bin/sh
# Runs every fuzz target for SECONDS each (default 600), one after another, starting
# from the committed seeds; new inputs collect in fuzz/corpus/<target> (not committed),
# crashes in fuzz/artifacts/<target>. Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# Usage: sh fuzz/run.sh [SECONDS] [TARGET...]
set -eu
cd "$(dirname "$0")"
seconds=${1:-600}
[ $# -gt 0 ] && shift
targets=${*:-"signaling_message whep_request config_file"}
for t in $targets; do
    mkdir -p "corpus/$t"
    echo "== $t: $seconds s"
    cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=131072 -print_final_stats=1 \
        2>&1 | tee "/tmp/fuzz-$t.log" | grep -E "^(#[0-9]+ +DONE|stat::|==[0-9]+== ERROR|SUMMARY|Done)" || true
done
