//! Fits the note model's notes to the chord the template plays and to the key, so the
//! melody is consonant with the backing: notes on a beat move to the nearest chord tone,
//! other notes that are off the key move to the nearest scale tone. Velocities and
//! timing are kept as they are (the per-bar dynamics follow the video's saliency).

use crate::music::{Chord, Key, Note, NoteSet, TICKS_PER_BEAT};

/// A note whose onset is this close to a beat counts as on the beat (a 32nd note at 480
/// ticks per beat): humanised or swung onsets still land on their beat.
pub const ON_BEAT_TOLERANCE: u32 = TICKS_PER_BEAT / 8;

/// Lowest and highest MIDI pitch the lead may sound at after fitting (C3..C7): below
/// it muddies the backing's bass and chords, above it the FluidR3 presets get thin.
const PITCH_MIN: i32 = 48;
const PITCH_MAX: i32 = 96;

pub fn on_beat(start: u32) -> bool {
    let r = start % TICKS_PER_BEAT;
    r <= ON_BEAT_TOLERANCE || TICKS_PER_BEAT - r <= ON_BEAT_TOLERANCE
}

/// Nearest pitch to `p` whose pitch class is in `pcs`; ties go down.
fn nearest(p: i32, pcs: &[u8]) -> i32 {
    (0..=6)
        .flat_map(|d| [p - d, p + d])
        .find(|q| pcs.contains(&(q.rem_euclid(12) as u8)))
        .unwrap_or(p)
}

/// The notes of one bar moved by `transpose` semitones, fitted to `chord` in `key`.
pub fn fit_bar(set: &NoteSet, chord: Chord, key: Key, transpose: i32) -> NoteSet {
    let scale = key.scale();
    // Chord tones outside the key (the G# of E7 in A minor) are left to the backing:
    // the melody lands on the in-key chord tones so it stays in the key.
    let mut tones: Vec<u8> = chord
        .pitch_classes()
        .into_iter()
        .filter(|pc| scale.contains(pc))
        .collect();
    if tones.is_empty() {
        tones = chord.pitch_classes();
    }
    let notes = set
        .notes
        .iter()
        .map(|n| {
            let mut p = n.pitch as i32 + transpose;
            if on_beat(n.start) {
                p = nearest(p, &tones);
            } else if !scale.contains(&(p.rem_euclid(12) as u8)) {
                p = nearest(p, &scale);
            }
            while p < PITCH_MIN {
                p += 12;
            }
            while p > PITCH_MAX {
                p -= 12;
            }
            Note {
                pitch: p as u8,
                ..*n
            }
        })
        .collect();
    NoteSet {
        bar: set.bar,
        chord,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::music::{ChordQuality, Mode};

    fn n(start: u32, pitch: u8) -> Note {
        Note {
            start,
            duration: 240,
            pitch,
            velocity: 77,
            track: 0,
        }
    }

    #[test]
    fn beats_get_chord_tones_and_offbeats_get_scale_tones() {
        let c = Chord {
            root: 0,
            quality: ChordQuality::Major,
        };
        let key = Key {
            tonic: 0,
            mode: Mode::Major,
        };
        let set = NoteSet {
            bar: 3,
            chord: c,
            notes: vec![n(0, 62), n(240, 61), n(480, 65), n(1450, 66)],
        };
        let out = fit_bar(&set, c, key, 0);
        let p: Vec<u8> = out.notes.iter().map(|n| n.pitch).collect();
        // D on beat 1 -> C (tie C/E goes down); C# off-beat -> C; F on beat 2 -> E; F# near beat 4 -> G.
        assert_eq!(p, vec![60, 60, 64, 67]);
        assert!(out.notes.iter().all(|n| n.velocity == 77));
    }

    #[test]
    fn dominant_in_minor_keeps_the_melody_in_key() {
        let e7 = Chord {
            root: 4,
            quality: ChordQuality::Dominant7,
        };
        let am = Key {
            tonic: 9,
            mode: Mode::Minor,
        };
        let set = NoteSet {
            bar: 0,
            chord: e7,
            notes: vec![n(0, 68), n(960, 67)],
        };
        let out = fit_bar(&set, e7, am, 0);
        for note in &out.notes {
            assert!(
                am.scale().contains(&(note.pitch % 12)),
                "{} out of A minor",
                note.pitch
            );
            assert!(e7.pitch_classes().contains(&(note.pitch % 12)));
        }
    }
}
