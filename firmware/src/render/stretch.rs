//! Onset-anchored time stretching of template audio (WSOLA between note onsets).
//!
//! The templates are rendered from the project's own MIDI patterns, so the frame of every
//! note onset is known. The stretcher cuts a chunk of material into *slices* at those
//! onsets and maps every slice onto its proportional share of the output, so each onset
//! lands exactly on its planned position and its attack is played verbatim (no smeared or
//! doubled transients, the usual weakness of time-domain stretchers). Inside a slice only
//! sustains and decays sound: the slice is played as a few verbatim *pieces* joined by
//! short crossfades, each piece starting where the material is most similar to what the
//! previous piece would have played next (waveform-similarity overlap-add, as SoundTouch's
//! TDStretch does), so tones continue in phase. Slowing down repeats a little material,
//! speeding up skips some; pitch is never changed.
//!
//! Cost: one coarse-to-fine correlation search per splice (a few dozen splices per second),
//! about a tenth of a phase vocoder's FFTs. No latency: a chunk in gives the same chunk
//! stretched out, so bar-by-bar playback needs no pre-roll.

use crate::music::SAMPLE_RATE;

const CH: usize = 2;

/// Nominal length of a verbatim piece at the output: SoundTouch's automatic sequence length
/// for moderate tempo changes is 50–125 ms; pieces this long keep the tones' own waveform
/// most of the time, and slices between onsets are often about this long anyway.
const SEQUENCE_SECONDS: f64 = 0.07;

/// Crossfade between two pieces: 8 ms (SoundTouch's default overlap) is long enough not to
/// click and short enough that two slightly different waveforms do not comb audibly.
const OVERLAP_SECONDS: f64 = 0.008;

/// How far from the ideal position the next piece may start, each way: 10 ms covers half a
/// period of a 50 Hz bass tone, so every tone can be met in phase.
const SEEK_SECONDS: f64 = 0.010;

/// A piece never restarts within this much of the slice's onset: the attack plays once.
const ATTACK_SECONDS: f64 = 0.020;

/// Onsets closer than this to the previous anchor (flams, grace notes, a part rendered a
/// few ms early) are merged into it: slices shorter than this cannot hold a splice.
const MIN_SLICE_SECONDS: f64 = 0.045;

/// The lengths of a slice fix the sum of its splices' shifts, so one splice per slice
/// cannot meet a steady tone in phase; the last splice's search weighs the match at its
/// start fully and the match where its piece runs into the next onset by this much (that
/// crossfade ends on an attack, which masks it).
const END_WEIGHT: f32 = 0.5;

/// The coarse search runs on the mono signal averaged over this many frames (a 12 kHz
/// signal: bass and mid tones, which decide the phase match, are intact), then refines at
/// full rate within ± this many frames.
const DECIMATE: usize = 4;

fn frames(seconds: f64) -> usize {
    (seconds * SAMPLE_RATE as f64).round() as usize
}

/// Reusable state of the stretcher (buffers only; every chunk is stretched on its own).
#[derive(Debug, Default)]
pub struct Wsola {
    /// Mono (L + R) of the current chunk.
    mono: Vec<f32>,
    /// `mono` averaged over [`DECIMATE`] frames.
    coarse: Vec<f32>,
    /// Slice boundaries of the current chunk.
    bounds: Vec<usize>,
    /// Fade-in curve of one crossfade (raised cosine, 0 → 1).
    fade: Vec<f32>,
}

impl Wsola {
    pub fn new() -> Self {
        let n = frames(OVERLAP_SECONDS);
        let fade = (0..n)
            .map(|i| {
                let x = (i as f32 + 0.5) / n as f32;
                0.5 - 0.5 * (std::f32::consts::PI * x).cos()
            })
            .collect();
        Wsola {
            fade,
            ..Default::default()
        }
    }

    /// Stretches `src` (interleaved stereo) to fill `dst` (interleaved stereo, any
    /// length), keeping the material at each of `onsets` (ascending frame offsets into
    /// `src`) at its proportional position in `dst`. Equal lengths copy.
    pub fn process(&mut self, src: &[f32], onsets: &[usize], dst: &mut [f32]) {
        let lin = src.len() / CH;
        let lout = dst.len() / CH;
        if lin == lout {
            dst.copy_from_slice(&src[..lout * CH]);
            return;
        }
        if lin == 0 {
            dst.fill(0.0);
            return;
        }
        self.mono.clear();
        self.mono.extend(src.chunks_exact(CH).map(|f| f[0] + f[1]));
        self.coarse.clear();
        self.coarse.extend(
            self.mono
                .chunks(DECIMATE)
                .map(|c| c.iter().sum::<f32>() / c.len() as f32),
        );
        let min_slice = frames(MIN_SLICE_SECONDS);
        let mut bounds = std::mem::take(&mut self.bounds);
        bounds.clear();
        bounds.push(0);
        for &a in onsets {
            if a >= bounds[bounds.len() - 1] + min_slice && a + min_slice <= lin {
                bounds.push(a);
            }
        }
        bounds.push(lin);
        for w in bounds.windows(2) {
            let (xa, xb) = (w[0], w[1]);
            let ya = (xa as u64 * lout as u64 / lin as u64) as usize;
            let yb = (xb as u64 * lout as u64 / lin as u64) as usize;
            self.slice(src, xa, xb, &mut dst[ya * CH..yb * CH]);
        }
        self.bounds = bounds;
    }

    /// One slice `src[xa..xb)` into `out` (its whole output share).
    fn slice(&self, src: &[f32], xa: usize, xb: usize, out: &mut [f32]) {
        let lin = xb - xa;
        let lout = out.len() / CH;
        let f = self.fade.len();
        if lin == lout {
            out.copy_from_slice(&src[xa * CH..xb * CH]);
            return;
        }
        if lout < 4 * f || lin < 4 * f {
            super::player::linear_fit(&src[xa * CH..xb * CH], out);
            return;
        }
        let seek = frames(SEEK_SECONDS) as isize;
        let attack = frames(ATTACK_SECONDS).min(lin / 4);
        let seq = frames(SEQUENCE_SECONDS);
        let k = ((lout as f64 / seq as f64).round() as usize).max(2) - 1;
        // Current piece: starts at output `o`, input `s`; output before `done` is written.
        let (mut o, mut s, mut done) = (0usize, xa, 0usize);
        for j in 1..=k {
            let nominal = j * lout / (k + 1);
            // Each piece is at least two crossfades long, and its outgoing continuation
            // (read during the next crossfade) stays inside the slice.
            let room = (xb - f).saturating_sub(s);
            let oj = nominal.max(o + 2 * f).min(o + room);
            if oj < o + 2 * f || oj + 2 * f > lout {
                break;
            }
            let last = j == k || (j + 1) * lout / (k + 1) + 2 * f > lout;
            let c = s + (oj - o);
            let lo_bound = (xa + attack) as isize;
            let (lo, hi, t_last) = if last {
                // The last piece ends on the slice end: aim so it does not overshoot.
                let target = xb as isize - (lout - oj) as isize;
                (target - seek, target, true)
            } else {
                let target = xa as isize + (oj as u64 * lin as u64 / lout as u64) as isize;
                (target - seek, target + seek, false)
            };
            let lo = lo.max(lo_bound);
            let hi = hi.min((xb - 2 * f) as isize);
            let t = if lo > hi {
                hi.max(xa as isize) as usize
            } else {
                self.best(
                    c,
                    lo as usize,
                    hi as usize,
                    t_last.then_some((oj, lout, xb)),
                )
            };
            // Verbatim part of the current piece, then the crossfade into the next.
            copy(src, s + (done - o), &mut out[done * CH..oj * CH]);
            self.crossfade(src, c, t, &mut out[oj * CH..(oj + f) * CH]);
            o = oj;
            s = t;
            done = oj + f;
            if last {
                break;
            }
        }
        // The last piece runs to the end; if it does not end exactly on the slice end,
        // its last crossfade joins the material just before the next onset.
        let end = s + (lout - o);
        if end == xb || done + f > lout {
            copy(src, s + (done - o), &mut out[done * CH..]);
        } else {
            let x = lout - f;
            copy(src, s + (done - o), &mut out[done * CH..x * CH]);
            self.crossfade(src, s + (x - o), xb - f, &mut out[x * CH..]);
        }
    }

    /// The start in `[lo, hi]` whose material best continues the waveform at `c`
    /// (normalised cross-correlation over one crossfade; coarse on the decimated signal,
    /// then refined at full rate). With `end = (oj, lout, xb)` the candidate is also scored
    /// on how well the piece it starts would end into the material before `xb`.
    fn best(&self, c: usize, lo: usize, hi: usize, end: Option<(usize, usize, usize)>) -> usize {
        let f = self.fade.len();
        let score = |a: &[f32], b: &[f32], step: usize| -> f32 {
            let (mut ab, mut bb) = (0.0f32, 1e-9f32);
            for (x, y) in a.iter().zip(b).step_by(step) {
                ab += x * y;
                bb += y * y;
            }
            ab / bb.sqrt()
        };
        let total = |t: usize, coarse: bool| -> f32 {
            let (sig, d) = if coarse {
                (&self.coarse, DECIMATE)
            } else {
                (&self.mono, 1)
            };
            let n = f / d;
            let at = |x: usize| &sig[(x / d).min(sig.len() - n)..][..n];
            let step = if coarse { 1 } else { 2 };
            let mut v = score(at(c), at(t), step);
            if let Some((oj, lout, xb)) = end {
                // Where this piece would end, against the material just before `xb`.
                let e = t + (lout - oj);
                // Weighted lower: that crossfade ends on an onset, whose attack masks it.
                let e = e.min(xb);
                v += END_WEIGHT * score(at(xb - f), at(e - f), step);
            }
            v
        };
        let mut best = (f32::NEG_INFINITY, lo);
        let mut t = lo;
        while t <= hi {
            let v = total(t, true);
            if v > best.0 {
                best = (v, t);
            }
            t += DECIMATE;
        }
        let centre = best.1;
        let mut best = (f32::NEG_INFINITY, centre);
        for t in centre.saturating_sub(DECIMATE).max(lo)..=(centre + DECIMATE).min(hi) {
            let v = total(t, false);
            if v > best.0 {
                best = (v, t);
            }
        }
        best.1
    }

    /// `out` (one crossfade long) fades from `src` at `from` to `src` at `to`.
    fn crossfade(&self, src: &[f32], from: usize, to: usize, out: &mut [f32]) {
        let n = out.len() / CH;
        let last = src.len() / CH - 1;
        for i in 0..n {
            let w = self.fade[i * self.fade.len() / n.max(1)];
            let a = (from + i).min(last) * CH;
            let b = (to + i).min(last) * CH;
            for ch in 0..CH {
                out[i * CH + ch] = src[a + ch] * (1.0 - w) + src[b + ch] * w;
            }
        }
    }
}

/// Copies `out.len() / 2` frames of `src` from frame `from` (clamped at the end of `src`).
fn copy(src: &[f32], from: usize, out: &mut [f32]) {
    let n = out.len() / CH;
    let avail = (src.len() / CH).saturating_sub(from).min(n);
    out[..avail * CH].copy_from_slice(&src[from * CH..(from + avail) * CH]);
    if avail < n {
        let lastf = src.len() / CH - 1;
        for i in avail..n {
            out[i * CH] = src[lastf * CH];
            out[i * CH + 1] = src[lastf * CH + 1];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sustained two-partial tone (synthetic on purpose: a stationary signal shows
    /// any phase break at a splice as a jump in the waveform).
    fn tone(n: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(n * CH);
        for i in 0..n {
            let t = i as f32 / SAMPLE_RATE as f32;
            let x = 0.4 * (2.0 * std::f32::consts::PI * 110.0 * t).sin()
                + 0.2 * (2.0 * std::f32::consts::PI * 330.0 * t).sin();
            v.push(x);
            v.push(x);
        }
        v
    }

    /// Largest sample-to-sample step: a splice out of phase shows as a jump far above a
    /// 110/330 Hz tone's own slope.
    fn max_step(v: &[f32]) -> f32 {
        v.chunks_exact(CH)
            .zip(v.chunks_exact(CH).skip(1))
            .map(|(a, b)| (a[0] - b[0]).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn stretched_tone_keeps_its_level_through_splices() {
        let src = tone(48_000);
        let own = max_step(&src);
        let mut w = Wsola::new();
        for &out_frames in &[28_800usize, 36_000, 60_000, 80_000] {
            let mut dst = vec![0.0f32; out_frames * CH];
            w.process(&src, &[12_000, 24_000, 36_000], &mut dst);
            let step = max_step(&dst);
            assert!(
                step < 1.5 * own,
                "{out_frames} frames: largest step {step} vs the tone's own {own}"
            );
            // No splice cancels the tone: 5 ms windows keep most of its level.
            let win = 240 * CH;
            let lowest = dst
                .chunks(win)
                .filter(|c| c.len() == win)
                .map(|c| (c.iter().map(|x| x * x).sum::<f32>() / win as f32).sqrt())
                .fold(f32::INFINITY, f32::min);
            assert!(
                lowest > 0.6 * 0.316,
                "{out_frames}: a 5 ms window at rms {lowest}"
            );
            // Level kept: no gap, no doubling.
            let rms = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
            let (a, b) = (rms(&src), rms(&dst));
            assert!((b / a - 1.0).abs() < 0.05, "rms {b} vs {a}");
        }
    }

    #[test]
    fn onsets_land_on_their_proportional_position() {
        // Clicks (synthetic on purpose: isolates timing) at known onsets over silence.
        let n = 48_000;
        let onsets = [0usize, 9_000, 21_000, 33_000];
        let mut src = vec![0.0f32; n * CH];
        for &o in &onsets {
            for i in 0..48 {
                src[(o + i) * CH] = 1.0 - i as f32 / 48.0;
                src[(o + i) * CH + 1] = 1.0 - i as f32 / 48.0;
            }
        }
        let mut w = Wsola::new();
        for &out_frames in &[30_000usize, 70_000] {
            let mut dst = vec![0.0f32; out_frames * CH];
            w.process(&src, &onsets[1..], &mut dst);
            for &o in &onsets {
                let want = o * out_frames / n;
                assert!(
                    (dst[want * CH] - 1.0).abs() < 1e-6,
                    "{out_frames}: onset {o} not at {want}"
                );
            }
            // Each click is heard once: energy at the clicks only.
            let loud = dst.chunks_exact(CH).filter(|f| f[0].abs() > 0.5).count();
            assert_eq!(
                loud,
                onsets.len() * 24,
                "{out_frames}: clicks doubled or lost"
            );
        }
    }
}
