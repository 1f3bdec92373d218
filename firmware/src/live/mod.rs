//! The live engine's pieces that do not depend on the music stages: clocks, the audio ring,
//! device supervision, the config file, systemd notification and the metrics endpoint.
//! See `docs/design/live.md`.
//!
//! | file | what |
//! |---|---|
//! | `control.rs` | [`Control`](control::Control): status, live series and commands shared with the web page and button |
//! | `engine.rs` | the music thread (plan → compose → render → level) and the feeder into the ALSA ring |
//! | `level.rs` | streaming loudness normalisation and peak limiting of each bar |
//! | `clock.rs` | [`Clock`](clock::Clock): real and simulated monotonic time for control loops |
//! | `ring.rs` | lock-free SPSC sample ring between the engine and the playback thread |
//! | `device.rs` | Missing / Starting / Running / Stalled with reopen backoff; [`Capture`](device::Capture) for sources |
//! | `config.rs` | `/etc/undertone/config.toml`: strict parsing, validation, atomic save |
//! | `notify.rs` | `sd_notify` over `$NOTIFY_SOCKET` (READY, WATCHDOG, STATUS, STOPPING) |
//! | `metrics.rs` | live counters, Prometheus `/metrics` and `/healthz` |
//! | `timeline.rs` | [`FrameClock`](timeline::FrameClock): frame timestamps onto the audio master clock |

pub mod clock;
pub mod config;
pub mod control;
pub mod device;
pub mod engine;
pub mod level;
pub mod metrics;
pub mod notify;
pub mod ring;
pub mod timeline;
