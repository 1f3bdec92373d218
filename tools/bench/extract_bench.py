#!/usr/bin/env python3
"""Extraction throughput, side by side with OpenCV Farneback, on the same decoded frames.

For each clip: ffmpeg decodes it once at the analysis size and rate (the rules of
firmware/src/source AnalysisSize). The frames go (a) to OpenCV's Farneback flow in memory and (b)
into a lossless FFV1 file that `undertone analyze` reads back (FFV1 is lossless, so it sees the
identical frames); undertone reports the time spent in extraction alone (model + post-processing,
single-threaded; ffmpeg decodes in its own process meanwhile, as in the product). Farneback runs
with one OpenCV thread. Neither is pinned: pinning would make ffmpeg's decoding compete with the
extraction it feeds on the same core, which is not how the box runs.

Prints frames/s for both, the ratio (bar: >= 5x) and our CPU share of one core at 30 fps (bar: <= 20 %).

Usage: tools/bench/extract_bench.py [--bin target/release/undertone] [CLIP ...]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "eval"))
from extract_eval import decode  # noqa: E402  (same decoding rules as the eval)

DEFAULT_CLIPS = ["trailer_bbb.mp4", "bikes.mp4", "carphone_pristine.mp4"]


def farneback_fps(frames):
    cv2.setNumThreads(1)
    t = time.perf_counter()
    for i in range(1, len(frames)):
        cv2.calcOpticalFlowFarneback(frames[i - 1], frames[i], None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return (len(frames) - 1) / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "undertone"))
    ap.add_argument("clips", nargs="*", default=DEFAULT_CLIPS)
    a = ap.parse_args()
    ok = True
    for c in a.clips:
        path = c if os.path.exists(c) else os.path.join(ROOT, "testdata", "clips", c)
        frames, fps = decode(path)
        n, h, w = frames.shape
        with tempfile.TemporaryDirectory() as d:
            mkv = os.path.join(d, "frames.mkv")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
                            "-r", str(fps), "-i", "-", "-c:v", "ffv1", mkv], input=frames.tobytes(), check=True)
            fb = farneback_fps(frames)
            out = subprocess.run([a.bin, "analyze", mkv], check=True, capture_output=True, text=True).stdout
        m = re.search(r"extraction: (\d+) frames/s \(([\d.]+) ms/frame, ([\d.]+) % of one core", out)
        if not m:
            sys.exit(f"unexpected output from undertone analyze:\n{out}")
        ours, share = float(m.group(1)), float(m.group(3))
        ratio = ours / fb
        print(f"{os.path.basename(path)} {w}x{h} {n} frames: undertone extraction {ours:.0f} frames/s, "
              f"OpenCV Farneback {fb:.0f} frames/s, ratio {ratio:.1f}x (bar 5x); "
              f"{share:.1f} % of one core at 30 fps (bar 20 %)")
        ok &= ratio >= 5.0 and share <= 20.0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
