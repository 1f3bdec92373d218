//! The handlers: `/auth/` (setup, login, logout: the only state changes without a session),
//! `/api/` (everything else, behind the session and CSRF layer) and the embedded app.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::auth::{self, AuthError};
use super::settings::{local_minute, SCHEDULE_MUTE_DB};
use super::templates::{TemplateError, UploadMeta};
use super::{
    AppState, API_BODY_LIMIT, CSRF_HEADER, EVENT_PERIOD, RESTART_EXIT_CODE, SCHEDULE_PERIOD,
    SESSION_COOKIE, UPLOAD_LIMIT,
};
use crate::live::config::{Config, ConfigError};
use crate::live::control::{Command, ControlError};
use crate::score::refine::RefineOption;

type St = State<Arc<AppState>>;

/// Most multipart bytes of the `meta` part of an upload.
const META_LIMIT: usize = 16 * 1024;
/// Delay between answering a restart and exiting (the answer must reach the browser).
const RESTART_DELAY: std::time::Duration = std::time::Duration::from_millis(300);

/// An error answer: `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json(self.status, &serde_json::json!({ "error": self.message }));
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match &e {
            AuthError::WrongPassword | AuthError::WrongSetupCode { .. } => StatusCode::UNAUTHORIZED,
            AuthError::AlreadySetUp | AuthError::NotSetUp => StatusCode::CONFLICT,
            AuthError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::WeakPassword => StatusCode::UNPROCESSABLE_ENTITY,
            AuthError::Storage { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry_after = match e {
            AuthError::RateLimited(s) => Some(s),
            _ => None,
        };
        ApiError {
            status,
            message: e.to_string(),
            retry_after,
        }
    }
}

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        let status = match &e {
            TemplateError::BadId(_) => StatusCode::BAD_REQUEST,
            TemplateError::Exists(_) => StatusCode::CONFLICT,
            TemplateError::NotFound(_) => StatusCode::NOT_FOUND,
            TemplateError::BuiltIn(_) => StatusCode::FORBIDDEN,
            TemplateError::Storage { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        let status = match &e {
            ConfigError::Write { .. } | ConfigError::Read { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        // The engine is behind, not broken: the client may retry after the next bar.
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
    }
}

pub fn json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (status, [(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn ok<T: Serialize>(v: &T) -> Response {
    json(StatusCode::OK, v)
}

/// Parses a JSON body; the type must be `application/json` (a cross-site form cannot send
/// that without a preflight, which this server never grants).
fn body_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("body: {e}")))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request comes from this page, as far as the browser says: `Origin` (when sent)
/// names the host the request went to, and `Sec-Fetch-Site` (when sent) is not cross-site.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(o) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let origin = o.to_str().unwrap_or("");
            let stripped = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            !host.is_empty() && stripped == Some(host)
        }
    }
}

fn session_cookie(token: &str, max_age_s: u64) -> HeaderValue {
    // Not `Secure`: the box serves plain HTTP on the local network.
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("ut_session=; Max-Age=0"))
}

/// The session/CSRF gate in front of every `/api/` operation.
async fn require_session(State(st): St, req: Request, next: Next) -> Response {
    let now = Instant::now();
    let headers = req.headers();
    let csrf = {
        let a = st.auth();
        match cookie(headers, SESSION_COOKIE).and_then(|t| a.session(t, now)) {
            Some(s) => s.csrf.clone(),
            None => {
                return ApiError::new(StatusCode::UNAUTHORIZED, "log in first (no valid session)")
                    .into_response()
            }
        }
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_origin(headers) || !auth::same(given, &csrf) {
            tracing::warn!(method = %req.method(), path = %req.uri().path(), "web: refused a request without this page's CSRF token (cross-site?)");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token; reload the page",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Headers on every answer: no framing, no sniffing, only this origin's scripts.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

pub(crate) fn router(st: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/status", get(status))
        .route("/api/series", get(series))
        .route("/api/events", get(events))
        .route("/api/snapshot.png", get(snapshot))
        .route("/api/refine", post(refine))
        .route("/api/refine/apply", post(refine_apply))
        .route("/api/refine/options", get(refine_options))
        .route("/api/config", get(config_get).put(config_put))
        .route("/api/config/backup", get(config_backup))
        .route("/api/config/restore", post(config_restore))
        .route("/api/devices", get(devices))
        .route(
            "/api/templates",
            get(templates_list)
                .post(template_upload)
                .layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route(
            "/api/templates/{id}",
            axum::routing::delete(template_delete),
        )
        .route("/api/templates/{id}/audio", get(template_audio))
        .route("/api/system", get(system))
        .route("/api/system/password", post(password))
        .route("/api/system/restart", post(restart))
        .route_layer(middleware::from_fn_with_state(st.clone(), require_session));
    Router::new()
        .merge(api)
        .route("/api/openapi.json", get(openapi))
        .route("/auth/state", get(auth_state))
        .route("/auth/setup", post(setup))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/", get(|| super::assets::serve("index.html")))
        .route(
            "/{file}",
            get(|UrlPath(f): UrlPath<String>| super::assets::serve_owned(f)),
        )
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .with_state(st)
}

// ---- /auth ----

#[derive(Serialize)]
struct AuthState {
    /// No password yet: the page asks for the setup code.
    setup_needed: bool,
    logged_in: bool,
    /// The session's CSRF token, to send in `X-CSRF-Token`.
    csrf: Option<String>,
}

async fn auth_state(State(st): St, headers: HeaderMap) -> Response {
    let a = st.auth();
    let s = cookie(&headers, SESSION_COOKIE).and_then(|t| a.session(t, Instant::now()));
    ok(&AuthState {
        setup_needed: !a.is_set_up(),
        logged_in: s.is_some(),
        csrf: s.map(|s| s.csrf.clone()),
    })
}

fn logged_in(st: &AppState, token: String, csrf: String) -> Response {
    let max_age = st.config().web.session_hours as u64 * 3600;
    let mut r = ok(&AuthState {
        setup_needed: false,
        logged_in: true,
        csrf: Some(csrf),
    });
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&token, max_age));
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    code: String,
    password: String,
}

async fn setup(State(st): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site request refused",
        ));
    }
    let b: SetupBody = body_json(&headers, &body)?;
    st.auth().check_setup_code(&b.code, Instant::now())?;
    auth::check_new_password(&b.password)?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&b.password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let mut a = st.auth();
    if a.is_set_up() {
        return Err(AuthError::AlreadySetUp.into());
    }
    a.set_hash(hash)?;
    let (t, csrf) = a.new_session(Instant::now());
    drop(a);
    tracing::info!("web: admin password set with the setup code");
    Ok(logged_in(&st, t, csrf))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    password: String,
}

/// Verifies a password under the rate limit: a locked-out attempt is refused before the
/// hash is touched.
async fn check_password(st: &Arc<AppState>, password: String) -> Result<(), ApiError> {
    let hash = {
        let mut a = st.auth();
        a.limit
            .check(Instant::now())
            .map_err(AuthError::RateLimited)?;
        a.hash().ok_or(AuthError::NotSetUp)?
    };
    if password.chars().count() > auth::MAX_PASSWORD_CHARS {
        st.auth().limit.failed(Instant::now());
        return Err(AuthError::WrongPassword.into());
    }
    let good = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut a = st.auth();
    if good {
        a.limit.succeeded();
        Ok(())
    } else {
        a.limit.failed(Instant::now());
        Err(AuthError::WrongPassword.into())
    }
}

async fn login(
    State(st): St,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-site request refused",
        ));
    }
    let b: LoginBody = body_json(&headers, &body)?;
    if let Err(e) = check_password(&st, b.password).await {
        tracing::warn!(%peer, "web: failed login");
        return Err(e);
    }
    let (t, csrf) = st.auth().new_session(Instant::now());
    tracing::info!(%peer, "web: logged in");
    Ok(logged_in(&st, t, csrf))
}

async fn logout(State(st): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let mut a = st.auth();
    let now = Instant::now();
    if let Some(t) = cookie(&headers, SESSION_COOKIE) {
        let csrf = a.session(t, now).map(|s| s.csrf.clone());
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match csrf {
            Some(c) if auth::same(given, &c) && same_origin(&headers) => a.end_session(t),
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token",
                ))
            }
            None => {}
        }
    }
    let mut r = ok(&serde_json::json!({ "logged_in": false }));
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(r)
}

// ---- /api: the engine ----

#[derive(Serialize)]
struct StatusOut {
    #[serde(flatten)]
    status: crate::live::control::Status,
    /// Bumped at every engine publication.
    version: u64,
    /// The firmware version.
    firmware: &'static str,
    /// Device states as the supervisors see them now (between engine publications too).
    camera_now: crate::live::device::DeviceState,
    audio_now: crate::live::device::DeviceState,
    /// Frames analysed and cuts detected since the start.
    frames: u64,
    cuts: u64,
}

fn status_out(st: &AppState) -> StatusOut {
    StatusOut {
        status: st.control.status(),
        version: st.control.version(),
        firmware: env!("CARGO_PKG_VERSION"),
        camera_now: st.metrics.camera.load(),
        audio_now: st.metrics.audio_state(),
        frames: st.metrics.frames.load(Ordering::Relaxed),
        cuts: st.metrics.cuts.load(Ordering::Relaxed),
    }
}

async fn status(State(st): St) -> Response {
    // JSON has no infinities: serde_json writes a silent level (-inf dBFS) as null.
    ok(&status_out(&st))
}

fn query_f64(uri: &axum::http::Uri, key: &str) -> Result<Option<f64>, ApiError> {
    let Some(q) = uri.query() else {
        return Ok(None);
    };
    for kv in q.split('&') {
        if let Some((k, v)) = kv.split_once('=') {
            if k == key {
                return v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| !x.is_nan())
                    .map(Some)
                    .ok_or_else(|| ApiError::bad(format!("{key}={v:?} is not a number")));
            }
        }
    }
    Ok(None)
}

#[derive(Serialize)]
struct Series {
    features: Vec<crate::live::control::FeaturePoint>,
    bars: Vec<crate::live::control::BarPoint>,
}

async fn series(State(st): St, uri: axum::http::Uri) -> Result<Response, ApiError> {
    let since = query_f64(&uri, "since")?.unwrap_or(f64::NEG_INFINITY);
    Ok(ok(&Series {
        features: st.control.features_since(since),
        bars: st.control.bars_since(since),
    }))
}

/// Server-sent events: `update` with the status (when it changed) and the new points.
async fn events(
    State(st): St,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    struct S {
        st: Arc<AppState>,
        version: Option<u64>,
        /// Last feature point sent (by `seq`: cuts arrive late with earlier times).
        fseq: u64,
        /// Last bar sent (by `seq`: a cut's replanned bars start before bars already sent).
        bseq: u64,
        first: bool,
    }
    let init = S {
        st,
        version: None,
        fseq: 0,
        bseq: 0,
        first: true,
    };
    let stream = futures_util::stream::unfold(init, |mut s| async move {
        loop {
            if !s.first {
                tokio::time::sleep(EVENT_PERIOD).await;
            }
            s.first = false;
            if s.st.stopping.load(Ordering::SeqCst) {
                return None;
            }
            let v = s.st.control.version();
            let features = s.st.control.features_after(s.fseq);
            let bars = s.st.control.bars_after(s.bseq);
            if s.version == Some(v) && features.is_empty() && bars.is_empty() {
                continue;
            }
            if let Some(p) = features.last() {
                s.fseq = p.seq;
            }
            if let Some(p) = bars.last() {
                s.bseq = p.seq;
            }
            let status = (s.version != Some(v)).then(|| status_out(&s.st));
            s.version = Some(v);
            let data = serde_json::json!({ "status": status, "features": features, "bars": bars });
            let ev = Event::default().event("update").data(data.to_string());
            return Some((Ok(ev), s));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn snapshot(State(st): St) -> Result<Response, ApiError> {
    let s = st
        .control
        .snapshot()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no camera frame yet"))?;
    let png = super::snapshot::png(&s).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "the last camera frame is malformed")
    })?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefineBody {
    /// `like`, `dislike` or `undo`.
    action: String,
}

async fn refine(State(st): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let b: RefineBody = body_json(&headers, &body)?;
    let cmd = match b.action.as_str() {
        "like" => Command::Like,
        "dislike" => Command::Dislike,
        "undo" => Command::Undo,
        other => {
            return Err(ApiError::bad(format!(
                "action {:?}: give like, dislike or undo",
                other.chars().take(40).collect::<String>()
            )))
        }
    };
    st.control.send(cmd)?;
    tracing::info!(action = %b.action, "web: refine");
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "queued": b.action }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    option: String,
}

async fn refine_apply(
    State(st): St,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: ApplyBody = body_json(&headers, &body)?;
    let opt: RefineOption = b.option.parse().map_err(|e: String| {
        ApiError::bad(e.replace(
            "run `undertone refine DIR --list` to see the options",
            "GET /api/refine/options lists them",
        ))
    })?;
    st.control.send(Command::Apply(opt))?;
    tracing::info!(option = %opt, "web: refine option");
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "queued": opt.to_string() }),
    ))
}

#[derive(Serialize)]
struct OptionOut {
    name: String,
    description: &'static str,
}

async fn refine_options(State(st): St) -> Response {
    let s = st.control.status();
    let opts: Vec<OptionOut> = s
        .options
        .iter()
        .filter_map(|n| n.parse::<RefineOption>().ok())
        .map(|o| OptionOut {
            name: o.to_string(),
            description: o.describe(),
        })
        .collect();
    ok(&serde_json::json!({
        "disliked": s.disliked,
        "undo_depth": s.undo_depth,
        "options": opts,
    }))
}

// ---- /api: settings ----

fn config_out(cfg: &Config) -> Response {
    ok(&serde_json::json!({ "config": cfg, "toml": cfg.to_toml() }))
}

async fn config_get(State(st): St) -> Response {
    let cfg = st.config().clone();
    config_out(&cfg)
}

/// Tells the engine about a new config (devices, music, volume).
fn apply(st: &AppState, cfg: &Config) -> Result<(), ApiError> {
    st.control
        .send(Command::Reconfigure(Box::new(cfg.clone())))?;
    let plays = cfg.web.schedule.plays_at(local_minute());
    st.control.send(Command::SetVolumeDb(if plays {
        cfg.web.volume_db
    } else {
        SCHEDULE_MUTE_DB
    }))?;
    Ok(())
}

/// Keys that name files the box writes or reads (report, recording, state folder, a video
/// file): set in the config file on the box, never from the page, so a web user cannot
/// point the service at other paths. A camera may be picked among `/dev/video*`.
fn check_protected(old: &Config, new: &Config) -> Result<(), ApiError> {
    let fixed = |key: &str| {
        ApiError::bad(format!(
            "`{key}` names a file on the box; change it in the config file there, not from the page"
        ))
    };
    if new.report != old.report {
        return Err(fixed("report"));
    }
    if new.record != old.record {
        return Err(fixed("record"));
    }
    if new.web.data_dir != old.web.data_dir {
        return Err(fixed("web.data_dir"));
    }
    if new.source != old.source {
        let camera = new
            .source
            .strip_prefix("v4l2:/dev/video")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !camera {
            return Err(ApiError::bad(format!(
                "`source` = {:?}: pick a camera (v4l2:/dev/videoN); video files are set in the config file on the box",
                new.source.chars().take(80).collect::<String>()
            )));
        }
    }
    Ok(())
}

async fn config_put(State(st): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let cfg: Config = body_json(&headers, &body)?;
    cfg.web.validate(&st.config_path)?;
    check_protected(&st.config(), &cfg)?;
    cfg.save(&st.config_path)?;
    *st.config() = cfg.clone();
    tracing::info!(path = %st.config_path.display(), "web: settings saved");
    apply(&st, &cfg)?;
    Ok(config_out(&cfg))
}

async fn config_backup(State(st): St) -> Response {
    let text = st.config().to_toml();
    (
        [
            (header::CONTENT_TYPE, "application/toml; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"undertone-config.toml\"",
            ),
        ],
        text,
    )
        .into_response()
}

async fn config_restore(State(st): St, body: Bytes) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad("the backup is not UTF-8 text; give a config.toml"))?;
    // Parsed and validated in full (the [web] section too) before the file is touched.
    let cfg = Config::parse(text, &st.config_path)?;
    cfg.web.validate(&st.config_path)?;
    check_protected(&st.config(), &cfg)?;
    Config::save_text(text, &st.config_path)?;
    *st.config() = cfg.clone();
    tracing::info!(path = %st.config_path.display(), "web: config restored from a backup");
    apply(&st, &cfg)?;
    Ok(config_out(&cfg))
}

#[derive(Serialize)]
struct Pcm {
    name: String,
    description: String,
}

async fn devices() -> Response {
    let mut cameras: Vec<String> = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("video"))
                .map(|n| format!("v4l2:/dev/{n}"))
                .collect()
        })
        .unwrap_or_default();
    cameras.sort();
    let mut pcms = Vec::new();
    if let Ok(hints) = alsa::device_name::HintIter::new_str(None, "pcm") {
        for h in hints {
            if h.direction == Some(alsa::Direction::Capture) {
                continue;
            }
            if let Some(name) = h.name {
                pcms.push(Pcm {
                    description: h.desc.unwrap_or_default().replace('\n', " — "),
                    name,
                });
            }
        }
    }
    ok(&serde_json::json!({ "cameras": cameras, "pcms": pcms }))
}

// ---- /api: templates ----

async fn templates_list(State(st): St) -> Result<Response, ApiError> {
    Ok(ok(&st.templates.list()?))
}

async fn template_audio(State(st): St, UrlPath(id): UrlPath<String>) -> Result<Response, ApiError> {
    let path = st.templates.audio_path(&id)?;
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(&path))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("template {id}: audio file missing"),
            )
        })?;
    Ok(([(header::CONTENT_TYPE, "audio/ogg")], bytes).into_response())
}

async fn template_delete(
    State(st): St,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    st.templates.delete(&id)?;
    st.control.send(Command::ReloadTemplates)?;
    Ok(ok(&serde_json::json!({ "deleted": id })))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the upload is over {} MiB; templates are short loops (a few hundred KB as Ogg Vorbis)",
            UPLOAD_LIMIT / (1024 * 1024)
        ),
    )
}

async fn template_upload(
    State(st): St,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<Response, ApiError> {
    // Refused from the declared size before a byte is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > UPLOAD_LIMIT as u64) {
        return Err(too_large());
    }
    let (mut meta, mut audio, mut midi) = (None, None, None);
    let mut total = 0usize;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(ApiError::bad(format!("upload: {}", e.body_text()))),
        };
        let name = field.name().unwrap_or("").to_string();
        let mut field = field;
        let mut buf = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(c)) => {
                    total += c.len();
                    if total > UPLOAD_LIMIT {
                        return Err(too_large());
                    }
                    if name == "meta" && buf.len() + c.len() > META_LIMIT {
                        return Err(ApiError::bad("upload: the meta part is over 16 KiB"));
                    }
                    buf.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
                Err(e) => return Err(ApiError::bad(format!("upload: {}", e.body_text()))),
            }
        }
        match name.as_str() {
            "meta" => meta = Some(buf),
            "audio" => audio = Some(buf),
            "midi" => midi = Some(buf),
            other => {
                return Err(ApiError::bad(format!(
                    "upload: unknown part {:?}; send meta, audio and midi",
                    other.chars().take(40).collect::<String>()
                )))
            }
        }
    }
    let (Some(meta), Some(audio), Some(midi)) = (meta, audio, midi) else {
        return Err(ApiError::bad(
            "upload: send three parts: meta (JSON), audio (Ogg Vorbis) and midi (the pattern)",
        ));
    };
    let meta: UploadMeta = serde_json::from_slice(&meta)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("metadata: {e}")))?;
    let tpl = st.templates.clone();
    let info = tokio::task::spawn_blocking(move || tpl.add(&meta, &audio, &midi))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    st.control.send(Command::ReloadTemplates)?;
    Ok(json(StatusCode::CREATED, &info))
}

// ---- /api: system ----

async fn system(State(st): St) -> Response {
    let logs = super::logs::recent();
    ok(&serde_json::json!({
        "firmware": env!("CARGO_PKG_VERSION"),
        "uptime_s": st.started.elapsed().as_secs_f64(),
        "config_path": st.config_path,
        "data_dir": st.data_dir,
        "logs": logs,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current: String,
    new: String,
}

async fn password(State(st): St, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let b: PasswordBody = body_json(&headers, &body)?;
    auth::check_new_password(&b.new)?;
    check_password(&st, b.current).await.map_err(|e| {
        // Inside a session a wrong current password is a refusal, not a missing login.
        if e.status == StatusCode::UNAUTHORIZED {
            ApiError::new(StatusCode::FORBIDDEN, "the current password is wrong")
        } else {
            e
        }
    })?;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&b.new))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let mut a = st.auth();
    a.set_hash(hash)?;
    let (t, csrf) = a.new_session(Instant::now());
    drop(a);
    tracing::info!("web: password changed; other sessions ended");
    Ok(logged_in(&st, t, csrf))
}

async fn restart() -> Response {
    tracing::warn!("web: restart asked from the page; exiting for systemd to start again");
    std::thread::spawn(|| {
        std::thread::sleep(RESTART_DELAY);
        std::process::exit(RESTART_EXIT_CODE);
    });
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "restarting": true }),
    )
}

async fn openapi() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        super::openapi::DOCUMENT.as_str(),
    )
        .into_response()
}

/// Keeps the engine's volume in step with the daily schedule.
pub(crate) async fn schedule_loop(st: Arc<AppState>) {
    let mut last: Option<bool> = None;
    loop {
        if st.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (sched, vol) = {
            let c = st.config();
            (c.web.schedule.clone(), c.web.volume_db)
        };
        let plays = sched.plays_at(local_minute());
        if last != Some(plays) {
            if last.is_some() || !plays || vol != 0.0 {
                let db = if plays { vol } else { SCHEDULE_MUTE_DB };
                if st.control.send(Command::SetVolumeDb(db)).is_ok() {
                    tracing::info!(plays, db, "web: schedule");
                    last = Some(plays);
                }
            } else {
                last = Some(plays);
            }
        }
        tokio::time::sleep(SCHEDULE_PERIOD).await;
    }
}
