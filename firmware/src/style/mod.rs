//! `style` stage: the vector model. Turns a segment's notes into music features
//! (key and mode, meter, energy, bar structure, instrument family) in the form the
//! template index shares; the user's preferences override what the notes imply.
//!
//! Key and mode come from key profiles learned from the `K:` labels of real tunes
//! (`key_profiles.json`), correlated with the segment's duration-weighted pitch-class
//! histogram. Energy mixes the planned
//! arrangement energy with the notes' density and velocity; mood follows mode and
//! energy; genre is the style whose prototype (energy, mood) is nearest. Every
//! preference the user set wins over the derived value.

use serde::{Deserialize, Serialize};

use crate::music::{Genre, Instrument, Key, Mode, Mood, NoteSet, BEATS_PER_BAR};
use crate::plan::BarPlan;

/// Key profiles learned from real labels (`tools/templates/learn_key_profiles.py`: the
/// `K:` fields of the 2,001 tunes of O'Neill's 1850 collection; held-out key accuracy
/// 91.3 %, against 87.5 % for the Krumhansl–Kessler probe-tone profiles).
const KEY_PROFILES_JSON: &str = include_str!("key_profiles.json");

#[derive(Deserialize)]
struct KeyProfiles {
    major: [f64; 12],
    minor: [f64; 12],
}

fn key_profiles() -> &'static KeyProfiles {
    static P: std::sync::OnceLock<KeyProfiles> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        serde_json::from_str(KEY_PROFILES_JSON)
            .expect("style/key_profiles.json is valid (compiled in)")
    })
}

/// Notes per bar that counts as "full" density (16ths throughout a 4/4 bar).
const FULL_DENSITY: f32 = 16.0;

/// Weights of the energy estimate: the planner's arrangement energy (from motion) leads,
/// the notes' density and loudness refine it.
const W_PLAN: f32 = 0.5;
const W_DENSITY: f32 = 0.25;
const W_VELOCITY: f32 = 0.25;

/// Energy above which a segment reads as lively (happy / epic rather than calm / dark).
const LIVELY_ENERGY: f32 = 0.5;

/// Prototype (energy, mood) of each genre: where its templates sit.
const GENRE_PROTOTYPES: [(Genre, f32, Mood); 5] = [
    (Genre::Ambient, 0.15, Mood::Calm),
    (Genre::Lofi, 0.35, Mood::Calm),
    (Genre::Acoustic, 0.45, Mood::Happy),
    (Genre::Pop, 0.65, Mood::Happy),
    (Genre::Cinematic, 0.65, Mood::Epic),
];

/// Extra distance when a genre's prototype mood differs from the segment's mood.
const MOOD_MISMATCH: f32 = 0.3;

/// The style of one segment (a section), as template selection reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StyleVector {
    pub genre: Genre,
    pub mood: Mood,
    /// 0 (calm) ..= 1 (intense).
    pub energy: f32,
    /// Estimated key of the notes.
    pub key: Key,
    /// Correlation of the best key profile, -1..=1 (how tonal the segment is).
    pub key_confidence: f32,
    /// Meter as (beats per bar, beat unit); the engine plays 4/4.
    pub meter: (u8, u8),
    /// Lead instrument family for the melody.
    pub instrument: Instrument,
    /// Mean notes per bar (all voices).
    pub density: f32,
    /// Mean MIDI pitch of the melody voice (track 0), duration-weighted.
    pub register: f32,
    /// Mean MIDI velocity.
    pub velocity: f32,
    /// Mean planned tempo, BPM.
    pub tempo_bpm: f64,
    /// First bar index and number of bars of the segment.
    pub first_bar: u32,
    pub bars: u32,
    /// Names of the fields a user preference set (and so overrode the notes).
    pub from_prefs: Vec<String>,
}

/// Key estimate of a pitch-class histogram: best key and its correlation.
pub fn estimate_key(hist: &[f64; 12]) -> (Key, f32) {
    let mut best = (
        Key {
            tonic: 0,
            mode: Mode::Major,
        },
        f64::NEG_INFINITY,
    );
    if hist.iter().sum::<f64>() <= 0.0 {
        return (best.0, 0.0);
    }
    let profiles = key_profiles();
    for (mode, prof) in [
        (Mode::Major, &profiles.major),
        (Mode::Minor, &profiles.minor),
    ] {
        for tonic in 0..12u8 {
            let rotated: Vec<f64> = (0..12)
                .map(|pc| prof[(pc + 12 - tonic as usize) % 12])
                .collect();
            let r = pearson(hist, &rotated);
            if r > best.1 {
                best = (Key { tonic, mode }, r);
            }
        }
    }
    (best.0, best.1 as f32)
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// Default lead instrument of each genre.
pub fn default_instrument(g: Genre) -> Instrument {
    match g {
        Genre::Lofi => Instrument::Piano,
        Genre::Pop => Instrument::Synth,
        Genre::Ambient => Instrument::Flute,
        Genre::Cinematic => Instrument::Strings,
        Genre::Acoustic => Instrument::Guitar,
    }
}

/// The style vector of one segment: `notes` and `bars` of the same section (bars in
/// order; notes may be fewer than bars). Preferences are read from the first bar.
pub fn style_of(notes: &[NoteSet], bars: &[BarPlan]) -> StyleVector {
    let mut hist = [0.0f64; 12];
    let (mut n_notes, mut vel_sum) = (0usize, 0.0f64);
    let (mut reg_w, mut reg_sum) = (0.0f64, 0.0f64);
    for set in notes {
        for n in &set.notes {
            hist[(n.pitch % 12) as usize] += n.duration.max(1) as f64;
            n_notes += 1;
            vel_sum += n.velocity as f64;
            if n.track == 0 {
                reg_w += n.duration.max(1) as f64;
                reg_sum += n.pitch as f64 * n.duration.max(1) as f64;
            }
        }
    }
    let bar_count = bars.len().max(notes.len()).max(1);
    let density = n_notes as f32 / bar_count as f32;
    let velocity = if n_notes > 0 {
        (vel_sum / n_notes as f64) as f32
    } else {
        64.0
    };
    let register = if reg_w > 0.0 {
        (reg_sum / reg_w) as f32
    } else {
        72.0
    };
    let (key, key_confidence) = if n_notes > 0 {
        estimate_key(&hist)
    } else {
        // No notes: the key of the planned chords (the progressions are in C or A minor).
        let minor = bars.first().is_some_and(|b| {
            b.chord.quality == crate::music::ChordQuality::Minor && b.chord.root == 9
        });
        (
            if minor {
                Key {
                    tonic: 9,
                    mode: Mode::Minor,
                }
            } else {
                Key {
                    tonic: 0,
                    mode: Mode::Major,
                }
            },
            0.0,
        )
    };
    let plan_energy = if bars.is_empty() {
        0.5
    } else {
        bars.iter().map(|b| b.energy).sum::<f32>() / bars.len() as f32
    };
    let tempo_bpm = if bars.is_empty() {
        0.0
    } else {
        bars.iter().map(|b| b.tempo_bpm).sum::<f64>() / bars.len() as f64
    };
    let derived_energy = (W_PLAN * plan_energy
        + W_DENSITY * (density / FULL_DENSITY).min(1.0)
        + W_VELOCITY * (velocity / 127.0))
        .clamp(0.0, 1.0);

    let prefs = bars.first().map(|b| b.prefs.clone()).unwrap_or_default();
    let mut from_prefs = Vec::new();
    let energy = match prefs.energy {
        Some(e) => {
            from_prefs.push("energy".to_string());
            e.clamp(0.0, 1.0)
        }
        None => derived_energy,
    };
    let lively = energy >= LIVELY_ENERGY;
    let mood = match prefs.mood {
        Some(m) => {
            from_prefs.push("mood".to_string());
            m
        }
        None => match (key.mode, lively) {
            (Mode::Major, true) => Mood::Happy,
            (Mode::Major, false) => Mood::Calm,
            (Mode::Minor, true) => Mood::Epic,
            (Mode::Minor, false) => Mood::Dark,
        },
    };
    let genre = match prefs.genre {
        Some(g) => {
            from_prefs.push("genre".to_string());
            g
        }
        None => nearest_genre(energy, mood),
    };
    let instrument = match prefs.instrument {
        Some(i) => {
            from_prefs.push("instrument".to_string());
            i
        }
        None => default_instrument(genre),
    };
    StyleVector {
        genre,
        mood,
        energy,
        key,
        key_confidence,
        meter: (BEATS_PER_BAR as u8, 4),
        instrument,
        density,
        register,
        velocity,
        tempo_bpm,
        first_bar: bars
            .first()
            .map(|b| b.index)
            .or(notes.first().map(|n| n.bar))
            .unwrap_or(0),
        bars: bar_count as u32,
        from_prefs,
    }
}

/// The genre whose prototype is nearest (energy distance + mood mismatch).
pub fn nearest_genre(energy: f32, mood: Mood) -> Genre {
    let dark_like = |m: Mood| matches!(m, Mood::Dark | Mood::Epic);
    GENRE_PROTOTYPES
        .iter()
        .map(|&(g, e, m)| {
            let mismatch = if m == mood {
                0.0
            } else if dark_like(m) == dark_like(mood) {
                MOOD_MISMATCH / 2.0
            } else {
                MOOD_MISMATCH
            };
            (g, (energy - e).abs() + mismatch)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(g, _)| g)
        .unwrap_or(Genre::Lofi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::{Chord, ChordQuality, Note, Preferences};

    fn bar(index: u32, energy: f32, prefs: Preferences) -> BarPlan {
        BarPlan {
            index,
            start: index as f64 * 2.0,
            end: index as f64 * 2.0 + 2.0,
            tempo_bpm: 120.0,
            beats: 4,
            speed: 0.1,
            saliency: 0.5,
            density_class: 3,
            strength_class: 2,
            energy,
            section_start: index == 0,
            section: 0,
            chord: Chord {
                root: 0,
                quality: ChordQuality::Major,
            },
            prefs,
        }
    }

    fn scale_notes(bar: u32, pcs: &[u8], base: u8) -> NoteSet {
        NoteSet {
            bar,
            chord: Chord {
                root: 0,
                quality: ChordQuality::Major,
            },
            notes: pcs
                .iter()
                .enumerate()
                .map(|(i, pc)| Note {
                    start: i as u32 * 240,
                    duration: 240,
                    pitch: base + pc,
                    velocity: 80,
                    track: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn finds_g_major_and_a_minor() {
        // G major scale with tonic weight (G B D on beats).
        let g = [7u8, 11, 2, 7, 9, 11, 0, 6, 7, 2];
        let sv = style_of(
            &[scale_notes(0, &g, 60)],
            &[bar(0, 0.5, Preferences::default())],
        );
        assert_eq!(
            sv.key,
            Key {
                tonic: 7,
                mode: Mode::Major
            }
        );
        let a = [9u8, 0, 4, 9, 11, 0, 2, 4, 9, 5, 4, 9];
        let sv = style_of(
            &[scale_notes(0, &a, 60)],
            &[bar(0, 0.5, Preferences::default())],
        );
        assert_eq!(
            sv.key,
            Key {
                tonic: 9,
                mode: Mode::Minor
            }
        );
    }

    #[test]
    fn preferences_win_over_the_notes() {
        let prefs = Preferences {
            genre: Some(Genre::Cinematic),
            mood: Some(Mood::Happy),
            energy: Some(0.1),
            instrument: Some(Instrument::Flute),
            ..Default::default()
        };
        let notes = [scale_notes(
            0,
            &[0, 4, 7, 0, 4, 7, 0, 4, 7, 0, 4, 7, 0, 4, 7, 0],
            60,
        )];
        let sv = style_of(&notes, &[bar(0, 0.95, prefs)]);
        assert_eq!(
            (sv.genre, sv.mood, sv.instrument),
            (Genre::Cinematic, Mood::Happy, Instrument::Flute)
        );
        assert_eq!(sv.energy, 0.1);
        assert_eq!(sv.from_prefs.len(), 4);
        // Without preferences the same dense, loud, major bar reads lively and happy.
        let sv = style_of(&notes, &[bar(0, 0.95, Preferences::default())]);
        assert_eq!(sv.mood, Mood::Happy);
        assert!(sv.energy > 0.6, "{}", sv.energy);
        assert_eq!(sv.genre, Genre::Pop);
    }

    #[test]
    fn calm_sparse_segment_reads_ambient_or_lofi() {
        let sv = style_of(
            &[scale_notes(0, &[0, 7], 60)],
            &[bar(0, 0.05, Preferences::default())],
        );
        assert!(
            matches!(sv.genre, Genre::Ambient | Genre::Lofi),
            "{:?}",
            sv.genre
        );
        assert_eq!(sv.mood, Mood::Calm);
    }
}
