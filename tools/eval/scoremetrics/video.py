"""Video-side measurements: probe, Farneback motion speed, PySceneDetect cuts.

Motion speed follows CMT (Di et al., "Video Background Music Generation with
Controllable Music Transformer", ACM MM 2021, `src/video2npz/optical_flow.py`):
frames converted to gray at 360p, OpenCV Farneback flow between consecutive
frames with OpenCV's customary parameters (0.5, 3, 15, 3, 5, 1.2, 0), and the
frame's speed is the mean absolute flow component over the image. One
deliberate difference: a frame pair that straddles a detected scene cut is
dropped (a cut is a change of shot, not motion); pass `keep_cut_pairs=True`
for CMT's exact behaviour.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import threading
from pathlib import Path

import numpy as np

from . import EvalError

# CMT resizes every video to 360p before computing flow; the same here so that
# speeds from clips of different resolutions are on one scale.
FLOW_HEIGHT = 360
# Farneback parameters CMT uses (OpenCV's documented example values):
# pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags.
FARNEBACK_PARAMS = (0.5, 3, 15, 3, 5, 1.2, 0)
# Bump when the way speeds or cuts are computed changes, so caches are rebuilt.
CACHE_VERSION = 1


@dataclasses.dataclass
class VideoInfo:
    width: int
    height: int
    fps: float
    duration: float
    frames: int | None


def _run(cmd: list[str], what: str) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise EvalError(f"{cmd[0]} not found ({what}): install ffmpeg (apt-get install ffmpeg)") from e
    if res.returncode != 0:
        raise EvalError(f"{what} failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
    return res.stdout


def _rate(s: str) -> float:
    if "/" in s:
        n, d = s.split("/")
        return float(n) / float(d) if float(d) else 0.0
    return float(s)


def probe(path: str | Path) -> VideoInfo:
    """Size, frame rate, duration (video stream, else container) and frame count of a video."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: no such video file (give the input with --video or fix report.json input.path)")
    out = _run(
        [
            "ffprobe", "-v", "error", "-select_streams", "v:0",
            "-show_entries", "stream=width,height,r_frame_rate,avg_frame_rate,duration,nb_frames:format=duration",
            "-of", "json", str(path),
        ],
        f"ffprobe {path}",
    )
    js = json.loads(out)
    if not js.get("streams"):
        raise EvalError(f"{path}: no video stream")
    st = js["streams"][0]
    fps = _rate(st.get("avg_frame_rate", "0/0")) or _rate(st.get("r_frame_rate", "0/0"))
    dur = st.get("duration") or js.get("format", {}).get("duration")
    if dur is None:
        raise EvalError(f"{path}: ffprobe reports no duration")
    nb = st.get("nb_frames")
    return VideoInfo(int(st["width"]), int(st["height"]), fps, float(dur), int(nb) if nb else None)


def audio_stream_duration(path: str | Path) -> float | None:
    """Duration of the first audio stream of a media file, or None if it has none."""
    out = _run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=duration", "-of", "json", str(path)],
        f"ffprobe {path}",
    )
    streams = json.loads(out).get("streams") or []
    if not streams or "duration" not in streams[0]:
        return None
    return float(streams[0]["duration"])


_PTS_RE = re.compile(r"pts_time:\s*(-?[0-9.eE+-]+)")


def decode_gray(path: str | Path, height: int = FLOW_HEIGHT, on_frame=None):
    """Decodes a video to 8-bit gray at `height` rows (never upscaled), with each frame's pts.

    With `on_frame`, each frame (uint8 [h, w]) is handed to it as it is decoded and
    not kept (long clips stay small in memory); without, the frames are returned.
    Returns (pts array [s], frames array [n, h, w] or None). Uses ffmpeg's
    `showinfo` filter for the timestamps, so variable-frame-rate files are timed right.
    """
    info = probe(path)
    h = min(height, info.height)
    h -= h % 2
    w = int(round(info.width * h / info.height / 2)) * 2
    cmd = [
        "ffmpeg", "-hide_banner", "-nostats", "-loglevel", "info", "-i", str(path), "-an", "-sn",
        "-vf", f"scale={w}:{h}:flags=area,format=gray,showinfo",
        "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_lines: list[str] = []

    def drain():
        for line in proc.stderr:
            err_lines.append(line.decode("utf-8", "replace"))

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    kept = []
    n = 0
    size = w * h
    while True:
        buf = proc.stdout.read(size)
        if len(buf) < size:
            break
        frame = np.frombuffer(buf, dtype=np.uint8).reshape(h, w)
        n += 1
        if on_frame is not None:
            on_frame(frame)
        else:
            kept.append(frame)
    proc.wait()
    t.join()
    if proc.returncode != 0:
        raise EvalError(f"{path}: ffmpeg could not decode it: {''.join(err_lines[-3:]).strip()}")
    pts = [float(m.group(1)) for line in err_lines if "Parsed_showinfo" in line and (m := _PTS_RE.search(line))]
    if len(pts) != n:
        pts = [i / info.fps for i in range(n)]
    frames = np.stack(kept) if on_frame is None and kept else None
    return np.asarray(pts, dtype=np.float64), frames


class FarnebackMeter:
    """Feeds frames one at a time; `speeds` holds the mean |flow component| of each consecutive pair."""

    def __init__(self):
        import cv2

        self._cv2 = cv2
        self._prev = None
        self.speeds: list[float] = []

    def __call__(self, frame: np.ndarray) -> None:
        if self._prev is not None:
            flow = self._cv2.calcOpticalFlowFarneback(self._prev, frame, None, *FARNEBACK_PARAMS)
            self.speeds.append(float(np.mean(np.abs(flow))))
        self._prev = frame


def farneback_speeds(frames: np.ndarray) -> np.ndarray:
    """Per consecutive frame pair, mean |flow component| (pixels per frame at the decode size)."""
    meter = FarnebackMeter()
    for f in frames:
        meter(f)
    return np.asarray(meter.speeds, dtype=np.float64)


def detect_cuts(path: str | Path) -> list[float]:
    """Scene-cut times (s, start of the new shot) by PySceneDetect's adaptive detector, default settings."""
    import logging

    from scenedetect import AdaptiveDetector, detect

    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)  # its INFO lines would flood the table
    scenes = detect(str(path), AdaptiveDetector(), show_progress=False)
    return [float(s[0].seconds) for s in scenes[1:]]


@dataclasses.dataclass
class MotionTrack:
    """Speed samples of a video: `speed[i]` is the motion between frames i and i+1, timed at `t[i]`."""

    t: np.ndarray
    speed: np.ndarray
    cuts: list[float]
    info: VideoInfo


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def motion_track(path: str | Path, cache_dir: Path | None = None, keep_cut_pairs: bool = False) -> MotionTrack:
    """Farneback speeds and adaptive-detector cuts of a video, cached by content hash in `cache_dir`."""
    path = Path(path)
    info = probe(path)
    key = f"{_sha256(path)[:24]}-v{CACHE_VERSION}-h{FLOW_HEIGHT}"
    cached = cache_dir / f"{key}.npz" if cache_dir else None
    if cached and cached.is_file():
        z = np.load(cached)
        pts, speed, cuts = z["pts"], z["speed"], [float(c) for c in z["cuts"]]
    else:
        meter = FarnebackMeter()
        pts, _ = decode_gray(path, on_frame=meter)
        speed = np.asarray(meter.speeds, dtype=np.float64)
        cuts = detect_cuts(path)
        if cached:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npz")
            np.savez(tmp, pts=pts, speed=speed, cuts=np.asarray(cuts, dtype=np.float64))
            tmp.replace(cached)
    # The pair (i, i+1) is timed at the midpoint of the two frames.
    t = (pts[:-1] + pts[1:]) / 2 if len(pts) > 1 else np.zeros(0)
    if not keep_cut_pairs and len(t):
        keep = np.ones(len(t), dtype=bool)
        for c in cuts:
            # the pair whose second frame is the first frame of the new shot
            j = int(np.searchsorted(pts, c - 0.5 / max(info.fps, 1.0)))
            if 1 <= j < len(pts):
                keep[j - 1] = False
        t, speed = t[keep], speed[keep]
    return MotionTrack(t=t, speed=speed, cuts=cuts, info=info)
