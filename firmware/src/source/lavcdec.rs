//! Video decoding in this process: libavcodec's decoder fed the samples of an MP4/MOV
//! track as undertone's own MP4 reader finds them ([`super::mp4::decode_plan`]), each
//! picture scaled to the analysis size by libswscale. For the common input (H.264 or HEVC
//! in a plain MP4 at a constant rate) this replaces the ffmpeg process of
//! [`super::FileSource`]: that process spends ~50 ms of CPU, and as much wall time before
//! its first frame, binding its 215 libraries, where opening the three used here takes
//! ~15 ms once per run, and the AAC encoder of `score` uses them too. The frames are the
//! ones the ffmpeg process gives, byte for byte (tests): the same decoder with the same
//! settings, and the scaler set up as ffmpeg's `scale=W:H:flags=area,format=gray` sets it
//! up. The C side is `csrc/videodec.c`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use super::mp4::DecodePlan;
use super::{Frame, SourceError};

/// What a decoding thread tells its consumer.
pub(super) enum Msg {
    Frame(Frame),
    /// The decoder is done: `Ok(None)` a clean end, `Ok(Some(detail))` an end after the
    /// codec reported damage (its last message), the frames delivered being usable.
    End(Result<Option<String>, SourceError>),
    /// Nothing was delivered and this decoder cannot go on (the libraries cannot be
    /// opened, the codec refuses the stream, its first picture is not the first frame
    /// asked for): an ffmpeg process should decode instead. The reason, for the log.
    Fallback(String),
}

/// How one in-process decoder runs.
pub(super) struct Job {
    pub path: PathBuf,
    pub plan: Arc<DecodePlan>,
    /// The first frame to deliver (a sync sample's frame, or 0).
    pub start: u64,
    pub threads: usize,
    pub skip_deblock: bool,
    /// Analysis frame size.
    pub frame: (u32, u32),
    pub fps: f64,
}

/// Decodes `job` on the calling thread, sending frames (from `job.start` on, one per frame
/// number, in order) to `tx` until the end, or until the receiver is gone.
pub(super) fn run(job: Job, tx: SyncSender<Msg>) {
    if let Err(why) = crate::lavc::available() {
        let _ = tx.send(Msg::Fallback(why.to_string()));
        return;
    }
    let file = match File::open(&job.path) {
        Ok(f) => f,
        Err(source) => {
            let _ = tx.send(Msg::End(Err(SourceError::Io {
                path: job.path.clone(),
                source,
            })));
            return;
        }
    };
    let plan = &job.plan;
    let Some(first) = plan
        .samples
        .iter()
        .position(|s| s.sync && u64::from(s.frame) == job.start)
    else {
        let _ = tx.send(Msg::Fallback(format!(
            "no sync sample presents frame {}",
            job.start
        )));
        return;
    };
    let mut dec = match ffi::Decoder::open(plan, job.threads, job.skip_deblock, job.frame) {
        Ok(d) => d,
        Err(why) => {
            let _ = tx.send(Msg::Fallback(why));
            return;
        }
    };
    let mut out = Out {
        tx: &tx,
        job: &job,
        next: job.start,
        last: None,
        gaps: 0,
        gone: false,
        fallback: None,
    };
    // one buffer for the samples, as large as the largest
    let largest = plan.samples.iter().map(|s| s.size).max().unwrap_or(0);
    let mut buf = vec![0u8; largest as usize];
    let mut refused = None;
    for (i, s) in plan.samples.iter().enumerate().skip(first) {
        if s.size == 0 {
            continue; // no picture (and an empty packet would end the decoder's input)
        }
        let data = &mut buf[..s.size as usize];
        if let Err(e) = file.read_exact_at(data, s.offset) {
            // the file changed under us (its index said the sample is there)
            out.end(Err(SourceError::Io {
                path: job.path.clone(),
                source: e,
            }));
            return;
        }
        match dec.send(
            data,
            i64::from(s.frame),
            i as i64,
            s.sync,
            &mut |pts, gray, e| out.picture(pts, gray, e),
        ) {
            Ok(true) => {}
            Ok(false) => return out.stopped(),
            Err(e) => refused = Some(e), // a broken packet: the decoder goes on
        }
    }
    match dec.send(&[], 0, 0, false, &mut |pts, gray, e| {
        out.picture(pts, gray, e)
    }) {
        Ok(true) => {}
        Ok(false) => return out.stopped(),
        Err(e) => refused = Some(e),
    }
    if out.next == job.start {
        out.tx
            .send(Msg::Fallback(format!(
                "no picture decoded{}",
                refused.map_or(String::new(), |e| format!(" ({e})"))
            )))
            .ok();
        return;
    }
    let (errors, last) = dec.errors();
    let damage = if errors > 0 || out.gaps > 0 || refused.is_some() {
        let detail = if !last.is_empty() {
            format!("{}: {last}", plan.codec)
        } else if let Some(e) = refused {
            e
        } else {
            format!("{}: {} frames missing", plan.codec, out.gaps)
        };
        Some(detail)
    } else {
        None
    };
    out.end(Ok(damage));
}

/// The frames going out of one decoder.
struct Out<'a> {
    tx: &'a SyncSender<Msg>,
    job: &'a Job,
    /// The next frame number to deliver.
    next: u64,
    /// The last picture delivered, once there is one (a missing frame repeats it, as
    /// ffmpeg's fps filter does).
    last: Option<Vec<u8>>,
    /// Frames filled so.
    gaps: u64,
    /// The receiver is gone.
    gone: bool,
    /// Why this decoder gave up before delivering anything.
    fallback: Option<String>,
}

impl Out<'_> {
    /// One decoded picture presenting frame `pts`, after the codec reported `errors`; false
    /// to stop decoding.
    fn picture(&mut self, pts: i64, gray: &[u8], errors: u32) -> bool {
        let Ok(pts) = u64::try_from(pts) else {
            return true; // no time: not a frame of the plan
        };
        if pts < self.next {
            return true; // before the start (a leading picture), or a repeat
        }
        if self.last.is_none() && errors > 0 {
            // Damage before the first picture (a phone's first pictures that do not decode):
            // which pictures come out, and how ffmpeg fills the frames before them, is
            // ffmpeg's to decide.
            self.fallback = Some(format!(
                "the codec reported {errors} errors before the first picture"
            ));
            return false;
        }
        if pts > self.next {
            let Some(last) = self.last.clone() else {
                // The first picture is not the first frame: ffmpeg would fill the slots
                // before it with copies of it, and decides best how.
                self.fallback = Some(format!(
                    "the first picture presents frame {pts}, not {}",
                    self.next
                ));
                return false;
            };
            while self.next < pts {
                self.gaps += 1;
                if !self.send(last.clone()) {
                    return false;
                }
            }
        }
        match &mut self.last {
            Some(last) => last.copy_from_slice(gray),
            None => self.last = Some(gray.to_vec()),
        }
        self.send(gray.to_vec())
    }

    fn send(&mut self, gray: Vec<u8>) -> bool {
        let (w, h) = self.job.frame;
        let f = Frame {
            pts: self.next as f64 / self.job.fps,
            width: w,
            height: h,
            gray,
        };
        self.next += 1;
        if self.tx.send(Msg::Frame(f)).is_err() {
            self.gone = true;
            return false;
        }
        true
    }

    /// Decoding stopped on a picture's word: the consumer is gone, or this decoder falls
    /// back to ffmpeg.
    fn stopped(self) {
        if let Some(why) = self.fallback {
            let _ = self.tx.send(Msg::Fallback(why));
        }
    }

    fn end(self, r: Result<Option<String>, SourceError>) {
        if !self.gone {
            let _ = self.tx.send(Msg::End(r));
        }
    }
}

#[cfg(undertone_lavc)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void, CStr, CString};

    use super::DecodePlan;

    #[repr(C)]
    struct UtVdec {
        _private: [u8; 0],
    }
    type FrameCb =
        extern "C" fn(user: *mut c_void, pts: i64, gray: *const u8, errors: c_int) -> c_int;

    extern "C" {
        #[allow(clippy::too_many_arguments)]
        fn ut_vdec_open(
            out: *mut *mut UtVdec,
            codec: *const c_char,
            extradata: *const u8,
            extradata_len: c_int,
            width: c_int,
            height: c_int,
            threads: c_int,
            skip_loop_filter: c_int,
            out_w: c_int,
            out_h: c_int,
        ) -> c_int;
        #[allow(clippy::too_many_arguments)]
        fn ut_vdec_send(
            d: *mut UtVdec,
            data: *const u8,
            size: c_int,
            pts: i64,
            dts: i64,
            key: c_int,
            cb: FrameCb,
            user: *mut c_void,
        ) -> c_int;
        fn ut_vdec_errors(d: *mut UtVdec, buf: *mut c_char, len: usize) -> c_int;
        fn ut_vdec_close(d: *mut UtVdec);
    }

    /// One libavcodec decoder with its scaler.
    pub(super) struct Decoder {
        raw: *mut UtVdec,
        codec: &'static str,
        frame_len: usize,
    }

    impl Decoder {
        pub(super) fn open(
            plan: &DecodePlan,
            threads: usize,
            skip_deblock: bool,
            (w, h): (u32, u32),
        ) -> Result<Self, String> {
            let name = CString::new(plan.codec).expect("no NUL");
            let mut raw = std::ptr::null_mut();
            // SAFETY: the out-pointer is valid; name and the config outlive the call (the C
            // side copies the config).
            let r = unsafe {
                ut_vdec_open(
                    &mut raw,
                    name.as_ptr(),
                    plan.config.as_ptr(),
                    plan.config.len() as c_int,
                    plan.width as c_int,
                    plan.height as c_int,
                    threads as c_int,
                    c_int::from(skip_deblock),
                    w as c_int,
                    h as c_int,
                )
            };
            if r < 0 {
                return Err(format!(
                    "libavcodec's {} decoder cannot be opened: {}",
                    plan.codec,
                    crate::lavc::error_text(r)
                ));
            }
            Ok(Decoder {
                raw,
                codec: plan.codec,
                frame_len: (w * h) as usize,
            })
        }

        /// Decodes one sample (or, with `data` empty, drains the decoder), handing each
        /// picture to `out` (its frame number, its luma, and the errors the codec has
        /// reported so far); Ok(false) if `out` said stop.
        pub(super) fn send(
            &mut self,
            data: &[u8],
            pts: i64,
            dts: i64,
            key: bool,
            out: &mut dyn FnMut(i64, &[u8], u32) -> bool,
        ) -> Result<bool, String> {
            struct User<'a> {
                out: &'a mut dyn FnMut(i64, &[u8], u32) -> bool,
                len: usize,
            }
            extern "C" fn trampoline(
                user: *mut c_void,
                pts: i64,
                gray: *const u8,
                errors: c_int,
            ) -> c_int {
                // SAFETY: user is the User passed below, alive for the call; gray holds the
                // analysis frame's bytes while the callback runs.
                unsafe {
                    let u = &mut *(user as *mut User);
                    let gray = std::slice::from_raw_parts(gray, u.len);
                    c_int::from(!(u.out)(pts, gray, errors.max(0) as u32))
                }
            }
            let mut user = User {
                out,
                len: self.frame_len,
            };
            let ptr = if data.is_empty() {
                std::ptr::null()
            } else {
                data.as_ptr()
            };
            // SAFETY: self.raw is open; data holds size bytes (or is NULL to drain); user
            // lives across the call.
            let r = unsafe {
                ut_vdec_send(
                    self.raw,
                    ptr,
                    data.len() as c_int,
                    pts,
                    dts,
                    c_int::from(key),
                    trampoline,
                    &mut user as *mut User as *mut c_void,
                )
            };
            match r {
                0 => Ok(true),
                1 => Ok(false),
                e => Err(format!("{}: {}", self.codec, crate::lavc::error_text(e))),
            }
        }

        /// How many errors the codec reported, and the last one's text.
        pub(super) fn errors(&mut self) -> (u32, String) {
            let mut buf = [0 as c_char; 256];
            // SAFETY: self.raw is open; buf is writable for its length and NUL-terminated
            // by the C side.
            let n = unsafe { ut_vdec_errors(self.raw, buf.as_mut_ptr(), buf.len()) };
            // SAFETY: NUL-terminated above.
            let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
            (n.max(0) as u32, text.into_owned())
        }
    }

    // SAFETY: a decoder is used by one thread at a time (&mut self); libavcodec's contexts
    // may move between threads.
    unsafe impl Send for Decoder {}

    impl Drop for Decoder {
        fn drop(&mut self) {
            // SAFETY: self.raw came from ut_vdec_open and is closed once.
            unsafe { ut_vdec_close(self.raw) }
        }
    }
}

#[cfg(not(undertone_lavc))]
mod ffi {
    use super::DecodePlan;

    pub(super) enum Decoder {}

    impl Decoder {
        pub(super) fn open(
            _: &DecodePlan,
            _: usize,
            _: bool,
            _: (u32, u32),
        ) -> Result<Self, String> {
            Err(crate::lavc::available().unwrap_err().to_owned())
        }
        pub(super) fn send(
            &mut self,
            _: &[u8],
            _: i64,
            _: i64,
            _: bool,
            _: &mut dyn FnMut(i64, &[u8], u32) -> bool,
        ) -> Result<bool, String> {
            match *self {}
        }
        pub(super) fn errors(&mut self) -> (u32, String) {
            match *self {}
        }
    }
}
