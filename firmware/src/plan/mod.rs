//! `plan` stage: owns the beat clock. Turns extracted features into one [`BarPlan`]
//! per bar: tempo and bar grid, per-bar control classes, section starts and harmony.

use serde::{Deserialize, Serialize};

use crate::music::{Chord, Preferences};

/// The plan of one bar: everything downstream stages need to make it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarPlan {
    /// Bar index on the output timeline (0-based).
    pub index: u32,
    /// Bar start and end on the output timeline, seconds.
    pub start: f64,
    pub end: f64,
    /// Tempo of this bar, beats per minute.
    pub tempo_bpm: f64,
    /// Beats in this bar: `BEATS_PER_BAR` normally; fewer (1..=3) for a bar cut short so that
    /// the next section starts on the beat right after a scene cut. Notes and template audio
    /// past `beats` are dropped.
    pub beats: u8,
    /// Mean motion speed over the bar (frame diagonals per second; frames inside a scene
    /// transition count by [`crate::extract::FeatureFrame::motion_speed`]).
    pub speed: f32,
    /// Mean motion saliency over the bar, 0..=1.
    pub saliency: f32,
    /// Requested note-density class, `0..DENSITY_CLASSES`.
    pub density_class: u8,
    /// Requested note-strength class, `0..STRENGTH_CLASSES`.
    pub strength_class: u8,
    /// Arrangement energy 0..=1 (drives the template's intensity layer).
    pub energy: f32,
    /// A new section starts on this bar's downbeat (a scene transition happened).
    pub section_start: bool,
    /// Section number this bar belongs to (0-based).
    pub section: u32,
    /// Harmony of the bar: the chord the melody must fit and the template plays.
    pub chord: Chord,
    /// The user's preferences in force for this bar.
    pub prefs: Preferences,
}

mod grid;
pub mod live;

pub use grid::{TimeMap, Warp, MAX_WARP, TEMPO_MAX_BPM, TEMPO_MIN_BPM};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::extract::{Analysis, TransitionKind};
use crate::music::{Mode, Mood, BEATS_PER_BAR, DENSITY_CLASSES, PROGRESSIONS, STRENGTH_CLASSES};

/// Motion speeds (frame diagonals per second) that anchor the absolute part of the
/// density mapping: below `SPEED_CALM` is a still shot, above `SPEED_WILD` is a whip pan or
/// a chase. Chosen from the speeds of ordinary footage (the sample clips) so classes spread.
const SPEED_CALM: f32 = 0.004;
const SPEED_WILD: f32 = 0.35;
/// Saliency anchors of the absolute part of the strength mapping.
const SALIENCY_LOW: f32 = 0.1;
const SALIENCY_HIGH: f32 = 0.8;
/// Share of the absolute (calibrated) mapping in a control class; the rest is the bar's rank
/// within this video, so a calm video still uses the whole range and ranks are preserved.
const ABSOLUTE_WEIGHT: f32 = 0.5;
/// How far an energy preference moves the density/strength classes (as a share of the range).
const ENERGY_PREFERENCE_SHIFT: f32 = 0.35;
/// Target tempo range from the video's overall motion energy (calm → slow, busy → fast).
const TEMPO_CALM_BPM: f64 = 84.0;
const TEMPO_BUSY_BPM: f64 = 120.0;
/// Weight of the visual tempo (when extraction finds one) against the energy-derived target.
const VISUAL_TEMPO_WEIGHT: f64 = 0.5;
/// A gradual transition at least this confident is a warp anchor (put on a beat) like a hard
/// cut; weaker ones (a flash, the tail of a dissolve) follow the warped timeline.
const WARP_ANCHOR_MIN_CONFIDENCE: f32 = 0.5;
/// Tempi a user may ask for.
pub const TEMPO_PREF_RANGE: (f64, f64) = (40.0, 240.0);

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("the video has no frames to plan music for")]
    NoFrames,
    #[error("invalid preference {name} = {value}: must be within {range}")]
    Preference {
        name: &'static str,
        value: String,
        range: String,
    },
}

/// A scene cut as planned: where it is on both timelines and which bar it starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlannedCut {
    /// Output-timeline time, seconds.
    pub t: f64,
    /// Input-timeline time, seconds.
    pub t_input: f64,
    pub kind: TransitionKind,
    pub confidence: f32,
    /// Index of the bar whose downbeat starts the section for this cut, if one does.
    pub section_bar: Option<u32>,
}

/// The plan of a whole video (offline).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub tempo_bpm: f64,
    /// Sixteenths of a beat before the first bar (a pickup: the first downbeat comes this late;
    /// only warping asks for one, when it lands a short opening shot's cut on a downbeat).
    pub pickup_sixteenths: u8,
    /// Output duration, seconds.
    pub duration: f64,
    pub bars: Vec<BarPlan>,
    /// Output times of every beat before the end.
    pub beats: Vec<f64>,
    /// Output times of every bar start before the end.
    pub downbeats: Vec<f64>,
    pub cuts: Vec<PlannedCut>,
    /// Warps applied to the video (empty unless warping was asked for).
    pub warps: Vec<Warp>,
    pub time_map: TimeMap,
}

/// Checks the user's preferences; the message names the preference and its valid range.
pub fn validate_preferences(p: &Preferences) -> Result<(), PlanError> {
    if let Some(e) = p.energy {
        if !(0.0..=1.0).contains(&e) || !e.is_finite() {
            return Err(PlanError::Preference {
                name: "energy",
                value: e.to_string(),
                range: "0.0..=1.0".into(),
            });
        }
    }
    if !(-(DENSITY_CLASSES as i8)..=DENSITY_CLASSES as i8).contains(&p.density_offset) {
        let range = format!("-{0}..={0}", DENSITY_CLASSES);
        return Err(PlanError::Preference {
            name: "density offset",
            value: p.density_offset.to_string(),
            range,
        });
    }
    if let Some(t) = p.tempo {
        if !(TEMPO_PREF_RANGE.0..=TEMPO_PREF_RANGE.1).contains(&t) || !t.is_finite() {
            let range = format!("{}..={} BPM", TEMPO_PREF_RANGE.0, TEMPO_PREF_RANGE.1);
            return Err(PlanError::Preference {
                name: "tempo",
                value: t.to_string(),
                range,
            });
        }
    }
    Ok(())
}

/// Plans a whole video: tempo and bar grid (cuts near downbeats, sections on the beat after
/// each cut), per-bar control classes and harmony. With `warp`, the video is retimed so cuts
/// land on beats.
pub fn plan_offline(
    analysis: &Analysis,
    prefs: &Preferences,
    warp: bool,
) -> Result<Plan, PlanError> {
    validate_preferences(prefs)?;
    if analysis.frames.is_empty() || analysis.duration <= 0.0 {
        return Err(PlanError::NoFrames);
    }
    let duration = analysis.duration;

    let mean_log_speed = analysis
        .frames
        .iter()
        .map(|f| absolute_speed(f.speed))
        .sum::<f32>()
        / analysis.frames.len() as f32;
    let mut target = TEMPO_CALM_BPM + (TEMPO_BUSY_BPM - TEMPO_CALM_BPM) * mean_log_speed as f64;
    if let Some(v) = analysis
        .visual_tempo_bpm
        .filter(|v| v.is_finite() && *v > 0.0)
    {
        let mut v = v;
        while v < TEMPO_MIN_BPM {
            v *= 2.0;
        }
        while v > TEMPO_MAX_BPM {
            v /= 2.0;
        }
        target = (1.0 - VISUAL_TEMPO_WEIGHT) * target + VISUAL_TEMPO_WEIGHT * v;
    }
    if let Some(e) = prefs.energy {
        target += (TEMPO_BUSY_BPM - TEMPO_CALM_BPM) * 0.5 * (e as f64 - 0.5);
    }
    let target = target.clamp(TEMPO_MIN_BPM, TEMPO_MAX_BPM);

    let mut transitions = analysis.transitions.clone();
    transitions.sort_by(|a, b| a.t.total_cmp(&b.t));
    let cuts_in: Vec<grid::CutIn> = transitions
        .iter()
        .map(|t| grid::CutIn {
            t: t.t,
            anchor: t.kind == TransitionKind::Cut || t.confidence >= WARP_ANCHOR_MIN_CONFIDENCE,
        })
        .collect();
    let g = grid::choose_grid(
        duration,
        &cuts_in,
        target,
        prefs.tempo,
        warp.then_some(analysis.fps),
    );
    let beat = g.beat_seconds();
    let out_duration = g.duration;

    // Bar boundaries in beats: from each section start, whole bars until the next one.
    let mut bar_starts: Vec<(i64, u8, bool)> = Vec::new(); // (start beat, beats, section start)
    let total_beats = ((out_duration - g.origin) / beat).ceil() as i64;
    for (k, &s) in g.section_beats.iter().enumerate() {
        let next = g
            .section_beats
            .get(k + 1)
            .copied()
            .unwrap_or(total_beats.max(s + 1));
        let mut b = s;
        while b < next {
            let len = (next - b).min(BEATS_PER_BAR as i64);
            // The last bar of the piece is always a whole bar (the renderer fades it out).
            let len = if k + 1 == g.section_beats.len() {
                BEATS_PER_BAR as i64
            } else {
                len
            };
            bar_starts.push((b, len as u8, b == s));
            b += len;
        }
    }

    // Per-bar motion features (frames mapped onto the output timeline).
    let frame_out: Vec<f64> = analysis
        .frames
        .iter()
        .map(|f| g.time_map.to_output(f.t))
        .collect();
    let mut speeds = Vec::with_capacity(bar_starts.len());
    let mut sals = Vec::with_capacity(bar_starts.len());
    // Frames come in time order and the time map is monotonic, so each bar's frames are one
    // contiguous run found by binary search (long videos have hundreds of thousands of frames).
    for &(b, len, _) in &bar_starts {
        let (s, e) = (g.beat_time(b), g.beat_time(b + len as i64));
        let lo = frame_out.partition_point(|&t| t < s);
        let hi = frame_out.partition_point(|&t| t < e);
        let (mut sp, mut sa, mut n) = (0.0f32, 0.0f32, 0u32);
        for f in &analysis.frames[lo..hi.max(lo)] {
            sp += f.motion_speed();
            sa += f.saliency;
            n += 1;
        }
        if n == 0 {
            // No frame in this bar (past the end or a very low frame rate): the nearest frame.
            let mid = (s + e) / 2.0;
            let k = frame_out.partition_point(|&t| t < mid);
            let i = match k {
                0 => 0,
                k if k >= frame_out.len() => frame_out.len() - 1,
                k if (frame_out[k] - mid).abs() < (mid - frame_out[k - 1]).abs() => k,
                k => k - 1,
            };
            sp = analysis.frames[i].motion_speed();
            sa = analysis.frames[i].saliency;
            n = 1;
        }
        speeds.push(sp / n as f32);
        sals.push(sa / n as f32);
    }
    let speed_rank = ranks(&speeds);
    let sal_rank = ranks(&sals);
    let shift = prefs
        .energy
        .map(|e| (e - 0.5) * 2.0 * ENERGY_PREFERENCE_SHIFT)
        .unwrap_or(0.0);

    // Harmony: one progression per section, major or minor after the mood, never the same twice in a row.
    let mut rng = ChaCha8Rng::seed_from_u64(prefs.seed ^ 0x706c_616e);
    let pool: Vec<usize> = (0..PROGRESSIONS.len())
        .filter(|&i| match prefs.mood {
            Some(Mood::Happy) | Some(Mood::Calm) => PROGRESSIONS[i].key.mode == Mode::Major,
            Some(Mood::Dark) | Some(Mood::Epic) => PROGRESSIONS[i].key.mode == Mode::Minor,
            None => true,
        })
        .collect();
    let mut bars = Vec::with_capacity(bar_starts.len());
    let mut section = 0u32;
    let mut prog = pool[rng.random_range(0..pool.len())];
    let mut bar_in_section = 0usize;
    for (i, &(b, len, sec_start)) in bar_starts.iter().enumerate() {
        if sec_start && i > 0 {
            section += 1;
            bar_in_section = 0;
            if pool.len() > 1 {
                let prev = prog;
                while prog == prev {
                    prog = pool[rng.random_range(0..pool.len())];
                }
            }
        }
        let u_speed = (ABSOLUTE_WEIGHT * absolute_speed(speeds[i])
            + (1.0 - ABSOLUTE_WEIGHT) * speed_rank[i]
            + shift)
            .clamp(0.0, 1.0);
        let u_sal = (ABSOLUTE_WEIGHT * absolute_saliency(sals[i])
            + (1.0 - ABSOLUTE_WEIGHT) * sal_rank[i]
            + shift)
            .clamp(0.0, 1.0);
        let start = g.beat_time(b);
        bars.push(BarPlan {
            index: i as u32,
            start,
            end: start + len as f64 * beat,
            tempo_bpm: g.tempo_bpm,
            beats: len,
            speed: speeds[i],
            saliency: sals[i],
            density_class: (to_class(u_speed, DENSITY_CLASSES) as i16 + prefs.density_offset as i16)
                .clamp(0, DENSITY_CLASSES as i16 - 1) as u8,
            strength_class: to_class(u_sal, STRENGTH_CLASSES),
            energy: (0.65 * u_speed + 0.35 * u_sal).clamp(0.0, 1.0),
            section_start: sec_start,
            section,
            chord: PROGRESSIONS[prog].chords[bar_in_section % PROGRESSIONS[prog].chords.len()],
            prefs: prefs.clone(),
        });
        bar_in_section += 1;
    }

    let beats: Vec<f64> = (0..total_beats)
        .map(|k| g.beat_time(k))
        .filter(|&t| t < out_duration)
        .collect();
    let downbeats: Vec<f64> = bars
        .iter()
        .map(|b| b.start)
        .filter(|&t| t < out_duration)
        .collect();
    let cuts = transitions
        .iter()
        .zip(&g.cut_sections)
        .map(|(tr, sec)| PlannedCut {
            t: g.time_map.to_output(tr.t),
            t_input: tr.t,
            kind: tr.kind,
            confidence: tr.confidence,
            section_bar: sec
                .and_then(|sb| bar_starts.iter().position(|&(b, _, _)| b == sb))
                .map(|i| i as u32),
        })
        .collect();
    let warps = if warp {
        g.time_map.segments.clone()
    } else {
        Vec::new()
    };
    Ok(Plan {
        tempo_bpm: g.tempo_bpm,
        pickup_sixteenths: g.pickup_sixteenths,
        duration: out_duration,
        bars,
        beats,
        downbeats,
        cuts,
        warps,
        time_map: g.time_map,
    })
}

/// Calibrated 0..=1 position of a speed on a log scale between still and wild.
fn absolute_speed(s: f32) -> f32 {
    let s = s.max(SPEED_CALM * 0.1);
    ((s.ln() - SPEED_CALM.ln()) / (SPEED_WILD.ln() - SPEED_CALM.ln())).clamp(0.0, 1.0)
}

fn absolute_saliency(s: f32) -> f32 {
    ((s - SALIENCY_LOW) / (SALIENCY_HIGH - SALIENCY_LOW)).clamp(0.0, 1.0)
}

/// Fractional ranks 0..=1 (ties share their mean rank); 0.5 for a single value.
fn ranks(v: &[f32]) -> Vec<f32> {
    let n = v.len();
    if n <= 1 {
        return vec![0.5; n];
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0f32; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f32 / 2.0 / (n - 1) as f32;
        for k in i..=j {
            r[idx[k]] = mean;
        }
        i = j + 1;
    }
    r
}

/// Maps 0..=1 onto `0..classes`.
fn to_class(u: f32, classes: u8) -> u8 {
    ((u * classes as f32).floor() as i32).clamp(0, classes as i32 - 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{FeatureFrame, Transition};

    /// A synthetic analysis isolating the planner: speed ramps up, saliency down, two cuts.
    fn analysis() -> Analysis {
        let fps = 25.0;
        let n = 25 * 30;
        let frames = (0..n)
            .map(|i| {
                let x = i as f32 / n as f32;
                FeatureFrame {
                    t: i as f64 / fps,
                    speed: 0.003 + 0.3 * x * x,
                    saliency: 0.9 - 0.8 * x,
                    transition: 0.0,
                    impact: 0.0,
                    light: 0.0,
                }
            })
            .collect();
        let cut = |t| Transition {
            t,
            end: t,
            kind: TransitionKind::Cut,
            confidence: 1.0,
        };
        Analysis {
            duration: n as f64 / fps,
            fps,
            width: 640,
            height: 360,
            frames,
            transitions: vec![cut(7.3), cut(18.9)],
            visual_beats: vec![],
            visual_tempo_bpm: None,
            video_codec: None,
        }
    }

    #[test]
    fn classes_follow_speed_and_saliency() {
        let p = plan_offline(&analysis(), &Preferences::default(), false).unwrap();
        let d: Vec<u8> = p.bars.iter().map(|b| b.density_class).collect();
        let s: Vec<u8> = p.bars.iter().map(|b| b.strength_class).collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
        assert!(s.windows(2).all(|w| w[0] >= w[1]), "{s:?}");
        assert!(
            d[0] <= 1 && *d.last().unwrap() >= DENSITY_CLASSES - 2,
            "{d:?}"
        );
    }

    #[test]
    fn bar_speed_discounts_frames_inside_a_transition() {
        // The same motion everywhere, but the frames of the second bar's span are a dissolve:
        // its speed reads as (almost) no motion, the others as the motion.
        let mut a = analysis();
        for f in &mut a.frames {
            f.speed = 0.1;
        }
        let p0 = plan_offline(&a, &Preferences::default(), false).unwrap();
        let (s, e) = (p0.bars[1].start, p0.bars[1].end);
        for f in a.frames.iter_mut().filter(|f| f.t >= s && f.t < e) {
            f.transition = 0.9;
        }
        let p = plan_offline(&a, &Preferences::default(), false).unwrap();
        assert!((p.bars[1].speed - 0.01).abs() < 1e-4, "{}", p.bars[1].speed);
        assert!((p.bars[0].speed - 0.1).abs() < 1e-4, "{}", p.bars[0].speed);
        // A pulsing light in the third bar: frames whose brightness moves by a sixth of their
        // contrast count half their flow, by a third or more none of it.
        let (s, e) = (p0.bars[2].start, p0.bars[2].end);
        for (k, f) in a
            .frames
            .iter_mut()
            .filter(|f| f.t >= s && f.t < e)
            .enumerate()
        {
            f.light = if k % 2 == 0 { 1.0 / 6.0 } else { 0.5 };
        }
        let p = plan_offline(&a, &Preferences::default(), false).unwrap();
        assert!(
            (p.bars[2].speed - 0.025).abs() < 2e-3,
            "{}",
            p.bars[2].speed
        );
        assert!((p.bars[3].speed - 0.1).abs() < 1e-4, "{}", p.bars[3].speed);
    }

    #[test]
    fn sections_start_right_after_cuts_and_bars_tile_the_timeline() {
        let p = plan_offline(&analysis(), &Preferences::default(), false).unwrap();
        let beat = 60.0 / p.tempo_bpm;
        for c in &p.cuts {
            let bar = &p.bars[c.section_bar.unwrap() as usize];
            assert!(bar.section_start);
            assert!(
                bar.start - c.t > -0.05 && bar.start - c.t < beat,
                "cut {} bar {}",
                c.t,
                bar.start
            );
        }
        for w in p.bars.windows(2) {
            assert!((w[0].end - w[1].start).abs() < 1e-9);
        }
        assert!(p.bars.last().unwrap().end >= p.duration);
        assert!(p.bars.iter().all(|b| b.chord
            == PROGRESSIONS
                .iter()
                .flat_map(|p| p.chords)
                .find(|c| *c == b.chord)
                .unwrap()));
    }

    #[test]
    fn same_seed_same_plan_and_bad_preferences_are_named() {
        let prefs = Preferences {
            seed: 7,
            ..Default::default()
        };
        assert_eq!(
            plan_offline(&analysis(), &prefs, true).unwrap(),
            plan_offline(&analysis(), &prefs, true).unwrap()
        );
        let bad = Preferences {
            energy: Some(1.5),
            ..Default::default()
        };
        let msg = plan_offline(&analysis(), &bad, false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("energy") && msg.contains("0.0..=1.0"), "{msg}");
    }
}
