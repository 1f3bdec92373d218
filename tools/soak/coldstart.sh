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
[ -x "$BIN" ] || (cd "$root" && cargo build --release -p undertone)
work=$(mktemp -d /tmp/undertone-cold.XXXXXX)
cleanup() {
  [ -n "${ut_pid:-}" ] && kill "$ut_pid" 2>/dev/null || true
  [ -n "${pa_pid:-}" ] && kill "$pa_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp "$BIN" "$work/undertone"
sox -n -r 48000 -c 2 -b 16 "$work/music.wav" synth 2 pluck A3 pluck C4 pluck E4 gain -6
mkdir -p "$work/run" "$work/cfg/alsa"; chmod 700 "$work/run"
cat > "$work/pa.conf" <<PA
load-module module-null-sink sink_name=nullsink rate=48000 channels=2 norewinds=1
load-module module-native-protocol-unix auth-anonymous=1 socket=$work/native
PA
XDG_RUNTIME_DIR=$work/run HOME=$work pulseaudio -n -F "$work/pa.conf" --exit-idle-time=-1 \
  --daemonize=no 2>/dev/null &
pa_pid=$!
for _ in $(seq 200); do [ -S "$work/native" ] && break; sleep 0.05; done
chrt -a -f -p 30 "$pa_pid" >/dev/null 2>&1 || true
echo "pcm.cold { type pulse device \"nullsink\" server \"unix:$work/native\" }" > "$work/cfg/alsa/asoundrc"
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
