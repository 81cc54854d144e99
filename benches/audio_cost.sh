#!/bin/sh
# What the microphone costs: CPU and memory of the daemon with audio.source = "none" and
# with "test" (audiotestsrc → Opus 32 kb/s, the same path as a real microphone but for
# alsasrc), idle and with one RTSP client on /stream (which then carries the Opus track
# too). Release build, test pattern at 1280x720 30 fps 2 Mbps x264, loopback only,
# bounded (about 2 minutes).
# Run: sh benches/audio_cost.sh   (after cargo build --release)
set -eu
BIN=${BIN:-target/release/edgecam}
HZ=$(getconf CLK_TCK)
for AUDIO in none test; do
    DIR=$(mktemp -d)
    HTTP=18182; RTSP=18555
    cat > "$DIR/edgecam.toml" <<CFG
[http]
listen = "127.0.0.1:$HTTP"
[rtsp]
listen = "127.0.0.1:$RTSP"
[camera]
source = "test"
width = 1280
height = 720
fps = 30
[encoder]
kind = "x264"
bitrate_kbps = 2000
[audio]
source = "$AUDIO"
[onvif]
discovery = false
[state]
dir = "$DIR"
CFG
    "$BIN" run --config "$DIR/edgecam.toml" > "$DIR/log" 2>&1 &
    PID=$!
    sleep 5
    ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
    rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
    measure() {
        t0=$(ticks); sleep "$1"; t1=$(ticks)
        echo "$(( (t1 - t0) * 1000 / HZ / $1 / 10 ))% $(( $(rss) / 1024 ))MiB"
    }
    echo "audio $AUDIO, no client:           $(measure 20)"
    ffmpeg -v quiet -rtsp_transport tcp -i "rtsp://127.0.0.1:$RTSP/stream" -c copy -f null - &
    C=$!; sleep 3
    echo "audio $AUDIO, one RTSP client:     $(measure 20)"
    kill $C; wait $C 2>/dev/null || true
    kill $PID; wait $PID 2>/dev/null || true
    rm -rf "$DIR"
done
