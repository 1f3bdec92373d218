//! The appliance's config file, `/etc/undertone/config.toml` by default.
//!
//! Parsing is strict (`deny_unknown_fields`: a typo is an error naming the key), every
//! field has a default (an empty file is a valid config), values are validated with a
//! message naming the key and its valid range, and saving is atomic (temp file, fsync,
//! rename: after a crash or a kill the file is the old or the new one, never a torn one;
//! after a validation error it is untouched). The reference is `docs/ref/config.md`;
//! keep it in step with the doc comments here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::music::{Genre, Instrument, Mood, Preferences};

/// Where the appliance reads its config unless `--config` says otherwise: the defaults the
/// image ships (read-only under systemd's `ProtectSystem=strict` and on a read-only rootfs).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/undertone/config.toml";
/// The appliance's writable state folder (the `/data` partition of the image); the
/// environment variable [`STATE_DIR_ENV`] overrides it (the systemd unit points it at the
/// service's `StateDirectory`).
pub const DEFAULT_STATE_DIR: &str = "/data/undertone";
pub const STATE_DIR_ENV: &str = "UNDERTONE_STATE_DIR";
/// File name of the saved config inside the state folder.
pub const STATE_CONFIG_FILE: &str = "config.toml";

/// Which config file is read and where changes are saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLocations {
    /// The file read (it may not exist: then the defaults).
    pub read: PathBuf,
    /// Where a changed config is saved (the web page, `Config::save`).
    pub save: PathBuf,
}

impl ConfigLocations {
    /// `--config FILE` is read and saved; otherwise the saved copy in the state folder wins
    /// when it exists, else `/etc/undertone/config.toml` (else the defaults), and changes
    /// are saved to the state folder: the saved file is a whole config (what the web page
    /// wrote), so it replaces the shipped one rather than merging with it.
    pub fn resolve(explicit: Option<&Path>, etc: &Path, state_dir: &Path) -> ConfigLocations {
        if let Some(p) = explicit {
            return ConfigLocations {
                read: p.to_path_buf(),
                save: p.to_path_buf(),
            };
        }
        let saved = state_dir.join(STATE_CONFIG_FILE);
        ConfigLocations {
            read: if saved.exists() {
                saved.clone()
            } else {
                etc.to_path_buf()
            },
            save: saved,
        }
    }

    /// [`ConfigLocations::resolve`] with the appliance's folders.
    pub fn appliance(explicit: Option<&Path>) -> ConfigLocations {
        let state = std::env::var_os(STATE_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        Self::resolve(explicit, Path::new(DEFAULT_CONFIG_PATH), &state)
    }
}

/// Removes temporary files a save interrupted by a kill or a power cut left next to `path`
/// (`.NAME.partial-PID` of processes that no longer run). Returns how many were removed.
pub fn remove_stale_partials(path: &Path) -> usize {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.partial-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = n.strip_prefix(&prefix) else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            tracing::info!(file = %e.path().display(), "removed the leftover of an interrupted save");
            removed += 1;
        }
    }
    removed
}

/// Valid capture widths and heights (pixels): from the analysis minimum to 4K.
pub const SIZE_RANGE: (u32, u32) = (32, 4096);
/// Valid capture rates (frames/s).
pub const FPS_RANGE: (f64, f64) = (1.0, 120.0);
/// Valid software audio ring sizes (ms): below 100 ms a slow render step underruns; above
/// 5 s, reactions to the picture lag audibly.
pub const AUDIO_BUFFER_MS_RANGE: (u32, u32) = (100, 5000);

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where frames come from: `v4l2:/dev/video0` (a camera or HDMI capture) or
    /// `file:/path/clip.mp4` (a video file). Default: `v4l2:/dev/video0`.
    pub source: String,
    /// Replay a `file:` source at its own frame rate, as if it were a camera (otherwise it
    /// is read as fast as the engine goes). Default: `false`.
    pub realtime: bool,
    /// Capture width asked of the camera, in pixels (32–4096). Default: 640.
    pub width: u32,
    /// Capture height asked of the camera, in pixels (32–4096). Default: 480.
    pub height: u32,
    /// Capture rate asked of the camera, frames/s (1–120). Default: 30.
    pub fps: f64,
    /// ALSA PCM the music plays on (`default`, `plughw:0,0`, `hw:CARD=Device`; list them
    /// with `aplay -L`). Default: `default`.
    pub audio_device: String,
    /// Audio queued for the playback thread beyond the device's own buffer, in ms
    /// (100–5000): what a scene cut can no longer change. Less reacts faster to cuts; more
    /// rides out longer scheduling hiccups. The music engine renders a bar ahead of this
    /// and can still cut it short. Default: 150.
    pub audio_buffer_ms: u32,
    /// Promote the playback thread to real-time priority (SCHED_FIFO) when allowed.
    /// Default: `true`.
    pub realtime_audio: bool,
    /// Address the metrics (`/metrics`) and health (`/healthz`) endpoints listen on, as
    /// `IP:PORT`. Default: `127.0.0.1:9750` (this machine only).
    pub listen: String,
    /// JSON report of the run (per bar, cuts, underruns, headroom), rewritten atomically
    /// as the run goes. Default: none.
    pub report: Option<PathBuf>,
    /// Also record the music that is played to this WAV file. Default: none.
    pub record: Option<PathBuf>,
    /// Music preferences.
    pub music: MusicConfig,
    /// `[web]`: the web page's data folder, output volume, daily schedule and board
    /// profile (see `web::WebConfig` and docs/guide/web.md). Default: every `[web]` default.
    #[serde(default)]
    pub web: crate::web::WebConfig,
}

/// `[music]`: what the listener asked for (the fields of `music::Preferences`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MusicConfig {
    /// `lofi`, `pop`, `ambient`, `cinematic` or `acoustic`. Default: chosen from the picture.
    pub genre: Option<Genre>,
    /// `happy`, `calm`, `dark` or `epic`. Default: chosen from the picture.
    pub mood: Option<Mood>,
    /// Overall energy, 0.0 (calm) to 1.0 (intense). Default: from the picture.
    pub energy: Option<f32>,
    /// Melody instrument: `piano`, `guitar`, `strings`, `synth` or `flute`. Default: from the style.
    pub instrument: Option<Instrument>,
    /// Fixed tempo in BPM (40–240). Default: derived from the picture.
    pub tempo: Option<f64>,
    /// Seed of every random choice. Default: 0.
    pub seed: u64,
}

impl MusicConfig {
    pub fn to_preferences(&self) -> Preferences {
        Preferences {
            genre: self.genre,
            mood: self.mood,
            energy: self.energy,
            instrument: self.instrument,
            tempo: self.tempo,
            seed: self.seed,
            ..Default::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: "v4l2:/dev/video0".into(),
            realtime: false,
            width: 640,
            height: 480,
            fps: 30.0,
            audio_device: "default".into(),
            audio_buffer_ms: 150,
            realtime_audio: true,
            listen: "127.0.0.1:9750".into(),
            report: None,
            record: None,
            music: MusicConfig::default(),
            web: crate::web::WebConfig::default(),
        }
    }
}

/// A frame source named in the config or on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A V4L2 device node.
    V4l2(PathBuf),
    /// A video file.
    File(PathBuf),
}

impl std::str::FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("v4l2:").filter(|p| !p.is_empty()) {
            Ok(SourceSpec::V4l2(PathBuf::from(p)))
        } else if let Some(p) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            Ok(SourceSpec::File(PathBuf::from(p)))
        } else {
            Err(format!(
                "{s:?} is not a source; give v4l2:/dev/videoN or file:/path/to/clip"
            ))
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::V4l2(p) => write!(f, "v4l2:{}", p.display()),
            SourceSpec::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// Why a config could not be read, accepted or saved. Each names the file (and the key).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: no such config file (create it — every key is optional, see docs/ref/config.md — or pass --config FILE)")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read the config: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}(see docs/ref/config.md for the keys)")]
    Parse { path: PathBuf, detail: String },
    #[error("{path}: `{key}` {detail}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        detail: String,
    },
    #[error("{path}: cannot save the config (the old file is unchanged): {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        remove_stale_partials(path);
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Config::parse(&text, path)
    }

    /// Like [`Config::load`], but the defaults when `path` does not exist (the appliance's
    /// default path on a fresh box).
    pub fn load_or_default(path: &Path) -> Result<Config, ConfigError> {
        match Config::load(path) {
            Err(ConfigError::NotFound { .. }) => {
                tracing::info!(path = %path.display(), "no config file; using the defaults");
                Ok(Config::default())
            }
            r => r,
        }
    }

    /// Parses and validates config text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks every value; the error names the key and the valid range.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &'static str, detail: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            detail,
        };
        self.source_spec().map_err(|e| bad("source", e))?;
        let (lo, hi) = SIZE_RANGE;
        if !(lo..=hi).contains(&self.width) {
            return Err(bad(
                "width",
                format!("= {} is out of range; give {lo} to {hi} pixels", self.width),
            ));
        }
        if !(lo..=hi).contains(&self.height) {
            return Err(bad(
                "height",
                format!(
                    "= {} is out of range; give {lo} to {hi} pixels",
                    self.height
                ),
            ));
        }
        let (lo, hi) = FPS_RANGE;
        if !(self.fps.is_finite() && (lo..=hi).contains(&self.fps)) {
            return Err(bad(
                "fps",
                format!("= {} is out of range; give {lo} to {hi} frames/s", self.fps),
            ));
        }
        if self.audio_device.trim().is_empty() {
            return Err(bad(
                "audio_device",
                "is empty; give an ALSA PCM name such as default or plughw:0,0 (see aplay -L)"
                    .into(),
            ));
        }
        let (lo, hi) = AUDIO_BUFFER_MS_RANGE;
        if !(lo..=hi).contains(&self.audio_buffer_ms) {
            return Err(bad(
                "audio_buffer_ms",
                format!(
                    "= {} is out of range; give {lo} to {hi} ms",
                    self.audio_buffer_ms
                ),
            ));
        }
        self.listen_addr().map_err(|e| bad("listen", e))?;
        if let Some(e) = self.music.energy {
            if !(e.is_finite() && (0.0..=1.0).contains(&e)) {
                return Err(bad(
                    "music.energy",
                    format!("= {e} is out of range; give 0.0 to 1.0"),
                ));
            }
        }
        if let Some(t) = self.music.tempo {
            let (lo, hi) = crate::plan::TEMPO_PREF_RANGE;
            if !(t.is_finite() && (lo..=hi).contains(&t)) {
                return Err(bad(
                    "music.tempo",
                    format!("= {t} is out of range; give {lo} to {hi} BPM"),
                ));
            }
        }
        Ok(())
    }

    /// The parsed `source`.
    pub fn source_spec(&self) -> Result<SourceSpec, String> {
        self.source.parse()
    }

    /// The parsed `listen` address.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|_| {
            format!(
                "= {:?} is not an address; give IP:PORT such as 127.0.0.1:9750",
                self.listen
            )
        })
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serialises")
    }

    /// Validates and saves atomically; on any error the old file stays as it was.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate(path)?;
        remove_stale_partials(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The state folder may not exist yet on a fresh box.
            std::fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        }
        crate::fsutil::write_atomic(path, self.to_toml().as_bytes()).map_err(|source| {
            ConfigError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Replaces the config at `path` with `text` (as a web page or an operator submits it)
    /// if it parses and validates; otherwise returns the error and leaves the file alone.
    pub fn save_text(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg = Config::parse(text, path)?;
        remove_stale_partials(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ConfigError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        }
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|source| {
            ConfigError::Write {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/etc/undertone/config.toml")
    }

    #[test]
    fn the_saved_copy_overrides_etc_and_saves_go_to_the_state_folder() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc/config.toml");
        let state = dir.path().join("data/undertone");
        let l = ConfigLocations::resolve(None, &etc, &state);
        assert_eq!(l.read, etc);
        assert_eq!(l.save, state.join("config.toml"));
        // The first save creates the state folder; from then on the saved copy is read.
        let cfg = Config {
            fps: 25.0,
            ..Config::default()
        };
        cfg.save(&l.save).unwrap();
        let l = ConfigLocations::resolve(None, &etc, &state);
        assert_eq!(l.read, state.join("config.toml"));
        assert_eq!(Config::load(&l.read).unwrap().fps, 25.0);
        let explicit = dir.path().join("mine.toml");
        let l = ConfigLocations::resolve(Some(&explicit), &etc, &state);
        assert_eq!(
            (l.read.clone(), l.save.clone()),
            (explicit.clone(), explicit)
        );
    }

    #[test]
    fn a_save_killed_midway_leaves_no_partial_file_after_the_next_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        Config::default().save(&path).unwrap();
        // What a kill between write and rename leaves: a temp file of a dead process
        // (pid 0 is never a user process), and one of a live process (ours), kept.
        let dead = dir.path().join(".config.toml.partial-0");
        let live = crate::fsutil::temp_path(&path);
        std::fs::write(&dead, "fps = 3").unwrap();
        std::fs::write(&live, "fps = 4").unwrap();
        assert_eq!(Config::load(&path).unwrap(), Config::default());
        assert!(!dead.exists());
        assert!(live.exists());
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("", p()).unwrap(), Config::default());
    }

    #[test]
    fn full_config_parses() {
        let text = r#"
            source = "file:/data/clip.mp4"
            realtime = true
            width = 1280
            height = 720
            fps = 25
            audio_device = "plughw:0,0"
            audio_buffer_ms = 300
            realtime_audio = false
            listen = "0.0.0.0:8080"
            report = "/data/report.json"
            record = "/data/played.wav"
            [music]
            genre = "lofi"
            mood = "calm"
            energy = 0.3
            instrument = "piano"
            tempo = 96
            seed = 7
        "#;
        let c = Config::parse(text, p()).unwrap();
        assert_eq!(
            c.source_spec().unwrap(),
            SourceSpec::File("/data/clip.mp4".into())
        );
        assert_eq!(c.fps, 25.0);
        assert_eq!(c.music.genre, Some(Genre::Lofi));
        assert_eq!(c.music.to_preferences().seed, 7);
        assert_eq!(c.listen_addr().unwrap().port(), 8080);
        // Round trip through the writer.
        assert_eq!(Config::parse(&c.to_toml(), p()).unwrap(), c);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("audio_devcie = \"hw:0\"\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("audio_devcie"), "{e}");
        assert!(e.contains("/etc/undertone/config.toml"), "{e}");
        let e = Config::parse("[music]\ngenere = \"pop\"\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("genere"), "{e}");
    }

    #[test]
    fn impossible_values_name_the_key_and_range() {
        for (text, key, range) in [
            ("fps = 0", "`fps`", "1 to 120"),
            ("width = 100000", "`width`", "32 to 4096"),
            ("audio_buffer_ms = 5", "`audio_buffer_ms`", "100 to 5000"),
            ("listen = \"localhost\"", "`listen`", "IP:PORT"),
            ("source = \"/dev/video0\"", "`source`", "v4l2:/dev/videoN"),
            ("audio_device = \" \"", "`audio_device`", "aplay -L"),
            ("[music]\nenergy = 1.5", "`music.energy`", "0.0 to 1.0"),
            ("[music]\ntempo = 500", "`music.tempo`", "BPM"),
        ] {
            let e = Config::parse(text, p()).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(range), "{text}: {e}");
        }
        // A wrong type is named by the parser.
        let e = Config::parse("fps = \"fast\"", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("fps"), "{e}");
    }

    #[test]
    fn bad_save_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let good = Config {
            fps: 25.0,
            ..Config::default()
        };
        good.save(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let bad = Config {
            fps: -1.0,
            ..Config::default()
        };
        assert!(matches!(
            bad.save(&path),
            Err(ConfigError::Invalid { key: "fps", .. })
        ));
        assert!(Config::save_text("fps = 30\nbogus = 1\n", &path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(Config::load(&path).unwrap(), good);
        let c = Config::save_text("fps = 15\n", &path).unwrap();
        assert_eq!(c.fps, 15.0);
        assert_eq!(Config::load(&path).unwrap().fps, 15.0);
        // Only the config is left in the folder (no temp files).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_file_names_it_and_default_path_falls_back() {
        let e = Config::load(Path::new("/nonexistent/u.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/u.toml") && e.contains("--config"),
            "{e}"
        );
        assert_eq!(
            Config::load_or_default(Path::new("/nonexistent/u.toml")).unwrap(),
            Config::default()
        );
    }
}
