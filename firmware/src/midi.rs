//! Standard MIDI File writing (format 1: a conductor track, then one track per part),
//! shared by `score` (melody + the template's chord/bass/drum parts) and `compose`.

use std::path::Path;

use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};
use thiserror::Error;

use crate::fsutil;
use crate::music::TICKS_PER_BEAT;

/// General MIDI channel reserved for drums (0-based 9 = channel 10).
pub const DRUM_CHANNEL: u8 = 9;

#[derive(Debug, Error)]
pub enum MidiError {
    #[error("cannot write MIDI file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode MIDI file {path}: {msg}")]
    Encode { path: String, msg: String },
}

/// A note on an absolute tick timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedNote {
    pub tick: u64,
    pub duration: u64,
    pub pitch: u8,
    pub velocity: u8,
}

/// One part of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct MidiTrack {
    pub name: String,
    /// 0-based MIDI channel; [`DRUM_CHANNEL`] for drums.
    pub channel: u8,
    /// General MIDI program (ignored on the drum channel).
    pub program: u8,
    pub notes: Vec<TimedNote>,
}

/// A time-signature change at `tick`: `numerator` / 2^`denominator_log2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    pub tick: u64,
    pub numerator: u8,
    pub denominator_log2: u8,
}

impl Meter {
    /// `beats` quarter notes to the bar (4/4, or 2/4 for a bar cut short).
    pub fn quarters(tick: u64, beats: u8) -> Self {
        Meter {
            tick,
            numerator: beats,
            denominator_log2: 2,
        }
    }

    /// `n` sixteenths to the bar (a pickup before the first downbeat, e.g. 3/16).
    pub fn sixteenths(tick: u64, n: u8) -> Self {
        Meter {
            tick,
            numerator: n,
            denominator_log2: 4,
        }
    }
}

/// Writes a format-1 file at [`TICKS_PER_BEAT`] with one tempo and 4/4 time, atomically.
pub fn write_midi(path: &Path, tempo_bpm: f64, tracks: &[MidiTrack]) -> Result<(), MidiError> {
    write_midi_with_meters(path, tempo_bpm, &[], tracks)
}

/// Like [`write_midi`], with meter changes, so a DAW's bar lines follow bars that were cut short
/// (a 2/4 bar before a section that starts on beat 3) and a pickup (3/16 before the first bar).
pub fn write_midi_with_meters(
    path: &Path,
    tempo_bpm: f64,
    meters: &[Meter],
    tracks: &[MidiTrack],
) -> Result<(), MidiError> {
    let bytes =
        encode_midi_with_meters(tempo_bpm, meters, tracks).map_err(|msg| MidiError::Encode {
            path: path.display().to_string(),
            msg,
        })?;
    fsutil::write_atomic(path, &bytes).map_err(|source| MidiError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Encodes the file into bytes (4/4 throughout).
pub fn encode_midi(tempo_bpm: f64, tracks: &[MidiTrack]) -> Result<Vec<u8>, String> {
    encode_midi_with_meters(tempo_bpm, &[], tracks)
}

/// Encodes the file into bytes with meter changes (see [`write_midi_with_meters`]).
pub fn encode_midi_with_meters(
    tempo_bpm: f64,
    meters: &[Meter],
    tracks: &[MidiTrack],
) -> Result<Vec<u8>, String> {
    let names: Vec<Vec<u8>> = tracks.iter().map(|t| t.name.as_bytes().to_vec()).collect();
    let mut smf = Smf::new(Header::new(
        Format::Parallel,
        Timing::Metrical(u15::new(TICKS_PER_BEAT as u16)),
    ));
    let us_per_beat = (60_000_000.0 / tempo_bpm.max(1.0)).round() as u32;
    let mut conductor = vec![
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(us_per_beat.min(0xFF_FFFF)))),
        },
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::TimeSignature(4, 2, 24, 8)),
        },
    ];
    // Meter changes in time order, 24 clocks per click. A change at tick 0 replaces the 4/4.
    let mut last = 0u64;
    let mut meters: Vec<Meter> = meters.to_vec();
    meters.sort_by_key(|m| m.tick);
    if meters.first().is_some_and(|m| m.tick == 0) {
        conductor.pop();
    }
    for m in meters {
        let tick = m.tick;
        let delta = tick.saturating_sub(last);
        if delta > u28::max_value().as_int() as u64 {
            return Err(format!(
                "meter change at tick {tick} is too far from the previous event for MIDI"
            ));
        }
        conductor.push(TrackEvent {
            delta: u28::new(delta as u32),
            kind: TrackEventKind::Meta(MetaMessage::TimeSignature(
                m.numerator.max(1),
                m.denominator_log2,
                24,
                8,
            )),
        });
        last = last.max(tick);
    }
    conductor.push(TrackEvent {
        delta: u28::new(0),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    });
    smf.tracks.push(conductor);
    for (track, name) in tracks.iter().zip(&names) {
        let ch = u4::new(track.channel.min(15));
        // (tick, order, event): note-offs sort before note-ons at the same tick.
        let mut evs: Vec<(u64, u8, MidiMessage)> = Vec::with_capacity(track.notes.len() * 2);
        for n in &track.notes {
            let key = u7::new(n.pitch.min(127));
            evs.push((
                n.tick,
                1,
                MidiMessage::NoteOn {
                    key,
                    vel: u7::new(n.velocity.clamp(1, 127)),
                },
            ));
            evs.push((
                n.tick + n.duration.max(1),
                0,
                MidiMessage::NoteOff {
                    key,
                    vel: u7::new(0),
                },
            ));
        }
        evs.sort_by_key(|e| (e.0, e.1));
        let mut out = vec![TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::TrackName(name)),
        }];
        if track.channel != DRUM_CHANNEL {
            out.push(TrackEvent {
                delta: u28::new(0),
                kind: TrackEventKind::Midi {
                    channel: ch,
                    message: MidiMessage::ProgramChange {
                        program: u7::new(track.program.min(127)),
                    },
                },
            });
        }
        let mut last = 0u64;
        for (tick, _, message) in evs {
            let delta = tick - last;
            if delta > u28::max_value().as_int() as u64 {
                return Err(format!(
                    "track {} has a gap of {delta} ticks, too long for MIDI",
                    track.name
                ));
            }
            out.push(TrackEvent {
                delta: u28::new(delta as u32),
                kind: TrackEventKind::Midi {
                    channel: ch,
                    message,
                },
            });
            last = tick;
        }
        out.push(TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
        });
        smf.tracks.push(out);
    }
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_notes_through_midly() {
        let tracks = vec![MidiTrack {
            name: "melody".into(),
            channel: 0,
            program: 0,
            notes: vec![
                TimedNote {
                    tick: 0,
                    duration: 480,
                    pitch: 60,
                    velocity: 90,
                },
                TimedNote {
                    tick: 480,
                    duration: 240,
                    pitch: 64,
                    velocity: 70,
                },
            ],
        }];
        let bytes = encode_midi(120.0, &tracks).unwrap();
        let smf = Smf::parse(&bytes).unwrap();
        assert_eq!(smf.tracks.len(), 2);
        let ons: Vec<u8> = smf.tracks[1]
            .iter()
            .filter_map(|e| match e.kind {
                TrackEventKind::Midi {
                    message: MidiMessage::NoteOn { key, .. },
                    ..
                } => Some(key.as_int()),
                _ => None,
            })
            .collect();
        assert_eq!(ons, vec![60, 64]);
    }

    #[test]
    fn meter_changes_land_on_their_ticks() {
        let sigs = |meters: &[Meter]| {
            let bytes = encode_midi_with_meters(100.0, meters, &[]).unwrap();
            let smf = Smf::parse(&bytes).unwrap();
            let mut tick = 0u64;
            let mut out = Vec::new();
            for e in &smf.tracks[0] {
                tick += e.delta.as_int() as u64;
                if let TrackEventKind::Meta(MetaMessage::TimeSignature(n, d, ..)) = e.kind {
                    out.push((tick, n, d));
                }
            }
            out
        };
        let short = [Meter::quarters(1920, 2), Meter::quarters(2880, 4)];
        assert_eq!(sigs(&short), vec![(0, 4, 2), (1920, 2, 2), (2880, 4, 2)]);
        // a 3/16 pickup, then 4/4 from the first downbeat
        let pickup = [Meter::sixteenths(0, 3), Meter::quarters(360, 4)];
        assert_eq!(sigs(&pickup), vec![(0, 3, 4), (360, 4, 2)]);
    }
}
