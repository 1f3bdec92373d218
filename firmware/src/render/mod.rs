//! `render` stage: picks template audio by style vector and intensity, fits it to the
//! planned tempo and key, adds the melody rendered with a SoundFont synth, joins the
//! per-segment pieces and normalises loudness.
//!
//! The core is [`Renderer::render_bar`]: one bar into a caller's buffer, with all state
//! (template player, time-stretcher, synth voices, fades) carried to the next bar, so a
//! live engine can stream bars ahead of the ALSA cursor. [`Renderer::render`] is the
//! offline loop over it, followed by the trim, fade-out and mastering.
//! See `docs/design/rendering.md`.

pub mod effects;
pub mod fit;
pub mod library;
pub mod master;
pub mod player;
pub mod stretch;
pub mod synth;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use serde::Serialize;
use thiserror::Error;

pub use library::{Library, Problem, Template, TemplateInfo};
pub use master::MasterReport;

use crate::midi::{MidiTrack, TimedNote, DRUM_CHANNEL};
use crate::music::{
    Chord, Instrument, Key, NoteSet, Progression, BEATS_PER_BAR, CHANNELS, PROGRESSIONS,
    PROGRESSION_BARS, SAMPLE_RATE, TICKS_PER_BAR, TICKS_PER_BEAT,
};
use crate::plan::BarPlan;
use crate::style::StyleVector;
use library::TemplateAudio;
use player::LoopPlayer;
use synth::{MelodySynth, SynthNote};

const CH: usize = CHANNELS as usize;

#[derive(Debug, Error)]
pub enum RenderError {
    #[error(
        "template library {dir} is not usable ({count} problem(s)); first: {first}. \
         List them all with `undertone templates check {dir}`; rebuild with tools/templates/build.sh"
    )]
    Library {
        dir: PathBuf,
        count: usize,
        first: String,
    },
    #[error("template {path}: {message}")]
    Template { path: PathBuf, message: String },
    #[error("SoundFont {path}: {message}")]
    SoundFont { path: PathBuf, message: String },
    #[error("cannot render: {0}")]
    Input(String),
}

/// The template library inside a data root (the repository or `/usr/share/undertone`).
pub fn default_library_dir(data_root: &Path) -> PathBuf {
    data_root.join("templates")
}

/// The melody SoundFont inside a data root.
pub fn default_soundfont_path(data_root: &Path) -> PathBuf {
    data_root.join("templates").join("melody.sf2")
}

/// Gain of the melody synth into the mix. rustysynth's output of a mezzo-forte lead is
/// about 6 dB below the templates (normalised to −23…−20 LUFS by layer); this puts the
/// lead on top of the backing, as in a produced track, before mastering.
const MELODY_GAIN: f32 = 1.6;

/// Pitch the melody is centred on after octave placement (C5): above the templates'
/// chord voicings (up to ~G4/C5) so the lead is not masked by them.
const MELODY_CENTER: f32 = 74.0;

/// Fade-in of a new segment: the crossfade's rising half, 30 ms on the downbeat. Shorter
/// fades (5 ms), or starting on the downbeat with the attack intact, let a join from a
/// sparse to a full layer spike the spectral flux above anything in the template material
/// (measured with tools/eval/render_metrics.py: up to 1.05 × the material's maximum with
/// the attack intact); 30 ms keeps joins inside the material's range and still lands the
/// section on the beat.
const FADE_IN_SECONDS: f64 = 0.03;

/// At a join the old segment's sound is carried this long into the new section and faded
/// out (equal-power), so the change happens on the beat without a gap or a click. The
/// carried sound is the old segment's last moments mirrored in time (continuous at the
/// join, and free of the old template's next downbeat, which would double the new one).
const JOIN_TAIL_SECONDS: f64 = 0.08;

/// The backing plays this much ahead of the grid. An onset is heard (and found by beat
/// trackers such as librosa's) a little after the note starts, while the attack builds:
/// measured on the templates, librosa's beats fell 15–28 ms after the planned beats;
/// 12 ms early puts them within a few ms to ~15 ms of it for every style. The melody
/// synth stays exactly on the grid (its lead sounds speak fast).
const TEMPLATE_ADVANCE_SECONDS: f64 = 0.012;

/// The piece ends with this fade-out when trimmed to its length.
const END_FADE_SECONDS: f64 = 1.0;

/// Key confidence (profile correlation) above which a segment whose notes are in a
/// different key than the template is transposed to the template's key.
const TRANSPOSE_CONFIDENCE: f32 = 0.75;

/// What was played in one bar (for `report.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BarRender {
    pub index: u32,
    pub template_id: String,
    pub layer: u8,
    pub progression: String,
    /// Bar of the template's progression played (0-based).
    pub progression_bar: u8,
    /// Native frames per output frame (planned tempo / template tempo); 1 = unstretched.
    pub stretch_rate: f64,
    /// A join (template change with a crossfade) happens at this bar's downbeat.
    pub join: bool,
    /// Melody semitone shift applied (key match + octave placement).
    pub transpose: i32,
    pub note_count: usize,
    pub mean_velocity: f32,
}

/// The rendered piece.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Interleaved stereo at [`SAMPLE_RATE`], exactly the requested length.
    pub pcm: Vec<f32>,
    pub bars: Vec<BarRender>,
    /// The templates' chord/bass/drum parts on the output tick timeline (a bar starts at
    /// `start × tempo / 60 × TICKS_PER_BEAT`; short bars trimmed); channel 0 is left for the melody.
    pub backing: Vec<MidiTrack>,
    /// The melody as heard: the input notes fitted to the template chords and transposed
    /// (same bars and bar-relative ticks as the input; write these to `notes.mid`).
    pub melody: Vec<NoteSet>,
    /// General MIDI program of the lead instrument of the first section.
    pub melody_program: u8,
    pub master: MasterReport,
}

/// The segment being played.
struct Segment {
    section: u32,
    first_bar: u32,
    template: Template,
    progression: &'static Progression,
    player: LoopPlayer,
    transpose: i32,
    /// The chords seen so far in this section (to re-check the progression).
    chords: Vec<Chord>,
    /// The last bar was cut short: restart the loop on the next bar's own position.
    restart: bool,
    /// [`TEMPLATE_ADVANCE_SECONDS`] in native frames at this segment's rate.
    advance: usize,
    /// How far ahead of the grid the player is now (native frames): 0 before a join,
    /// else `advance`.
    lead: usize,
    /// Fade-in of the first bar, frames (taken once).
    fade_in: Option<usize>,
}

pub struct Renderer {
    backing: Backing,
    synth: MelodySynth,
    /// A second synth for the later half of an offline piece ([`Renderer::render`]).
    second: MelodySynth,
}

/// The template side of the renderer: segments, joins and the notes each bar gives the
/// melody synth. It never touches the synth, so offline the two run on separate threads.
struct Backing {
    library: Library,
    current: Option<Segment>,
    /// The last [`JOIN_TAIL_SECONDS`] of the previous bar's backing (interleaved).
    tail: Vec<f32>,
    /// A join starts at the next bar: carry `tail` into it.
    fade_tail: bool,
}

/// What one bar asks of the melody synth.
#[derive(Debug, Clone, PartialEq)]
struct MelodyBar {
    /// The lead instrument to select before the bar (at a section start).
    instrument: Option<Instrument>,
    /// Notes, `start` in frames from the bar's start, sorted by start.
    notes: Vec<SynthNote>,
}

/// A bar's melody job for a synth thread of [`Renderer::render`]: the bar's first frame in
/// the piece, the bar and its length in frames.
type MelodyJob = (usize, MelodyBar, usize);

/// Melody bars a synth thread of [`Renderer::render`] may have finished before the backing
/// reaches them (about half a minute of music each; bounds the memory they hold).
const MELODY_AHEAD_BARS: usize = 16;

impl Renderer {
    /// A renderer over a loaded library and a melody SoundFont (checked here: a file
    /// that is not an `.sf2` with the five lead presets is an error).
    pub fn new(library: Library, soundfont: &Path) -> Result<Self, RenderError> {
        let font = synth::load_soundfont(soundfont)?;
        Self::with_font(library, &font)
    }

    /// A renderer sharing an already loaded font.
    pub fn with_font(
        library: Library,
        font: &Arc<rustysynth::SoundFont>,
    ) -> Result<Self, RenderError> {
        let synth = MelodySynth::new(font)?;
        let second = MelodySynth::new(font)?;
        Ok(Renderer {
            backing: Backing {
                library,
                current: None,
                tail: Vec::new(),
                fade_tail: false,
            },
            synth,
            second,
        })
    }

    pub fn library(&self) -> &Library {
        &self.backing.library
    }

    /// Renders one bar into `out` (interleaved stereo; its length sets the bar's frames),
    /// replacing its contents. `ahead` are the next planned bars, if known (offline: the
    /// rest of the piece; live: the planner's lookahead); they let the first bar of a
    /// section pick the progression and layer for the whole section.
    pub fn render_bar(
        &mut self,
        bar: &BarPlan,
        notes: Option<&NoteSet>,
        style: &StyleVector,
        ahead: &[BarPlan],
        out: &mut [f32],
    ) -> Result<BarRender, RenderError> {
        let frames = out.len() / CH;
        let (r, melody) = self
            .backing
            .bar(bar, notes, style, ahead, frames, Some(&mut *out))?;
        self.synth.play_bar(&melody, out);
        Ok(r)
    }
}

impl Backing {
    /// Back to before the first bar: no segment, nothing carried over.
    fn reset(&mut self) {
        self.current = None;
        self.tail.clear();
        self.fade_tail = false;
    }

    /// The template part of [`Renderer::render_bar`]: the backing of a bar `frames` long
    /// into `out`, and the bar's melody for the synth. Without `out` (a dry pass) it makes
    /// every choice the same way, segments, joins, progressions and the melody, but decodes
    /// and plays no audio: [`Renderer::render`] learns every bar's melody up front with it.
    fn bar(
        &mut self,
        bar: &BarPlan,
        notes: Option<&NoteSet>,
        style: &StyleVector,
        ahead: &[BarPlan],
        frames: usize,
        out: Option<&mut [f32]>,
    ) -> Result<(BarRender, MelodyBar), RenderError> {
        let dry = out.is_none();

        let new_section = match &self.current {
            None => true,
            Some(s) => bar.section_start || bar.section != s.section,
        };
        let section_chords: Vec<Chord> = std::iter::once(bar.chord)
            .chain(
                ahead
                    .iter()
                    .take_while(|b| b.section == bar.section && !b.section_start)
                    .map(|b| b.chord),
            )
            .collect();
        let mut join = false;
        let mut instrument = None;
        if new_section {
            let seg = self.start_segment(bar, style, &section_chords, 0, Vec::new(), dry)?;
            join = self.current.is_some();
            self.begin_fade();
            self.current = Some(seg);
            instrument = Some(style.instrument);
        } else {
            // The progression guessed from the section's first bars may be contradicted
            // by a later chord (live, without lookahead): switch to the one that fits.
            let (pos, fits, first_bar, mut chords) = {
                let s = self.current.as_ref().expect("segment");
                let pos = (bar.index - s.first_bar) as usize;
                (
                    pos,
                    s.progression.chords[pos % PROGRESSION_BARS] == bar.chord,
                    s.first_bar,
                    s.chords.clone(),
                )
            };
            let restart = self.current.as_ref().is_some_and(|s| s.restart);
            if !fits || restart {
                chords.extend(section_chords.iter().copied());
                let seg = self.start_segment(bar, style, &chords, pos, Vec::new(), dry)?;
                let seg = Segment { first_bar, ..seg };
                tracing::debug!(
                    bar = bar.index,
                    progression = seg.progression.id,
                    "progression re-matched mid-section"
                );
                join = true;
                self.begin_fade();
                self.current = Some(seg);
            }
        }
        let seg = self.current.as_mut().expect("segment");
        if seg.chords.len() <= (bar.index - seg.first_bar) as usize {
            seg.chords.push(bar.chord);
        }
        let pos = ((bar.index - seg.first_bar) as usize) % PROGRESSION_BARS;
        let info = &seg.template.info;
        let beats = bar_beats(bar);
        let native = info.bar_frames() * beats as usize / BEATS_PER_BAR as usize;
        // The backing runs `seg.advance` ahead of the grid. When the next bar is known to
        // join (offline always; live when the lookahead holds it), this bar gives the
        // advance back, so the segment ends just before its own next downbeat and the tail
        // carried over the join holds no onset (else the old template's next downbeat
        // would sound, mirrored, on top of the new one). The stretcher keeps the onsets
        // in between in proportion.
        let lead = if join_follows(seg, bar, ahead) {
            0
        } else {
            seg.advance
        };
        let take = (native + lead).saturating_sub(seg.lead).max(1);
        seg.lead = lead;
        // After a bar cut short the loop is mid-bar: the next bar of this segment
        // restarts the player on its own bar (a join), so template bars stay aligned.
        seg.restart = beats < BEATS_PER_BAR;
        let rate = native as f64 / frames.max(1) as f64;
        let fade_in = std::mem::take(&mut seg.fade_in);
        let fade_tail = std::mem::take(&mut self.fade_tail);
        if let Some(out) = out {
            seg.player.next(take, out)?;
            if let Some(fade) = fade_in {
                let n = fade.min(frames);
                for i in 0..n {
                    let g = i as f32 / n as f32;
                    out[i * CH] *= g;
                    out[i * CH + 1] *= g;
                }
            }
            if fade_tail {
                // Mirror: tail frame k..0 backwards, so the carried sound continues the
                // old signal sample-for-sample at the join.
                let n = (self.tail.len() / CH).min(frames);
                let last = self.tail.len() / CH;
                for i in 0..n {
                    let g = (std::f32::consts::FRAC_PI_2 * i as f32 / n as f32).cos();
                    let k = last - 1 - i;
                    out[i * CH] += self.tail[k * CH] * g;
                    out[i * CH + 1] += self.tail[k * CH + 1] * g;
                }
            }
            let keep = ((JOIN_TAIL_SECONDS * SAMPLE_RATE as f64) as usize).min(frames);
            self.tail.clear();
            self.tail.extend_from_slice(&out[(frames - keep) * CH..]);
        }
        // Melody.
        let chord = seg.progression.chords[pos];
        let fitted = notes.map(|n| fit::fit_bar(n, chord, seg.progression.key, seg.transpose));
        let mut synth_notes = Vec::new();
        let bar_ticks = beats * TICKS_PER_BEAT;
        let per_tick = frames as f64 / bar_ticks as f64;
        if let Some(f) = &fitted {
            for n in f.notes.iter().filter(|n| n.start < bar_ticks) {
                synth_notes.push(SynthNote {
                    start: (n.start as f64 * per_tick).round() as u64,
                    frames: (n.duration as f64 * per_tick).round() as u64,
                    pitch: n.pitch,
                    velocity: n.velocity,
                    inner: n.track != 0,
                });
            }
        }
        synth_notes.sort_by_key(|n| n.start);
        let (note_count, mean_velocity) = match &fitted {
            Some(f) if !f.notes.is_empty() => (
                f.notes.len(),
                f.notes.iter().map(|n| n.velocity as f32).sum::<f32>() / f.notes.len() as f32,
            ),
            _ => (0, 0.0),
        };
        let r = BarRender {
            index: bar.index,
            template_id: info.id.clone(),
            layer: info.layer,
            progression: seg.progression.id.to_string(),
            progression_bar: pos as u8,
            stretch_rate: rate,
            join,
            transpose: seg.transpose,
            note_count,
            mean_velocity,
        };
        let melody = MelodyBar {
            instrument,
            notes: synth_notes,
        };
        Ok((r, melody))
    }

    /// The fitted notes of a bar as [`Renderer::render_bar`] plays them (for MIDI output).
    fn fitted(&self, notes: &NoteSet, pos: usize) -> Option<NoteSet> {
        let seg = self.current.as_ref()?;
        Some(fit::fit_bar(
            notes,
            seg.progression.chords[pos],
            seg.progression.key,
            seg.transpose,
        ))
    }

    fn begin_fade(&mut self) {
        if self.current.take().is_some() {
            self.fade_tail = true;
        }
    }

    fn start_segment(
        &mut self,
        bar: &BarPlan,
        style: &StyleVector,
        chords: &[Chord],
        pos: usize,
        seen: Vec<Chord>,
        dry: bool,
    ) -> Result<Segment, RenderError> {
        let progression = match_progression(chords, pos);
        let layers = self.library.layers(style.genre);
        if layers.is_empty() {
            return Err(RenderError::Input(format!(
                "the template library has no {:?} templates",
                style.genre
            )));
        }
        let li = section_layer(
            style.energy,
            layers.len(),
            self.current
                .as_ref()
                .filter(|s| pos == 0 && s.template.info.style == style.genre)
                .and_then(|s| layers.iter().position(|&l| l == s.template.info.layer)),
        );
        let template = self
            .library
            .select(style.genre, progression.id, layers[li])
            .ok_or_else(|| {
                RenderError::Input(format!(
                    "no {:?} template for progression {}",
                    style.genre, progression.id
                ))
            })?
            .clone();
        let recycled = self
            .current
            .as_mut()
            .map(|s| s.player.take_pcm())
            .unwrap_or_default();
        let audio = if dry {
            let mut empty = recycled;
            empty.clear();
            TemplateAudio::decoded(empty)
        } else {
            self.library.stream_into(&template, recycled)?
        };
        let rate = bar.tempo_bpm / template.info.tempo_bpm;
        if !(0.25..=4.0).contains(&rate) {
            return Err(RenderError::Input(format!(
                "bar {} tempo {} BPM is too far from the template's {} BPM",
                bar.index, bar.tempo_bpm, template.info.tempo_bpm
            )));
        }
        // A section starting on the progression's first bar plays the bar recorded from
        // silence, then the loop from its second bar; elsewhere the loop itself.
        let bar_frames = template.info.bar_frames();
        let intro = template.info.intro_frames as usize;
        let advance = (TEMPLATE_ADVANCE_SECONDS * SAMPLE_RATE as f64 * rate).round() as usize;
        let from_intro = pos.is_multiple_of(PROGRESSION_BARS) && intro > 0;
        let mut player = if dry {
            LoopPlayer::new(audio, 0, false, 0, Vec::new())
        } else if from_intro {
            LoopPlayer::new(audio, intro, true, bar_frames, onset_frames(&template))
        } else {
            LoopPlayer::new(
                audio,
                intro,
                false,
                (pos % PROGRESSION_BARS) * bar_frames,
                onset_frames(&template),
            )
        };
        let transpose = melody_transpose(style, progression.key);
        if !dry {
            // Start `advance` into the material (the backing plays that much early), fading in.
            player.skip(advance)?;
            tracing::debug!(bar = bar.index, template = %template.info.id, rate, transpose, "segment starts");
        }
        Ok(Segment {
            section: bar.section,
            first_bar: bar.index,
            template,
            progression,
            player,
            transpose,
            chords: seen,
            restart: false,
            advance,
            lead: advance,
            fade_in: Some((FADE_IN_SECONDS * SAMPLE_RATE as f64) as usize),
        })
    }
}

impl Renderer {
    /// Renders the whole piece: `bars` (contiguous, each at its output time; a first bar
    /// after 0 leaves a silent pickup), their notes (matched by bar index;
    /// bars without notes play the backing only) and the style vector of the section each
    /// bar belongs to (`styles[i]` for `bars[i]`). The output has exactly
    /// `length_samples` frames (trimmed with a short fade-out) and is loudness-normalised
    /// and peak-limited.
    ///
    /// The melody is played by two synths on threads of their own, beside the backing
    /// (template decode and time-stretch here, SoundFont voices and reverb there): the first
    /// plays the bars before the middle of the piece and then rings out (releases, reverb
    /// tail) over the second half, which the second synth plays from a fresh start. The
    /// synth is linear in its voices and its reverb, so the sum is what one synth playing
    /// every bar gives, up to the chorus's modulation phase and the synth's 64-frame block
    /// grid (under 1.4 ms). A dry pass of the backing's choices first gives every bar's
    /// melody, so both synths start at once; each bar's melody is added once that bar's
    /// backing is in the piece, and the ring-out last, so the sum never depends on which
    /// thread finished first.
    pub fn render(
        &mut self,
        bars: &[BarPlan],
        notes: &[NoteSet],
        styles: &[StyleVector],
        length_samples: usize,
    ) -> Result<Rendered, RenderError> {
        validate(bars, styles, length_samples)?;
        let backing = &mut self.backing;
        let by_bar: BTreeMap<u32, &NoteSet> = notes.iter().map(|n| (n.bar, n)).collect();
        // The bars that sound (one starting at or past the end is dropped): first, end frame.
        let spans: Vec<(usize, usize)> = bars
            .iter()
            .map(|b| (frame_of(b.start), frame_of(b.end)))
            .take_while(|&(s, _)| s < length_samples)
            .collect();
        let mut pcm = vec![0.0f32; length_samples * CH];
        let mut out_bars = Vec::with_capacity(bars.len());
        let mut melody = Vec::new();
        let mut backing_parts: BTreeMap<(String, u8, u8), MidiTrack> = BTreeMap::new();
        let mut buf = Vec::new();
        // The second synth takes over at the bar starting nearest the middle of the piece.
        let handover = bars
            .iter()
            .enumerate()
            .skip(1)
            .min_by_key(|(_, b)| frame_of(b.start).abs_diff(length_samples / 2))
            .map_or(usize::MAX, |(i, _)| i);
        // Frames the first synth has played when the second takes over.
        let grid_offset = bars
            .get(handover)
            .map_or(0, |b| frame_of(b.start) - frame_of(bars[0].start));

        // Dry pass: every bar's melody up front, so both synths start at once instead of
        // the second waiting for the backing to reach the middle.
        backing.reset();
        let (mut first_bars, mut second_bars) = (Vec::new(), Vec::new());
        #[cfg(debug_assertions)]
        let mut dry_melody = Vec::new();
        let mut instrument = None;
        for (i, &(s, e)) in spans.iter().enumerate() {
            let n = by_bar.get(&bars[i].index).copied();
            let (_, mut m) = backing.bar(&bars[i], n, &styles[i], &bars[i + 1..], e - s, None)?;
            #[cfg(debug_assertions)]
            dry_melody.push(m.clone());
            instrument = m.instrument.or(instrument);
            if i < handover {
                first_bars.push((s, m, e - s));
            } else {
                // The first synth rings out from here; the second starts fresh.
                m.instrument = instrument;
                second_bars.push((s, m, e - s));
            }
        }
        backing.reset();

        // Adds melody that starts at frame `s` (it may run past the piece's end) into the piece.
        let mix = |pcm: &mut [f32], (s, mel): (usize, Vec<f32>)| {
            let end = (s + mel.len() / CH).min(length_samples);
            for (o, m) in pcm[s.min(end) * CH..end * CH].iter_mut().zip(&mel) {
                *o += *m;
            }
        };
        let play = |synth: &mut MelodySynth,
                    jobs: Vec<MelodyJob>,
                    done: mpsc::SyncSender<(usize, Vec<f32>)>| {
            let mut end = None;
            for (s, bar, frames) in jobs {
                end = Some(s + frames);
                let mut out = vec![0.0; frames * CH];
                synth.play_bar(&bar, &mut out);
                if done.send((s, out)).is_err() {
                    break;
                }
            }
            end
        };
        let (first, second) = (&mut self.synth, &mut self.second);
        first.reset();
        second.reset();
        let (first_tx, first_done) = mpsc::sync_channel(MELODY_AHEAD_BARS);
        let (second_tx, second_done) = mpsc::sync_channel(MELODY_AHEAD_BARS);
        let ring = std::thread::scope(|scope| {
            let first_player = std::thread::Builder::new()
                .name("melody".into())
                .spawn_scoped(scope, move || {
                    let end = play(first, first_bars, first_tx);
                    end.map(|s| (s, first.ring_out()))
                })
                .expect("spawn melody thread");
            let second_player = std::thread::Builder::new()
                .name("melody-2".into())
                .spawn_scoped(scope, move || {
                    second.skip(grid_offset % synth::SYNTH_BLOCK);
                    play(second, second_bars, second_tx);
                })
                .expect("spawn melody thread");
            // A bar's melody is added once its backing is in the piece: each synth's bars
            // come back in order, and one that came back early waits in `held`.
            let done = [first_done, second_done];
            let mut held: [Option<(usize, Vec<f32>)>; 2] = [None, None];
            let mut mix_backed = |pcm: &mut [f32], backed: usize| {
                for (rx, held) in done.iter().zip(held.iter_mut()) {
                    loop {
                        let next = match held.take() {
                            Some(d) => d,
                            None => match rx.try_recv() {
                                Ok(d) => d,
                                Err(_) => break,
                            },
                        };
                        if next.0 >= backed {
                            *held = Some(next);
                            break;
                        }
                        mix(pcm, next);
                    }
                }
            };
            // Bars play at their output times: a pickup before the first bar stays silent.
            let result = (|| {
                for (i, &(s, e)) in spans.iter().enumerate() {
                    let bar = &bars[i];
                    buf.clear();
                    buf.resize((e - s) * CH, 0.0);
                    let n = by_bar.get(&bar.index).copied();
                    let (r, _m) =
                        backing.bar(bar, n, &styles[i], &bars[i + 1..], e - s, Some(&mut buf))?;
                    #[cfg(debug_assertions)]
                    debug_assert_eq!(
                        _m, dry_melody[i],
                        "bar {}: the dry pass chose otherwise",
                        bar.index
                    );
                    let end = e.min(length_samples);
                    pcm[s * CH..end * CH].copy_from_slice(&buf[..(end - s) * CH]);
                    if let Some(f) = n.and_then(|n| backing.fitted(n, r.progression_bar as usize)) {
                        melody.push(f);
                    }
                    let seg = backing.current.as_ref().expect("segment after a bar");
                    add_backing(
                        &mut backing_parts,
                        &seg.template,
                        r.progression_bar as usize,
                        bar,
                    );
                    out_bars.push(r);
                    mix_backed(&mut pcm, end);
                }
                Ok(())
            })();
            if result.is_ok() {
                mix_backed(&mut pcm, usize::MAX);
                for (rx, held) in done.iter().zip(&mut held) {
                    debug_assert!(held.is_none(), "every bar is backed");
                    for d in rx.iter() {
                        mix(&mut pcm, d);
                    }
                }
            }
            // On an error the receivers go here and the synths stop at their next bar.
            drop(done);
            let ring = first_player.join().expect("melody thread panicked");
            second_player.join().expect("melody thread panicked");
            result.map(|()| ring)
        })?;
        if let Some(r) = ring {
            mix(&mut pcm, r);
        }
        let fade = ((END_FADE_SECONDS * SAMPLE_RATE as f64) as usize).min(length_samples);
        for i in 0..fade {
            let g = (i as f32 + 1.0) / fade as f32;
            let f = length_samples - 1 - i;
            pcm[f * CH] *= g;
            pcm[f * CH + 1] *= g;
        }
        let master = master::master(&mut pcm);
        tracing::info!(
            bars = out_bars.len(),
            lufs = master.lufs_out,
            gain_db = master.gain_db,
            "rendered"
        );
        let melody_program = synth::program_of(styles[0].instrument);
        Ok(Rendered {
            pcm,
            bars: out_bars,
            backing: assign_channels(backing_parts),
            melody,
            melody_program,
            master,
        })
    }
}

/// Loop frames where the template's pattern starts a note (any part): the stretcher keeps
/// these on the planned grid.
fn onset_frames(t: &Template) -> Vec<usize> {
    let bar = t.info.bar_frames() as u64;
    t.parts
        .iter()
        .flat_map(|p| p.notes.iter())
        .map(|n| (n.tick * bar / TICKS_PER_BAR as u64) as usize)
        .collect()
}

/// Whether the bar after `bar` is known (from `ahead`) to start a new segment: a new
/// section, a restart after this short bar, or a chord the progression does not play.
fn join_follows(seg: &Segment, bar: &BarPlan, ahead: &[BarPlan]) -> bool {
    let Some(next) = ahead.first() else {
        return false;
    };
    let pos = (next.index.saturating_sub(seg.first_bar)) as usize % PROGRESSION_BARS;
    next.section_start
        || next.section != seg.section
        || bar_beats(bar) < BEATS_PER_BAR
        || seg.progression.chords[pos] != next.chord
}

/// Beats actually played in a bar (1..=4; the planner cuts bars short before a section).
fn bar_beats(bar: &BarPlan) -> u32 {
    (bar.beats as u32).clamp(1, BEATS_PER_BAR)
}

fn frame_of(seconds: f64) -> usize {
    (seconds.max(0.0) * SAMPLE_RATE as f64).round() as usize
}

fn validate(bars: &[BarPlan], styles: &[StyleVector], length: usize) -> Result<(), RenderError> {
    if bars.is_empty() {
        return Err(RenderError::Input("no bars to render".into()));
    }
    if styles.len() != bars.len() {
        return Err(RenderError::Input(format!(
            "{} bars but {} style vectors (one per bar is needed)",
            bars.len(),
            styles.len()
        )));
    }
    if length == 0 {
        return Err(RenderError::Input("requested length is 0 samples".into()));
    }
    for w in bars.windows(2) {
        if w[1].index != w[0].index + 1 || (w[1].start - w[0].end).abs() > 1e-6 {
            return Err(RenderError::Input(format!(
                "bars {} and {} are not contiguous",
                w[0].index, w[1].index
            )));
        }
    }
    for b in bars {
        if !(b.tempo_bpm.is_finite() && b.tempo_bpm > 0.0 && b.end > b.start && b.start >= 0.0) {
            return Err(RenderError::Input(format!(
                "bar {} has tempo {} and span {}..{}",
                b.index, b.tempo_bpm, b.start, b.end
            )));
        }
    }
    Ok(())
}

/// Index (into the style's layers, ascending) of the intensity layer for a section of
/// `energy`: the layer whose share of 0..=1 holds it. A new section (`previous`: the layer
/// index playing before it) always brings a new texture: when the energy maps to the
/// layer already playing, the neighbouring layer nearer the energy is taken instead, so a
/// scene cut is heard as a change of instrumentation and not only of chords.
fn section_layer(energy: f32, n: usize, previous: Option<usize>) -> usize {
    let x = energy.clamp(0.0, 1.0) * n as f32;
    let li = (x as usize).min(n - 1);
    match previous {
        Some(p) if p == li && n > 1 => {
            let up = x - li as f32 >= 0.5;
            if (up && li + 1 < n) || li == 0 {
                li + 1
            } else {
                li - 1
            }
        }
        _ => li,
    }
}

/// The progression that agrees with the most of `chords` (chords[k] is bar `pos + k` of
/// the section, and bar 0 of a section plays the progression's first bar).
pub fn match_progression(chords: &[Chord], pos: usize) -> &'static Progression {
    PROGRESSIONS
        .iter()
        .max_by_key(|p| {
            let hits = chords
                .iter()
                .enumerate()
                .filter(|(k, c)| p.chords[(pos + k) % PROGRESSION_BARS] == **c)
                .count();
            // max_by_key keeps the last maximum: rank earlier table entries higher on ties.
            (
                hits,
                usize::MAX - PROGRESSIONS.iter().position(|q| q.id == p.id).unwrap_or(0),
            )
        })
        .expect("PROGRESSIONS is not empty")
}

/// Semitone shift of a segment's melody: to the template's key when the notes are
/// clearly in another key, then whole octaves to centre the melody on [`MELODY_CENTER`].
fn melody_transpose(style: &StyleVector, key: Key) -> i32 {
    let relative_major = |k: Key| match k.mode {
        crate::music::Mode::Major => k.tonic as i32,
        crate::music::Mode::Minor => (k.tonic as i32 + 3) % 12,
    };
    let mut shift = 0;
    if style.key_confidence >= TRANSPOSE_CONFIDENCE {
        let d = (relative_major(key) - relative_major(style.key)).rem_euclid(12);
        shift = if d > 6 { d - 12 } else { d };
    }
    let register = style.register + shift as f32;
    shift + 12 * ((MELODY_CENTER - register) / 12.0).round() as i32
}

fn add_backing(
    tracks: &mut BTreeMap<(String, u8, u8), MidiTrack>,
    t: &Template,
    pos: usize,
    bar: &BarPlan,
) {
    let lo = pos as u64 * TICKS_PER_BAR as u64;
    let hi = lo + (bar_beats(bar) * TICKS_PER_BEAT) as u64;
    // Output tick timeline: the bar's start in ticks at its tempo from time 0 (constant
    // tempo offline, so short bars shift everything after them as they do in the audio).
    let base = (bar.start * bar.tempo_bpm / 60.0 * TICKS_PER_BEAT as f64).round() as u64;
    for part in &t.parts {
        let key = (
            format!("{} {}", t.info.style_name(), part.name),
            part.channel,
            part.program,
        );
        let tr = tracks.entry(key.clone()).or_insert_with(|| MidiTrack {
            name: key.0.clone(),
            channel: part.channel,
            program: part.program,
            notes: Vec::new(),
        });
        for n in part.notes.iter().filter(|n| n.tick >= lo && n.tick < hi) {
            tr.notes.push(TimedNote {
                tick: base + n.tick - lo,
                duration: n.duration.min(hi - n.tick),
                ..*n
            });
        }
    }
}

/// Gives every backing track a MIDI channel: drums stay on [`DRUM_CHANNEL`], pitched
/// parts get their own channel from 1 up (0 is the melody's), so two templates' parts
/// with different programs never share a channel.
fn assign_channels(tracks: BTreeMap<(String, u8, u8), MidiTrack>) -> Vec<MidiTrack> {
    let mut next = 1u8;
    let mut out = Vec::new();
    for (_, mut t) in tracks {
        if t.notes.is_empty() {
            continue;
        }
        if t.channel != DRUM_CHANNEL {
            if next == DRUM_CHANNEL {
                next += 1;
            }
            if next > 15 {
                next = 1;
            }
            t.channel = next;
            next += 1;
        }
        out.push(t);
    }
    out
}

impl TemplateInfo {
    /// The style's name as in the index (`lofi`, `pop`, ...).
    pub fn style_name(&self) -> String {
        serde_json::to_value(self.style)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}
#[cfg(test)]
mod tests;
