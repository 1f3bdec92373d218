#!/usr/bin/env bash
# Soak test of the live engine: `undertone run` for MINUTES on a paced audio device
# (PulseAudio's null sink through ALSA, as in the tests: real-time pacing, no sound card
# needed), with a 640x480 30 fps clip replayed as a camera: capture, extraction, the live
# planner, the note model and the renderer all run, as on the box. PLAY=1 loops a WAV
# through the audio path instead of the music engine (the audio path alone).
#
# Samples every SAMPLE_S seconds: RSS and CPU (undertone plus its ffmpeg decoder), and
# /metrics (underruns, headroom). Prints the figures the live issue asks for:
#   underruns (want 0), lowest headroom vs one ALSA period (want >= 21.3 ms),
#   RSS growth after warm-up (want <= 1 MB), CPU % of one core (want <= 25 %),
# and, side by side on the same clip, the CPU of the reference `ffmpeg -re` decode alone.
#
#   tools/soak/soak.sh [MINUTES]      # default 30
#   BIN=target/debug/undertone tools/soak/soak.sh 3
#
# Needs: pulseaudio, libasound2-plugins, ffmpeg, sox, curl (tools/setup.sh installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
minutes=${1:-30}
secs=$((minutes * 60))
SAMPLE_S=${SAMPLE_S:-10}
WARMUP_S=${WARMUP_S:-60}   # RSS growth is measured from here (allocators and caches settle)
BIN=${BIN:-$root/target/release/undertone}
. "$root/tools/soak/lib.sh"
soak_workdir soak
out=${OUT:-$root/target/soak}
mkdir -p "$out"

# 1. The "camera": trailer_bbb at 640x480 30 fps, encoded once, looped (stream copy) to cover the run.
base="$out/camera_640x480_30.mp4"
if [ ! -f "$base" ]; then
  ffmpeg -v error -y -i "$root/testdata/clips/trailer_bbb.mp4" -an \
    -vf "scale=640:480,fps=30" -c:v libx264 -preset veryfast -crf 28 -g 60 "$base"
fi
loops=$(( secs / 50 + 2 ))
ffmpeg -v error -y -stream_loop "$loops" -i "$base" -c copy "$work/camera.mp4"

# 2. Audio to loop: 4 s of a chord progression (sox).
sox -n -r 48000 -c 2 -b 16 "$work/music.wav" synth 1 pluck C4 pluck E4 pluck G4 : \
  synth 1 pluck A3 pluck C4 pluck E4 : synth 1 pluck F3 pluck A3 pluck C4 : \
  synth 1 pluck G3 pluck B3 pluck D4 gain -6

# 3. A private PulseAudio with a 48 kHz null sink, played through the ALSA PCM "soak".
soak_pulse soak

# 4. The run.
port=$(( 20000 + RANDOM % 20000 ))
play=()
[ "${PLAY:-0}" = 1 ] && play=(--play "$work/music.wav")
XDG_CONFIG_HOME=$work/cfg "$work/undertone" --log warn run --config /dev/null \
  --source "file:$work/camera.mp4" --realtime --audio-device soak "${play[@]}" \
  --duration "$secs" --report "$out/report.json" --listen "127.0.0.1:$port" 2>"$out/run.log" &
ut_pid=$!

tick=$(getconf CLK_TCK)
cpu_ticks() { # utime+stime of undertone and its children (the ffmpeg decoder)
  local t=0 p
  for p in "$ut_pid" $(pgrep -P "$ut_pid" || true); do
    [ -r "/proc/$p/stat" ] && t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
  done
  echo "$t"
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$ut_pid/status" 2>/dev/null || echo 0; }
# The split of RSS: anonymous (heap, stacks: where a leak shows) and file-backed (code and
# data files paged in; reclaimable).
rss_split() { awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print a+0 "," f+0}' "/proc/$ut_pid/status" 2>/dev/null || echo 0,0; }
metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

csv="$out/samples.csv"
echo "t_s,rss_kb,cpu_ticks,underruns,headroom_s,headroom_min_s,fps,rss_anon_kb,rss_file_kb" > "$csv"
t0=$(date +%s.%N)
rss_warm=""; ticks_warm=""; t_warm=""
while kill -0 "$ut_pid" 2>/dev/null; do
  sleep "$SAMPLE_S"
  kill -0 "$ut_pid" 2>/dev/null || break
  t=$(echo "$(date +%s.%N) - $t0" | bc)
  r=$(rss_kb); c=$(cpu_ticks)
  echo "$t,$r,$c,$(metric undertone_underruns_total),$(metric undertone_headroom_seconds),$(metric undertone_headroom_min_seconds),$(metric undertone_fps),$(rss_split)" >> "$csv"
  if [ -z "$rss_warm" ] && [ "$(echo "$t >= $WARMUP_S" | bc)" = 1 ]; then
    rss_warm=$r; ticks_warm=$c; t_warm=$t
  fi
  rss_last=$r; ticks_last=$c; t_last=$t
done
wait "$ut_pid" || { echo "soak: undertone failed; see $out/run.log" >&2; exit 1; }
ut_pid=""

# 5. Reference: the same clip decoded in real time by ffmpeg alone, for 30 s.
ffmpeg -v error -re -t 30 -i "$base" -f null - &
ff=$!
sleep 29
ff_ticks=$(awk '{print $14 + $15}' "/proc/$ff/stat")
wait "$ff" || true

python3 - "$out/report.json" "$csv" <<PY
import json, sys
r = json.load(open(sys.argv[1]))
rows = [l.strip().split(",") for l in open(sys.argv[2]).readlines()[1:]]
period = 1024 / 48000
und = r["audio"]["underruns"]
hmin = r.get("headroom_min")
rss_warm, rss_last = int("${rss_warm:-0}"), int("${rss_last:-0}")
cpu = (int("${ticks_last:-0}") - int("${ticks_warm:-0}")) / $tick / max(1e-9, float("${t_last:-1}") - float("${t_warm:-0}")) * 100
ref = int("$ff_ticks") / $tick / 29 * 100
print(f"soak: {r['duration']/60:.1f} min, stopped by {r['stopped_by']}, {r['frames_seen']} frames ({r['fps']:.1f} fps)")
print(f"underruns: {und} (want 0)")
print(f"lowest headroom: {hmin*1000 if hmin is not None else float('nan'):.1f} ms (one period = {period*1000:.1f} ms)")
print(f"RSS after warm-up {rss_warm} kB -> end {rss_last} kB: growth {(rss_last-rss_warm)/1024:.2f} MB (want <= 1)")
warm = next((x for x in rows if float(x[0]) >= $WARMUP_S), None)
if warm is not None and len(warm) >= 9 and len(rows[-1]) >= 9:
    da = (int(rows[-1][7]) - int(warm[7])) / 1024
    df = (int(rows[-1][8]) - int(warm[8])) / 1024
    print(f"  of which anonymous {da:+.2f} MB (heap: where a leak shows), file-backed {df:+.2f} MB")
print(f"CPU: {cpu:.1f} % of one core (undertone + its ffmpeg decoder; want <= 25)")
print(f"reference ffmpeg -re decode of the same clip alone: {ref:.1f} % of one core (ratio {cpu/max(ref,1e-9):.2f})")
m = r.get("music")
if m:
    cuts = m["cuts"]
    late = [c for c in cuts if c.get("reaction") is not None and c["reaction"] > c["budget"]]
    reached = [c for c in cuts if c.get("reaction") is not None]
    worst = max((c["reaction"] - c["budget"] for c in reached), default=float("nan"))
    print(f"music: {m['bars_total']} bars, {m['sections_total']} sections, tempo {m['tempo_bpm']:.0f} BPM, "
          f"errors {m['errors']}; cuts {m['cuts_total']}: {len(reached) - len(late)}/{len(reached)} within "
          f"one beat + 100 ms (worst reaction minus budget {worst:+.3f} s)")
PY
