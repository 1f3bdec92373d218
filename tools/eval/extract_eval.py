#!/usr/bin/env python3
"""Checks undertone's extraction against third-party tools on real clips.

1. Speed: Pearson r between `undertone analyze`'s per-frame speed and OpenCV Farneback's mean
   flow magnitude, on the same frames (ffmpeg decodes both at the analysis size and rate).
2. Cuts: F1 (±2 frames) of our hard cuts against PySceneDetect's adaptive detector.

Usage: tools/eval/extract_eval.py [--bin target/release/undertone] [CLIP ...]
Needs the venv of tools/eval/requirements.txt and tools/clips/fetch.sh to have been run.
Prints one line per clip and exits non-zero if a figure misses its bar (r >= 0.9, F1 >= 0.9).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLIPS = os.path.join(ROOT, "testdata", "clips")
DEFAULT_CLIPS = ["trailer_bbb.mp4", "bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"]
# Same analysis size/rate rules as firmware/src/source/mod.rs (AnalysisSize).
WIDTH, MAX_FPS = 160, 30.0
TOLERANCE = 2  # frames
R_BAR, F1_BAR = 0.9, 0.9


def probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height,avg_frame_rate", "-of", "json", path],
                         check=True, capture_output=True, text=True).stdout
    s = json.loads(out)["streams"][0]
    n, d = s["avg_frame_rate"].split("/")
    fps = float(n) / float(d) if float(d) else 25.0
    return s["width"], s["height"], min(fps, MAX_FPS)


def analysis_size(w, h):
    height = int(round(WIDTH * h / w / 2.0)) * 2
    return WIDTH, max(32, min(height, WIDTH * 4))


def decode(path):
    w, h, fps = probe(path)
    aw, ah = analysis_size(w, h)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", "0:v:0", "-vf",
                          f"fps={fps},scale={aw}:{ah}:flags=area,format=gray", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, ah, aw), fps


def farneback_speed(frames):
    cv2.setNumThreads(1)
    out = [0.0]
    for i in range(1, len(frames)):
        f = cv2.calcOpticalFlowFarneback(frames[i - 1], frames[i], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        out.append(float(np.sqrt((f ** 2).sum(-1)).mean()))
    return np.array(out)


def ours(binary, path):
    with tempfile.TemporaryDirectory() as d:
        js = os.path.join(d, "a.json")
        subprocess.run([binary, "analyze", path, "--json", js], check=True, capture_output=True)
        with open(js) as f:
            return json.load(f)


def scenedetect_cuts(path):
    from scenedetect import AdaptiveDetector, detect
    scenes = detect(path, AdaptiveDetector())
    return [s[0].frame_num for s in scenes[1:]]


def f1(found, truth, tol=TOLERANCE):
    truth = list(truth)
    hit = 0
    for c in found:
        m = [t for t in truth if abs(t - c) <= tol]
        if m:
            hit += 1
            truth.remove(min(m, key=lambda t: abs(t - c)))
    p = hit / len(found) if found else 1.0
    r = hit / (hit + len(truth)) if (hit + len(truth)) else 1.0
    return (2 * p * r / (p + r)) if (p + r) else 0.0, p, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "undertone"))
    ap.add_argument("clips", nargs="*", default=DEFAULT_CLIPS)
    a = ap.parse_args()
    ok = True
    for c in a.clips:
        path = c if os.path.exists(c) else os.path.join(CLIPS, c)
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run tools/clips/fetch.sh first")
        frames, fps = decode(path)
        fb = farneback_speed(frames)
        an = ours(a.bin, path)
        sp = np.array([f["speed"] for f in an["frames"]])
        n = min(len(sp), len(fb))
        r = float(np.corrcoef(sp[1:n], fb[1:n])[0, 1])
        our_cuts = [int(round(t["t"] * an["fps"])) for t in an["transitions"] if t["kind"] == "cut"]
        sd = scenedetect_cuts(path)
        f, p, rec = f1(our_cuts, sd)
        grad = sum(1 for t in an["transitions"] if t["kind"] == "gradual")
        print(f"{os.path.basename(path)}: frames {n}  speed r={r:.3f} (Farneback)  "
              f"cuts ours {our_cuts} PySceneDetect-adaptive {sd}  F1={f:.3f} (P={p:.2f} R={rec:.2f})  "
              f"gradual {grad}  beats {len(an['visual_beats'])}  tempo {an['visual_tempo_bpm']}")
        ok &= r >= R_BAR and f >= F1_BAR
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
