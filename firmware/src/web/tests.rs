//! The web server over real HTTP on loopback: auth, CSRF, limits, traversal, uploads of
//! real templates, settings and restore, the snapshot and the event stream.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::live::control::{Command, Snapshot};

struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// One HTTP/1.1 request; a write error after the server has answered is ignored (it
/// refuses oversized bodies without reading them).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    }) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    for chunk in body.chunks(64 * 1024) {
        if s.write_all(chunk).is_err() {
            break;
        }
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

struct Box_ {
    server: WebServer,
    control: Arc<Control>,
    dir: tempfile::TempDir,
}

impl Box_ {
    fn new() -> Box_ {
        let dir = tempfile::tempdir().unwrap();
        let control = Arc::new(Control::new());
        let server = WebServer::start_with_library(
            "127.0.0.1:0".parse().unwrap(),
            control.clone(),
            Metrics::new(),
            &dir.path().join("config.toml"),
            &dir.path().join("data"),
            &library(),
        )
        .unwrap();
        Box_ {
            server,
            control,
            dir,
        }
    }
    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn code(&self) -> String {
        std::fs::read_to_string(self.data().join(auth::SETUP_CODE_FILE))
            .unwrap()
            .trim()
            .into()
    }
    fn post_json(&self, path: &str, extra: &[(&str, &str)], body: &str) -> Resp {
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(extra);
        request(self.addr(), "POST", path, &h, body.as_bytes())
    }
    /// Sets the password with the setup code; returns (cookie header, csrf).
    fn set_up(&self) -> (String, String) {
        let r = self.post_json(
            "/auth/setup",
            &[],
            &serde_json::json!({ "code": self.code(), "password": "venue-pass-1" }).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        session_of(&r)
    }
}

fn session_of(r: &Resp) -> (String, String) {
    let c = r.headers.get("set-cookie").expect("a session cookie");
    let token = c.split(';').next().unwrap().to_string();
    (token, r.json()["csrf"].as_str().unwrap().to_string())
}

fn library() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates")
}

fn path_for(p: &str) -> String {
    p.replace("{id}", "lofi_I-V-vi-IV_l0")
}

#[test]
fn every_api_operation_without_a_session_is_401() {
    let b = Box_::new();
    let ops = openapi::operations();
    assert!(ops.len() >= 18, "{ops:?}");
    for (m, p) in ops {
        let r = request(
            b.addr(),
            &m,
            &path_for(&p),
            &[("Content-Type", "application/json")],
            b"{}",
        );
        assert_eq!(r.status, 401, "{m} {p}: {}", r.text());
        assert!(r.json()["error"].as_str().unwrap().contains("log in"));
    }
    // A made-up cookie is no session either.
    let r = request(
        b.addr(),
        "GET",
        "/api/status",
        &[("Cookie", "ut_session=00ff")],
        b"",
    );
    assert_eq!(r.status, 401);
    // What stays public: the document, health, metrics, the app.
    assert_eq!(
        request(b.addr(), "GET", "/api/openapi.json", &[], b"").status,
        200
    );
    assert_eq!(request(b.addr(), "GET", "/healthz", &[], b"").status, 503);
    assert_eq!(request(b.addr(), "GET", "/metrics", &[], b"").status, 200);
    let r = request(b.addr(), "GET", "/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.headers["content-security-policy"].contains("default-src 'self'"));
    assert_eq!(r.headers["x-frame-options"], "DENY");
}

#[test]
fn setup_code_sets_the_password_and_the_cookie_is_strict() {
    let b = Box_::new();
    let st = request(b.addr(), "GET", "/auth/state", &[], b"").json();
    assert_eq!(st["setup_needed"], true);
    // No default password: login is impossible before setup.
    let r = b.post_json("/auth/login", &[], r#"{"password":"admin"}"#);
    assert_eq!(r.status, 409, "{}", r.text());
    let r = b.post_json(
        "/auth/setup",
        &[],
        r#"{"code":"1234-5678-9012-3456","password":"venue-pass-1"}"#,
    );
    assert_eq!(r.status, 401);
    assert!(r.text().contains("setup-code.txt"), "{}", r.text());
    let short = serde_json::json!({ "code": b.code(), "password": "short" }).to_string();
    assert_eq!(b.post_json("/auth/setup", &[], &short).status, 422);
    let r = b.post_json(
        "/auth/setup",
        &[],
        &serde_json::json!({ "code": b.code(), "password": "venue-pass-1" }).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = &r.headers["set-cookie"];
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let (tok, _) = session_of(&r);
    assert!(!b.data().join(auth::SETUP_CODE_FILE).exists());
    let pw = std::fs::read_to_string(b.data().join(auth::PASSWORD_FILE)).unwrap();
    assert!(pw.contains("$argon2id$"), "{pw}");
    let r = request(b.addr(), "GET", "/api/status", &[("Cookie", &tok)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["camera"], "missing");
    // The code works once only.
    let again = serde_json::json!({ "code": "0000", "password": "venue-pass-2" }).to_string();
    assert_eq!(b.post_json("/auth/setup", &[], &again).status, 409);
    // Login with the new password.
    let r = b.post_json("/auth/login", &[], r#"{"password":"venue-pass-1"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn sixth_wrong_password_in_a_minute_is_refused_without_being_checked() {
    let b = Box_::new();
    b.set_up();
    for i in 0..auth::MAX_FAILURES {
        let r = b.post_json("/auth/login", &[], r#"{"password":"guess-guess"}"#);
        assert_eq!(r.status, 401, "attempt {}: {}", i + 1, r.text());
    }
    // The sixth is refused even with the right password: it was not checked.
    let r = b.post_json("/auth/login", &[], r#"{"password":"venue-pass-1"}"#);
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r.headers["retry-after"].parse().unwrap();
    assert!((50..=60).contains(&wait), "{wait}");
    assert!(r.text().contains("try again"), "{}", r.text());
}

#[test]
fn forged_cross_site_posts_are_refused() {
    let b = Box_::new();
    let (tok, csrf) = b.set_up();
    // A cross-site form post carries the cookie at most, never the token.
    let r = request(
        b.addr(),
        "POST",
        "/api/refine",
        &[
            ("Cookie", &tok),
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ],
        br#"{"action":"dislike"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = b.post_json(
        "/api/refine",
        &[("Cookie", &tok), ("X-CSRF-Token", "0000")],
        r#"{"action":"dislike"}"#,
    );
    assert_eq!(r.status, 403);
    // The right token but another site.
    let r = b.post_json(
        "/api/refine",
        &[
            ("Cookie", &tok),
            ("X-CSRF-Token", &csrf),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        r#"{"action":"dislike"}"#,
    );
    assert_eq!(r.status, 403);
    // Login from another site (login CSRF) and a form-encoded login are refused too.
    let r = b.post_json(
        "/auth/login",
        &[("Origin", "http://evil.example")],
        r#"{"password":"venue-pass-1"}"#,
    );
    assert_eq!(r.status, 403);
    let r = request(
        b.addr(),
        "POST",
        "/auth/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"password=venue-pass-1",
    );
    assert_eq!(r.status, 415);
    assert!(b.control.drain_commands().is_empty());
    // The page itself: same origin, token.
    let origin = format!("http://{}", b.addr());
    let r = b.post_json(
        "/api/refine",
        &[
            ("Cookie", &tok),
            ("X-CSRF-Token", &csrf),
            ("Origin", &origin),
        ],
        r#"{"action":"dislike"}"#,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = b.post_json(
        "/api/refine/apply",
        &[("Cookie", &tok), ("X-CSRF-Token", &csrf)],
        r#"{"option":"genre=jazz"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("/api/refine/options"), "{}", r.text());
    let r = b.post_json(
        "/api/refine/apply",
        &[("Cookie", &tok), ("X-CSRF-Token", &csrf)],
        r#"{"option":"calmer"}"#,
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        b.control.drain_commands(),
        vec![
            Command::Dislike,
            Command::Apply(crate::score::refine::RefineOption::Calmer)
        ]
    );
    // Logout ends the session.
    let r = b.post_json(
        "/auth/logout",
        &[("Cookie", &tok), ("X-CSRF-Token", &csrf)],
        "{}",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        request(b.addr(), "GET", "/api/status", &[("Cookie", &tok)], b"").status,
        401
    );
}

fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----undertone-test-boundary";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn builtin(id: &str) -> (serde_json::Value, Vec<u8>, Vec<u8>) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(library().join("index.json")).unwrap()).unwrap();
    let t = index["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
        .clone();
    let audio = std::fs::read(library().join(t["audio"].as_str().unwrap())).unwrap();
    let midi = std::fs::read(library().join(t["midi"].as_str().unwrap())).unwrap();
    let meta = serde_json::json!({
        "id": "my-loop", "style": t["style"], "mood": t["mood"], "energy": t["energy"],
        "tempo_bpm": t["tempo_bpm"], "progression": t["progression"], "layer": t["layer"],
        "instruments": t["instruments"],
    });
    (meta, audio, midi)
}

fn user_files(b: &Box_) -> usize {
    walk(&b.data().join("templates"))
}

fn walk(p: &Path) -> usize {
    std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    if e.path().is_dir() {
                        walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn uploads_are_validated_limited_and_stored_inside_the_data_folder() {
    let b = Box_::new();
    let (tok, csrf) = b.set_up();
    let auth = [("Cookie", tok.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let upload = |parts: &[(&str, &str, &[u8])]| {
        let (ct, body) = multipart(parts);
        let mut h = auth.to_vec();
        h.push(("Content-Type", &ct));
        request(b.addr(), "POST", "/api/templates", &h, &body)
    };
    let (meta, audio, midi) = builtin("lofi_I-V-vi-IV_l0");
    let meta_s = meta.to_string();

    // Over the limit, declared: refused before a byte is stored.
    let big = vec![0u8; UPLOAD_LIMIT + 1024];
    let r = upload(&[
        ("meta", "m.json", meta_s.as_bytes()),
        ("audio", "a.ogg", &big),
        ("midi", "p.mid", &midi),
    ]);
    assert_eq!(r.status, 413, "{}", r.text());
    // Over the limit, streamed without a length (chunked): refused while reading.
    let (ct, body) = multipart(&[
        ("meta", "m.json", meta_s.as_bytes()),
        ("audio", "a.ogg", &big),
    ]);
    let mut chunked = Vec::new();
    for c in body.chunks(1 << 20) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut h = auth.to_vec();
    h.push(("Content-Type", &ct));
    h.push(("Transfer-Encoding", "chunked"));
    let r = request(b.addr(), "POST", "/api/templates", &h, &chunked);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(user_files(&b), 0);

    // Path traversal in the id.
    let mut evil = meta.clone();
    evil["id"] = "../../etc/evil".into();
    let r = upload(&[
        ("meta", "m.json", evil.to_string().as_bytes()),
        ("audio", "a.ogg", &audio),
        ("midi", "p.mid", &midi),
    ]);
    assert_eq!(r.status, 400, "{}", r.text());
    // A WAV instead of Ogg Vorbis.
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
    wav.extend_from_slice(&[0; 64]);
    let r = upload(&[
        ("meta", "m.json", meta_s.as_bytes()),
        ("audio", "a.wav", &wav),
        ("midi", "p.mid", &midi),
    ]);
    assert_eq!(r.status, 422);
    assert!(
        r.text().contains("format") && r.text().contains("WAV"),
        "{}",
        r.text()
    );
    // The right file with the wrong tempo: four bars at 100 BPM are not this long.
    let mut wrong = meta.clone();
    wrong["tempo_bpm"] = 100.0.into();
    let r = upload(&[
        ("meta", "m.json", wrong.to_string().as_bytes()),
        ("audio", "a.ogg", &audio),
        ("midi", "p.mid", &midi),
    ]);
    assert_eq!(r.status, 422);
    assert!(r.text().contains("length"), "{}", r.text());
    // Unknown metadata.
    let mut odd = meta.clone();
    odd["style"] = "polka".into();
    let r = upload(&[
        ("meta", "m.json", odd.to_string().as_bytes()),
        ("audio", "a.ogg", &audio),
        ("midi", "p.mid", &midi),
    ]);
    assert_eq!(r.status, 422);
    assert!(r.text().contains("metadata"), "{}", r.text());
    assert_eq!(user_files(&b), 0, "rejected uploads left files");
    assert!(b.control.drain_commands().is_empty());

    // A good one.
    let r = upload(&[
        ("meta", "m.json", meta_s.as_bytes()),
        ("audio", "a.ogg", &audio),
        ("midi", "p.mid", &midi),
    ]);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["intro_frames"], 144000);
    assert_eq!(b.control.drain_commands(), vec![Command::ReloadTemplates]);
    assert_eq!(user_files(&b), 3);
    let user = b.data().join("templates");
    let problems: Vec<_> = crate::render::library::check_dir(&user)
        .into_iter()
        .filter(|p| p.template != "index")
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    let list = request(b.addr(), "GET", "/api/templates", &auth, b"").json();
    let mine: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == "user")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], "my-loop");
    // The engine's loader (at start and on ReloadTemplates) merges the upload into the
    // shipped library, reads its own files, and prefers it at its style, chords and layer.
    let root = library().parent().unwrap().to_path_buf();
    let (lib, err) = crate::live::engine::load_library(&root, Some(&user)).unwrap();
    assert!(err.is_none(), "{err:?}");
    let mine_t = lib
        .get("my-loop")
        .expect("the upload is in the engine's library");
    assert!(mine_t.user && mine_t.dir == user);
    let chosen = lib
        .select(crate::music::Genre::Lofi, "I-V-vi-IV", 0)
        .unwrap();
    assert_eq!(chosen.info.id, "my-loop");
    let shipped = lib.get("lofi_I-V-vi-IV_l0").unwrap();
    assert!(!shipped.user);
    assert_eq!(lib.decode(mine_t).unwrap(), lib.decode(shipped).unwrap());
    let r = request(b.addr(), "GET", "/api/templates/my-loop/audio", &auth, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, audio);
    // Same id again.
    let r = upload(&[
        ("meta", "m.json", meta_s.as_bytes()),
        ("audio", "a.ogg", &audio),
        ("midi", "p.mid", &midi),
    ]);
    assert_eq!(r.status, 409);

    // Traversal through the URL.
    for p in [
        "/api/templates/..%2F..%2Fconfig.toml",
        "/api/templates/..",
        "/api/templates/%2Fetc%2Fpasswd",
    ] {
        let r = request(b.addr(), "DELETE", p, &auth, b"");
        assert!(
            r.status == 400 || r.status == 404,
            "{p}: {} {}",
            r.status,
            r.text()
        );
    }
    let r = request(
        b.addr(),
        "GET",
        "/api/templates/..%2F..%2Fconfig.toml/audio",
        &auth,
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    for p in [
        "/..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e/Cargo.toml",
        "/index.html%00",
    ] {
        assert_eq!(request(b.addr(), "GET", p, &[], b"").status, 404, "{p}");
    }
    // Built-ins cannot be deleted; the upload can.
    let r = request(
        b.addr(),
        "DELETE",
        "/api/templates/lofi_I-V-vi-IV_l0",
        &auth,
        b"",
    );
    assert_eq!(r.status, 403);
    let r = request(b.addr(), "DELETE", "/api/templates/my-loop", &auth, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(user_files(&b), 1, "only the index is left");
    assert_eq!(b.control.drain_commands(), vec![Command::ReloadTemplates]);
    let (lib, err) = crate::live::engine::load_library(&root, Some(&user)).unwrap();
    assert!(err.is_none() && lib.get("my-loop").is_none());
    // A damaged user library is left out with the reason; the shipped one still plays.
    std::fs::write(user.join("index.json"), b"{ not json").unwrap();
    let (lib, err) = crate::live::engine::load_library(&root, Some(&user)).unwrap();
    assert!(err.unwrap().contains("index.json"));
    assert_eq!(
        lib.templates().len(),
        crate::render::Library::load(&library())
            .unwrap()
            .templates()
            .len()
    );
}

#[test]
fn settings_are_validated_saved_and_a_bad_restore_changes_nothing() {
    let b = Box_::new();
    let (tok, csrf) = b.set_up();
    let auth = [("Cookie", tok.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let cfg_path = b.dir.path().join("config.toml");
    let mut cfg = request(b.addr(), "GET", "/api/config", &auth, b"").json()["config"].clone();
    cfg["fps"] = 25.into();
    cfg["music"]["genre"] = "ambient".into();
    cfg["web"]["volume_db"] = (-6.0).into();
    let r = b.post_json_put(&auth, &cfg.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let saved = crate::live::config::Config::load(&cfg_path).unwrap();
    assert_eq!(saved.fps, 25.0);
    assert_eq!(saved.web.volume_db, -6.0);
    let cmds = b.control.drain_commands();
    assert!(
        matches!(&cmds[0], Command::Reconfigure(c) if c.fps == 25.0),
        "{cmds:?}"
    );
    assert!(
        cmds.contains(&Command::SetVolumeDb(-6.0))
            || cmds.contains(&Command::SetVolumeDb(settings::SCHEDULE_MUTE_DB))
    );
    let before = std::fs::read(&cfg_path).unwrap();

    // Bad values: named, nothing saved.
    let mut bad = cfg.clone();
    bad["fps"] = 500.into();
    let r = b.post_json_put(&auth, &bad.to_string());
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("`fps`") && r.text().contains("1 to 120"),
        "{}",
        r.text()
    );
    let mut bad = cfg.clone();
    bad["web"]["schedule"]["start"] = "7am".into();
    let r = b.post_json_put(&auth, &bad.to_string());
    assert_eq!(r.status, 400);
    assert!(r.text().contains("web.schedule.start"), "{}", r.text());
    // Paths on the box cannot be set from the page.
    for (key, v) in [
        ("report", serde_json::json!("/etc/cron.d/x")),
        ("source", serde_json::json!("file:/etc/shadow")),
    ] {
        let mut bad = cfg.clone();
        bad[key] = v;
        let r = b.post_json_put(&auth, &bad.to_string());
        assert_eq!(r.status, 400, "{key}");
        assert!(r.text().contains(key), "{}", r.text());
    }
    let mut bad = cfg.clone();
    bad["web"]["data_dir"] = "/tmp".into();
    assert_eq!(b.post_json_put(&auth, &bad.to_string()).status, 400);
    assert_eq!(
        std::fs::read(&cfg_path).unwrap(),
        before,
        "a refused setting changed the saved config"
    );
    let mut cam = cfg.clone();
    cam["source"] = "v4l2:/dev/video2".into();
    assert_eq!(b.post_json_put(&auth, &cam.to_string()).status, 200);
    b.control.drain_commands();
    let before = std::fs::read(&cfg_path).unwrap();

    // Backup, then a bad restore (unknown key), then a good one.
    let backup = request(b.addr(), "GET", "/api/config/backup", &auth, b"");
    assert_eq!(backup.status, 200);
    assert!(backup.text().contains("fps = 25"), "{}", backup.text());
    assert!(
        backup.text().contains("v4l2:/dev/video2"),
        "{}",
        backup.text()
    );
    let mut h = auth.to_vec();
    h.push(("Content-Type", "application/toml"));
    let r = request(
        b.addr(),
        "POST",
        "/api/config/restore",
        &h,
        b"fps = 30\naudio_devcie = \"hw:0\"\n",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("audio_devcie"), "{}", r.text());
    let r = request(
        b.addr(),
        "POST",
        "/api/config/restore",
        &h,
        b"[web]\nvolume_db = 12\n",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("web.volume_db"), "{}", r.text());
    assert_eq!(std::fs::read(&cfg_path).unwrap(), before);
    assert!(b.control.drain_commands().is_empty());
    let r = request(
        b.addr(),
        "POST",
        "/api/config/restore",
        &h,
        b"report = \"/tmp/x.json\"\n",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("report"), "{}", r.text());
    let r = request(b.addr(), "POST", "/api/config/restore", &h, b"fps = 15\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        crate::live::config::Config::load(&cfg_path).unwrap().fps,
        15.0
    );
    // A body over the limit is refused.
    let huge = vec![b'#'; API_BODY_LIMIT + 1];
    let r = request(b.addr(), "POST", "/api/config/restore", &h, &huge);
    assert_eq!(r.status, 413);
    assert_eq!(
        crate::live::config::Config::load(&cfg_path).unwrap().fps,
        15.0
    );
}

impl Box_ {
    fn post_json_put(&self, auth: &[(&str, &str)], body: &str) -> Resp {
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(auth);
        request(self.addr(), "PUT", "/api/config", &h, body.as_bytes())
    }
}

#[test]
fn snapshot_png_events_and_password_change() {
    let b = Box_::new();
    let (tok, csrf) = b.set_up();
    let auth = [("Cookie", tok.as_str())];
    assert_eq!(
        request(b.addr(), "GET", "/api/snapshot.png", &auth, b"").status,
        404
    );
    b.control.set_snapshot(Snapshot {
        t: 1.0,
        width: 32,
        height: 18,
        gray: vec![128; 32 * 18],
    });
    let r = request(b.addr(), "GET", "/api/snapshot.png", &auth, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "image/png");
    assert!(r.body.starts_with(b"\x89PNG\r\n\x1a\n"));

    b.control.update_status(|s| {
        s.bar = 7;
        s.genre = "lofi".into();
    });
    // The first event carries the status; read until it arrives.
    let mut s = TcpStream::connect(b.addr()).unwrap();
    write!(
        s,
        "GET /api/events HTTP/1.1\r\nHost: x\r\nCookie: {tok}\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\n\n")
        || !String::from_utf8_lossy(&got).contains("event: update")
    {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(
        text.contains("\"bar\":7") && text.contains("\"genre\":\"lofi\""),
        "{text}"
    );
    // Frames, then a cut confirmed by them: published later with an earlier time, it
    // still reaches the page (the plot's red mark).
    let point = |t: f64, cut: bool| crate::live::control::FeaturePoint {
        seq: 0,
        t,
        speed: 0.1,
        saliency: 0.2,
        cut_prob: if cut { 0.9 } else { 0.0 },
        cut,
    };
    for t in [2.0, 2.1, 2.2] {
        b.control.push_feature(point(t, false));
    }
    let mut read_until = |what: &str, got: &mut Vec<u8>| {
        while !String::from_utf8_lossy(got).contains(what) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(got));
            got.extend_from_slice(&buf[..n]);
        }
    };
    read_until("\"t\":2.2", &mut got);
    b.control.push_feature(point(2.05, true));
    read_until("\"cut\":true", &mut got);
    drop(s);

    // Change the password: the old one stops working, the old session ends.
    let mut h = vec![("Cookie", tok.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let r = b.post_json(
        "/api/system/password",
        &h,
        r#"{"current":"nope-nope-nope","new":"another-pass-2"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = b.post_json(
        "/api/system/password",
        &h,
        r#"{"current":"venue-pass-1","new":"another-pass-2"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (tok2, _) = session_of(&r);
    assert_eq!(
        request(b.addr(), "GET", "/api/status", &auth, b"").status,
        401
    );
    assert_eq!(
        request(b.addr(), "GET", "/api/status", &[("Cookie", &tok2)], b"").status,
        200
    );
    assert_eq!(
        b.post_json("/auth/login", &[], r#"{"password":"venue-pass-1"}"#)
            .status,
        401
    );
    h.clear();
    assert_eq!(
        b.post_json("/auth/login", &[], r#"{"password":"another-pass-2"}"#)
            .status,
        200
    );
    // System page data.
    let sys = request(b.addr(), "GET", "/api/system", &[("Cookie", &tok2)], b"").json();
    assert_eq!(sys["firmware"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_password_survives_a_restart_and_sessions_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        WebServer::start_with_library(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Control::new()),
            Metrics::new(),
            &dir.path().join("config.toml"),
            &dir.path().join("data"),
            &library(),
        )
        .unwrap()
    };
    let mut s1 = start();
    let code =
        std::fs::read_to_string(dir.path().join("data").join(auth::SETUP_CODE_FILE)).unwrap();
    let body = serde_json::json!({ "code": code.trim(), "password": "venue-pass-1" }).to_string();
    let r = request(
        s1.addr(),
        "POST",
        "/auth/setup",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let (tok, _) = session_of(&r);
    s1.stop();
    let s2 = start();
    assert!(!dir.path().join("data").join(auth::SETUP_CODE_FILE).exists());
    let st = request(s2.addr(), "GET", "/auth/state", &[("Cookie", &tok)], b"").json();
    assert_eq!(st["setup_needed"], false);
    assert_eq!(st["logged_in"], false);
    let r = request(
        s2.addr(),
        "POST",
        "/auth/login",
        &[("Content-Type", "application/json")],
        br#"{"password":"venue-pass-1"}"#,
    );
    assert_eq!(r.status, 200);
}
