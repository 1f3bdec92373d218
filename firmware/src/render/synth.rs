//! The melody synth: `rustysynth` playing the cut FluidR3 font (`templates/melody.sf2`),
//! driven bar by bar. Notes that ring past their bar are released in a later bar, so the
//! synth's state (voices, reverb tails) runs continuously across bars and joins.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};

use super::effects::{self, Effects};
use super::RenderError;
use crate::music::{Instrument, SAMPLE_RATE};

/// General MIDI program of each lead instrument; `tools/templates/sfcut/cut.mjs` keeps
/// exactly these presets.
pub const MELODY_PROGRAMS: [(Instrument, u8); 5] = [
    (Instrument::Piano, 0),
    (Instrument::Guitar, 24),
    (Instrument::Strings, 48),
    (Instrument::Synth, 81),
    (Instrument::Flute, 73),
];

/// The program a channel plays before any program change (General MIDI's piano).
const DEFAULT_PROGRAM: u8 = 0;

/// MIDI channel of the melody voice; inner voices use the next one.
pub const MELODY_CHANNEL: i32 = 0;
const INNER_CHANNEL: i32 = 1;

/// Frames rendered per synth call: rustysynth's block is 64 frames; 512 keeps call
/// overhead small while note events stay sample-accurate (we split at events).
const CHUNK: usize = 512;

/// rustysynth's block: voices start and stop on this grid of frames from the synth's
/// start (a note-on inside a block sounds from the next one).
pub const SYNTH_BLOCK: usize = 64;

/// A ring-out ends at the first block this quiet (−120 dBFS, far under the 16-bit floor
/// even after the master's gain).
const RING_OUT_FLOOR: f32 = 1e-6;
/// Frames per ring-out block (0.1 s).
const RING_OUT_BLOCK: usize = SAMPLE_RATE as usize / 10;
/// The longest ring-out: the reverb's tail is far quieter than the floor by then.
const RING_OUT_MAX_SECONDS: f64 = 10.0;

pub fn program_of(i: Instrument) -> u8 {
    MELODY_PROGRAMS
        .iter()
        .find(|(k, _)| *k == i)
        .map(|(_, p)| *p)
        .unwrap_or(0)
}

/// A note event on the synth's own frame clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthNote {
    /// Start, in frames from the first frame of the block it is rendered in.
    pub start: u64,
    /// Length in frames.
    pub frames: u64,
    pub pitch: u8,
    pub velocity: u8,
    /// Inner voice (rendered on its own channel, softer).
    pub inner: bool,
}

pub struct MelodySynth {
    synth: Synthesizer,
    font: Arc<SoundFont>,
    /// Reverb and chorus on the synth's dry mix (rustysynth's own are off).
    effects: Effects,
    /// Absolute frame of the next sample to render.
    now: u64,
    /// (frame, channel, key) note-offs not yet sent.
    pending_off: Vec<(u64, i32, i32)>,
    program: Option<u8>,
    left: Vec<f32>,
    right: Vec<f32>,
}

/// Loads and checks a SoundFont: it must be a readable `.sf2` holding every preset of
/// [`MELODY_PROGRAMS`].
pub fn load_soundfont(path: &Path) -> Result<Arc<SoundFont>, RenderError> {
    let err = |message: String| RenderError::SoundFont {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| {
        err(format!(
            "cannot open ({e}); build it with tools/templates/build.sh"
        ))
    })?;
    let mut head = [0u8; 12];
    {
        use std::io::Read;
        let mut f = &file;
        f.read_exact(&mut head)
            .map_err(|e| err(format!("too short to be a SoundFont ({e})")))?;
    }
    if &head[0..4] != b"RIFF" || &head[8..12] != b"sfbk" {
        return Err(err("is not a SoundFont 2 (.sf2) file (RIFF/sfbk header missing; .sf3 and other formats are not supported)".into()));
    }
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open ({e})")))?;
    let font = SoundFont::new(&mut BufReader::new(file))
        .map_err(|e| err(format!("not a valid .sf2 ({e:?})")))?;
    for (inst, prog) in MELODY_PROGRAMS {
        if !font
            .get_presets()
            .iter()
            .any(|p| p.get_bank_number() == 0 && p.get_patch_number() == prog as i32)
        {
            return Err(err(format!("has no preset for {inst:?} (GM program {prog}); rebuild it with tools/templates/build.sh")));
        }
    }
    Ok(Arc::new(font))
}

impl MelodySynth {
    pub fn new(font: &Arc<SoundFont>) -> Result<Self, RenderError> {
        let mut settings = SynthesizerSettings::new(SAMPLE_RATE as i32);
        settings.block_size = SYNTH_BLOCK;
        settings.enable_reverb_and_chorus = false;
        let synth = Synthesizer::new(font, &settings).map_err(|e| RenderError::SoundFont {
            path: Default::default(),
            message: format!("synthesizer cannot start ({e:?})"),
        })?;
        let mut melody = MelodySynth {
            synth,
            font: Arc::clone(font),
            effects: Effects::new(),
            now: 0,
            pending_off: Vec::new(),
            program: None,
            left: vec![0.0; CHUNK],
            right: vec![0.0; CHUNK],
        };
        melody.send_as(DEFAULT_PROGRAM);
        Ok(melody)
    }

    /// Gives the effects what `program`'s preset sends to them.
    fn send_as(&mut self, program: u8) {
        let (reverb, chorus) = effects::sends_of(&self.font, program);
        self.effects.set_sends(reverb, chorus);
    }

    /// Selects the lead instrument (a program change on both channels) if it changed.
    pub fn set_instrument(&mut self, inst: Instrument) {
        let prog = program_of(inst);
        if self.program != Some(prog) {
            for ch in [MELODY_CHANNEL, INNER_CHANNEL] {
                self.synth.process_midi_message(ch, 0xC0, prog as i32, 0);
            }
            // Inner voices sit back in the mix (CC 7 channel volume).
            self.synth.process_midi_message(INNER_CHANNEL, 0xB0, 7, 80);
            self.send_as(prog);
            self.program = Some(prog);
        }
    }

    /// Renders the next `out.len() / 2` frames, starting the given notes (`start` counted
    /// from the first of these frames) and adding the result into `out` (interleaved stereo).
    pub fn render_add(&mut self, notes: &[SynthNote], out: &mut [f32], gain: f32) {
        let frames = (out.len() / 2) as u64;
        let end = self.now + frames;
        let t0 = self.now;
        // Events inside this block: (frame, is_on, channel, key, velocity).
        let mut events: Vec<(u64, bool, i32, i32, i32)> =
            Vec::with_capacity(notes.len() + self.pending_off.len());
        for n in notes {
            let ch = if n.inner {
                INNER_CHANNEL
            } else {
                MELODY_CHANNEL
            };
            events.push((
                t0 + n.start,
                true,
                ch,
                n.pitch as i32,
                n.velocity.clamp(1, 127) as i32,
            ));
            self.pending_off
                .push((t0 + n.start + n.frames.max(1), ch, n.pitch as i32));
        }
        self.pending_off.retain(|&(f, ch, key)| {
            if f < end {
                events.push((f, false, ch, key, 0));
                false
            } else {
                true
            }
        });
        // Offs before ons at the same frame, so a repeated pitch re-strikes.
        events.sort_by_key(|e| (e.0, e.1));
        let mut ev = events.into_iter().peekable();
        let mut pos = self.now;
        while pos < end {
            while let Some(&(f, on, ch, key, vel)) = ev.peek() {
                if f > pos {
                    break;
                }
                if on {
                    self.synth.note_on(ch, key, vel);
                } else {
                    self.synth.note_off(ch, key);
                }
                ev.next();
            }
            let next_ev = ev.peek().map(|e| e.0).unwrap_or(end);
            let n = (next_ev.min(end) - pos).min(CHUNK as u64) as usize;
            let n = n.max(1);
            self.synth.render(&mut self.left[..n], &mut self.right[..n]);
            self.effects
                .process(&mut self.left[..n], &mut self.right[..n]);
            let base = ((pos - self.now) * 2) as usize;
            for i in 0..n {
                out[base + 2 * i] += self.left[i] * gain;
                out[base + 2 * i + 1] += self.right[i] * gain;
            }
            pos += n as u64;
        }
        self.now = end;
    }

    /// Back to silence at frame 0: no voices, no reverb or chorus tail, no program.
    pub(super) fn reset(&mut self) {
        self.synth.reset();
        self.effects.reset();
        self.send_as(DEFAULT_PROGRAM);
        self.now = 0;
        self.pending_off.clear();
        self.program = None;
    }

    /// Renders `frames` frames of silence and drops them: a synth that starts at frame
    /// `f` of another one's clock first runs `f % SYNTH_BLOCK` frames, so both start
    /// their notes on the same block grid.
    pub(super) fn skip(&mut self, frames: usize) {
        let mut scratch = vec![0.0; frames * 2];
        self.render_add(&[], &mut scratch, 0.0);
    }

    /// What still sounds after the last bar played (held notes released at their ends,
    /// release envelopes, the reverb tail), rendered until a block falls below
    /// [`RING_OUT_FLOOR`] with every note released, at most [`RING_OUT_MAX_SECONDS`].
    pub(super) fn ring_out(&mut self) -> Vec<f32> {
        let block = RING_OUT_BLOCK * 2;
        let max = (RING_OUT_MAX_SECONDS * SAMPLE_RATE as f64) as usize * 2;
        let mut out = Vec::new();
        while out.len() < max {
            let at = out.len();
            out.resize(at + block, 0.0);
            self.render_add(&[], &mut out[at..], super::MELODY_GAIN);
            let quiet = out[at..].iter().all(|x| x.abs() < RING_OUT_FLOOR);
            if quiet && self.pending_off.is_empty() {
                break;
            }
        }
        tracing::debug!(
            seconds = out.len() as f64 / 2.0 / SAMPLE_RATE as f64,
            "ring-out"
        );
        out
    }

    /// Plays one bar's melody into `out` (adding to it): selects the bar's instrument,
    /// if it brings one, and starts its notes (frames from the bar's start).
    pub(super) fn play_bar(&mut self, bar: &super::MelodyBar, out: &mut [f32]) {
        if let Some(inst) = bar.instrument {
            self.set_instrument(inst);
        }
        self.render_add(&bar.notes, out, super::MELODY_GAIN);
    }
}
