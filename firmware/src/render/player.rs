//! Plays a template loop bar by bar at the planned tempo without changing its pitch.
//!
//! Each call consumes exactly one bar (or the beats of a short bar) of the loop at its
//! native tempo and writes exactly one bar at the planned tempo, so the template can never
//! drift off the bar grid however long it plays. When the planned bar has the native length
//! the audio is copied as it is; otherwise it goes through the onset-anchored stretcher
//! ([`super::stretch::Wsola`]), which keeps every note onset of the template's pattern on
//! its planned position. The stretcher has no latency, so a segment needs no pre-roll.

use super::library::TemplateAudio;
use super::stretch::Wsola;
use super::RenderError;
use crate::music::CHANNELS;

const CH: usize = CHANNELS as usize;

/// Plays one template's decoded loop.
pub struct LoopPlayer {
    /// The template's audio, interleaved stereo: `[intro][loop]` (the intro is the first
    /// bar rendered from silence), decoded as far as the player has read.
    audio: TemplateAudio,
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
    /// Note onsets of the pattern, ascending loop frames (the intro is the loop's first
    /// bar played from silence: it has the onsets of that bar).
    onsets: Vec<usize>,
    /// Stretcher, for every chunk whose planned length is not its native one.
    stretch: Wsola,
    scratch: Vec<f32>,
    /// Onsets inside the chunk in `scratch` (frame offsets).
    anchors: Vec<usize>,
}

impl LoopPlayer {
    /// A player over `audio` = `[intro of intro_frames][loop]` that starts at `start_frame`
    /// of the loop. With `play_intro`, the intro plays first and `start_frame` must be the
    /// loop's second bar (the loop continues from there). `onsets` are the loop frames
    /// where the pattern's notes start (any order); the stretcher keeps them on the grid.
    pub fn new(
        audio: TemplateAudio,
        intro_frames: usize,
        play_intro: bool,
        start_frame: usize,
        mut onsets: Vec<usize>,
    ) -> Self {
        let loop_frames = audio.frames() - intro_frames;
        onsets.retain(|&o| o < loop_frames);
        onsets.sort_unstable();
        onsets.dedup();
        let intro_len = if play_intro { intro_frames } else { 0 };
        let cursor = start_frame % loop_frames.max(1);
        LoopPlayer {
            audio,
            loop_start: intro_frames,
            loop_frames,
            intro_len,
            intro_pos: 0,
            cursor,
            onsets,
            stretch: Wsola::new(),
            scratch: Vec::new(),
            anchors: Vec::new(),
        }
    }

    /// Skips the next `frames` frames of material.
    pub fn skip(&mut self, frames: usize) -> Result<(), RenderError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut anchors = std::mem::take(&mut self.anchors);
        let r = self.read(&mut scratch, &mut anchors, frames);
        self.scratch = scratch;
        self.anchors = anchors;
        r
    }

    /// Hands the decoded template's buffer back (for the next template's decode); the
    /// player is empty afterwards.
    pub fn take_pcm(&mut self) -> Vec<f32> {
        self.loop_frames = 0;
        self.intro_len = 0;
        self.intro_pos = 0;
        std::mem::replace(&mut self.audio, TemplateAudio::decoded(Vec::new())).into_buffer()
    }

    /// Reads the next `frames` frames (intro first, then the loop) into `dst`, advancing,
    /// and the offsets of the pattern's onsets inside them into `anchors`. Fails only if
    /// the template's file cannot be decoded as far as that.
    fn read(
        &mut self,
        dst: &mut Vec<f32>,
        anchors: &mut Vec<usize>,
        frames: usize,
    ) -> Result<(), RenderError> {
        dst.clear();
        anchors.clear();
        if self.loop_frames == 0 {
            // Emptied by `take_pcm` (a failed segment start leaves it in place): silence.
            dst.resize(frames * CH, 0.0);
            return Ok(());
        }
        let from_intro = frames.min(self.intro_len - self.intro_pos);
        dst.reserve(frames * CH);
        dst.extend_from_slice(
            self.audio
                .frames_range(self.intro_pos, self.intro_pos + from_intro)?,
        );
        self.push_onsets(anchors, self.intro_pos, self.intro_pos + from_intro, 0);
        let mut pos = self.cursor;
        let mut left = frames - from_intro;
        while left > 0 {
            let n = left.min(self.loop_frames - pos);
            let at = self.loop_start + pos;
            let base = dst.len() / CH;
            dst.extend_from_slice(self.audio.frames_range(at, at + n)?);
            self.push_onsets(anchors, pos, pos + n, base);
            left -= n;
            pos = (pos + n) % self.loop_frames;
        }
        self.intro_pos += from_intro;
        self.cursor = pos;
        Ok(())
    }

    /// Onsets in loop frames `[lo, hi)` as offsets from `base` (`pos - lo + base`).
    fn push_onsets(&self, anchors: &mut Vec<usize>, lo: usize, hi: usize, base: usize) {
        let i = self.onsets.partition_point(|&o| o < lo);
        for &o in self.onsets[i..].iter().take_while(|&&o| o < hi) {
            anchors.push(o - lo + base);
        }
    }

    /// Consumes `in_frames` template frames and writes `out.len() / 2` frames into `out`
    /// (replacing its contents).
    pub fn next(&mut self, in_frames: usize, out: &mut [f32]) -> Result<(), RenderError> {
        let out_frames = out.len() / CH;
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut anchors = std::mem::take(&mut self.anchors);
        if let Err(e) = self.read(&mut scratch, &mut anchors, in_frames) {
            self.scratch = scratch;
            self.anchors = anchors;
            return Err(e);
        }
        if in_frames == out_frames {
            out.copy_from_slice(&scratch);
        } else if in_frames.abs_diff(out_frames) <= ROUNDING_FRAMES {
            // A bar whose length differs by a few frames from the native one (rounding
            // of bar boundaries): resample linearly, inaudible at this size.
            linear_fit(&scratch, out);
        } else {
            self.stretch.process(&scratch, &anchors, &mut *out);
        }
        self.scratch = scratch;
        self.anchors = anchors;
        Ok(())
    }
}

/// A chunk this close to its native length is resampled linearly instead of stretched:
/// bar boundaries rounded to whole frames differ by a frame or two, a pitch change of
/// a few parts per million.
const ROUNDING_FRAMES: usize = 4;

pub(crate) fn linear_fit(src: &[f32], dst: &mut [f32]) {
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
        let onsets = (0..16).map(|b| b * native_beat).collect();
        let mut p = LoopPlayer::new(TemplateAudio::decoded(pcm), 0, false, 0, onsets);
        let mut out = vec![0.0f32; planned_beat * 4 * CH];
        let mut all = Vec::new();
        for _ in 0..3 {
            p.next(native_beat * 4, &mut out).unwrap();
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
        let mut p = LoopPlayer::new(
            TemplateAudio::decoded(pcm.clone()),
            0,
            false,
            900,
            Vec::new(),
        );
        let mut out = vec![0.0f32; 400];
        p.next(200, &mut out).unwrap();
        assert_eq!(&out[..200], &pcm[1800..2000]);
        assert_eq!(&out[200..], &pcm[..200]);
    }

    #[test]
    fn intro_plays_first_then_the_loop() {
        // 50 intro frames of -1, then a 1000-frame loop counting up.
        let mut pcm: Vec<f32> = vec![-1.0; 100];
        pcm.extend((0..2000).map(|i| i as f32));
        let mut p = LoopPlayer::new(
            TemplateAudio::decoded(pcm.clone()),
            50,
            true,
            500,
            Vec::new(),
        );
        let mut out = vec![0.0f32; 300];
        p.next(150, &mut out).unwrap();
        assert!(out[..100].iter().all(|&x| x == -1.0));
        assert_eq!(&out[100..], &pcm[1100..1300]);
    }
}
