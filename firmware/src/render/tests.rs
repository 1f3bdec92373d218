//! Renders real pieces from the committed library (templates/) and a real tune
//! (testdata/reel.json: a reel from O'Neill's 1850 collection) and checks the samples;
//! breaks copies of the library to check every load error.

use std::path::{Path, PathBuf};

use super::*;
use crate::cmds::templates::{demo_plan, styles_per_bar};
use crate::music::{Genre, Preferences};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn reel() -> Vec<NoteSet> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/render/testdata/reel.json"),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["notes"].clone()).unwrap()
}

fn renderer() -> Renderer {
    let lib = Library::load(&default_library_dir(&repo())).expect("committed library loads");
    Renderer::new(lib, &default_soundfont_path(&repo())).expect("committed font loads")
}

fn piece(genre: Genre, tempo: f64, seconds: f64) -> (Vec<BarPlan>, Vec<NoteSet>, Vec<StyleVector>) {
    let prefs = Preferences {
        genre: Some(genre),
        ..Default::default()
    };
    let (bars, notes) = demo_plan(&reel(), tempo, seconds, 4, &prefs);
    let styles = styles_per_bar(&bars, &notes);
    (bars, notes, styles)
}

#[test]
fn renders_a_mastered_piece_of_exact_length_with_joins() {
    let mut r = renderer();
    let (bars, notes, styles) = piece(Genre::Pop, 100.0, 21.3);
    let len = (21.3 * SAMPLE_RATE as f64) as usize;
    let out = r.render(&bars, &notes, &styles, len).unwrap();
    assert_eq!(out.pcm.len(), len * 2);
    // Loudness and peak, measured independently by ebur128.
    let lufs = master::loudness(&out.pcm);
    assert!((lufs - master::TARGET_LUFS).abs() <= 1.0, "{lufs} LUFS");
    let tp = master::true_peak_dbtp(&out.pcm);
    assert!(tp <= -1.0, "true peak {tp} dBTP");
    assert!(
        out.pcm.iter().all(|x| x.is_finite() && x.abs() < 1.0),
        "clipped or non-finite samples"
    );
    // Sections every 4 bars: a join at each section start, the layer rises with energy.
    let joins: Vec<u32> = out
        .bars
        .iter()
        .filter(|b| b.join)
        .map(|b| b.index)
        .collect();
    assert_eq!(joins, vec![4, 8]);
    assert!(out.bars.last().unwrap().layer > out.bars[0].layer);
    // Each section plays the progression the planner chose, from its first bar.
    for (b, plan) in out.bars.iter().zip(&bars) {
        let p = PROGRESSIONS.iter().find(|p| p.id == b.progression).unwrap();
        assert_eq!(
            p.chords[b.progression_bar as usize], plan.chord,
            "bar {}",
            b.index
        );
    }
    // The end fades out: the last 10 ms are far quieter than the piece.
    let tail: f32 = out.pcm[(len - 480) * 2..]
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        / 960.0;
    let body: f32 = out.pcm.iter().map(|x| x * x).sum::<f32>() / out.pcm.len() as f32;
    assert!(tail < body * 0.01, "tail {tail} body {body}");
}

#[test]
fn fitted_melody_is_consonant_and_keeps_velocity() {
    let mut r = renderer();
    let (bars, notes, styles) = piece(Genre::Lofi, 90.0, 16.0);
    let out = r
        .render(&bars, &notes, &styles, (16.0 * SAMPLE_RATE as f64) as usize)
        .unwrap();
    let (mut strong, mut strong_ct, mut all, mut out_key) = (0, 0, 0, 0);
    for (f, b) in out.melody.iter().zip(&out.bars) {
        let p = PROGRESSIONS.iter().find(|p| p.id == b.progression).unwrap();
        let chord = p.chords[b.progression_bar as usize].pitch_classes();
        for n in f.notes.iter().filter(|n| n.track == 0) {
            all += 1;
            out_key += usize::from(!p.key.scale().contains(&(n.pitch % 12)));
            if n.start % 960 == 0 {
                strong += 1;
                strong_ct += usize::from(chord.contains(&(n.pitch % 12)));
            }
        }
    }
    assert!(
        strong > 10 && strong_ct as f64 / strong as f64 >= 0.85,
        "{strong_ct}/{strong} chord tones on strong beats"
    );
    assert!(
        (out_key as f64) <= 0.05 * all as f64,
        "{out_key}/{all} out of key"
    );
    // Velocities are the input's: per-bar means follow the input's per-bar means.
    for (f, src) in out.melody.iter().zip(&notes) {
        let a: u32 = f.notes.iter().map(|n| n.velocity as u32).sum();
        let b: u32 = src.notes.iter().map(|n| n.velocity as u32).sum();
        assert_eq!(a, b, "bar {}", f.bar);
    }
    // Louder bars of the input are louder in the audio (melody on top of the backing).
    assert!(!out.backing.is_empty() && out.backing.iter().all(|t| t.channel != 0));
}

#[test]
fn same_input_renders_the_same_samples() {
    let (bars, notes, styles) = piece(Genre::Ambient, 110.0, 6.0);
    let len = 6 * SAMPLE_RATE as usize;
    let a = renderer().render(&bars, &notes, &styles, len).unwrap();
    let b = renderer().render(&bars, &notes, &styles, len).unwrap();
    assert!(a.pcm == b.pcm);
}

#[test]
fn short_bar_before_a_section_keeps_the_grid() {
    let mut r = renderer();
    let (mut bars, notes, styles) = piece(Genre::Acoustic, 100.0, 12.0);
    // Cut bar 3 to 2 beats; shift the rest (what the planner does before a cut).
    let beat = 60.0 / 100.0;
    bars[3].beats = 2;
    bars[3].end = bars[3].start + 2.0 * beat;
    for i in 4..bars.len() {
        let d = 4.0 * 60.0 / 100.0;
        bars[i].start = bars[i - 1].end;
        bars[i].end = bars[i].start + d;
    }
    let len = (11.0 * SAMPLE_RATE as f64) as usize;
    let out = r.render(&bars, &notes, &styles, len).unwrap();
    assert_eq!(out.pcm.len(), len * 2);
    assert!(out.bars[4].join);
    assert!(out.pcm.iter().all(|x| x.abs() < 1.0));
}

#[test]
fn a_pickup_before_the_first_bar_is_silent_and_the_bars_keep_their_times() {
    let mut r = renderer();
    let (mut bars, notes, styles) = piece(Genre::Pop, 100.0, 8.0);
    // A 2/16 pickup (what warping may plan): every bar starts half a beat later.
    let pickup = 0.5 * 60.0 / 100.0;
    for b in &mut bars {
        b.start += pickup;
        b.end += pickup;
    }
    let len = 8 * SAMPLE_RATE as usize;
    let out = r.render(&bars, &notes, &styles, len).unwrap();
    assert_eq!(out.pcm.len(), len * 2);
    let first = (pickup * SAMPLE_RATE as f64).round() as usize;
    assert!(
        out.pcm[..first * 2].iter().all(|x| *x == 0.0),
        "sound before the first bar"
    );
    let rms = |s: &[f32]| (s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32).sqrt();
    assert!(rms(&out.pcm[first * 2..(first + SAMPLE_RATE as usize) * 2]) > 0.01);
    // A bar before 0 is refused with its name.
    bars[0].start = -0.1;
    let e = r
        .render(&bars, &notes, &styles, len)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bar 0"), "{e}");
}

/// A writable copy of the committed library.
fn library_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = default_library_dir(&repo());
    for sub in ["audio", "midi"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    for f in ["index.json", "melody.sf2"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn edit_index(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("index.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
}

/// Overwrites 64 bytes in the middle of the file at `path`.
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    bytes[n / 2..n / 2 + 64].fill(0x55);
    std::fs::write(path, &bytes).unwrap();
}

/// Makes the index of the library in `dir` give template `id` the checksum of `bytes`.
fn index_checksum(dir: &Path, id: &str, bytes: &[u8]) {
    let sha = hex::encode(sha2::Sha256::digest(bytes));
    edit_index(dir, |v| {
        for t in v["templates"].as_array_mut().unwrap() {
            if t["id"] == id {
                t["sha256"] = sha.clone().into();
            }
        }
    });
}

fn load_err(dir: &Path) -> String {
    match Library::load(dir) {
        Ok(_) => panic!("library in {} loaded but is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_or_corrupt_template_is_a_load_error() {
    let d = library_copy();
    let victim = d.path().join("audio/pop_I-V-vi-IV_l1.ogg");
    std::fs::remove_file(&victim).unwrap();
    let e = load_err(d.path());
    assert!(
        e.contains("pop_I-V-vi-IV_l1") && e.contains("missing"),
        "{e}"
    );

    let d = library_copy();
    corrupt(&d.path().join("audio/lofi_I-vi-IV-V_l2.ogg"));
    let e = load_err(d.path());
    assert!(
        e.contains("lofi_I-vi-IV-V_l2") && e.contains("checksum"),
        "{e}"
    );

    // Truncated file whose checksum was updated: caught by decoding, before any render.
    let d = library_copy();
    let victim = d.path().join("audio/ambient_IV-I-V-vi_l0.ogg");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..60]).unwrap();
    index_checksum(d.path(), "ambient_IV-I-V-vi_l0", &bytes[..60]);
    let e = load_err(d.path());
    assert!(e.contains("ambient_IV-I-V-vi_l0"), "{e}");
}

/// A template decoded on demand gives the samples of a whole decode, as far as it is read,
/// without decoding the rest; a file cut short after the library loaded is a clear error
/// naming it, not a short bar.
#[test]
fn template_audio_decodes_on_demand_what_a_whole_decode_gives() {
    let lib = Library::load(&default_library_dir(&repo())).unwrap();
    let t = lib.get("pop_I-V-vi-IV_l1").expect("shipped template");
    let whole = lib.decode(t).unwrap();
    let mut audio = lib.stream_into(t, Vec::new()).unwrap();
    assert_eq!(audio.frames() * 2, whole.len());
    let bar = t.info.bar_frames();
    assert_eq!(audio.frames_range(100, bar).unwrap(), &whole[200..2 * bar]);
    assert!(
        audio.decoded_frames() < 2 * bar,
        "a bar's read decoded {} frames of {}",
        audio.decoded_frames(),
        audio.frames()
    );
    let n = audio.frames();
    assert_eq!(audio.frames_range(0, n).unwrap(), &whole[..]);

    let d = library_copy();
    let lib = Library::load(d.path()).unwrap();
    let t = lib.get("pop_I-V-vi-IV_l1").unwrap();
    let path = d.path().join(&t.info.audio);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let mut audio = lib.stream_into(t, Vec::new()).unwrap();
    let n = audio.frames();
    let e = audio.frames_range(0, n).unwrap_err().to_string();
    assert!(
        e.contains("pop_I-V-vi-IV_l1.ogg") && e.contains("tools/templates/build.sh"),
        "{e}"
    );
}

/// `Library::open` (what `score` loads) leaves each audio file's checksum to its first
/// play: a corrupt template is an error naming it when it is played, not before, and the
/// others play; a missing file is still an error at once.
#[test]
fn an_opened_library_checks_a_template_when_it_first_plays() {
    let d = library_copy();
    corrupt(&d.path().join("audio/lofi_I-vi-IV-V_l2.ogg"));
    let lib = Library::open(d.path()).expect("opens: the audio is checked when played");
    let t = lib.get("lofi_I-vi-IV-V_l2").unwrap();
    for _ in 0..2 {
        let e = lib
            .stream_into(t, Vec::new())
            .err()
            .expect("corrupt")
            .to_string();
        assert!(
            e.contains("lofi_I-vi-IV-V_l2.ogg") && e.contains("checksum"),
            "{e}"
        );
        let e = lib.decode(t).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
    }
    // a sound template of the same library plays, as the loaded library plays it
    let sound = lib.get("lofi_I-vi-IV-V_l1").unwrap();
    let loaded = Library::load(&default_library_dir(&repo())).unwrap();
    let whole = loaded
        .decode(loaded.get("lofi_I-vi-IV-V_l1").unwrap())
        .unwrap();
    assert_eq!(lib.decode(sound).unwrap(), whole);
    let mut audio = lib.stream_into(sound, Vec::new()).unwrap();
    let frames = audio.frames();
    assert_eq!(audio.frames_range(0, frames).unwrap(), &whole[..]);

    // a file that is not an Ogg stream but has the index's checksum: the format is checked
    let d = library_copy();
    let victim = d.path().join("audio/pop_I-V-vi-IV_l1.ogg");
    std::fs::write(&victim, b"not an ogg file").unwrap();
    index_checksum(d.path(), "pop_I-V-vi-IV_l1", b"not an ogg file");
    let lib = Library::open(d.path()).unwrap();
    let e = lib
        .stream_into(lib.get("pop_I-V-vi-IV_l1").unwrap(), Vec::new())
        .err()
        .expect("not an ogg file")
        .to_string();
    assert!(
        e.contains("pop_I-V-vi-IV_l1.ogg") && e.contains("Ogg"),
        "{e}"
    );

    let d = library_copy();
    std::fs::remove_file(d.path().join("audio/ambient_IV-I-V-vi_l0.ogg")).unwrap();
    let e = match Library::open(d.path()) {
        Ok(_) => panic!("opened without a template's audio"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("ambient_IV-I-V-vi_l0") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn index_entry_pointing_nowhere_and_bad_format_are_load_errors() {
    let d = library_copy();
    edit_index(d.path(), |v| {
        v["templates"][3]["audio"] = "audio/nowhere.ogg".into()
    });
    let e = load_err(d.path());
    assert!(e.contains("nowhere.ogg") && e.contains("missing"), "{e}");

    let d = library_copy();
    edit_index(d.path(), |v| v["sample_rate"] = 44_100.into());
    assert!(load_err(d.path()).contains("44100 Hz"));

    let d = library_copy();
    edit_index(d.path(), |v| v["templates"][0]["channels"] = 1.into());
    assert!(load_err(d.path()).contains("not a valid template index"));

    let d = library_copy();
    std::fs::write(d.path().join("index.json"), b"{ not json").unwrap();
    assert!(load_err(d.path()).contains("not a valid template index"));
}

#[test]
fn wrong_rate_or_channel_count_is_a_load_error() {
    // Real Vorbis streams at 44.1 kHz stereo and 48 kHz mono (made by
    // tools/templates/make_bad_fixtures.sh from a template) under a template's name.
    for (fixture, want) in [("wrong_rate.ogg", "44100 Hz"), ("mono.ogg", "x 1 channels")] {
        let d = library_copy();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/render/testdata")
            .join(fixture);
        let bytes = std::fs::read(&src).unwrap();
        std::fs::write(d.path().join("audio/cinematic_I-V-vi-IV_l0.ogg"), &bytes).unwrap();
        let sha = hex::encode(sha2::Sha256::digest(&bytes));
        edit_index(d.path(), |v| {
            for t in v["templates"].as_array_mut().unwrap() {
                if t["id"] == "cinematic_I-V-vi-IV_l0" {
                    t["sha256"] = sha.clone().into();
                }
            }
        });
        let e = load_err(d.path());
        assert!(
            e.contains("cinematic_I-V-vi-IV_l0") && e.contains(want),
            "{fixture}: {e}"
        );
    }
}

#[test]
fn a_soundfont_that_is_not_sf2_is_a_load_error() {
    let lib = Library::load(&default_library_dir(&repo())).unwrap();
    let not_sf2 = default_library_dir(&repo()).join("audio/lofi_I-V-vi-IV_l0.ogg");
    let e = Renderer::new(lib.clone(), &not_sf2)
        .err()
        .expect("an .ogg is not a SoundFont")
        .to_string();
    assert!(e.contains("not a SoundFont 2"), "{e}");
    let e = Renderer::new(lib, Path::new("/nonexistent/melody.sf2"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cannot open"), "{e}");
}

#[test]
fn committed_library_checks_clean() {
    let lib = Library::load(&default_library_dir(&repo())).unwrap();
    assert_eq!(lib.check(), vec![]);
    assert_eq!(lib.templates().len(), 5 * PROGRESSIONS.len() * 3);
    for g in [
        Genre::Lofi,
        Genre::Pop,
        Genre::Ambient,
        Genre::Cinematic,
        Genre::Acoustic,
    ] {
        assert_eq!(lib.layers(g), vec![0, 1, 2]);
    }
}

use sha2::Digest;

#[test]
fn a_new_section_changes_the_layer() {
    // Energy picks the layer whose share holds it...
    assert_eq!(section_layer(0.1, 3, None), 0);
    assert_eq!(section_layer(0.5, 3, None), 1);
    assert_eq!(section_layer(1.0, 3, None), 2);
    // ...unless that layer is already playing: then the neighbour nearer the energy.
    assert_eq!(section_layer(0.40, 3, Some(1)), 0);
    assert_eq!(section_layer(0.60, 3, Some(1)), 2);
    assert_eq!(section_layer(0.1, 3, Some(0)), 1);
    assert_eq!(section_layer(0.95, 3, Some(2)), 1);
    assert_eq!(section_layer(0.5, 3, Some(0)), 1);
    assert_eq!(section_layer(0.5, 1, Some(0)), 0);
    // In a rendered piece: every section after the first plays another layer than the one
    // before it (the demo plan holds the energy in one band over several sections).
    let (bars, notes, styles) = piece(Genre::Pop, 100.0, 40.0);
    let mut r = renderer();
    let mut layers = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        let mut out = vec![0f32; ((b.end - b.start) * SAMPLE_RATE as f64).round() as usize * CH];
        let n = notes.iter().find(|n| n.bar == b.index);
        let info = r
            .render_bar(b, n, &styles[i], &bars[i + 1..], &mut out)
            .unwrap();
        if b.section_start || i == 0 {
            layers.push(info.layer);
        }
    }
    assert!(layers.len() >= 3, "{layers:?}");
    assert!(layers.windows(2).all(|w| w[0] != w[1]), "{layers:?}");
}
