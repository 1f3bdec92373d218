//! Tempo, beat grid, section starts and (optionally) video warping for a whole video.
//!
//! The beat grid is continuous from t = 0 at one tempo. A scene cut starts a new section on
//! the first beat at or after it; when that beat is not a downbeat the bar before is cut short.
//! The tempo is searched near a target (from the video's energy and visual tempo, or the user's
//! choice) to put as many cuts as possible on downbeats, so that few bars are cut short.
//! With warping, each segment between cuts is retimed by at most [`MAX_WARP`] so that the cut
//! lands exactly on a beat (a downbeat where reachable).

use serde::{Deserialize, Serialize};

use crate::music::BEATS_PER_BAR;

/// Largest relative speed change of a warped video segment: the issue allows ±8 %; plan a
/// little inside it so frame-rate rounding in the muxed video never takes a segment past it.
pub const MAX_WARP: f64 = 0.0775;
/// Lowest and highest tempo the planner picks on its own (background-music range).
pub const TEMPO_MIN_BPM: f64 = 72.0;
pub const TEMPO_MAX_BPM: f64 = 132.0;
/// Tempo search step; fine enough that 30 cuts over a minute can still be fitted.
const TEMPO_STEP_BPM: f64 = 0.1;
/// How far (relative) the search may stray from the target tempo.
const TEMPO_SEARCH_SPAN: f64 = 0.12;
/// A cut that falls on the same beat as the previous section start opens no new section (two
/// cuts within one beat are one change); any later cut does, even one beat on: the music must
/// answer every cut.
pub const MIN_SECTION_BEATS: i64 = 1;
/// Warping: a cut this close to a beat counts as on it (the issue's ±50 ms), so a stretch that
/// cannot reach the beat exactly within ±MAX_WARP may stop this short of it.
const WARP_HIT_TOLERANCE_S: f64 = 0.045;
/// A cut this close after a beat still counts as on that beat (one frame at 25 fps).
const ON_BEAT_TOLERANCE_S: f64 = 0.04;
/// Cost weights of the tempo search: a bar cut short costs 1; straying 10 % from the target
/// costs about as much; so does an average delay of one beat from cut to section start.
const COST_TEMPO_DEVIATION: f64 = 10.0;
const COST_DELAY_PER_BEAT: f64 = 1.0;
/// Warping: a cut that cannot be put on a beat costs this much (it misses the ±50 ms goal).
const COST_WARP_MISS: f64 = 6.0;
/// Warping: cost per unit of |rate − 1| (prefer small warps).
const COST_WARP_RATE: f64 = 4.0;

/// One retimed stretch of the video: input `[input_start, input_end)` plays over output
/// `[output_start, output_end)`; `rate` = input seconds per output second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Warp {
    pub input_start: f64,
    pub input_end: f64,
    pub output_start: f64,
    pub output_end: f64,
    pub rate: f64,
}

/// Piecewise-linear map between input (video) time and output (music) time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimeMap {
    /// Contiguous segments covering the input; empty = identity.
    pub segments: Vec<Warp>,
}

impl TimeMap {
    pub fn to_output(&self, t: f64) -> f64 {
        match self
            .segments
            .iter()
            .find(|w| t < w.input_end)
            .or(self.segments.last())
        {
            None => t,
            Some(w) => w.output_start + (t - w.input_start) / w.rate,
        }
    }

    pub fn to_input(&self, t: f64) -> f64 {
        match self
            .segments
            .iter()
            .find(|w| t < w.output_end)
            .or(self.segments.last())
        {
            None => t,
            Some(w) => w.input_start + (t - w.output_start) * w.rate,
        }
    }
}

/// A scene cut on the input timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CutIn {
    pub t: f64,
}

/// The grid chosen for a video.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub tempo_bpm: f64,
    /// Output duration, seconds.
    pub duration: f64,
    /// Beat indices (from 0) where sections start; always begins with 0.
    pub section_beats: Vec<i64>,
    /// For each input cut: the beat index of the section it started, if it started one.
    pub cut_sections: Vec<Option<i64>>,
    pub time_map: TimeMap,
}

impl Grid {
    pub fn beat_seconds(&self) -> f64 {
        60.0 / self.tempo_bpm
    }
}

/// Chooses tempo, section starts and warps. `cuts` sorted by time; `tempo_fixed` forces the tempo.
pub fn choose_grid(
    duration: f64,
    cuts: &[CutIn],
    target_bpm: f64,
    tempo_fixed: Option<f64>,
    warp: bool,
) -> Grid {
    let candidates: Vec<f64> = match tempo_fixed {
        Some(t) => vec![t],
        None => {
            let lo = (target_bpm * (1.0 - TEMPO_SEARCH_SPAN)).max(TEMPO_MIN_BPM);
            let hi = (target_bpm * (1.0 + TEMPO_SEARCH_SPAN)).min(TEMPO_MAX_BPM);
            let n = ((hi - lo) / TEMPO_STEP_BPM).floor() as usize;
            (0..=n).map(|i| lo + i as f64 * TEMPO_STEP_BPM).collect()
        }
    };
    let mut best: Option<(f64, Grid)> = None;
    for &bpm in &candidates {
        let (cost, grid) = if warp {
            fit_warped(duration, cuts, bpm)
        } else {
            fit_plain(duration, cuts, bpm)
        };
        let cost = cost + COST_TEMPO_DEVIATION * ((bpm - target_bpm) / target_bpm).abs();
        if best.as_ref().is_none_or(|(c, _)| cost < *c - 1e-12) {
            best = Some((cost, grid));
        }
    }
    best.map(|(_, g)| g).expect("at least one tempo candidate")
}

/// No warping: each cut starts a section on the first beat at or after it.
fn fit_plain(duration: f64, cuts: &[CutIn], bpm: f64) -> (f64, Grid) {
    let beat = 60.0 / bpm;
    let mut section_beats = vec![0i64];
    let mut cut_sections = Vec::with_capacity(cuts.len());
    let mut cost = 0.0;
    for c in cuts {
        let b = ((c.t - ON_BEAT_TOLERANCE_S) / beat).ceil().max(0.0) as i64;
        let last = *section_beats.last().unwrap();
        if b - last < MIN_SECTION_BEATS || (b as f64) * beat >= duration {
            cut_sections.push(if b == last { Some(last) } else { None });
            continue;
        }
        if (b - last) % BEATS_PER_BAR as i64 != 0 {
            cost += 1.0;
        }
        cost += COST_DELAY_PER_BEAT * ((b as f64 * beat - c.t).max(0.0) / beat);
        section_beats.push(b);
        cut_sections.push(Some(b));
    }
    (
        cost,
        Grid {
            tempo_bpm: bpm,
            duration,
            section_beats,
            cut_sections,
            time_map: TimeMap::default(),
        },
    )
}

/// Warping: segment k (from the previous cut to cut k) gets an output length within ±MAX_WARP of
/// its input length chosen so that cut k lands on a beat, a downbeat of the running section if one
/// is reachable, else the beat that needs the smallest warp.
fn fit_warped(duration: f64, cuts: &[CutIn], bpm: f64) -> (f64, Grid) {
    let beat = 60.0 / bpm;
    let bar = BEATS_PER_BAR as i64;
    let mut section_beats = vec![0i64];
    let mut cut_sections = Vec::with_capacity(cuts.len());
    let mut segments = Vec::new();
    let (mut i_prev, mut o_prev) = (0.0f64, 0.0f64);
    let mut cost = 0.0;
    for c in cuts {
        let d = c.t - i_prev;
        if d <= 0.0 || c.t >= duration {
            cut_sections.push(None);
            continue;
        }
        let last = *section_beats.last().unwrap();
        let (o_min, o_max) = (o_prev + d / (1.0 + MAX_WARP), o_prev + d / (1.0 - MAX_WARP));
        let lo = ((o_min - WARP_HIT_TOLERANCE_S) / beat).ceil() as i64;
        let hi = ((o_max + WARP_HIT_TOLERANCE_S) / beat).floor() as i64;
        let choice = (lo..=hi)
            .filter(|&b| b - last >= MIN_SECTION_BEATS)
            .map(|b| {
                let o = (b as f64 * beat).clamp(o_min, o_max);
                let rate = d / (o - o_prev);
                let short = if (b - last) % bar != 0 { 1.0 } else { 0.0 };
                (short + COST_WARP_RATE * (rate - 1.0).abs(), b, o, rate)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match choice {
            Some((ccost, b, o, rate)) => {
                cost += ccost;
                segments.push(Warp {
                    input_start: i_prev,
                    input_end: c.t,
                    output_start: o_prev,
                    output_end: o,
                    rate,
                });
                section_beats.push(b);
                cut_sections.push(Some(b));
                i_prev = c.t;
                o_prev = o;
            }
            None => {
                // No beat is reachable within ±MAX_WARP (a very short shot): leave this stretch
                // unwarped and start the section on the first beat after the cut, as without warping.
                cost += COST_WARP_MISS;
                let o = o_prev + d;
                let b = ((o - ON_BEAT_TOLERANCE_S) / beat).ceil() as i64;
                segments.push(Warp {
                    input_start: i_prev,
                    input_end: c.t,
                    output_start: o_prev,
                    output_end: o,
                    rate: 1.0,
                });
                if b - last >= MIN_SECTION_BEATS {
                    section_beats.push(b);
                    cut_sections.push(Some(b));
                } else {
                    cut_sections.push(None);
                }
                i_prev = c.t;
                o_prev = o;
            }
        }
    }
    let rest = duration - i_prev;
    if rest > 0.0 {
        segments.push(Warp {
            input_start: i_prev,
            input_end: duration,
            output_start: o_prev,
            output_end: o_prev + rest,
            rate: 1.0,
        });
    }
    let out_duration = o_prev + rest.max(0.0);
    (
        cost,
        Grid {
            tempo_bpm: bpm,
            duration: out_duration,
            section_beats,
            cut_sections,
            time_map: TimeMap { segments },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuts(ts: &[f64]) -> Vec<CutIn> {
        ts.iter().map(|&t| CutIn { t }).collect()
    }

    #[test]
    fn every_cut_gets_a_section_within_one_beat() {
        let cs = cuts(&[3.1, 7.77, 9.9, 14.2, 21.05]);
        let g = choose_grid(25.0, &cs, 100.0, None, false);
        let beat = g.beat_seconds();
        for (c, s) in cs.iter().zip(&g.cut_sections) {
            let b = s.expect("section for each well-separated cut");
            let dt = b as f64 * beat - c.t;
            assert!(
                dt > -ON_BEAT_TOLERANCE_S - 1e-9 && dt < beat,
                "cut {} section at {}",
                c.t,
                b as f64 * beat
            );
        }
    }

    #[test]
    fn search_finds_a_tempo_that_puts_regular_cuts_on_downbeats() {
        // Cuts every 4 bars at 96 BPM; target 100: the search should find 96 (no short bars).
        let bar = 4.0 * 60.0 / 96.0;
        let cs = cuts(&[4.0 * bar, 8.0 * bar, 12.0 * bar]);
        let g = choose_grid(16.0 * bar, &cs, 100.0, None, false);
        assert!((g.tempo_bpm - 96.0).abs() < 0.15, "tempo {}", g.tempo_bpm);
        for s in &g.section_beats {
            assert_eq!(s % 4, 0);
        }
    }

    #[test]
    fn warping_lands_cuts_on_beats_within_limits() {
        let cs = cuts(&[4.3, 9.1, 13.37, 20.2]);
        let g = choose_grid(26.0, &cs, 100.0, None, true);
        let beat = g.beat_seconds();
        for w in &g.time_map.segments {
            assert!((w.rate - 1.0).abs() <= MAX_WARP + 1e-9, "{w:?}");
        }
        for c in &cs {
            let o = g.time_map.to_output(c.t);
            let k = (o / beat).round();
            assert!(
                (o - k * beat).abs() <= WARP_HIT_TOLERANCE_S + 1e-9,
                "cut {} lands at {o}",
                c.t
            );
        }
        assert!((g.time_map.to_input(g.time_map.to_output(11.0)) - 11.0).abs() < 1e-9);
    }
}
