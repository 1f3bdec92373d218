#!/usr/bin/env bash
# Reaction of the live engine to scene cuts, measured end to end on a paced audio device.
#
# Builds a 60 s montage of the real clips (15 hard cuts at known times, irregular spacing so
# the cuts fall at every phase of the beat grid), replays it as a camera (`--source
# file:... --realtime`) through `undertone run` into PulseAudio's null sink (real-time
# pacing, no sound card), records what was played (`--record`), and checks every cut:
#   - from the report: the time its section change reached the PCM, minus the cut's time
#     on the master clock, against the budget of one beat + 100 ms;
#   - on the recorded audio: a novelty peak (a change of the spectrum, tools/soak/reaction.py)
#     between the cut and the end of the budget, at the reported section start.
# Also accepts another clip: tools/soak/reaction.sh testdata/clips/trailer_bbb.mp4
# (then the cut times come from the report only).
#
#   tools/soak/reaction.sh [CLIP]
#   BIN=target/debug/undertone tools/soak/reaction.sh
#
# Needs: pulseaudio, libasound2-plugins, ffmpeg (tools/setup.sh), the eval venv's librosa.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$root/target/release/undertone}
PY=${PY:-$root/.venv/bin/python}
. "$root/tools/soak/lib.sh"
soak_workdir react
out=${OUT:-$root/target/soak/reaction}
mkdir -p "$out"
clips=$root/testdata/clips

# 1. The montage: (clip, start s, length s). Lengths are whole frames at 30 fps.
segments="bikes.mp4 0.0 4.0
bigbuckbunny.mp4 0.2 3.1
trailer_bbb.mp4 15.2 4.3
carphone_pristine.mp4 0.0 2.7
bikes.mp4 4.5 3.9
trailer_bbb.mp4 25.2 5.0
bigbuckbunny.mp4 1.5 2.9
carphone_pristine.mp4 1.0 3.0
bikes.mp4 0.8 3.4
trailer_bbb.mp4 16.0 4.6
bigbuckbunny.mp4 0.5 2.6
bikes.mp4 5.5 4.1
carphone_pristine.mp4 0.4 3.6
trailer_bbb.mp4 26.0 4.9
bigbuckbunny.mp4 2.0 3.3
bikes.mp4 2.0 3.7"
if [ -n "${1:-}" ]; then
  clip=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
  echo "[]" > "$out/truth.json"
else
  clip=$out/montage.mp4
  args=(); filter=""; i=0; t=0; cuts=()
  while read -r c s l; do
    args+=(-ss "$s" -t "$l" -i "$clips/$c")
    filter+="[$i:v]fps=30,scale=640:480,setsar=1,format=yuv420p,trim=duration=$l,setpts=PTS-STARTPTS[v$i];"
    [ "$i" -gt 0 ] && cuts+=("$t")
    t=$(echo "$t + $l" | bc); i=$((i + 1))
  done <<< "$segments"
  for k in $(seq 0 $((i - 1))); do filter+="[v$k]"; done
  filter+="concat=n=$i:v=1:a=0[out]"
  if [ ! -f "$clip" ]; then
    ffmpeg -v error -y "${args[@]}" -filter_complex "$filter" -map "[out]" \
      -c:v libx264 -crf 20 -preset veryfast -g 30 -an "$clip"
  fi
  printf '%s\n' "${cuts[@]}" | python3 -c 'import sys, json; print(json.dumps([float(x) for x in sys.stdin.read().split()]))' > "$out/truth.json"
fi

# 2. A private PulseAudio with a 48 kHz null sink, played through the ALSA PCM "react".
soak_pulse react

# 3. The run: the whole clip, replayed as a camera.
XDG_CONFIG_HOME=$work/cfg "$work/undertone" --log info run --config /dev/null \
  --source "file:$clip" --realtime --audio-device react \
  --report "$out/report.json" --record "$out/played.wav" --listen 127.0.0.1:0 2>"$out/run.log" &
ut_pid=$!
wait "$ut_pid" || { echo "reaction: undertone failed; see $out/run.log" >&2; exit 1; }
ut_pid=""

# 4. The figures.
"$PY" "$root/tools/soak/reaction.py" "$out/report.json" "$out/played.wav" "$out/truth.json"
