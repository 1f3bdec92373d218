//! Who may use the page: the one-time setup code, the admin password (argon2id), sessions
//! with their CSRF tokens, and the login rate limit.
//!
//! There is no default password. On a fresh box (no password file in the data folder) a
//! random setup code is written to `setup-code.txt` in the data folder and printed to the
//! log; whoever can read either (physical or shell access) sets the password with it.
//!
//! Time is passed in (`now: Instant`) so tests drive the rate limit and session expiry
//! without sleeping.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The password hash, in the data folder (argon2id PHC string; mode 0600).
pub const PASSWORD_FILE: &str = "auth.json";
/// The one-time setup code, in the data folder until the password is set.
pub const SETUP_CODE_FILE: &str = "setup-code.txt";
/// Wrong passwords (or setup codes) allowed in one [`FAILURE_WINDOW`]; the next attempt is
/// refused without being checked.
pub const MAX_FAILURES: usize = 5;
/// The rate limit's window.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Each lockout lasts twice the one before (60 s, 2 min, 4 min...), up to this; a correct
/// password resets it.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Shortest password accepted (NIST SP 800-63B's floor for user-chosen secrets).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (bounds the work a request can ask of the hasher).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Sessions kept at once; the oldest is dropped beyond this (a phone, a laptop, a few
/// forgotten browsers).
pub const MAX_SESSIONS: usize = 32;
/// Random bytes in a session token and a CSRF token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Digits in the setup code (four groups of four: 53 bits, and the rate limit on top).
const SETUP_CODE_DIGITS: usize = 16;

/// Why an auth step failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("wrong password")]
    WrongPassword,
    #[error("wrong setup code; read it from {file} in the data folder or from the log")]
    WrongSetupCode { file: String },
    #[error("the password is already set; log in instead")]
    AlreadySetUp,
    #[error("no password is set yet; use the setup code first")]
    NotSetUp,
    #[error("too many wrong attempts; try again in {0} s")]
    RateLimited(u64),
    #[error("the password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("{path}: {detail}")]
    Storage { path: PathBuf, detail: String },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordFile {
    /// argon2id PHC string.
    password: String,
}

/// Counts wrong attempts and locks out with backoff.
#[derive(Debug, Default)]
pub struct RateLimit {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    lockouts: u32,
}

impl RateLimit {
    /// `Err(seconds to wait)` while locked out: the attempt must not be checked.
    pub fn check(&mut self, now: Instant) -> Result<(), u64> {
        match self.locked_until {
            Some(t) if now < t => Err((t - now).as_secs_f64().ceil() as u64),
            _ => Ok(()),
        }
    }

    /// A wrong attempt: the [`MAX_FAILURES`]th in a window starts a lockout.
    pub fn failed(&mut self, now: Instant) {
        while self
            .failures
            .front()
            .is_some_and(|&t| now.duration_since(t) >= FAILURE_WINDOW)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() >= MAX_FAILURES {
            self.lockouts += 1;
            let factor = 1u32 << (self.lockouts - 1).min(8);
            let d = (FAILURE_WINDOW * factor).min(MAX_LOCKOUT);
            self.locked_until = Some(now + d);
            self.failures.clear();
            tracing::warn!(
                seconds = d.as_secs(),
                "web: {MAX_FAILURES} wrong passwords in a row; logins locked"
            );
        }
    }

    pub fn succeeded(&mut self) {
        *self = RateLimit::default();
    }
}

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Sent back in `X-CSRF-Token` with every state change.
    pub csrf: String,
    pub expires: Instant,
    created: Instant,
}

/// The auth state: password hash, setup code, sessions, rate limit.
#[derive(Debug)]
pub struct Auth {
    data_dir: PathBuf,
    /// The argon2id PHC string, once set.
    hash: Option<String>,
    setup_code: Option<String>,
    sessions: HashMap<String, Session>,
    pub limit: RateLimit,
    session_ttl: Duration,
}

fn token() -> String {
    let mut b = [0u8; TOKEN_BYTES];
    rand::rng().fill(&mut b[..]);
    hex::encode(b)
}

/// Equal-time comparison (a token's prefix is not leaked by timing).
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes a password with argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    // 16 random bytes (the PHC recommendation) from the OS-seeded CSPRNG.
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes[..]);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| AuthError::Storage {
        path: PathBuf::from(PASSWORD_FILE),
        detail: format!("cannot make a salt: {e}"),
    })?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Storage {
            path: PathBuf::from(PASSWORD_FILE),
            detail: format!("cannot hash the password: {e}"),
        })
}

/// Checks a password against a PHC string.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

pub fn check_new_password(p: &str) -> Result<(), AuthError> {
    let n = p.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        Ok(())
    } else {
        Err(AuthError::WeakPassword)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| AuthError::Storage {
        path: path.to_path_buf(),
        detail: format!("cannot write ({e}); is the data folder writable?"),
    };
    crate::fsutil::write_atomic(path, bytes).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)
}

impl Auth {
    /// Reads the password file; on a fresh box makes and publishes a setup code.
    pub fn open(data_dir: &Path, session_ttl: Duration) -> Result<Auth, AuthError> {
        let path = data_dir.join(PASSWORD_FILE);
        let hash = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let f: PasswordFile =
                    serde_json::from_str(&text).map_err(|e| AuthError::Storage {
                        path: path.clone(),
                        detail: format!(
                            "not a password file ({e}); delete it to set a new password with a setup code"
                        ),
                    })?;
                PasswordHash::new(&f.password).map_err(|e| AuthError::Storage {
                    path: path.clone(),
                    detail: format!(
                        "not an argon2 hash ({e}); delete it to set a new password with a setup code"
                    ),
                })?;
                Some(f.password)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(AuthError::Storage {
                    path,
                    detail: format!("cannot read ({e})"),
                })
            }
        };
        let mut auth = Auth {
            data_dir: data_dir.to_path_buf(),
            hash,
            setup_code: None,
            sessions: HashMap::new(),
            limit: RateLimit::default(),
            session_ttl,
        };
        if auth.hash.is_none() {
            let mut rng = rand::rng();
            let digits: String = (0..SETUP_CODE_DIGITS)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect();
            let code = digits
                .as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("-");
            let file = data_dir.join(SETUP_CODE_FILE);
            write_private(&file, format!("{code}\n").as_bytes())?;
            tracing::warn!(
                code = %code,
                file = %file.display(),
                "web: no password yet; open the web page and enter this setup code to set one"
            );
            auth.setup_code = Some(code);
        } else {
            // A stale code from before the password was set must not work again.
            let _ = std::fs::remove_file(data_dir.join(SETUP_CODE_FILE));
        }
        Ok(auth)
    }

    pub fn is_set_up(&self) -> bool {
        self.hash.is_some()
    }

    /// The stored hash, to verify outside the lock (argon2 takes tens of ms).
    pub fn hash(&self) -> Option<String> {
        self.hash.clone()
    }

    /// Checks the setup code (under the rate limit).
    pub fn check_setup_code(&mut self, code: &str, now: Instant) -> Result<(), AuthError> {
        if self.hash.is_some() {
            return Err(AuthError::AlreadySetUp);
        }
        self.limit.check(now).map_err(AuthError::RateLimited)?;
        let normal: String = code.chars().filter(|c| c.is_ascii_digit()).collect();
        let want: String = self
            .setup_code
            .as_deref()
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_digit())
            .collect();
        if !want.is_empty() && same(&normal, &want) {
            Ok(())
        } else {
            self.limit.failed(now);
            Err(AuthError::WrongSetupCode {
                file: SETUP_CODE_FILE.into(),
            })
        }
    }

    /// Stores a new password hash (setup or change); every other session ends.
    pub fn set_hash(&mut self, hash: String) -> Result<(), AuthError> {
        let path = self.data_dir.join(PASSWORD_FILE);
        let text = serde_json::to_vec_pretty(&PasswordFile {
            password: hash.clone(),
        })
        .map_err(|e| AuthError::Storage {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_private(&path, &text)?;
        self.hash = Some(hash);
        self.setup_code = None;
        let _ = std::fs::remove_file(self.data_dir.join(SETUP_CODE_FILE));
        self.sessions.clear();
        self.limit.succeeded();
        Ok(())
    }

    /// A new session; returns (session token, CSRF token).
    pub fn new_session(&mut self, now: Instant) -> (String, String) {
        self.sessions.retain(|_, s| s.expires > now);
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            {
                self.sessions.remove(&oldest);
            }
        }
        let (t, csrf) = (token(), token());
        self.sessions.insert(
            t.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + self.session_ttl,
                created: now,
            },
        );
        (t, csrf)
    }

    /// The live session for a token.
    pub fn session(&self, token: &str, now: Instant) -> Option<&Session> {
        self.sessions.get(token).filter(|s| s.expires > now)
    }

    pub fn end_session(&mut self, token: &str) {
        self.sessions.remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixth_wrong_attempt_in_a_minute_is_refused_unchecked_with_backoff() {
        let mut l = RateLimit::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(l.check(t0 + Duration::from_secs(i as u64)), Ok(()));
            l.failed(t0 + Duration::from_secs(i as u64));
        }
        // The sixth: refused for about a minute.
        let t = t0 + Duration::from_secs(5);
        let wait = l.check(t).unwrap_err();
        assert!((55..=60).contains(&wait), "{wait}");
        assert_eq!(l.check(t0 + Duration::from_secs(65)), Ok(()));
        // Five more: the second lockout is twice as long.
        let t1 = t0 + Duration::from_secs(70);
        for _ in 0..MAX_FAILURES {
            l.failed(t1);
        }
        assert_eq!(l.check(t1).unwrap_err(), 120);
        // Failures spread over more than a window never lock.
        let mut l = RateLimit::default();
        for i in 0..20u64 {
            let t = t0 + Duration::from_secs(i * 16);
            assert_eq!(l.check(t), Ok(()));
            l.failed(t);
        }
    }

    #[test]
    fn setup_code_then_password_then_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Auth::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert!(!a.is_set_up());
        let file = std::fs::read_to_string(dir.path().join(SETUP_CODE_FILE)).unwrap();
        let code = file.trim().to_string();
        assert_eq!(code.len(), 19, "{code}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SETUP_CODE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let now = Instant::now();
        assert!(matches!(
            a.check_setup_code("0000-0000-0000-0000", now),
            Err(AuthError::WrongSetupCode { .. })
        ));
        // Spaces and missing dashes are forgiven.
        a.check_setup_code(&code.replace('-', " "), now).unwrap();
        assert_eq!(check_new_password("short"), Err(AuthError::WeakPassword));
        a.set_hash(hash_password("correct horse").unwrap()).unwrap();
        assert!(!dir.path().join(SETUP_CODE_FILE).exists());
        assert_eq!(a.check_setup_code(&code, now), Err(AuthError::AlreadySetUp));
        // The hash is argon2id and survives a reopen.
        let b = Auth::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let h = b.hash().unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsE"));
        assert!(!dir.path().join(SETUP_CODE_FILE).exists());
        // Sessions expire.
        let (t, csrf) = a.new_session(now);
        assert_eq!(a.session(&t, now).unwrap().csrf, csrf);
        assert!(a.session(&t, now + Duration::from_secs(3601)).is_none());
        assert!(a.session("nope", now).is_none());
        a.end_session(&t);
        assert!(a.session(&t, now).is_none());
    }

    #[test]
    fn constant_time_compare() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
