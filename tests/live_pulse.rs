//! Test support shared by the live tests (`mod live_pulse;`): a private PulseAudio with a
//! 48 kHz null sink, and ALSA PCM definitions that reach it, so paced ALSA playback can be
//! tested without a sound card.
//!
//! The PCMs are defined in an asoundrc under a private `$XDG_CONFIG_HOME` ([`alsa_config_home`]),
//! with the server socket and recording file as arguments: `utpulse:SERVER="unix:..."` plays,
//! `utpaced:SERVER="unix:...",FILE="x.wav"` plays and records what it played.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The PCM definitions every test uses (see the module comment).
const ASOUNDRC: &str = r#"
pcm.utpulse {
  @args [ SERVER ]
  @args.SERVER { type string }
  type pulse
  device "nullsink"
  server $SERVER
  handle_underrun true
}
pcm.utpaced {
  @args [ SERVER FILE ]
  @args.SERVER { type string }
  @args.FILE { type string }
  type file
  slave.pcm { type pulse device "nullsink" server $SERVER handle_underrun true }
  file $FILE
  format "wav"
}
"#;

static CONFIG_HOME: OnceLock<PathBuf> = OnceLock::new();

/// A folder whose `alsa/asoundrc` defines the PCMs; give it to a child as `XDG_CONFIG_HOME`.
/// One folder for every test process (the file is always the same; each writes it to a
/// temporary name and renames it, so a reader never sees half of it), not one per process
/// left behind in the temporary folder.
pub fn alsa_config_home() -> &'static Path {
    CONFIG_HOME.get_or_init(|| {
        let dir = std::env::temp_dir().join("undertone-live-alsa");
        std::fs::create_dir_all(dir.join("alsa")).unwrap();
        let tmp = dir.join(format!("alsa/.asoundrc.{}", std::process::id()));
        std::fs::write(&tmp, ASOUNDRC).unwrap();
        std::fs::rename(&tmp, dir.join("alsa/asoundrc")).unwrap();
        dir
    })
}

/// `undertone run` (with the repository as its data folder) using the PCMs above, outside
/// systemd (no notify socket or watchdog inherited from the test's environment).
pub fn undertone_run() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_undertone"));
    c.env("XDG_CONFIG_HOME", alsa_config_home())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .arg("--data")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .arg("run");
    c
}

/// The arguments of a run that replays the video file `source` as a camera in real time into
/// the ALSA PCM `pcm`, writes its report to `report` (and what it played to `record`), and
/// serves its control API on a free port; the caller adds the rest.
pub fn paced_args(source: &Path, pcm: &str, report: &Path, record: Option<&Path>) -> Vec<String> {
    let mut a = vec![
        "--source".to_string(),
        format!("file:{}", source.display()),
        "--realtime".to_string(),
        "--audio-device".to_string(),
        pcm.to_string(),
        "--report".to_string(),
        report.display().to_string(),
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
    ];
    if let Some(r) = record {
        a.extend(["--record".to_string(), r.display().to_string()]);
    }
    a
}

/// A JSON file the run wrote (its report).
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

static SETUP: std::sync::Once = std::sync::Once::new();

/// Points this process's alsa-lib at the asoundrc. Every test calls it before touching
/// ALSA, so no other thread reads the environment while it changes.
pub fn setup() {
    SETUP.call_once(|| std::env::set_var("XDG_CONFIG_HOME", alsa_config_home()));
}

/// A private PulseAudio with a 48 kHz stereo null sink, killed on drop.
pub struct Pulse {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Pulse {
    pub fn start(dir: &Path) -> Pulse {
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let socket = dir.join("native");
        let _ = std::fs::remove_file(&socket);
        let conf = dir.join("pa.conf");
        std::fs::write(
            &conf,
            format!(
                // norewinds=1: without it the first blocking write stalls ~1.85 s (RECIPES.md).
                "load-module module-null-sink sink_name=nullsink rate=48000 channels=2 norewinds=1\n\
                 load-module module-native-protocol-unix auth-anonymous=1 socket={}\n",
                socket.display()
            ),
        )
        .unwrap();
        let child = Command::new("pulseaudio")
            .args(["-n", "-F"])
            .arg(&conf)
            .args([
                "--exit-idle-time=-1",
                "--daemonize=no",
                "--log-target=stderr",
            ])
            .env("XDG_RUNTIME_DIR", &run)
            .env("HOME", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run pulseaudio: install it (tools/setup.sh does)");
        // Wait for the server to listen (it is an external process starting, not a timing check).
        let t0 = Instant::now();
        while !socket.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "pulseaudio did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // PulseAudio forwards client audio from its main thread at normal priority; on a
        // loaded machine it then falls behind the 85 ms device buffer and the test would
        // measure the rig. Make all its threads real-time where allowed (root or rtprio).
        let _ = Command::new("chrt")
            .args(["-a", "-f", "-p", "30"])
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        Pulse {
            child,
            dir: dir.to_path_buf(),
            socket,
        }
    }

    pub fn server(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The paced PCM, recording what it plays to `wav`.
    pub fn paced(&self, wav: &Path) -> String {
        format!(
            "utpaced:SERVER=\"{}\",FILE=\"{}\"",
            self.server(),
            wav.display()
        )
    }

    /// The paced PCM, no recording.
    pub fn pcm(&self) -> String {
        format!("utpulse:SERVER=\"{}\"", self.server())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.kill();
        *self = Pulse::start(&self.dir.clone());
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.kill();
    }
}
