#!/usr/bin/env bash
# Cold start to first sound of `undertone run` on a paced ALSA device (PulseAudio null sink,
# as in soak.sh): the time from exec until /metrics shows the master clock moving
# (undertone_audio_position_seconds > 0: frames have left the device's queue). The music
# engine runs: the templates and SoundFont load, the first bar is rendered (the note model
# and the extraction model load in parallel and join when ready). PLAY=1: a looped WAV
# instead (the audio path alone).
#
#   tools/soak/coldstart.sh [RUNS]      # default 5; prints each time and the median
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-5}
BIN=${BIN:-$root/target/release/undertone}
. "$root/tools/soak/lib.sh"
soak_workdir cold
sox -n -r 48000 -c 2 -b 16 "$work/music.wav" synth 2 pluck A3 pluck C4 pluck E4 gain -6
soak_pulse cold
times=()
play=()
[ "${PLAY:-0}" = 1 ] && play=(--play "$work/music.wav")
for i in $(seq "$runs"); do
  port=$(( 20000 + RANDOM % 20000 ))
  t0=$(date +%s.%N)
  XDG_CONFIG_HOME=$work/cfg "$work/undertone" run --config /dev/null \
    --source "file:$root/testdata/clips/bikes.mp4" --realtime --audio-device cold \
    "${play[@]}" --duration 10 --listen "127.0.0.1:$port" 2>/dev/null &
  ut_pid=$!
  while :; do
    p=$(curl -s "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '$1 == "undertone_audio_position_seconds" {print $2}' || true)
    if [ -n "$p" ] && [ "$(echo "$p > 0" | bc)" = 1 ]; then break; fi
    sleep 0.01
  done
  t=$(echo "$(date +%s.%N) - $t0" | bc)
  kill "$ut_pid"; wait "$ut_pid" 2>/dev/null || true; ut_pid=""
  echo "run $i: first sound after $t s"
  times+=("$t")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "cold start to first sound: median %.3f s over %d runs (want <= 3 s)\n", a[int((NR+1)/2)], NR}'
