//! The musical vocabulary every stage shares: time grid, notes, chords, keys and
//! the user's style preferences. Stages exchange these types; none of them owns it.

use serde::{Deserialize, Serialize};

/// MIDI ticks per quarter-note beat, used for every note time inside the engine
/// and in the MIDI files it writes (480 is what most DAWs default to).
pub const TICKS_PER_BEAT: u32 = 480;

/// Beats per bar. The product plays in 4/4: it is what background music for
/// streams and venues is in, and it keeps the bar grid simple to align with cuts.
pub const BEATS_PER_BAR: u32 = 4;

/// Ticks in one bar.
pub const TICKS_PER_BAR: u32 = TICKS_PER_BEAT * BEATS_PER_BAR;

/// Output sample rate of every audio path (files and ALSA).
pub const SAMPLE_RATE: u32 = 48_000;

/// Output channel count (interleaved stereo).
pub const CHANNELS: u16 = 2;

/// Number of note-density classes the note model is conditioned on (0 = sparsest).
pub const DENSITY_CLASSES: u8 = 8;

/// Number of note-strength classes the note model is conditioned on (0 = softest).
pub const STRENGTH_CLASSES: u8 = 4;

/// One note inside a bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Onset in ticks from the start of the bar.
    pub start: u32,
    /// Length in ticks.
    pub duration: u32,
    /// MIDI pitch.
    pub pitch: u8,
    /// MIDI velocity 1..=127.
    pub velocity: u8,
    /// Voice: 0 = melody, 1.. = accompanying voices the model wrote.
    pub track: u8,
}

/// Chord quality; the vocabulary shared by the note model's harmony control,
/// the planner's progressions and the template index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChordQuality {
    Major,
    Minor,
    Diminished,
    Dominant7,
}

/// A chord: root pitch class (0 = C) and quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chord {
    pub root: u8,
    pub quality: ChordQuality,
}

impl Chord {
    /// Pitch classes of the chord's tones (root first).
    pub fn pitch_classes(&self) -> Vec<u8> {
        let ivs: &[u8] = match self.quality {
            ChordQuality::Major => &[0, 4, 7],
            ChordQuality::Minor => &[0, 3, 7],
            ChordQuality::Diminished => &[0, 3, 6],
            ChordQuality::Dominant7 => &[0, 4, 7, 10],
        };
        ivs.iter().map(|i| (self.root + i) % 12).collect()
    }

    /// Short name such as `C`, `Am`, `Bdim`, `G7`.
    pub fn name(&self) -> String {
        const NAMES: [&str; 12] = [
            "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
        ];
        let suffix = match self.quality {
            ChordQuality::Major => "",
            ChordQuality::Minor => "m",
            ChordQuality::Diminished => "dim",
            ChordQuality::Dominant7 => "7",
        };
        format!("{}{}", NAMES[(self.root % 12) as usize], suffix)
    }
}

/// Mode of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Major,
    Minor,
}

/// A key: tonic pitch class and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub tonic: u8,
    pub mode: Mode,
}

impl Key {
    /// Pitch classes of the key's scale (natural minor for minor keys).
    pub fn scale(&self) -> [u8; 7] {
        let ivs = match self.mode {
            Mode::Major => [0, 2, 4, 5, 7, 9, 11],
            Mode::Minor => [0, 2, 3, 5, 7, 8, 10],
        };
        ivs.map(|i| (self.tonic + i) % 12)
    }
}

/// The notes the note model wrote for one bar, with the harmony it was asked to fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteSet {
    /// Bar index on the output timeline.
    pub bar: u32,
    /// The chord the notes were asked to fit.
    pub chord: Chord,
    pub notes: Vec<Note>,
}

/// Musical genres (template styles) a user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Genre {
    Lofi,
    Pop,
    Ambient,
    Cinematic,
    Acoustic,
}

/// Moods a user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mood {
    Happy,
    Calm,
    Dark,
    Epic,
}

/// Lead instrument families for the melody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Instrument {
    Piano,
    Guitar,
    Strings,
    Synth,
    Flute,
}

/// What the user asked for. Every `Some` wins over what the notes imply (the patent:
/// the user's wish overrides the music features).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    pub genre: Option<Genre>,
    pub mood: Option<Mood>,
    /// Overall energy 0.0 (calm) ..= 1.0 (intense); shifts intensity layers and density.
    pub energy: Option<f32>,
    pub instrument: Option<Instrument>,
    /// Fixed tempo in BPM instead of the one derived from the video.
    pub tempo: Option<f64>,
    /// Seed for every random choice; same seed + same input = same output.
    pub seed: u64,
    /// Refinement "simpler"/"busier": shifts every bar's density class by this many classes.
    #[serde(default)]
    pub density_offset: i8,
    /// Refinement "new melody": a different melody for the same plan and style.
    #[serde(default)]
    pub melody_variation: u32,
}

/// Bars in one chord progression; sections loop their progression from its first bar.
pub const PROGRESSION_BARS: usize = 4;

/// A chord progression the planner can choose and every template is recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progression {
    /// Stable id used in the template index (e.g. `"I-V-vi-IV"`).
    pub id: &'static str,
    pub key: Key,
    pub chords: [Chord; PROGRESSION_BARS],
}

const fn ch(root: u8, quality: ChordQuality) -> Chord {
    Chord { root, quality }
}
const C_MAJOR: Key = Key {
    tonic: 0,
    mode: Mode::Major,
};
const A_MINOR: Key = Key {
    tonic: 9,
    mode: Mode::Minor,
};
use ChordQuality::{Dominant7 as Dom7, Major as Maj, Minor as Min};

/// The progressions shared by the planner, the note model's harmony control and the
/// template library (`tools/templates/` renders every style in each of them).
/// Major ones are in C major, minor ones in A minor; the renderer transposes.
pub const PROGRESSIONS: [Progression; 5] = [
    Progression {
        id: "I-V-vi-IV",
        key: C_MAJOR,
        chords: [ch(0, Maj), ch(7, Maj), ch(9, Min), ch(5, Maj)],
    },
    Progression {
        id: "I-vi-IV-V",
        key: C_MAJOR,
        chords: [ch(0, Maj), ch(9, Min), ch(5, Maj), ch(7, Maj)],
    },
    Progression {
        id: "IV-I-V-vi",
        key: C_MAJOR,
        chords: [ch(5, Maj), ch(0, Maj), ch(7, Maj), ch(9, Min)],
    },
    Progression {
        id: "i-VI-III-VII",
        key: A_MINOR,
        chords: [ch(9, Min), ch(5, Maj), ch(0, Maj), ch(7, Maj)],
    },
    Progression {
        id: "i-iv-VII-V7",
        key: A_MINOR,
        chords: [ch(9, Min), ch(2, Min), ch(7, Maj), ch(4, Dom7)],
    },
];
