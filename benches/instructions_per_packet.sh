#!/bin/sh
# Instructions per RTP packet sent, for edgecam and for Janus side by side, split by what
# spends them (SRTP, packetizing, interceptors, allocation and copies, the send path, the
# async runtime...). Both servers get the very same RTP from one sender (the load bench's
# shared-RTP setup) and run under valgrind's callgrind, which counts instructions
# deterministically: no hardware counters needed, and the neighbours' load does not
# change the count. Counting is on only for the load bench's 10 s measured window, at two
# viewer counts; the difference between them, per packet, is what one more viewer costs.
#
# Run as root (network namespaces): sh benches/instructions_per_packet.sh [LOW HIGH]
# About 10 minutes. Needs valgrind and Debian's janus (apt-get install -y valgrind janus).
set -eu
LOW=${1:-2}
HIGH=${2:-6}
OUT="$PWD/target/callgrind"
command -v valgrind >/dev/null || apt-get install -y valgrind
command -v janus >/dev/null || apt-get install -y janus
rm -rf "$OUT"
mkdir -p "$OUT"
BENCH_CALLGRIND="$OUT" cargo bench --bench load -- edgecam janus "$LOW" "$HIGH"
python3 benches/callgrind_split.py "$OUT" "$LOW" "$HIGH"
