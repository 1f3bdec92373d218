"""Tests of the `undertone score` evaluation harness on folders it builds with known figures.

Run: .venv/bin/python -m pytest tools/eval/tests -q
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import eval_score  # noqa: E402
import scorefixture as fx  # noqa: E402
from scoremetrics import EvalError  # noqa: E402
from scoremetrics import audio as A  # noqa: E402
from scoremetrics import harmony as H  # noqa: E402
from scoremetrics import midi as M  # noqa: E402
from scoremetrics import video as V  # noqa: E402
from scoremetrics.metrics import (  # noqa: E402
    TARGET_BY_KEY,
    TimeMap,
    bar_beats,
    evaluate_dir,
    melody_per_bar,
    notes_per_four_beats,
)
from scoremetrics.table import markdown  # noqa: E402


@pytest.fixture(scope="session")
def plain(tmp_path_factory) -> Path:
    return fx.build(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="session")
def warped(tmp_path_factory) -> Path:
    return fx.build(tmp_path_factory.mktemp("warped"), warp=True)


@pytest.fixture(scope="session")
def plain_result(plain) -> dict:
    return evaluate_dir(plain)


def fig(res: dict, key: str):
    return res["figures"][key]


# ------------------------------------------------------------------ pieces


def test_true_peak_sees_the_peak_between_samples():
    # a sine at a quarter of the sample rate, sampled 45° off its crests: every sample
    # is at 0.707 of the true amplitude (-3 dB), the 4x oversampled peak finds ~0 dB.
    n = np.arange(48000)
    x = 0.999 * np.sin(2 * np.pi * n / 4 + np.pi / 4)
    w = A.Wav(Path("sine"), 48000, np.stack([x, x], 1), "DOUBLE", 0)
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(-3.02, abs=0.02)
    # (scipy's polyphase filter ripples by ~0.1 dB; BS.1770-4 allows a meter more than that)
    assert A.true_peak_dbtp(w) == pytest.approx(0.0, abs=0.2)


def test_clipped_samples_are_counted_on_both_rails(tmp_path):
    x = np.zeros((100, 2), dtype=np.int16)
    x[10, 0] = 32767
    x[20, 1] = -32768
    x[30, 0] = 32766  # one step below the rail: not clipped
    sf.write(str(tmp_path / "c.wav"), x, 48000, subtype="PCM_16")
    assert A.read_wav(tmp_path / "c.wav").clipped == 2


def test_midi_reader_names_tracks_and_times_notes(plain):
    mid = M.read_midi(plain / "notes.mid")
    assert list(mid.tracks) == ["melody", "chords"]
    assert mid.tempo_bpm() == pytest.approx(120.0)
    mel = mid.track("melody")
    assert len(mel) == sum(fx.BAR_NOTES)
    # bar 1 (2.0 s .. 4.0 s) holds 3 notes at 2.0, 2.667, 3.333 s with velocity 80
    bar1 = [n for n in mel if 2.0 <= n.start < 4.0]
    assert [round(n.start, 3) for n in bar1] == [2.0, 2.667, 3.333]
    assert {n.velocity for n in bar1} == {80}


def test_midi_reader_follows_tempo_changes(tmp_path):
    mf = mido.MidiFile(type=1, ticks_per_beat=480)
    mf.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0),
                                     mido.MetaMessage("set_tempo", tempo=1_000_000, time=960)]))
    mf.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name="melody", time=0),
                                     mido.Message("note_on", note=60, velocity=90, time=1440),
                                     mido.Message("note_off", note=60, velocity=0, time=480)]))
    mf.save(str(tmp_path / "t.mid"))
    (n,) = M.read_midi(tmp_path / "t.mid").track("melody")
    # 2 beats at 0.5 s, then 1 beat at 1.0 s: onset 2.0 s, offset 3.0 s
    assert (n.start, n.end) == (pytest.approx(2.0), pytest.approx(3.0))


def test_chord_names_and_key_estimation():
    assert H.chord_pcs("Am") == {9, 0, 4}
    assert H.chord_pcs("E7") == {4, 8, 11, 2}
    assert H.chord_pcs("Bdim") == {11, 2, 5}
    assert H.chord_pcs("F#m") == {6, 9, 1}
    with pytest.raises(ValueError):
        H.chord_pcs("Hm")
    # i-iv-VII-V7 in A minor: the G# of E7 is the only tone outside A minor / C major
    w: dict[int, float] = {}
    for c in ("Am", "Dm", "G", "E7"):
        for pc in H.chord_pcs(c):
            w[pc] = w.get(pc, 0) + 1
    root, scale = H.estimate_scale(w)
    assert scale == H.diatonic_set(0)
    # I-V-vi-IV in D major
    w = {}
    for c in ("D", "A", "Bm", "G"):
        for pc in H.chord_pcs(c):
            w[pc] = w.get(pc, 0) + 1
    assert H.estimate_scale(w)[0] == 2


def test_time_map_round_trips_warps():
    tm = TimeMap(fx.WARPS)
    assert float(tm.to_input(6.0)) == pytest.approx(fx.WARP_CUT_S)
    assert float(tm.to_output(fx.WARP_CUT_S)) == pytest.approx(6.0)
    assert float(tm.to_input(3.0)) == pytest.approx(3.0 * fx.WARP_CUT_S / 6.0)
    ts = np.linspace(0, 12, 25)
    assert np.allclose(tm.to_output(tm.to_input(ts)), ts)
    assert np.allclose(TimeMap([]).to_input(ts), ts)


def test_short_bars_count_per_four_beats():
    # the planner shortens the bar before a cut: 2 beats at 120 BPM = 1 s
    bars = [{"start": 0.0, "end": 2.0}, {"start": 2.0, "end": 3.0}, {"start": 3.0, "end": 5.0}]
    notes = [M.MidiNote(t, t + 0.1, 60, 90, 0, 0) for t in (0.0, 1.0, 2.0, 2.25, 2.5, 3.0, 4.5)]
    counts, vel = melody_per_bar(bars, notes)
    assert counts.tolist() == [2, 3, 2]
    nb = bar_beats(bars, 0.5)
    assert nb.tolist() == [4.0, 2.0, 4.0]
    assert notes_per_four_beats(counts, nb).tolist() == [2.0, 6.0, 2.0]
    assert vel.tolist() == [90.0, 90.0, 90.0]


def test_farneback_speed_ranks_follow_the_pan_speed(plain):
    mt = V.motion_track(plain / "input.mp4")
    per_bar = [mt.speed[(mt.t >= 2 * k) & (mt.t < 2 * k + 2)].mean() for k in range(fx.BARS)]
    assert np.argsort(per_bar).tolist() == np.argsort(fx.BAR_SPEED).tolist()
    # a pan of v px/frame along x: mean |flow component| is about v/2 (the y component is ~0)
    assert per_bar[4] == pytest.approx(fx.BAR_SPEED[4] / 2, rel=0.25)
    assert mt.cuts == [pytest.approx(6.0, abs=1 / fx.FPS)]
    # the pair across the cut is dropped, not counted as motion
    assert len(mt.speed) == int(fx.DURATION * fx.FPS) - 2


# ------------------------------------------------------------------ whole folders


def test_plain_folder_figures(plain_result):
    r = plain_result
    assert fig(r, "rho_speed_notes").value == pytest.approx(1.0)
    assert fig(r, "rho_saliency_velocity").value == pytest.approx(1.0)
    assert fig(r, "report_note_count_match").value == 1.0
    assert (fig(r, "cut_section_share").hits, fig(r, "cut_section_share").n) == (1, 1)
    assert fig(r, "warp_cut_downbeat_share").value is None
    assert fig(r, "duration_error_frames").value == pytest.approx(0.0, abs=0.01)
    assert fig(r, "loudness_lufs").value == pytest.approx(-16.0, abs=0.1)
    assert fig(r, "true_peak_dbtp").value < -1.0
    assert fig(r, "clipped_samples").value == 0
    assert fig(r, "tempo_error").value < 0.02
    assert fig(r, "beats_on_grid_share").value >= 0.9
    assert (fig(r, "strong_beat_chord_tone_share").hits, fig(r, "strong_beat_chord_tone_share").n) == (10, 11)
    assert (fig(r, "out_of_key_share").hits, fig(r, "out_of_key_share").n) == (1, 33)
    assert fig(r, "join_flux_ratio").value < 1.0
    assert r["details"]["joins"] == [6.0]
    assert r["details"]["keys"] == {"0": "C major / A minor", "1": "C major / A minor"}
    for key, f in r["figures"].items():
        assert TARGET_BY_KEY[key].passes(f.value) in (True, None), key


def test_warped_folder_maps_times_and_checks_downbeats(warped):
    r = evaluate_dir(warped)
    assert r["details"]["cuts_input"] == [pytest.approx(fx.WARP_CUT_S, abs=1 / fx.FPS)]
    assert r["details"]["cuts_scored_mp4"] == [pytest.approx(6.0, abs=0.5 / fx.FPS)]
    assert fig(r, "warp_cut_downbeat_share").value == 1.0
    assert fig(r, "warp_max_rate_dev").value == pytest.approx(0.25 / 6.0)
    assert fig(r, "cut_section_share").value == 1.0
    # speeds are read on the input timeline through the warps: ranks still match
    assert fig(r, "rho_speed_notes").value == pytest.approx(1.0)


def test_a_click_at_the_join_fails(tmp_path):
    d = fx.build(tmp_path / "click", click_at_join=True)
    r = evaluate_dir(d)
    assert fig(r, "join_flux_ratio").value > 1.2
    assert TARGET_BY_KEY["join_flux_ratio"].passes(fig(r, "join_flux_ratio").value) is False


def test_audio_longer_than_the_video_fails(tmp_path):
    d = fx.build(tmp_path / "long", extra_s=0.1)
    r = evaluate_dir(d)
    assert fig(r, "duration_error_frames").value == pytest.approx(2.4, abs=0.05)
    assert TARGET_BY_KEY["duration_error_frames"].passes(fig(r, "duration_error_frames").value) is False


def test_cli_prints_one_table_and_writes_json(plain, warped, tmp_path, capsys):
    out = tmp_path / "figs.json"
    rc = eval_score.main([str(plain), str(warped), "--name", "p", "--name", "w", "--json", str(out), "--no-cache"])
    assert rc == 0
    table = capsys.readouterr().out
    lines = table.strip().splitlines()
    assert lines[0] == "| metric | target | p | w | all |"
    cols = [len(re.findall(r"(?<!\\)\|", line)) for line in lines]
    assert cols == [cols[0]] * len(lines)
    assert "FAIL" not in table
    js = json.loads(out.read_text())
    assert set(js["clips"]) == {"p", "w"}
    assert js["all"]["cut_section_share"]["n"] == 2
    assert js["pass"]["warp_max_rate_dev"] is True
    assert len(js["clips"]["p"]["details"]["per_bar"]) == fx.BARS


def test_markdown_marks_failures(plain_result):
    bad = {"figures": dict(plain_result["figures"]), "details": {}}
    bad["figures"]["loudness_lufs"] = type(plain_result["figures"]["loudness_lufs"])(-18.5)
    table = markdown({"bad": bad})
    row = next(line for line in table.splitlines() if line.startswith("| integrated loudness"))
    assert "-18.5 **FAIL**" in row


def test_missing_outputs_name_the_file(tmp_path, plain):
    with pytest.raises(EvalError, match="report.json"):
        evaluate_dir(tmp_path)
    d = tmp_path / "nomid"
    d.mkdir()
    for f in ("report.json", "music.wav", "input.mp4"):
        (d / f).write_bytes((plain / f).read_bytes())
    with pytest.raises(EvalError, match=r"notes\.mid"):
        evaluate_dir(d)
    assert eval_score.main([str(tmp_path / "nothing-here")]) == 2
