//! The refinement loop (patent: dislike → options → update): list the options that fit a
//! scored result and apply one in place, reusing the cached analysis and the video stream of
//! the previous `scored.mp4`. The tempo (and so any warp) stays as it was.

use std::fmt;
use std::fs;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use clap::ValueEnum;

use super::{
    make_music, mux::Muxer, plan_music, write_outputs, Engines, Progress, Report, ScoreError,
    Staging, Timings, ANALYSIS_FILE, OUTPUT_FILES,
};
use crate::extract::Analysis;
use crate::music::{Genre, Instrument, Mood, Preferences, DENSITY_CLASSES};

/// How far "more energetic" / "calmer" move the energy preference.
const ENERGY_STEP: f32 = 0.25;
/// Largest density offset "simpler"/"busier" may accumulate.
const MAX_DENSITY_OFFSET: i8 = 3;

/// One way to change a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefineOption {
    MoreEnergetic,
    Calmer,
    Simpler,
    Busier,
    NewMelody,
    Genre(Genre),
    Mood(Mood),
    Instrument(Instrument),
}

impl fmt::Display for RefineOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |v: &dyn Fn() -> Option<clap::builder::PossibleValue>| {
            v().map(|p| p.get_name().to_string()).unwrap_or_default()
        };
        match self {
            RefineOption::MoreEnergetic => write!(f, "more-energetic"),
            RefineOption::Calmer => write!(f, "calmer"),
            RefineOption::Simpler => write!(f, "simpler"),
            RefineOption::Busier => write!(f, "busier"),
            RefineOption::NewMelody => write!(f, "new-melody"),
            RefineOption::Genre(g) => write!(f, "genre={}", name(&|| g.to_possible_value())),
            RefineOption::Mood(m) => write!(f, "mood={}", name(&|| m.to_possible_value())),
            RefineOption::Instrument(i) => {
                write!(f, "instrument={}", name(&|| i.to_possible_value()))
            }
        }
    }
}

impl RefineOption {
    /// What the option does, for `--list`.
    pub fn describe(&self) -> &'static str {
        match self {
            RefineOption::MoreEnergetic => "more energy: busier bars, fuller arrangement",
            RefineOption::Calmer => "calmer: sparser bars, lighter arrangement",
            RefineOption::Simpler => "simpler melody: fewer notes per bar",
            RefineOption::Busier => "busier melody: more notes per bar",
            RefineOption::NewMelody => "a new melody over the same plan and style",
            RefineOption::Genre(_) => "another genre (template style)",
            RefineOption::Mood(_) => "another mood (major or minor harmony)",
            RefineOption::Instrument(_) => "another lead instrument",
        }
    }
}

impl FromStr for RefineOption {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("unknown refinement option '{s}'; run `undertone refine DIR --list` to see the options")
        };
        Ok(match s {
            "more-energetic" => RefineOption::MoreEnergetic,
            "calmer" => RefineOption::Calmer,
            "simpler" => RefineOption::Simpler,
            "busier" => RefineOption::Busier,
            "new-melody" => RefineOption::NewMelody,
            _ => match s.split_once('=') {
                Some(("genre", v)) => {
                    RefineOption::Genre(Genre::from_str(v, true).map_err(|_| bad())?)
                }
                Some(("mood", v)) => {
                    RefineOption::Mood(Mood::from_str(v, true).map_err(|_| bad())?)
                }
                Some(("instrument", v)) => {
                    RefineOption::Instrument(Instrument::from_str(v, true).map_err(|_| bad())?)
                }
                _ => return Err(bad()),
            },
        })
    }
}

/// Reads a previous result's report.
pub fn load_report(dir: &Path) -> Result<Report, ScoreError> {
    let path = dir.join("report.json");
    let bytes = fs::read(&path).map_err(|e| ScoreError::Previous {
        path: path.display().to_string(),
        reason: format!("{e}; refine needs a folder written by `undertone score`"),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ScoreError::Previous {
        path: path.display().to_string(),
        reason: format!("not a report of this version ({e}); score the video again"),
    })
}

fn mean_energy(r: &Report) -> f32 {
    if r.bars.is_empty() {
        return 0.5;
    }
    r.bars.iter().map(|b| b.energy).sum::<f32>() / r.bars.len() as f32
}

fn current<T: serde::de::DeserializeOwned>(r: &Report, key: &str) -> Option<T> {
    r.bars
        .first()
        .and_then(|b| b.style.get(key))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// What the music is like now, for choosing the options that fit it: the mean energy and
/// density class of the bars (the whole piece offline, the recent bars live) and the style
/// playing (`None` where unknown).
#[derive(Debug, Clone, Copy)]
pub struct Playing {
    pub energy: f32,
    pub density: f32,
    pub genre: Option<Genre>,
    pub mood: Option<Mood>,
    pub instrument: Option<Instrument>,
}

/// The options that fit music with preferences `p` that plays like `now` (offline and live).
pub fn options_for(p: &Preferences, now: &Playing) -> Vec<RefineOption> {
    let energy = p.energy.unwrap_or(now.energy);
    let mut out = Vec::new();
    if energy < 1.0 - ENERGY_STEP / 2.0 {
        out.push(RefineOption::MoreEnergetic);
    }
    if energy > ENERGY_STEP / 2.0 {
        out.push(RefineOption::Calmer);
    }
    if p.density_offset > -MAX_DENSITY_OFFSET && now.density > 0.5 {
        out.push(RefineOption::Simpler);
    }
    if p.density_offset < MAX_DENSITY_OFFSET && now.density < DENSITY_CLASSES as f32 - 1.5 {
        out.push(RefineOption::Busier);
    }
    out.push(RefineOption::NewMelody);
    out.extend(
        Genre::value_variants()
            .iter()
            .filter(|g| Some(**g) != now.genre)
            .map(|g| RefineOption::Genre(*g)),
    );
    out.extend(
        Mood::value_variants()
            .iter()
            .filter(|m| Some(**m) != now.mood)
            .map(|m| RefineOption::Mood(*m)),
    );
    out.extend(
        Instrument::value_variants()
            .iter()
            .filter(|i| Some(**i) != now.instrument)
            .map(|i| RefineOption::Instrument(*i)),
    );
    out
}

/// Preferences `p` after applying `opt`; `energy` is the mean energy playing (the base of
/// "more energetic" / "calmer" when no energy was asked for).
pub fn apply_option(p: &Preferences, opt: RefineOption, energy: f32) -> Preferences {
    let mut p = p.clone();
    let energy = p.energy.unwrap_or(energy);
    match opt {
        RefineOption::MoreEnergetic => p.energy = Some((energy + ENERGY_STEP).min(1.0)),
        RefineOption::Calmer => p.energy = Some((energy - ENERGY_STEP).max(0.0)),
        RefineOption::Simpler => p.density_offset = (p.density_offset - 1).max(-MAX_DENSITY_OFFSET),
        RefineOption::Busier => p.density_offset = (p.density_offset + 1).min(MAX_DENSITY_OFFSET),
        RefineOption::NewMelody => p.melody_variation = p.melody_variation.wrapping_add(1),
        RefineOption::Genre(g) => p.genre = Some(g),
        RefineOption::Mood(m) => p.mood = Some(m),
        RefineOption::Instrument(i) => p.instrument = Some(i),
    }
    p
}

/// The options that fit this result.
pub fn options(r: &Report) -> Vec<RefineOption> {
    let p = &r.preferences;
    let now = Playing {
        energy: mean_energy(r),
        density: r.bars.iter().map(|b| b.density_class as f32).sum::<f32>()
            / r.bars.len().max(1) as f32,
        genre: p.genre.or_else(|| current(r, "genre")),
        mood: p.mood.or_else(|| current(r, "mood")),
        instrument: p.instrument.or_else(|| current(r, "instrument")),
    };
    options_for(p, &now)
}

/// The preferences after applying `opt` to a result.
pub fn refined_preferences(r: &Report, opt: RefineOption) -> Preferences {
    let mut p = apply_option(&r.preferences, opt, mean_energy(r));
    // Keep the grid (and any warp) exactly as it was.
    p.tempo = Some(r.tempo_bpm);
    p
}

/// Applies `opt` to the result in `dir`, rewriting its outputs in place.
pub fn apply(
    dir: &Path,
    opt: RefineOption,
    data_root: &Path,
    progress: &mut dyn Progress,
) -> Result<Report, ScoreError> {
    let t0 = Instant::now();
    if !dir.is_dir() {
        // not a scored folder: say what is missing, without creating anything
        load_report(dir)?;
    }
    // The folder is locked before its outputs are read: a `score` still renaming its outputs
    // into it is refused here, not read half-renamed.
    let staging = Staging::create(dir)?;
    let report = load_report(dir)?;
    let apath = dir.join(ANALYSIS_FILE);
    let abytes = fs::read(&apath).map_err(|e| ScoreError::Previous {
        path: apath.display().to_string(),
        reason: format!("{e}; score the video again"),
    })?;
    let analysis: Analysis = serde_json::from_slice(&abytes).map_err(|e| ScoreError::Previous {
        path: apath.display().to_string(),
        reason: format!("{e}; score the video again"),
    })?;
    let prefs = refined_preferences(&report, opt);
    let mut timings = Timings::default();
    let mut engines = Engines::load(data_root)?;
    let plan = plan_music(&analysis, &prefs, report.output.warped, &mut timings)?;
    // Everything is written into the staging folder; a failed write on a full disk says so.
    let new = (|| -> Result<Report, ScoreError> {
        // The video stream of the previous scored.mp4 (any warps already applied) is reused.
        let muxer = Muxer::start(
            &dir.join("scored.mp4"),
            &staging.path("scored.mp4"),
            None,
            analysis.fps,
            plan.duration,
            // a warped video was re-encoded with x264; otherwise it is the input's stream
            if report.output.warped {
                Some("h264")
            } else {
                analysis.video_codec.as_deref()
            },
        )?;
        let scored = make_music(plan, &prefs, &mut engines, &mut timings, progress)?;
        let t = Instant::now();
        fs::write(staging.path(ANALYSIS_FILE), &abytes).map_err(|e| ScoreError::Output {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let input = Path::new(&report.input.path);
        let new = write_outputs(
            &staging,
            input,
            &analysis,
            &scored,
            &prefs,
            report.output.warped,
            muxer,
        )?;
        timings.write = t.elapsed().as_secs_f64();
        timings.total = t0.elapsed().as_secs_f64();
        let new = new.with_timings(timings);
        fs::write(staging.path("report.json"), new.to_json()).map_err(|e| ScoreError::Output {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(new)
    })()
    .map_err(|e| staging.explain(e, REFINE_DISK_FULL_REMEDY))?;
    staging.commit(&OUTPUT_FILES)?;
    Ok(new)
}

/// What to do when the folder being refined is on a full disk (its outputs are as they were).
const REFINE_DISK_FULL_REMEDY: &str = "free some space there and refine again";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_their_names() {
        for o in [
            RefineOption::MoreEnergetic,
            RefineOption::Calmer,
            RefineOption::Simpler,
            RefineOption::Busier,
            RefineOption::NewMelody,
            RefineOption::Genre(Genre::Ambient),
            RefineOption::Mood(Mood::Dark),
            RefineOption::Instrument(Instrument::Flute),
        ] {
            assert_eq!(o.to_string().parse::<RefineOption>().unwrap(), o);
        }
        let e = "louder".parse::<RefineOption>().unwrap_err();
        assert!(e.contains("--list"), "{e}");
    }
}
