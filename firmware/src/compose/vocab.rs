//! The note model's compound-word vocabulary, mirrored from `tools/train/notes/tokens.py`
//! (the training side is the source of truth; `model.json` next to the model repeats the
//! field sizes and [`super::model::NoteModel::load`] checks them against these constants).
//!
//! A bar is `BAR (POS NOTE+)*`: BAR opens the bar, POS (a 16th-note position 0..15) opens an
//! onset, NOTEs start there. Every token carries the bar's controls (density, strength,
//! section flag, chord, the next bar's section flag, bars since the section started), the
//! current position and the number of notes already in the bar.

use crate::music::{Chord, ChordQuality, STRENGTH_CLASSES, TICKS_PER_BEAT};

/// Fields of one compound token, in the order of the model's `token` input.
pub const F_TYPE: usize = 0;
pub const F_POS: usize = 1;
pub const F_DENS: usize = 2;
pub const F_STR: usize = 3;
pub const F_SEC: usize = 4;
pub const F_CHORD: usize = 5;
pub const F_PITCH: usize = 6;
pub const F_DUR: usize = 7;
pub const F_NSTR: usize = 8;
pub const F_TRACK: usize = 9;
pub const F_COUNT: usize = 10;
/// 1 when the next bar starts a section (or this is the piece's last bar): the bar may cadence.
pub const F_NEXT: usize = 11;
/// Bars since the current section started, saturating at [`SECTION_BAR_MAX`].
pub const F_SBAR: usize = 12;
pub const N_FIELDS: usize = 13;

/// Input vocabulary size of each field (the embedding tables), as in `tokens.FIELD_SIZES`.
pub const FIELD_SIZES: [usize; N_FIELDS] = [4, 17, 8, 4, 2, 48, 129, 33, 5, 5, 32, 2, 8];

/// Token families (field `F_TYPE`).
pub const T_BAR: i64 = 0;
pub const T_POS: i64 = 1;
pub const T_NOTE: i64 = 2;
/// Families the model predicts (BAR, POS, NOTE).
pub const N_FAMILIES: usize = 3;

/// 16th-note positions in a 4/4 bar.
pub const STEPS_PER_BAR: usize = 16;
/// Ticks per 16th note.
pub const TICKS_PER_STEP: u32 = TICKS_PER_BEAT / 4;
pub const N_PITCH: usize = 128;
/// Longest note, in 16ths (two bars).
pub const MAX_DUR16: usize = 32;
pub const NOTE_STRENGTH_CLASSES: usize = 4;
pub const N_TRACKS: usize = 4;
/// The notes-so-far field saturates here.
pub const MAX_COUNT: i64 = 31;
/// The bars-since-section-start field saturates here (as `tokens.SECTION_BAR_MAX`: the corpus'
/// sections are mostly 2, 4 or 8 bars long; longer ones read as "deep in a section").
pub const SECTION_BAR_MAX: i64 = 7;

/// "Not applicable" values of the note fields.
pub const NONE_POS: i64 = STEPS_PER_BAR as i64;
pub const NONE_PITCH: i64 = N_PITCH as i64;
pub const NONE_DUR: i64 = MAX_DUR16 as i64;
pub const NONE_NSTR: i64 = NOTE_STRENGTH_CLASSES as i64;
pub const NONE_TRACK: i64 = N_TRACKS as i64;

/// One compound token.
pub type Token = [i64; N_FIELDS];

/// Chord id 0..48 used by the model: root * 4 + quality.
pub fn chord_id(chord: &Chord) -> i64 {
    let q = match chord.quality {
        ChordQuality::Major => 0,
        ChordQuality::Minor => 1,
        ChordQuality::Diminished => 2,
        ChordQuality::Dominant7 => 3,
    };
    i64::from(chord.root % 12) * 4 + q
}

/// MIDI velocity of a note from its bar's strength class and its own strength token.
///
/// The bar class sets the level (each class [`VELOCITY_CLASS_STEP`] louder than the one below),
/// the note's strength (accent, length, simultaneity) shapes the bar inside a smaller range, so
/// the per-bar mean velocity grows monotonically with the requested class whatever notes the
/// model chose.
pub fn velocity(bar_strength: u8, note_strength: u8) -> u8 {
    let level =
        VELOCITY_SOFTEST + VELOCITY_CLASS_STEP * u32::from(bar_strength.min(STRENGTH_CLASSES - 1));
    let accent = VELOCITY_NOTE_STEP * u32::from(note_strength.min(NOTE_STRENGTH_CLASSES as u8 - 1));
    (level + accent).clamp(1, 127) as u8
}

/// Velocity of a weak note in the softest bar class: quiet but clearly audible over a template.
const VELOCITY_SOFTEST: u32 = 40;
/// Velocity added per bar strength class: 18 MIDI steps is a clear dynamic step (about p → mp).
const VELOCITY_CLASS_STEP: u32 = 18;
/// Velocity added per note-strength class inside a bar: accents stay smaller than a class step.
const VELOCITY_NOTE_STEP: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velocity_grows_with_the_bar_class_for_every_note_strength() {
        for ns in 0..NOTE_STRENGTH_CLASSES as u8 {
            for s in 1..STRENGTH_CLASSES {
                assert!(
                    velocity(s, 0) > velocity(s - 1, ns),
                    "class {s} weakest note vs class {} note {ns}",
                    s - 1
                );
            }
        }
        assert_eq!(velocity(STRENGTH_CLASSES - 1, 3), 40 + 54 + 15);
    }

    #[test]
    fn chord_ids_match_the_training_side() {
        let am = Chord {
            root: 9,
            quality: ChordQuality::Minor,
        };
        assert_eq!(chord_id(&am), 37);
        let e7 = Chord {
            root: 4,
            quality: ChordQuality::Dominant7,
        };
        assert_eq!(chord_id(&e7), 19);
    }
}
