//! The box's local web page: an app embedded in the binary, a JSON API under `/api/`
//! (described by `/api/openapi.json`), `/metrics` and `/healthz`, served by axum on its
//! own thread with a one-thread tokio runtime beside the engine (never on the audio path).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`WebServer`]: the thread, the router, the security layers |
//! | `api.rs` | the `/api/` and `/auth/` handlers |
//! | `auth.rs` | setup code, argon2id password, sessions and CSRF tokens, login rate limit |
//! | `settings.rs` | [`WebConfig`]: the config's `[web]` section (data folder, volume, schedule, board) |
//! | `templates.rs` | built-in and uploaded templates: list, validate, store, delete |
//! | `snapshot.rs` | the camera snapshot as PNG |
//! | `logs.rs` | recent log lines for the System page |
//! | `openapi.rs` | the OpenAPI 3.0 document |
//! | `assets.rs` | the page's files (`firmware/web/`), embedded |
//!
//! Security (see `docs/guide/web.md`): no default password (a one-time setup code in the
//! data folder and the log), argon2id, an `HttpOnly; SameSite=Strict` session cookie, a
//! CSRF token on every state change plus an Origin check, login rate limit with backoff,
//! body and upload limits checked before anything is stored, and no request string ever
//! used as a path without validation.

mod api;
pub mod assets;
pub mod auth;
pub mod logs;
pub mod openapi;
pub mod settings;
pub mod snapshot;
pub mod templates;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use settings::{Schedule, WebConfig};

use crate::live::config::{Config, ConfigError};
use crate::live::control::Control;
use crate::live::metrics::Metrics;

/// Largest JSON or TOML body any `/api/` call takes (a config is ~1 KB).
pub const API_BODY_LIMIT: usize = 64 * 1024;
/// Largest template upload, audio and MIDI together: a four-bar Vorbis loop at the slowest
/// tempo (20 BPM, 48 s) at high quality is ~2 MB.
pub const UPLOAD_LIMIT: usize = 8 * 1024 * 1024;
/// How often the live events stream looks for news (the plot's refresh, ~4 Hz).
pub const EVENT_PERIOD: Duration = Duration::from_millis(250);
/// How often the schedule is looked at.
pub const SCHEDULE_PERIOD: Duration = Duration::from_secs(20);
/// Exit status of a restart asked from the page: not 0, so systemd's `Restart=on-failure`
/// starts the service again (75 = EX_TEMPFAIL).
pub const RESTART_EXIT_CODE: i32 = 75;
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ut_session";
/// The header that carries the session's CSRF token on every state change.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Why the web server could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen on {addr} for the web page: {source} (is another undertone running? change `listen` in the config or --listen)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{path}: cannot use the web data folder ({source}); create it or set `web.data_dir` in the config")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the web thread: {0}")]
    Thread(std::io::Error),
}

/// Everything the handlers share.
pub(crate) struct AppState {
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub templates: templates::Templates,
    pub auth: Mutex<auth::Auth>,
    /// The config as last saved from the page (or read at start).
    pub config: Mutex<Config>,
    pub started: Instant,
    /// Set when the server shuts down, so open event streams end.
    pub stopping: std::sync::atomic::AtomicBool,
}

impl AppState {
    pub fn auth(&self) -> std::sync::MutexGuard<'_, auth::Auth> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running web server; dropped or [`WebServer::stop`]ped, it shuts down.
pub struct WebServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebServer {
    /// Binds `addr` (port 0 picks a free one) and serves on a thread named `web`.
    ///
    /// `config_path` is the file the Settings page edits (its `[web]` section names the
    /// data folder's defaults); `data_dir` holds the password, the setup code and uploaded
    /// templates, and is created if missing. The built-in template library is found with
    /// [`crate::paths::data_root`].
    pub fn start(
        addr: SocketAddr,
        control: Arc<Control>,
        metrics: Arc<Metrics>,
        config_path: &Path,
        data_dir: &Path,
    ) -> Result<WebServer, WebError> {
        let library = crate::paths::data_root(None).join("templates");
        Self::start_with_library(addr, control, metrics, config_path, data_dir, &library)
    }

    /// [`WebServer::start`] with the built-in template library named.
    pub fn start_with_library(
        addr: SocketAddr,
        control: Arc<Control>,
        metrics: Arc<Metrics>,
        config_path: &Path,
        data_dir: &Path,
        library: &Path,
    ) -> Result<WebServer, WebError> {
        let config = Config::load_or_default(config_path)?;
        config.web.validate(config_path)?;
        std::fs::create_dir_all(data_dir).map_err(|source| WebError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let ttl = Duration::from_secs(config.web.session_hours as u64 * 3600);
        let auth = auth::Auth::open(data_dir, ttl)?;
        let state = Arc::new(AppState {
            control,
            metrics: metrics.clone(),
            config_path: config_path.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            templates: templates::Templates::new(library.to_path_buf(), data_dir),
            auth: Mutex::new(auth),
            config: Mutex::new(config),
            started: Instant::now(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });

        let listener =
            std::net::TcpListener::bind(addr).map_err(|source| WebError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| WebError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| WebError::Bind { addr, source })?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = api::router(state.clone()).merge(crate::live::metrics::router(metrics));
        let thread = std::thread::Builder::new()
            .name("web".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "web: cannot make the async runtime; no web page");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "web: cannot use the socket; no web page");
                            return;
                        }
                    };
                    tokio::spawn(api::schedule_loop(state.clone()));
                    let res = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                        state
                            .stopping
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                    })
                    .await;
                    if let Err(e) = res {
                        tracing::error!(error = %e, "web server stopped");
                    }
                });
            })
            .map_err(WebError::Thread)?;
        tracing::info!(addr = %local, "web page on http://{local}/");
        Ok(WebServer {
            addr: local,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address (the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread. Open event streams end with it.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
