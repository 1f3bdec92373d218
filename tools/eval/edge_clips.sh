#!/usr/bin/env bash
# Scores inputs of every shape a user may bring, built here with ffmpeg from the bundled
# trailer (containers, codecs, rates, sizes, rotation, edits, cover art, a black clip, codecs
# mp4 cannot carry, an audio track longer than the picture), and
# checks what a user would: `score` succeeds, scored.mp4's audio ends with its video
# (± 1 frame of the input), the analysis is as long as the video ffprobe reports, HEVC is
# tagged hvc1, a black clip has no transition, and a single picture and a download cut off
# part-way are refused with a clear message; then scores nine of them with --warp and checks that the warped video is as long
# as the music. Prints one line per input and exits non-zero if any check fails.
#
#   tools/eval/edge_clips.sh
#
# Env: UNDERTONE (binary; default target/release/undertone), OUT (work folder; default
# tools/eval/work/edge).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${UNDERTONE:-$root/target/release/undertone}
# the clips are made and scored from the work folder: a relative path is taken from here
[ -e "$bin" ] && bin=$(realpath "$bin")
[ -x "$bin" ] || { echo "edge_clips.sh: no binary at $bin: cargo build --release -p undertone" >&2; exit 2; }
out=${OUT:-$here/work/edge}
src=$root/testdata/clips/trailer_bbb.mp4
[ -f "$src" ] || { echo "edge_clips.sh: $src is missing: run tools/clips/fetch.sh" >&2; exit 2; }
rm -rf "$out"
mkdir -p "$out/in"
cd "$out/in"
ff() { ffmpeg -nostdin -v error -y "$@"; }

# name | how it is made
ff -ss 5 -t 8 -i "$src" -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 1M -c:a libopus vp9.webm
ff -ss 5 -t 8 -i "$src" -c:v libx265 -preset ultrafast -x265-params log-level=none -pix_fmt yuv420p10le -an hevc10.mkv
ff -ss 5 -t 8 -i "$src" -vf transpose=1 -c:v libx264 -preset ultrafast -an portrait.mp4
ff -t 8 -i "$src" -c copy -metadata:s:v:0 rotate=90 rotated.mp4
ff -ss 5 -t 8 -i "$src" -vf scale=641:361,setsar=1 -c:v libx264 -preset ultrafast -pix_fmt yuv444p -an odd444.mp4
ff -ss 5 -t 0.4 -i "$src" -c:v libx264 -preset ultrafast -an short.mp4
ff -ss 5 -t 8 -i "$src" -vf fps=60 -c:v libx264 -preset ultrafast -an fps60.mp4
ff -ss 10 -t 3 -i "$src" -vf fps=240,scale=640:360 -c:v libx264 -preset ultrafast -an fps240.mp4
ff -i "$src" -vf fps=1 -c:v libx264 -preset ultrafast -an fps1.mp4
ff -ss 5 -t 8 -i "$src" -c:v mpeg2video -q:v 4 -c:a mp2 mpeg2.ts
ff -ss 5 -t 8 -i "$src" -vf "setpts='PTS+0.3*sin(N/10)/TB'" -fps_mode vfr -c:v libx264 -preset ultrafast -an vfr.mp4
ff -ss 5 -t 8 -i "$src" -map 0:a -map 0:v -c copy late_cut.mp4
ff -ss 5 -t 8 -i "$src" -c:v mjpeg -q:v 5 -an mjpeg.avi
ff -ss 5 -t 8 -i "$src" -vf scale=720:576,setsar=16/15 -c:v libx264 -preset ultrafast -an anamorphic.mp4
ff -ss 5 -t 8 -i "$src" -c:v prores_ks -profile:v 0 -vf scale=640:360 -an prores.mov
ff -ss 5 -t 6 -i "$src" -an -c:v libx264 -preset ultrafast -movflags frag_keyframe+empty_moov fragmented.mp4
ff -ss 3 -i "$src" -frames:v 1 cover.png
ff -t 6 -i "$src" -i cover.png -map 0:v -map 0:a -map 1 -c:v:0 copy -c:a copy -c:v:1 png -disposition:v:1 attached_pic cover_art.mp4
ff -f lavfi -i color=black:s=640x360:r=25:d=8 -c:v libx264 -preset ultrafast black.mp4
ff -ss 5 -t 8 -i "$src" -vf scale=1280:40,setsar=1 -c:v libx264 -preset ultrafast -an wide.mp4
# codecs mp4 cannot carry (re-encoded): DivX 3 in an AVI that skips repeated frames (as
# OpenCV's samples do), Cinepak
ff -ss 5 -t 8 -i "$src" -vf "scale=640:360,fps=15,mpdecimate=hi=64*80:lo=64*40:frac=0.5" -fps_mode vfr -c:v msmpeg4 -q:v 4 -an divx_gaps.avi
ff -ss 5 -t 8 -i "$src" -vf scale=320:180 -c:v cinepak -an cinepak.avi
# MPEG-4 Part 2 with B-frames in an AVI (an Xvid rip; its first picture decodes a frame late)
ff -ss 5 -t 8 -i "$src" -vf scale=640:360 -c:v mpeg4 -bf 2 -q:v 4 -vtag XVID -an xvid.avi
# a video that starts after its audio, in codecs mp4 cannot carry (re-encoded): WMV (46 ms
# in) and FLV (25 ms in), neither storing frame lengths
ff -ss 5 -t 8 -i "$src" -vf scale=640:360 -c:v wmv2 -q:v 4 -c:a wmav2 wmv.wmv
ff -ss 5 -t 8 -i "$src" -vf scale=640:360 -c:v flv1 -q:v 4 -c:a mp3 -ar 44100 flv.flv
# more codecs: AV1 in MP4 (copied); VP8 WebM, Theora Ogg and H.263 3GP (re-encoded)
ff -ss 5 -t 8 -i "$src" -vf scale=640:360 -c:v libaom-av1 -cpu-used 8 -row-mt 1 -b:v 500k -an av1.mp4
ff -ss 5 -t 8 -i "$src" -vf scale=640:360 -c:v libvpx -b:v 1M -deadline realtime -cpu-used 8 -c:a libvorbis vp8.webm
ff -ss 5 -t 8 -i "$src" -vf scale=640:360 -c:v libtheora -q:v 6 -c:a libvorbis theora.ogv
ff -ss 5 -t 8 -i "$src" -vf scale=352:288 -c:v h263 -q:v 4 -c:a aac -ar 8000 -ac 1 h263.3gp
# odd sides in codecs mp4 cannot carry (re-encoded; x264 needs even sides for 4:2:0): a
# 4:4:4 Theora as GNOME's developer docs ship a screencast (274x269), a 4:2:0 VP8
ff -ss 5 -t 8 -i "$src" -vf scale=275:269,setsar=1 -c:v libtheora -pix_fmt yuv444p -q:v 6 -an theora_odd.ogv
ff -ss 5 -t 8 -i "$src" -vf scale=641:361,setsar=1 -c:v libvpx -b:v 1M -deadline realtime -cpu-used 8 -an vp8_odd.webm
# an audio track that runs 2 s past the picture: Matroska (statistics tags) and FLV (the file's
# length only); the music must end with the video
ff -ss 5 -t 6 -i "$src" -ss 5 -t 8 -i "$src" -map 0:v -map 1:a -c:v libx264 -preset ultrafast -c:a aac long_audio.mkv
ff -ss 5 -t 6 -i "$src" -ss 5 -t 8 -i "$src" -map 0:v -map 1:a -c:v libx264 -preset ultrafast -c:a aac long_audio.flv
# codecs phones and browsers do not play from an MP4 (re-encoded, though ffmpeg's mp4 muxer
# takes them): MJPEG in a MOV (a camera's `jpeg` entry), MPEG-1 in a program stream, PAL DV
ff -ss 5 -t 6 -i "$src" -vf scale=640:360 -c:v mjpeg -q:v 5 -an mjpeg.mov
ff -ss 5 -t 6 -i "$src" -vf scale=640:360 -c:v mpeg1video -q:v 4 -c:a mp2 mpeg1.mpg
ff -ss 5 -t 6 -i "$src" -vf scale=720:576 -r 25 -target pal-dv dv.dv
# an animated GIF; raw YUV4MPEG, as video research tools write it
ff -ss 5 -t 6 -i "$src" -vf fps=10,scale=320:-1 anim.gif
ff -ss 5 -t 3 -i "$src" -vf scale=320:180 -pix_fmt yuv420p raw.y4m
# a video that starts 2 s after its audio, copied (an empty edit first): the music covers the
# gap, which players fill with the first picture, and ends with the video
ff -t 8 -i "$src" -itsoffset 2 -t 6 -i "$src" -map 1:v -map 0:a -c copy video_late.mp4
# a download cut off part-way (index first, 60 % of the bytes): refused, saying where it ends
ff -ss 5 -t 8 -i "$src" -c:v libx264 -preset ultrafast -c:a aac -movflags +faststart whole.tmp.mp4
head -c $(( $(stat -c %s whole.tmp.mp4) * 6 / 10 )) whole.tmp.mp4 > cut_off.mp4 && rm whole.tmp.mp4
cp cover.png picture.png

fail=0
printf '%-16s %-6s %-34s %s\n' input result "video / audio in scored.mp4 (s)" notes
for f in *; do
  [ "$f" = cover.png ] && continue
  dir=$out/score/$f
  if ! "$bin" score "$f" -o "$dir" --quiet >"$out/$f.log" 2>&1; then
    if { [ "$f" = picture.png ] && grep -q "picture.png.*frame" "$out/$f.log"; } ||
       { [ "$f" = cut_off.mp4 ] && grep -q "cut_off.mp4: the video ends at .* cut off" "$out/$f.log"; }; then
      printf '%-16s %-6s %-34s %s\n' "$f" ok "-" "refused: $(tail -1 "$out/$f.log" | cut -c1-80)"
    else
      printf '%-16s %-6s %-34s %s\n' "$f" FAIL "-" "$(tail -1 "$out/$f.log" | cut -c1-100)"
      fail=1
    fi
    continue
  fi
  if [ "$f" = picture.png ] || [ "$f" = cut_off.mp4 ]; then
    printf '%-16s %-6s %-34s %s\n' "$f" FAIL "-" "$f was scored"
    fail=1
    continue
  fi
  line=$(python3 - "$f" "$dir" <<'EOF'
import json, subprocess, sys
name, d = sys.argv[1], sys.argv[2]
def probe(path, sel, entries):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", sel, "-show_entries",
                          entries, "-of", "json", path], capture_output=True, text=True).stdout
    s = json.loads(out).get("streams", [])
    return s[0] if s else {}
a = json.load(open(f"{d}/analysis.json"))
frame = 1.0 / a["fps"]
v = probe(f"{d}/scored.mp4", "v:0", "stream=start_time,duration,codec_name,codec_tag_string")
au = probe(f"{d}/scored.mp4", "a:0", "stream=start_time,duration")
# where each ends (a video copied with a late start keeps its empty edit: the music covers it)
vd = float(v.get("start_time", 0)) + float(v.get("duration", "nan"))
ad = float(au.get("start_time", 0)) + float(au.get("duration", "nan"))
problems = []
# AAC ends on a 1024-sample frame: allow that on top of one video frame.
if not abs(vd - ad) <= frame + 1024 / 48000 + 1e-3:
    problems.append(f"audio {ad:.3f} s vs video {vd:.3f} s")
src = probe(name, "v:0", "stream=start_time,duration")
fmt = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=start_time",
                                 "-of", "json", name], capture_output=True, text=True).stdout)
# A video that starts after its audio ends its start plus its duration into the file, where
# the analysis ends; ffprobe counts that start in some containers' durations (ASF) and not in
# others' (an MP4's empty edit): either reading matches.
lead = float(src.get("start_time", 0)) - float(fmt.get("format", {}).get("start_time", 0))
if "duration" in src and min(abs(x + float(src["duration"]) - a["duration"]) for x in (0, lead)) > frame + 1e-3:
    problems.append(f"analysis {a['duration']:.3f} s vs ffprobe {float(src['duration']):.3f} s from {lead:.3f} s")
if v.get("codec_name") == "hevc" and v.get("codec_tag_string") != "hvc1":
    problems.append(f"HEVC tagged {v.get('codec_tag_string')}")
if name == "black.mp4" and a["transitions"]:
    problems.append(f"{len(a['transitions'])} transitions in a black clip")
notes = "; ".join(problems) or f"{v.get('codec_name')}/{v.get('codec_tag_string')}, {len(a['transitions'])} transitions"
print(("FAIL" if problems else "ok"), f"{vd:.3f} / {ad:.3f}", notes, sep="\t")
EOF
)
  IFS=$'\t' read -r res durs notes <<<"$line"
  printf '%-16s %-6s %-34s %s\n' "$f" "$res" "$durs" "$notes"
  [ "$res" = ok ] || fail=1
done

# --warp on the inputs whose time stamps are least like an MP4's (AVIs: one tick per frame, a
# B-frame delay, skipped frames; a variable rate; MPEG-TS; Matroska; WebM; 60 frames/s; odd
# sides, which x264 cannot take as they are): the
# warped video is as long as the music, which the warps make (± 1 frame at the output rate).
printf '\n%-16s %-6s %-34s %s\n' "input --warp" result "video / music (s)" notes
for f in xvid.avi divx_gaps.avi cinepak.avi vfr.mp4 mpeg2.ts hevc10.mkv vp9.webm fps60.mp4 odd444.mp4; do
  dir=$out/warp/$f
  if ! "$bin" score "$f" -o "$dir" --warp --quiet >"$out/$f.warp.log" 2>&1; then
    printf '%-16s %-6s %-34s %s\n' "$f" FAIL "-" "$(tail -1 "$out/$f.warp.log" | cut -c1-100)"
    fail=1
    continue
  fi
  line=$(python3 - "$dir" <<'EOF'
import json, subprocess, sys
d = sys.argv[1]
r = json.load(open(f"{d}/report.json"))
out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                      "stream=duration", "-of", "json", f"{d}/scored.mp4"],
                     capture_output=True, text=True).stdout
vd = float(json.loads(out)["streams"][0]["duration"])
md = r["output"]["duration"]
frame = 1.0 / r["input"]["fps"]
moved = sum(1 for w in r["warps"] if w["rate"] != 1.0)
ok = abs(vd - md) <= frame + 1e-3
notes = f"{moved} of {len(r['warps'])} shots retimed" if ok else f"video {vd:.3f} s vs music {md:.3f} s"
print("ok" if ok else "FAIL", f"{vd:.3f} / {md:.3f}", notes, sep="\t")
EOF
)
  IFS=$'\t' read -r res durs notes <<<"$line"
  printf '%-16s %-6s %-34s %s\n' "$f" "$res" "$durs" "$notes"
  [ "$res" = ok ] || fail=1
done
exit $fail
