"""Audio-side measurements of `music.wav`: loudness, true peak, clipping, tempo, beats, joins."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf

from . import EvalError

# ITU-R BS.1770-4 / EBU R128 true-peak meters oversample 4x at 48 kHz.
TRUE_PEAK_OVERSAMPLING = 4
# librosa analysis: 22.05 kHz with a 256-sample hop gives ~11.6 ms frames, fine enough
# to judge beats against a 30 ms tolerance (librosa's default 512 hop is 23 ms).
BEAT_SR = 22050
BEAT_HOP = 256
BEAT_N_FFT = 1024
# Spectral flux for joins: 1024-point frames, 256 hop at 48 kHz (~5.3 ms) so a click,
# which lasts a few samples, lands in one or two frames and is not smeared away.
FLUX_N_FFT = 1024
FLUX_HOP = 256
# A join's flux is the peak within this many seconds either side of the join time:
# a splice in the renderer is sample-exact, but its crossfade may straddle the downbeat.
JOIN_WINDOW_S = 0.030


@dataclasses.dataclass
class Wav:
    path: Path
    sr: int
    data: np.ndarray  # float64 [n, channels], full scale = 1.0
    subtype: str
    clipped: int  # samples (over all channels) at digital full scale

    @property
    def duration(self) -> float:
        return len(self.data) / self.sr


def read_wav(path: str | Path) -> Wav:
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path}: no such WAV file (was `undertone score` run into this folder?)")
    try:
        info = sf.info(str(path))
        if info.subtype.startswith("PCM_"):
            raw, sr = sf.read(str(path), dtype="int32", always_2d=True)
            # a PCM sample is clipped when it sits on either rail of its integer range
            clipped = int(np.count_nonzero((raw >= 2**31 - 2**(32 - int(info.subtype[4:]))) | (raw <= -(2**31))))
            data = raw.astype(np.float64) / 2**31
        else:
            data, sr = sf.read(str(path), dtype="float64", always_2d=True)
            clipped = int(np.count_nonzero(np.abs(data) >= 1.0))
    except RuntimeError as e:
        raise EvalError(f"{path}: not a readable WAV file ({e}); re-run `undertone score`") from e
    return Wav(path=path, sr=sr, data=data, subtype=info.subtype, clipped=clipped)


def integrated_loudness(w: Wav) -> float:
    """EBU R128 / BS.1770 integrated loudness in LUFS (pyloudnorm)."""
    import pyloudnorm

    return float(pyloudnorm.Meter(w.sr).integrated_loudness(w.data))


def true_peak_dbtp(w: Wav) -> float:
    """Maximum sample magnitude after 4x polyphase oversampling, in dBTP."""
    from scipy.signal import resample_poly

    peak = 0.0
    for ch in range(w.data.shape[1]):
        up = resample_poly(w.data[:, ch], TRUE_PEAK_OVERSAMPLING, 1)
        peak = max(peak, float(np.max(np.abs(up))) if len(up) else 0.0)
    return 20 * np.log10(peak) if peak > 0 else float("-inf")


def mono(w: Wav) -> np.ndarray:
    return w.data.mean(axis=1)


def tempo_and_beats(w: Wav) -> tuple[float, np.ndarray]:
    """librosa's beat tracker on the mix: (tempo BPM, beat times s)."""
    import librosa

    y = librosa.resample(mono(w).astype(np.float32), orig_sr=w.sr, target_sr=BEAT_SR)
    # librosa's default onset envelope (mean over mel bands) with a 46 ms window: the
    # beat tracker's own median-aggregated, 93 ms envelope places beats ~40 ms late.
    env = librosa.onset.onset_strength(y=y, sr=BEAT_SR, n_fft=BEAT_N_FFT, hop_length=BEAT_HOP)
    # trim=False: a single loud transient must not make the tracker drop the beats after it;
    # the caller compares only beats inside the planned grid's span.
    tempo, beats = librosa.beat.beat_track(onset_envelope=env, sr=BEAT_SR, hop_length=BEAT_HOP, units="time", trim=False)
    return float(np.atleast_1d(tempo)[0]), np.asarray(beats, dtype=np.float64)


def spectral_flux(w: Wav) -> tuple[np.ndarray, np.ndarray]:
    """librosa's onset strength (mel log-power, half-wave rectified frame difference): (times, flux)."""
    import librosa

    y = mono(w).astype(np.float32)
    flux = librosa.onset.onset_strength(y=y, sr=w.sr, n_fft=FLUX_N_FFT, hop_length=FLUX_HOP)
    t = librosa.frames_to_time(np.arange(len(flux)), sr=w.sr, hop_length=FLUX_HOP)
    return t, flux


def peak_near(t: np.ndarray, v: np.ndarray, at: float, window: float = JOIN_WINDOW_S) -> float | None:
    m = (t >= at - window) & (t <= at + window)
    return float(v[m].max()) if m.any() else None
