#!/usr/bin/env bash
# Scores real clips with `undertone score` and evaluates the outputs (one table).
#
#   tools/eval/run_clips.sh [CLIP_OR_DIR ...]
#
# Clips: every video in testdata/clips/ (tools/clips/fetch.sh puts them there), two
# montages built here from them with ffmpeg (hard cuts between shots of different
# motion, and retimed shots: slow motion next to fast motion), plus any clips or
# folders of clips given as arguments (e.g. clips the project has never seen).
# Each clip is scored into tools/eval/work/out/NAME/; the trailer and the first
# montage are also scored with --warp into NAME-warp/. Then eval_score.py writes
# tools/eval/work/table.md and tools/eval/work/eval.json and prints the table.
#
# Env: UNDERTONE (binary; default target/release/undertone, else target/debug/undertone),
#      SKIP_SCORE=1 (evaluate existing outputs only), SCORE_ARGS (extra args for every
#      score run, e.g. "--seed 3"), WARP_CLIPS (names to also score with --warp).
# Exit status: eval_score.py's (0 all pooled targets pass, 1 one fails, 2 bad input);
# 2 also when score failed on a clip (the others are still evaluated).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$here/work
py=${PYTHON:-$root/.venv/bin/python}
mkdir -p "$work/clips" "$work/out"

if ! "$py" -c "import cv2, librosa, pyloudnorm, scenedetect, mido, soundfile" 2>/dev/null; then
  "$here/setup.sh"
fi

bin=${UNDERTONE:-}
if [ -z "$bin" ]; then
  if [ -x "$root/target/release/undertone" ]; then bin=$root/target/release/undertone
  elif [ -x "$root/target/debug/undertone" ]; then bin=$root/target/debug/undertone
  else echo "run_clips.sh: no undertone binary: run 'cargo build --release -p undertone'" >&2; exit 2
  fi
fi

clips_dir=$root/testdata/clips
if ! ls "$clips_dir"/*.mp4 >/dev/null 2>&1; then
  "$root/tools/clips/fetch.sh"
fi

# --- montages (deterministic ffmpeg filter graphs; rebuilt only when missing)
norm="scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=24,format=yuv420p"
montage() { # out, then ffmpeg input args..., then "--", then the filter graph
  local out=$1; shift
  local args=()
  while [ "$1" != "--" ]; do args+=("$1"); shift; done
  shift
  [ -s "$out" ] && return 0
  ffmpeg -nostdin -v error -y "${args[@]}" -filter_complex "$1" -map "[v]" -an -c:v libx264 -crf 20 -preset veryfast \
    "$out.tmp.mp4"
  mv "$out.tmp.mp4" "$out"
}
# 1) hard cuts between four sources: a bike ride, a talking head in a car, the bunny, a trailer action shot
montage "$work/clips/montage_cuts.mp4" -i "$clips_dir/bikes.mp4" -i "$clips_dir/carphone_pristine.mp4" \
  -i "$clips_dir/bigbuckbunny.mp4" -i "$clips_dir/trailer_bbb.mp4" -i "$clips_dir/bikes.mp4" -- \
  "[0:v]trim=0:4,setpts=PTS-STARTPTS,$norm[a];[1:v]trim=0:4,setpts=PTS-STARTPTS,$norm[b];\
[2:v]trim=0:5,setpts=PTS-STARTPTS,$norm[c];[3:v]trim=30:36,setpts=PTS-STARTPTS,$norm[d];\
[4:v]trim=5:9,setpts=PTS-STARTPTS,$norm[e];[a][b][c][d][e]concat=n=5:v=1:a=0[v]"
# 2) the same shots at different speeds: slow motion (×0.5) next to fast motion (×2)
#    (each segment has its own input: a stream feeding two trims misbehaves)
montage "$work/clips/montage_speeds.mp4" -i "$clips_dir/bikes.mp4" -i "$clips_dir/bikes.mp4" \
  -i "$clips_dir/trailer_bbb.mp4" -i "$clips_dir/trailer_bbb.mp4" -- \
  "[0:v]trim=0:4,setpts=2*(PTS-STARTPTS),$norm[a];[1:v]trim=0:10,setpts=0.5*(PTS-STARTPTS),$norm[b];\
[2:v]trim=44:48,setpts=2*(PTS-STARTPTS),$norm[c];[3:v]trim=20:32,setpts=0.5*(PTS-STARTPTS),$norm[d];\
[a][b][c][d]concat=n=4:v=1:a=0[v]"

# --- the clip list
clips=("$clips_dir"/*.mp4 "$work/clips/montage_cuts.mp4" "$work/clips/montage_speeds.mp4")
for a in "$@"; do
  if [ -d "$a" ]; then
    for f in "$a"/*; do case "$f" in *.mp4|*.mkv|*.mov|*.webm|*.avi|*.m4v) clips+=("$f");; esac; done
  elif [ -f "$a" ]; then clips+=("$a")
  else echo "run_clips.sh: $a: no such clip or folder" >&2; exit 2
  fi
done
warp_clips=${WARP_CLIPS:-"trailer_bbb montage_cuts"}

dirs=()
names=()
failed=()
for c in "${clips[@]}"; do
  name=$(basename "${c%.*}")
  variants=("")
  for wname in $warp_clips; do [ "$wname" = "$name" ] && variants+=("--warp"); done
  for v in "${variants[@]}"; do
    d="$work/out/$name${v:+-warp}"
    if [ "${SKIP_SCORE:-0}" != 1 ]; then
      echo "scoring $c ${v} -> $d" >&2
      rm -rf "$d"
      # shellcheck disable=SC2086
      if ! "$bin" score "$c" -o "$d" --quiet $v ${SCORE_ARGS:-}; then
        echo "run_clips.sh: undertone score failed on $c $v (left out of the table)" >&2
        failed+=("$c $v")
        continue
      fi
    fi
    [ -f "$d/report.json" ] || { echo "run_clips.sh: $d has no report.json (left out)" >&2; failed+=("$c $v"); continue; }
    dirs+=("$d")
    names+=(--name "$name${v:+-warp}")
  done
done

[ ${#dirs[@]} -gt 0 ] || { echo "run_clips.sh: nothing to evaluate" >&2; exit 2; }
set +e
"$py" "$here/eval_score.py" "${dirs[@]}" "${names[@]}" --json "$work/eval.json" | tee "$work/table.md"
rc=${PIPESTATUS[0]}
echo "table: $work/table.md; figures: $work/eval.json" >&2
if [ ${#failed[@]} -gt 0 ]; then
  printf 'run_clips.sh: score failed on: %s\n' "${failed[@]}" >&2
  exit 2
fi
exit "$rc"
