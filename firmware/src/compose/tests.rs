//! Tests of the note model runtime against the committed model (`models/notes/`).

use std::path::PathBuf;

use super::model::{NoteModel, CARD_FILE};
use super::*;
use crate::music::{ChordQuality, PROGRESSIONS, TICKS_PER_BAR, TICKS_PER_BEAT};

/// Largest logit difference allowed between tract and onnxruntime for the multi-token prefill.
const REFILL_TOLERANCE: f32 = 0.1;

/// Largest logit difference allowed between tract and onnxruntime for one step. The reference
/// run is onnxruntime's on x86-64, where tract agrees with it to 1e-5 (the same rounding of the
/// dynamically quantised int8 activations). tract's aarch64 kernels (NEON, with their own tile
/// shapes, summation order and requantisation rounding) put a few activations on the other side
/// of an int8 rounding step, which moves the logits by one quantum times the weights: 0.059
/// measured under qemu-aarch64 on a Cortex-A53 model (QEMU computes Arm floating point with
/// softfloat to the architecture's rounding rules, so this is the board's result), with the
/// argmax of every field still agreeing. That is the prefill's bound, set for the same rounding.
#[cfg(target_arch = "aarch64")]
const STEP_TOLERANCE: f32 = REFILL_TOLERANCE;
#[cfg(not(target_arch = "aarch64"))]
const STEP_TOLERANCE: f32 = 0.05;

fn model_path() -> PathBuf {
    Composer::default_model_path(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

fn controls(density: u8, strength: u8, bar: usize) -> BarControls {
    BarControls {
        density,
        strength,
        section_start: bar % 8 == 0,
        next_section_start: bar % 8 == 7,
        chord: PROGRESSIONS[0].chords[bar % 4],
        beats: 4,
    }
}

#[derive(serde::Deserialize)]
struct Reference {
    tokens: Vec<Vec<i64>>,
    outputs: std::collections::BTreeMap<String, Vec<Vec<f32>>>,
    prefill_tokens: usize,
    prefill_outputs: std::collections::BTreeMap<String, Vec<f32>>,
}

/// tract against onnxruntime on the reference run committed next to the model.
#[test]
fn tract_matches_onnxruntime_reference_vectors() {
    let path = model_path();
    let mut model = NoteModel::load(&path).unwrap();
    let text = std::fs::read_to_string(path.with_file_name("reference.json")).unwrap();
    let r: Reference = serde_json::from_str(&text).unwrap();
    let names = [
        "family",
        "pos",
        "pitch",
        "duration",
        "note_strength",
        "track",
    ];
    let mut past = model.empty_past();
    let (mut max_diff, mut agree, mut total) = (0f32, 0usize, 0usize);
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0
    };
    for (i, tok) in r.tokens.iter().enumerate() {
        let token: Token = tok.as_slice().try_into().unwrap();
        let (logits, present) = model.step(&token, past).unwrap();
        past = present;
        for (name, ours) in names.iter().zip(logits.fields()) {
            let theirs = &r.outputs[*name][i];
            assert_eq!(ours.len(), theirs.len(), "{name}");
            for (a, b) in ours.iter().zip(theirs) {
                max_diff = max_diff.max((a - b).abs());
            }
            // pitch: one argmax per track row
            let rows = if *name == "pitch" { N_TRACKS } else { 1 };
            let n = ours.len() / rows;
            for k in 0..rows {
                agree += usize::from(
                    argmax(&ours[k * n..(k + 1) * n]) == argmax(&theirs[k * n..(k + 1) * n]),
                );
                total += 1;
            }
        }
    }
    let rate = agree as f64 / total as f64;
    assert!(
        max_diff <= STEP_TOLERANCE,
        "max abs diff {max_diff} (argmax agreement {rate})"
    );
    assert!(rate >= 0.99, "argmax agreement {rate}");

    // The window-restart path: the first tokens in one call.
    let toks: Vec<Token> = r.tokens[..r.prefill_tokens]
        .iter()
        .map(|t| t.as_slice().try_into().unwrap())
        .collect();
    let (logits, present) = model.refill(&toks).unwrap();
    assert_eq!(NoteModel::past_len(&present), r.prefill_tokens);
    // The prefill quantises a whole block of tokens at once (int8 dynamic quantisation: one
    // activation scale per tensor), so rounding differs a little more between the runtimes than
    // for a single step; what sampling sees, the argmax, must still agree.
    for (name, ours) in names.iter().zip(logits.fields()) {
        let theirs = &r.prefill_outputs[*name];
        let d = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d <= REFILL_TOLERANCE, "refill {name}: max abs diff {d}");
        let rows = if *name == "pitch" { N_TRACKS } else { 1 };
        let n = ours.len() / rows;
        for k in 0..rows {
            assert_eq!(
                argmax(&ours[k * n..(k + 1) * n]),
                argmax(&theirs[k * n..(k + 1) * n]),
                "refill {name}: argmax differs"
            );
        }
    }
}

#[test]
fn same_seed_same_bars_and_every_bar_well_formed() {
    let mut c = Composer::load(&model_path()).unwrap();
    let mut run = |seed| {
        c.start(seed);
        (0..12)
            .map(|b| {
                c.next_bar(b as u32, &controls((b % 8) as u8, (b % 4) as u8, b))
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let a = run(3);
    let b = run(3);
    let other = run(4);
    assert_eq!(a, b);
    assert_ne!(a, other);
    for set in &a {
        let mut last = (0, 0, 0);
        for n in &set.notes {
            assert!(
                n.start < TICKS_PER_BAR && n.start % TICKS_PER_STEP == 0,
                "{n:?}"
            );
            assert!(n.duration >= TICKS_PER_STEP && n.duration <= 32 * TICKS_PER_STEP);
            assert!(
                (21..=108).contains(&n.pitch)
                    && n.velocity >= 1
                    && n.velocity <= 127
                    && n.track < 4
            );
            let key = (n.start, u32::from(n.track), 200 - u32::from(n.pitch));
            assert!(
                key > last || last == (0, 0, 0),
                "notes out of order: {key:?} after {last:?}"
            );
            last = key;
        }
    }
}

/// A piece that `may_restart` calls short never restarts its window (so its refill plan is
/// never built), whatever the sampler writes; a long one is flagged.
#[test]
fn a_piece_known_to_fit_the_window_never_restarts_it() {
    let mut c = Composer::load(&model_path()).unwrap();
    // the densest bars the guard allows still fit 4 bars; sparse bars fit many more
    let dense: Vec<BarControls> = (0..4).map(|b| controls(6, 3, b)).collect();
    let sparse: Vec<BarControls> = (0..10).map(|b| controls(0, 1, b)).collect();
    let long: Vec<BarControls> = (0..40).map(|b| controls(7, 1, b)).collect();
    assert!(c.may_restart(&long));
    for (piece, seeds) in [(&dense, 0..4u64), (&sparse, 0..4)] {
        assert!(!c.may_restart(piece), "{} bars flagged", piece.len());
        for seed in seeds {
            let before = c.window_restarts();
            c.start_piece(seed, piece);
            for (b, ctl) in piece.iter().enumerate() {
                c.next_bar(b as u32, ctl).unwrap();
            }
            assert_eq!(c.window_restarts(), before, "seed {seed}");
        }
    }
}

/// A sibling shares the loaded plans (the refill plan too: both restart their windows here)
/// but nothing else: on two threads at once, each writes exactly what the original writes
/// alone from the same seed.
#[test]
fn siblings_write_on_two_threads_what_one_composer_writes() {
    let mut c = Composer::load(&model_path()).unwrap();
    let piece: Vec<BarControls> = (0..24).map(|b| controls(7, (b % 4) as u8, b)).collect();
    let write = |c: &mut Composer, seed: u64| -> Vec<NoteSet> {
        c.start_piece(seed, &piece);
        (0..piece.len())
            .map(|b| c.next_bar(b as u32, &piece[b]).unwrap())
            .collect()
    };
    let alone = [write(&mut c, 1), write(&mut c, 2)];
    let mut s = c.sibling().unwrap();
    let (a, b) = std::thread::scope(|scope| {
        let h = scope.spawn(|| write(&mut s, 2));
        (write(&mut c, 1), h.join().unwrap())
    });
    assert_eq!([a, b], alone);
    assert!(s.window_restarts() >= 1 && c.window_restarts() >= 2);
}

#[test]
fn long_runs_restart_the_window_and_stay_bounded() {
    let mut c = Composer::load(&model_path()).unwrap();
    c.start(11);
    let max_len = c.model().card().max_len;
    let mut notes = 0;
    for b in 0..40 {
        notes += c
            .next_bar(b, &controls(7, 1, b as usize))
            .unwrap()
            .notes
            .len();
        assert!(NoteModel::past_len(&c.past) <= max_len);
    }
    // 40 bars at the top density hold far more tokens than the 256-token window.
    assert!(c.window_restarts() >= 1, "{notes} notes, no window restart");
    assert!(notes > 40);
}

#[test]
fn out_of_range_controls_name_the_valid_range() {
    let mut c = Composer::load(&model_path()).unwrap();
    let mut ctl = controls(8, 0, 0);
    let e = c.next_bar(0, &ctl).unwrap_err().to_string();
    assert!(e.contains("density = 8") && e.contains("0..=7"), "{e}");
    ctl.density = 0;
    ctl.strength = 4;
    let e = c.next_bar(0, &ctl).unwrap_err().to_string();
    assert!(e.contains("strength = 4") && e.contains("0..=3"), "{e}");
    ctl.strength = 0;
    ctl.chord = Chord {
        root: 12,
        quality: ChordQuality::Major,
    };
    assert!(matches!(
        c.next_bar(0, &ctl),
        Err(ComposeError::ControlOutOfRange { .. })
    ));
    let mut ctl = controls(3, 1, 0);
    for beats in [0, 5] {
        ctl.beats = beats;
        let e = c.next_bar(0, &ctl).unwrap_err().to_string();
        assert!(
            e.contains(&format!("beats = {beats}")) && e.contains("1..=4"),
            "{e}"
        );
    }
}

#[test]
fn short_bars_are_written_to_fit_at_their_class_density() {
    let mut c = Composer::load(&model_path()).unwrap();
    c.start(5);
    let edges = c.model().card().density_edges.clone();
    for b in 0..24u32 {
        let beats = [2u8, 3, 1, 4][b as usize % 4];
        let density = (b % 8) as u8;
        let mut ctl = controls(density, 1, b as usize);
        ctl.beats = beats;
        let set = c.next_bar(b, &ctl).unwrap();
        let end = u32::from(beats) * TICKS_PER_BEAT;
        assert!(
            set.notes
                .iter()
                .all(|n| n.start < end && n.start + n.duration <= end),
            "bar {b} of {beats} beats: {:?}",
            set.notes
        );
        // the class's note range over a whole bar, scaled to this one (rounded outwards)
        let steps = usize::from(beats) * 4;
        let (lo, hi) = sampler::density_guard(usize::from(density), &edges, steps);
        assert!(
            (lo..=hi).contains(&set.notes.len()),
            "bar {b}: {} notes in {beats} beats at class {density} ({lo}..={hi})",
            set.notes.len()
        );
    }
}

#[test]
fn missing_truncated_and_wrong_models_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join(MODEL_FILE);
    let e = Composer::load(&missing).unwrap_err();
    assert!(
        matches!(e, ComposeError::ModelMissing { .. })
            && e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );

    let real = std::fs::read(model_path()).unwrap();
    let card = std::fs::read_to_string(model_path().with_file_name(CARD_FILE)).unwrap();
    std::fs::write(&missing, &real[..real.len() / 2]).unwrap();
    std::fs::write(dir.path().join(CARD_FILE), &card).unwrap();
    let e = Composer::load(&missing).unwrap_err();
    assert!(matches!(e, ComposeError::Checksum { .. }), "{e}");
    assert!(
        e.to_string().contains(&missing.display().to_string())
            && e.to_string().contains("truncated"),
        "{e}"
    );

    // A card that matches the bytes but not the graph (it claims 3 layers): the shape check catches it.
    std::fs::write(&missing, &real).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&card).unwrap();
    v["layers"] = serde_json::json!(3);
    std::fs::write(dir.path().join(CARD_FILE), v.to_string()).unwrap();
    let e = Composer::load(&missing).unwrap_err();
    assert!(
        matches!(e, ComposeError::ModelShape { .. }) && e.to_string().contains("past"),
        "{e}"
    );

    // Bytes that are not ONNX at all, with a card that matches them.
    let junk = b"not an onnx model".to_vec();
    std::fs::write(&missing, &junk).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&junk));
    v["layers"] = serde_json::from_str::<serde_json::Value>(&card).unwrap()["layers"].clone();
    v["sha256"] = serde_json::json!(sha);
    v["bytes"] = serde_json::json!(junk.len());
    std::fs::write(dir.path().join(CARD_FILE), v.to_string()).unwrap();
    let e = Composer::load(&missing).unwrap_err();
    assert!(matches!(e, ComposeError::ModelInvalid { .. }), "{e}");
}

/// The structure fields the runtime writes: the next bar's section flag from the caller, the
/// bars since the section started counted by the composer (saturating at SECTION_BAR_MAX).
#[test]
fn structure_fields_reach_the_model() {
    let mut c = Composer::load(&model_path()).unwrap();
    c.record_steps(true);
    c.start(5);
    for b in 0..10u32 {
        c.next_bar(b, &controls(3, 1, b as usize)).unwrap();
    }
    let bars: Vec<Token> = c
        .take_recorded()
        .into_iter()
        .filter(|(kind, t)| *kind != StepKind::Refill && t[F_TYPE] == T_BAR)
        .map(|(_, t)| t)
        .collect();
    let field = |f: usize| bars.iter().map(|t| t[f]).collect::<Vec<_>>();
    assert_eq!(field(F_SBAR), [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]);
    assert_eq!(field(F_NEXT), [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(field(F_SEC), [1, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
}

/// `score` may start optimising the refill plan before the piece is known (a long video):
/// a piece that restarts its window is then written exactly as with the plan prepared at
/// `start_piece`.
#[test]
fn a_refill_plan_prepared_at_load_writes_the_same_piece() {
    let piece: Vec<BarControls> = (0..24).map(|b| controls(7, (b % 4) as u8, b)).collect();
    let write = |early: bool| -> (Vec<NoteSet>, u64) {
        let mut c = Composer::load(&model_path()).unwrap();
        if early {
            c.prepare_refill();
        }
        c.start_piece(5, &piece);
        let notes = (0..piece.len())
            .map(|b| c.next_bar(b as u32, &piece[b]).unwrap())
            .collect();
        (notes, c.window_restarts())
    };
    let (early, restarts) = write(true);
    assert!(restarts > 0, "the piece restarts its window");
    assert_eq!(early, write(false).0);
}
