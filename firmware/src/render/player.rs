//! Plays a template loop bar by bar at the planned tempo without changing its pitch.
//!
//! Each call consumes exactly one bar of the loop at its native tempo and writes
//! exactly one bar at the planned tempo, so the template can never drift off the bar
//! grid however long it plays. When the planned bar has the native length the audio is
//! copied as it is; otherwise it goes through Signalsmith Stretch (a phase-vocoder
//! time-stretcher), positioned with pre-roll from the loop itself and with its output
//! latency compensated, so the stretched bar starts on the beat.

use signalsmith_stretch::Stretch;

use crate::music::{CHANNELS, SAMPLE_RATE};

const CH: usize = CHANNELS as usize;

/// Plays one template's decoded loop.
pub struct LoopPlayer {
    /// The template's audio, interleaved stereo: `[intro][loop]` (the intro is the first
    /// bar rendered from silence).
    pcm: Vec<f32>,
    /// Frames before the loop in `pcm` (the intro's length).
    loop_start: usize,
    /// Frames in one loop.
    loop_frames: usize,
    /// Intro frames to play before the loop: the whole intro when the segment starts on
    /// the progression's first bar, else 0.
    intro_len: usize,
    /// Frames of the intro already played.
    intro_pos: usize,
    /// Read cursor in loop frames (the next loop frame to hand on after the intro).
    cursor: usize,
    stretch: Option<Stretch>,
    scratch: Vec<f32>,
}

impl LoopPlayer {
    /// A player over `pcm` = `[intro of intro_frames][loop]` that starts at `start_frame`
    /// of the loop, to be played at `rate` native frames per output frame (planned tempo /
    /// native tempo). With `play_intro`, the intro plays first and `start_frame` must be
    /// the loop's second bar (the loop continues from there).
    pub fn new(
        pcm: Vec<f32>,
        intro_frames: usize,
        play_intro: bool,
        start_frame: usize,
        rate: f64,
        advance: usize,
    ) -> Self {
        let loop_frames = pcm.len() / CH - intro_frames;
        let mut p = LoopPlayer {
            pcm,
            loop_start: intro_frames,
            loop_frames,
            intro_len: if play_intro { intro_frames } else { 0 },
            intro_pos: 0,
            cursor: start_frame % loop_frames.max(1),
            stretch: None,
            scratch: Vec::new(),
        };
        // Start `advance` frames into the material (the whole template plays that much
        // early; see render::TEMPLATE_ADVANCE_SECONDS).
        if p.intro_len > 0 {
            p.intro_pos = advance.min(p.intro_len);
        } else {
            p.cursor = (p.cursor + advance) % p.loop_frames.max(1);
        }
        if !is_unity(rate) {
            p.start_stretch(rate);
        }
        p
    }

    fn start_stretch(&mut self, rate: f64) {
        // The cheaper preset (100 ms blocks, 40 ms hops) measured as good as the default
        // here on beat alignment and join flux, at ~0.8x its cost.
        let mut st = Stretch::preset_cheaper(CH as u32, SAMPLE_RATE);
        let in_lat = st.input_latency();
        let out_lat = st.output_latency();
        // Pre-roll: what would have played before the start (silence before an intro,
        // else the loop itself, which is seamless), then the stretcher's input latency.
        let pre = 2 * in_lat;
        let mut seek = Vec::new();
        if self.intro_len == 0 {
            self.peek_loop(&mut seek, self.cursor + self.loop_frames * 4 - pre, pre);
        } else {
            seek.resize(pre * CH, 0.0);
        }
        let mut ahead = Vec::new();
        self.read(&mut ahead, in_lat);
        seek.extend_from_slice(&ahead);
        st.seek(&seek, rate);
        // Drain the output latency so the next output frame is aligned with the start.
        let drain_in = (out_lat as f64 * rate).round() as usize;
        let mut input = Vec::new();
        self.read(&mut input, drain_in);
        let mut trash = vec![0.0f32; out_lat * CH];
        st.process(&input, &mut trash);
        self.stretch = Some(st);
    }

    /// Copies `frames` loop frames from `start` (wrapping) into `dst` without advancing.
    fn peek_loop(&self, dst: &mut Vec<f32>, start: usize, frames: usize) {
        dst.clear();
        dst.reserve(frames * CH);
        let mut pos = start % self.loop_frames;
        let mut left = frames;
        while left > 0 {
            let n = left.min(self.loop_frames - pos);
            let at = self.loop_start + pos;
            dst.extend_from_slice(&self.pcm[at * CH..(at + n) * CH]);
            left -= n;
            pos = (pos + n) % self.loop_frames;
        }
    }

    /// Reads the next `frames` frames (intro first, then the loop) into `dst`, advancing.
    fn read(&mut self, dst: &mut Vec<f32>, frames: usize) {
        let from_intro = frames.min(self.intro_len - self.intro_pos);
        dst.clear();
        dst.reserve(frames * CH);
        dst.extend_from_slice(&self.pcm[self.intro_pos * CH..(self.intro_pos + from_intro) * CH]);
        let mut pos = self.cursor;
        let mut left = frames - from_intro;
        while left > 0 {
            let n = left.min(self.loop_frames - pos);
            let at = self.loop_start + pos;
            dst.extend_from_slice(&self.pcm[at * CH..(at + n) * CH]);
            left -= n;
            pos = (pos + n) % self.loop_frames;
        }
        self.intro_pos += from_intro;
        self.cursor = pos;
    }

    /// Consumes `in_frames` template frames and writes `out.len() / 2` frames into `out`
    /// (replacing its contents).
    pub fn next(&mut self, in_frames: usize, out: &mut [f32]) {
        let out_frames = out.len() / CH;
        let mut scratch = std::mem::take(&mut self.scratch);
        self.read(&mut scratch, in_frames);
        match self.stretch.as_mut() {
            None if in_frames == out_frames => out.copy_from_slice(&scratch),
            None => {
                // A bar whose length differs by a few frames from the native one
                // (rounding of bar boundaries): resample linearly, inaudible at this size.
                linear_fit(&scratch, out);
            }
            Some(st) => st.process(&scratch, &mut *out),
        }
        self.scratch = scratch;
    }
}

/// Rates this close to 1 are played without stretching: a bar of 2 s at 1.0005 is off by
/// one millisecond, far inside the 30 ms beat tolerance, and avoids any phase-vocoder colour.
const UNITY_TOLERANCE: f64 = 5e-4;

pub fn is_unity(rate: f64) -> bool {
    (rate - 1.0).abs() < UNITY_TOLERANCE
}

fn linear_fit(src: &[f32], dst: &mut [f32]) {
    let sf = src.len() / CH;
    let df = dst.len() / CH;
    if sf == 0 {
        dst.fill(0.0);
        return;
    }
    let step = if df > 1 {
        (sf - 1) as f64 / (df - 1) as f64
    } else {
        0.0
    };
    for i in 0..df {
        let x = i as f64 * step;
        let a = x.floor() as usize;
        let b = (a + 1).min(sf - 1);
        let t = (x - a as f64) as f32;
        for c in 0..CH {
            dst[i * CH + c] = src[a * CH + c] * (1.0 - t) + src[b * CH + c] * t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A click track (synthetic on purpose: isolates timing) stretched from 120 to 100 BPM
    /// keeps its clicks on the new beat grid.
    #[test]
    fn stretched_clicks_land_on_the_planned_beats() {
        let native_beat = 24_000usize; // 120 BPM at 48 kHz
        let loop_frames = native_beat * 16;
        let mut pcm = vec![0.0f32; loop_frames * CH];
        for b in 0..16 {
            for i in 0..96 {
                let v = (i as f32 * 0.3).sin() * (1.0 - i as f32 / 96.0);
                pcm[(b * native_beat + i) * CH] = v;
                pcm[(b * native_beat + i) * CH + 1] = v;
            }
        }
        let planned_beat = 28_800usize; // 100 BPM
        let mut p = LoopPlayer::new(
            pcm,
            0,
            false,
            0,
            native_beat as f64 / planned_beat as f64,
            0,
        );
        let mut out = vec![0.0f32; planned_beat * 4 * CH];
        let mut all = Vec::new();
        for _ in 0..3 {
            p.next(native_beat * 4, &mut out);
            all.extend_from_slice(&out);
        }
        // The energy of each planned beat's first 20 ms dominates the rest of the beat.
        for beat in 1..12 {
            let s = beat * planned_beat;
            let win = 960;
            let e_on: f32 = (s.saturating_sub(win / 2)..s + win)
                .map(|i| all[i * CH].powi(2))
                .sum();
            let e_mid: f32 = (s + planned_beat / 2 - win / 2..s + planned_beat / 2 + win)
                .map(|i| all[i * CH].powi(2))
                .sum();
            assert!(
                e_on > 10.0 * e_mid.max(1e-9),
                "beat {beat}: onset energy {e_on} vs mid-beat {e_mid}"
            );
        }
    }

    #[test]
    fn unity_rate_copies_the_loop_exactly() {
        let pcm: Vec<f32> = (0..2000).map(|i| i as f32).collect();
        let mut p = LoopPlayer::new(pcm.clone(), 0, false, 900, 1.0, 0);
        let mut out = vec![0.0f32; 400];
        p.next(200, &mut out);
        assert_eq!(&out[..200], &pcm[1800..2000]);
        assert_eq!(&out[200..], &pcm[..200]);
    }

    #[test]
    fn intro_plays_first_then_the_loop() {
        // 50 intro frames of -1, then a 1000-frame loop counting up.
        let mut pcm: Vec<f32> = vec![-1.0; 100];
        pcm.extend((0..2000).map(|i| i as f32));
        let mut p = LoopPlayer::new(pcm.clone(), 50, true, 500, 1.0, 0);
        let mut out = vec![0.0f32; 300];
        p.next(150, &mut out);
        assert!(out[..100].iter().all(|&x| x == -1.0));
        assert_eq!(&out[100..], &pcm[1100..1300]);
    }
}
