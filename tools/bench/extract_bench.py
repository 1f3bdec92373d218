#!/usr/bin/env python3
"""Extraction throughput, side by side with OpenCV Farneback, on the same decoded frames.

For each clip: ffmpeg decodes it once at the analysis size and rate (the rules of
firmware/src/source AnalysisSize). The frames go (a) to OpenCV's Farneback flow in memory and (b)
into a lossless FFV1 file that `undertone analyze` reads back (FFV1 is lossless, so it sees the
identical frames); undertone reports the time spent in extraction alone (model + post-processing,
single-threaded; ffmpeg decodes in its own process meanwhile, as in the product). Farneback runs
with one OpenCV thread. Neither is pinned: pinning would make ffmpeg's decoding compete with the
extraction it feeds on the same core, which is not how the box runs.

Both sides are timed in CPU time of the thread doing the work (undertone: CLOCK_THREAD_CPUTIME_ID
around each frame; OpenCV: time.thread_time()), which is what "frames/s on one core" means and
does not move when other processes load the machine; wall-clock figures are printed beside them.
Each clip runs ROUNDS times (our extraction and Farneback alternating) and the medians are kept.

Prints frames/s for both, the ratio (bar: >= 5x) and our CPU share of one core at 30 fps (bar: <= 20 %).

Usage: tools/bench/extract_bench.py [--bin target/release/undertone] [--rounds 3] [CLIP ...]
"""
import argparse
import os
import re
import statistics
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
    """(CPU-time frames/s, wall-clock frames/s) of OpenCV Farneback on one thread."""
    cv2.setNumThreads(1)
    t, c = time.perf_counter(), time.thread_time()
    for i in range(1, len(frames)):
        cv2.calcOpticalFlowFarneback(frames[i - 1], frames[i], None, 0.5, 3, 15, 3, 5, 1.2, 0)
    n = len(frames) - 1
    return n / (time.thread_time() - c), n / (time.perf_counter() - t)


OURS = re.compile(r"extraction: (\d+) frames/s of CPU time on one core \(([\d.]+) ms/frame, ([\d.]+) % of one core"
                  r".*wall clock (\d+) frames/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "undertone"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("clips", nargs="*", default=DEFAULT_CLIPS)
    a = ap.parse_args()
    ok = True
    for c in a.clips:
        path = c if os.path.exists(c) else os.path.join(ROOT, "testdata", "clips", c)
        frames, fps = decode(path)
        n, h, w = frames.shape
        ours, ours_wall, share, fb, fb_wall = [], [], [], [], []
        with tempfile.TemporaryDirectory() as d:
            mkv = os.path.join(d, "frames.mkv")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
                            "-r", str(fps), "-i", "-", "-c:v", "ffv1", mkv], input=frames.tobytes(), check=True)
            for _ in range(a.rounds):
                out = subprocess.run([a.bin, "analyze", mkv], check=True, capture_output=True, text=True).stdout
                m = OURS.search(out)
                if not m:
                    sys.exit(f"unexpected output from undertone analyze:\n{out}")
                ours.append(float(m.group(1)))
                share.append(float(m.group(3)))
                ours_wall.append(float(m.group(4)))
                c, wall = farneback_fps(frames)
                fb.append(c)
                fb_wall.append(wall)
        med = statistics.median
        ratio = med(ours) / med(fb)
        print(f"{os.path.basename(path)} {w}x{h} {n} frames, median of {a.rounds}: undertone extraction "
              f"{med(ours):.0f} frames/s, OpenCV Farneback {med(fb):.0f} frames/s (CPU time, one core), "
              f"ratio {ratio:.1f}x (bar 5x); wall clock {med(ours_wall):.0f} vs {med(fb_wall):.0f} frames/s "
              f"({med(ours_wall) / med(fb_wall):.1f}x); {med(share):.1f} % of one core at 30 fps (bar 20 %)")
        ok &= ratio >= 5.0 and med(share) <= 20.0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
