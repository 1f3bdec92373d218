//! Live counters of the engine and the HTTP endpoints the venue's monitoring reads:
//! `GET /metrics` (Prometheus text format 0.0.4) and `GET /healthz` (200 `ok` while audio
//! is playing, 503 with the reason otherwise).
//!
//! The engine and the playback thread write atomics; the web server (`web::WebServer`, on
//! its own threads) renders them on request through [`router`], so a slow scraper never
//! touches the audio path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::device::{AtomicState, DeviceState};
use crate::music::SAMPLE_RATE;
use crate::sink::PlaybackStatus;

/// An f64 gauge in an atomic (stored as its bits).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Everything `/metrics` shows. Counters only grow; gauges are the latest value.
#[derive(Debug)]
pub struct Metrics {
    /// Frames analysed.
    pub frames: AtomicU64,
    /// Scene cuts detected.
    pub cuts: AtomicU64,
    /// Bars planned.
    pub bars: AtomicU64,
    /// Analysis frame rate over the last second.
    pub fps: Gauge,
    /// Audio queued ahead of the listener (ring + device), seconds.
    pub headroom_seconds: Gauge,
    /// Lowest headroom seen while playing, seconds (infinity before any).
    pub headroom_min_seconds: Gauge,
    /// Last note-model step, seconds.
    pub model_step_seconds: Gauge,
    /// Camera state.
    pub camera: Arc<AtomicState>,
    /// The playback thread's counters, once the sink is started.
    playback: OnceLock<Arc<PlaybackStatus>>,
    /// Process start, for the uptime line.
    started: std::time::Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            frames: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            bars: AtomicU64::new(0),
            fps: Gauge::default(),
            headroom_seconds: Gauge::default(),
            headroom_min_seconds: Gauge::default(),
            model_step_seconds: Gauge::default(),
            camera: Arc::new(AtomicState::new(DeviceState::Missing)),
            playback: OnceLock::new(),
            started: std::time::Instant::now(),
        };
        m.headroom_min_seconds.set(f64::INFINITY);
        m
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Connects the playback thread's counters (underruns, xruns, audio state).
    pub fn attach_playback(&self, status: Arc<PlaybackStatus>) {
        let _ = self.playback.set(status);
    }

    /// Records a headroom sample (seconds) and keeps the minimum.
    pub fn record_headroom(&self, seconds: f64) {
        self.headroom_seconds.set(seconds);
        if seconds < self.headroom_min_seconds.get() {
            self.headroom_min_seconds.set(seconds);
        }
    }

    /// The audio device's state (Missing before a sink is attached).
    pub fn audio_state(&self) -> DeviceState {
        self.playback
            .get()
            .map_or(DeviceState::Missing, |p| p.state())
    }

    /// `Ok` when music reaches the device, else why not.
    pub fn health(&self) -> Result<(), String> {
        match self.audio_state() {
            DeviceState::Running => Ok(()),
            s => Err(format!("audio device {}", s.name())),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, f64)]| {
            let _ = writeln!(o, "# HELP undertone_{name} {help}");
            let _ = writeln!(o, "# TYPE undertone_{name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(o, "undertone_{name}{labels} {}", fmt_value(*v));
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        let pb = self.playback.get().map(|p| p.snapshot());
        let c =
            |f: fn(&crate::sink::PlaybackStats) -> u64| pb.as_ref().map_or(0.0, |s| f(s) as f64);
        metric(
            "underruns_total",
            "counter",
            "ALSA underruns (the device ran dry), each recovered.",
            &one(c(|s| s.underruns)),
        );
        metric(
            "starved_total",
            "counter",
            "Times the engine left the audio device nearly dry.",
            &one(c(|s| s.starved)),
        );
        metric(
            "audio_reopens_total",
            "counter",
            "Times the audio device was reopened after failing.",
            &one(c(|s| s.reopens)),
        );
        metric(
            "audio_position_seconds",
            "counter",
            "The master clock: audio played so far.",
            &one(c(|s| s.position) / SAMPLE_RATE as f64),
        );
        metric(
            "headroom_seconds",
            "gauge",
            "Audio queued ahead of the listener (ring and device).",
            &one(self.headroom_seconds.get()),
        );
        let min = self.headroom_min_seconds.get();
        metric(
            "headroom_min_seconds",
            "gauge",
            "Lowest headroom seen while playing.",
            &one(if min.is_finite() { min } else { 0.0 }),
        );
        metric(
            "frames_total",
            "counter",
            "Video frames analysed.",
            &one(self.frames.load(Ordering::Relaxed) as f64),
        );
        metric(
            "fps",
            "gauge",
            "Analysis frame rate over the last second.",
            &one(self.fps.get()),
        );
        metric(
            "cuts_total",
            "counter",
            "Scene cuts detected.",
            &one(self.cuts.load(Ordering::Relaxed) as f64),
        );
        metric(
            "bars_total",
            "counter",
            "Bars planned.",
            &one(self.bars.load(Ordering::Relaxed) as f64),
        );
        metric(
            "model_step_seconds",
            "gauge",
            "Duration of the last note-model step.",
            &one(self.model_step_seconds.get()),
        );
        let states = |s: DeviceState| {
            DeviceState::ALL
                .iter()
                .map(|x| {
                    (
                        format!("{{state=\"{}\"}}", x.name()),
                        (*x == s) as u8 as f64,
                    )
                })
                .collect::<Vec<_>>()
        };
        metric(
            "camera_state",
            "gauge",
            "Camera state (1 for the current one).",
            &states(self.camera.load()),
        );
        metric(
            "audio_state",
            "gauge",
            "Audio device state (1 for the current one).",
            &states(self.audio_state()),
        );
        metric(
            "uptime_seconds",
            "counter",
            "Seconds since the engine started.",
            &one(self.started.elapsed().as_secs_f64()),
        );
        o
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// The routes (public so the web page can merge them into its own router).
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    let m2 = metrics.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let m = m2.clone();
                async move {
                    match m.health() {
                        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The firmware's HTTP server (the web page's, which serves /metrics and /healthz
    /// without a session) on `addr`.
    fn serve(
        addr: std::net::SocketAddr,
        dir: &tempfile::TempDir,
        m: Arc<Metrics>,
    ) -> Result<crate::web::WebServer, crate::web::WebError> {
        crate::web::WebServer::start_with_library(
            addr,
            Arc::new(crate::live::control::Control::new()),
            m,
            &dir.path().join("config.toml"),
            &dir.path().join("data"),
            &dir.path().join("templates"),
        )
    }

    /// One real HTTP/1.1 request over loopback; returns (status line, body).
    fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    #[test]
    fn serves_metrics_and_health_over_http() {
        let m = Metrics::new();
        m.frames.store(1234, Ordering::Relaxed);
        m.cuts.store(5, Ordering::Relaxed);
        m.fps.set(29.97);
        m.record_headroom(0.4);
        m.record_headroom(0.25);
        m.record_headroom(0.5);
        m.model_step_seconds.set(0.0011);
        m.camera.store(DeviceState::Stalled);
        let dir = tempfile::tempdir().unwrap();
        let mut server = serve("127.0.0.1:0".parse().unwrap(), &dir, m.clone()).unwrap();
        let (status, body) = get(server.addr(), "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        for line in [
            "undertone_frames_total 1234",
            "undertone_cuts_total 5",
            "undertone_fps 29.97",
            "undertone_headroom_seconds 0.5",
            "undertone_headroom_min_seconds 0.25",
            "undertone_model_step_seconds 0.0011",
            "undertone_underruns_total 0",
            "undertone_camera_state{state=\"stalled\"} 1",
            "undertone_camera_state{state=\"running\"} 0",
            "undertone_audio_state{state=\"missing\"} 1",
            "# TYPE undertone_underruns_total counter",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "missing {line:?} in\n{body}"
            );
        }
        // Every sample line is `name[{labels}] value` with a parseable value.
        for l in body.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
        let (status, body) = get(server.addr(), "/healthz");
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(body, "audio device missing\n");
        let (status, _) = get(server.addr(), "/nope");
        assert!(status.contains("404"), "{status}");
        server.stop();
        assert!(std::net::TcpStream::connect(server.addr()).is_err());
    }

    #[test]
    fn bind_error_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = serve(addr, &dir, Metrics::new()).err().unwrap().to_string();
        assert!(e.contains(&addr.to_string()) && e.contains("listen"), "{e}");
    }
}
