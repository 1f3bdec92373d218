//! libavcodec, libavutil and libswscale in this process: the file source's video decoder
//! ([`crate::source::lavcdec`]) and scored.mp4's AAC encoder ([`crate::score::aac`]).
//!
//! The libraries are opened with `dlopen` the first time one is needed, not linked: linked,
//! their ~100 libraries would be bound at the start of every undertone process, the live
//! engine's included (~15 ms of CPU here). Opened, they cost that once per `score`, in place
//! of the ffmpeg processes that decoded the video and encoded the music (each ~50 ms of CPU
//! to start, most of it the dynamic linker binding ffmpeg's 215 libraries). The C side is
//! `csrc/`, compiled against the headers found at build time (`build.rs`); built without
//! them, or where libraries of those versions cannot be opened, [`available`] says why and
//! ffmpeg processes do the work as before.

use std::sync::OnceLock;

/// Whether this build has the in-process decoder and encoder at all (`build.rs` found the
/// headers); [`available`] says whether their libraries can be opened here.
pub(crate) const COMPILED: bool = cfg!(undertone_lavc);

/// Whether the libraries can be used in this process, opening them the first time (the
/// reason they cannot, otherwise). Safe to call from any thread, any number of times: a
/// caller that comes while another thread opens them waits for it.
pub(crate) fn available() -> Result<(), &'static str> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let t = std::time::Instant::now();
            let r = ffi::load();
            match &r {
                Ok(()) => tracing::debug!(seconds = t.elapsed().as_secs_f64(), "libav opened"),
                Err(why) => tracing::info!("ffmpeg processes decode and encode: {why}"),
            }
            r
        })
        .as_ref()
        .map(|_| ())
        .map_err(String::as_str)
}

/// Starts opening the libraries on a thread of its own (at `nice`, or at the caller's
/// priority), so that the first user need not wait for it (one that comes while they load
/// waits for the load to end).
pub(crate) fn load_in_background(nice: Option<libc::c_int>) {
    let spawned = std::thread::Builder::new()
        .name("load-lavc".into())
        .spawn(move || {
            if let Some(nice) = nice {
                crate::threads::set_nice(nice);
            }
            let _ = available();
        });
    if let Err(e) = spawned {
        tracing::debug!("cannot start a thread to open libavcodec ({e}); it opens when needed");
    }
}

/// The text of a libav error code.
pub(crate) fn error_text(code: i32) -> String {
    ffi::error_text(code)
}

#[cfg(undertone_lavc)]
mod ffi {
    use std::ffi::{c_char, c_int, CStr};

    extern "C" {
        fn ut_lavc_load(err: *mut c_char, len: usize) -> c_int;
        fn ut_lavc_libraries() -> *const c_char;
        fn ut_lavc_strerror(code: c_int, buf: *mut c_char, len: usize);
    }

    pub(super) fn load() -> Result<(), String> {
        let mut err = [0 as c_char; 256];
        // SAFETY: err is writable for its length; the C side NUL-terminates what it writes.
        let r = unsafe { ut_lavc_load(err.as_mut_ptr(), err.len()) };
        if r == 0 {
            return Ok(());
        }
        // SAFETY: both are NUL-terminated C strings (a static one, and err).
        let (libs, why) = unsafe {
            (
                CStr::from_ptr(ut_lavc_libraries()).to_string_lossy(),
                CStr::from_ptr(err.as_ptr()).to_string_lossy(),
            )
        };
        Err(format!("cannot open {libs} ({why})"))
    }

    pub(super) fn error_text(code: i32) -> String {
        let mut buf = [0 as c_char; 128];
        // SAFETY: buf is writable for its length; the C side NUL-terminates it.
        unsafe { ut_lavc_strerror(code, buf.as_mut_ptr(), buf.len()) };
        // SAFETY: NUL-terminated above.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }
}

#[cfg(not(undertone_lavc))]
mod ffi {
    pub(super) fn load() -> Result<(), String> {
        Err(
            "this build has no in-process libav code (built without libavcodec-dev and \
             libswscale-dev)"
                .into(),
        )
    }

    pub(super) fn error_text(code: i32) -> String {
        format!("error {code}")
    }
}
