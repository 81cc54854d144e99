#!/bin/sh
# What the NVR doors cost: CPU and memory the daemon adds for one RTSP client on the main
# stream, one on the sub-stream, snapshot polling at 1 Hz; and the time an RTSP client
# waits for its first frame with a 10 s GOP. Release build, test pattern at 1280x720
# 30 fps 2 Mbps x264, loopback only, bounded (about 2 minutes).
# Run: sh benches/nvr_cost.sh   (after cargo build --release)
set -eu
BIN=${BIN:-target/release/edgecam}
DIR=$(mktemp -d)
HTTP=18181; RTSP=18554
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
keyframe_interval_s = 10
[onvif]
discovery = false
[state]
dir = "$DIR"
CFG
"$BIN" run --config "$DIR/edgecam.toml" > "$DIR/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT
sleep 4
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
# CPU share of one core and RSS (MiB) over $1 seconds.
measure() {
    t0=$(ticks); sleep "$1"; t1=$(ticks)
    echo "$(( (t1 - t0) * 1000 / HZ / $1 / 10 ))% $(( $(rss) / 1024 ))MiB"
}
echo "idle (no client):            $(measure 15)"
ffmpeg -v error -rtsp_transport tcp -i "rtsp://127.0.0.1:$RTSP/stream" -c copy -f null - &
C=$!; sleep 3
echo "one RTSP client on /stream:  $(measure 15)"
kill $C; wait $C 2>/dev/null || true; sleep 2
ffmpeg -v error -rtsp_transport tcp -i "rtsp://127.0.0.1:$RTSP/sub" -c copy -f null - &
C=$!; sleep 3
echo "one RTSP client on /sub:     $(measure 15)"
kill $C; wait $C 2>/dev/null || true; sleep 2
( for i in $(seq 20); do curl -s -o /dev/null "http://127.0.0.1:$HTTP/snapshot.jpg"; sleep 1; done ) &
C=$!; sleep 3
echo "snapshot polled at 1 Hz:     $(measure 15)"
wait $C 2>/dev/null || true
sleep 35   # the stills stop 30 s after the last request
echo "idle again:                  $(measure 10)"
# Time to the first decoded frame for a new RTSP client, 10 s GOP (10 runs, ms).
for i in $(seq 10); do
    s=$(date +%s%N)
    ffmpeg -v error -rtsp_transport tcp -i "rtsp://127.0.0.1:$RTSP/stream" -frames:v 1 -f null - 2>/dev/null
    echo $(( ($(date +%s%N) - s) / 1000000 ))
    sleep 1
done | sort -n | awk '{a[NR]=$1} END {printf "RTSP first frame, 10 runs: min %d ms, median %d ms, max %d ms\n", a[1], a[int((NR+1)/2)], a[NR]}'
