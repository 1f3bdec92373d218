//! The music of scored.mp4 as AAC, encoded in this process by ffmpeg's own encoder
//! (libavcodec's `aac`, set up as `-c:a aac -aac_coder fast -b:a 192k -flags:a +bitexact`:
//! the packets are the bytes an ffmpeg process writes for the same 16-bit PCM).
//!
//! libavcodec is opened by [`crate::lavc`]: in `score`, on a thread of its own from the start
//! ([`load_in_background`]); in `refine`, when [`super::mux::Muxer`] starts (the same call, at
//! the muxer's lower priority; a no-op once the libraries are open).
//! The encoder replaces the two ffmpeg processes that encoded the music before (each ~50 ms
//! of CPU to start, most of it the dynamic linker: 9.5 % of a short clip's `score`), and the
//! packets need no pipe and no ADTS parsing. The C side is `csrc/aacenc.c`; built without
//! the headers, or where the libraries cannot be opened, [`available`] says why and
//! scored.mp4's music is encoded by ffmpeg processes as before ([`super::mux`]).

use crate::music::CHANNELS;

use super::mp4out::AAC_FRAME;
use super::mux::pcm_i16;

/// AAC bit rate of the music in scored.mp4 (transparent for stereo music).
pub(crate) const AAC_BITRATE: u32 = 192_000;
/// ffmpeg's "fast" AAC coder: about 2.5× quicker than the default two-loop search here and
/// inaudibly different at 192 kb/s; the encode is on the critical path of `score`.
pub(crate) const AAC_CODER: &str = "fast";

/// Encoded music: the packets one after another, and each one's size.
#[derive(Debug, Default)]
pub(crate) struct Packets {
    pub data: Vec<u8>,
    pub sizes: Vec<u32>,
}

impl Packets {
    /// The packets as an ADTS stream, each behind the 7-byte header ffmpeg's `adts` muxer
    /// writes for it (what an ffmpeg muxer reads from a pipe), for the AudioSpecificConfig
    /// `config` (AAC-LC's two bytes).
    pub(crate) fn adts(&self, config: [u8; 2]) -> Vec<u8> {
        let object = config[0] >> 3; // 2: AAC-LC
        let rate_index = ((config[0] & 0x07) << 1) | (config[1] >> 7);
        let channels = (config[1] >> 3) & 0x0F;
        let mut out = Vec::with_capacity(self.data.len() + 7 * self.sizes.len());
        let mut at = 0;
        for &size in &self.sizes {
            let len = size as usize + 7;
            out.extend_from_slice(&[
                0xFF,
                0xF1, // MPEG-4, layer 0, no CRC
                ((object - 1) << 6) | (rate_index << 2) | (channels >> 2),
                ((channels & 3) << 6) | ((len >> 11) as u8 & 0x03),
                (len >> 3) as u8,
                ((len as u8 & 0x07) << 5) | 0x1F, // buffer fullness 0x7FF: variable rate
                0xFC,                             // one raw data block
            ]);
            out.extend_from_slice(&self.data[at..at + size as usize]);
            at += size as usize;
        }
        out
    }

    fn push(&mut self, packet: &[u8]) {
        self.data.extend_from_slice(packet);
        self.sizes.push(packet.len() as u32);
    }

    fn append(&mut self, other: Packets) {
        self.data.extend_from_slice(&other.data);
        self.sizes.extend_from_slice(&other.sizes);
    }
}

pub(crate) use crate::lavc::{available, load_in_background, COMPILED};

/// Encodes `pcm` (interleaved stereo at [`crate::music::SAMPLE_RATE`], as 16-bit samples: exactly those of
/// music.wav) and returns the packets from number `first` on, `count` of them at most
/// (all that are there if fewer); the first packet is the encoder's priming
/// ([`super::mp4out::AAC_PRIMING`] samples) and the last ones its flush. The AudioSpecificConfig comes
/// with them.
pub(crate) fn encode(
    pcm: &[f32],
    first: usize,
    count: usize,
) -> Result<(Packets, [u8; 2]), String> {
    let mut enc = ffi::Encoder::new()?;
    let config = enc.config()?;
    let mut keep = Keep {
        first,
        end: first.saturating_add(count),
        next: 0,
        packets: Packets::default(),
    };
    const CH: usize = CHANNELS as usize;
    let mut block = [0i16; AAC_FRAME as usize * CH];
    for chunk in pcm.chunks(AAC_FRAME as usize * CH) {
        if keep.next >= keep.end {
            break; // the packets asked for are all out
        }
        for (d, &s) in block.iter_mut().zip(chunk) {
            *d = pcm_i16(s);
        }
        enc.send(&block[..chunk.len() / CH * CH], &mut |p| keep.take(p))?;
    }
    if keep.next < keep.end {
        enc.flush(&mut |p| keep.take(p))?;
    }
    Ok((keep.packets, config))
}

/// The packets numbered `first..end` of an encoder's output, as they come.
struct Keep {
    first: usize,
    end: usize,
    next: usize,
    packets: Packets,
}

impl Keep {
    fn take(&mut self, packet: &[u8]) {
        if (self.first..self.end).contains(&self.next) {
            self.packets.push(packet);
        }
        self.next += 1;
    }
}

/// The second half's encoder starts this many frames before the splice, so its
/// psychoacoustic state and window choice have settled on the music by then.
const SPLIT_LEAD_IN: usize = 8 * AAC_FRAME as usize;
/// The first half's encoder gets this much music past the splice (its last kept frame's
/// transform overlaps the next frame, and the encoder looks ahead).
const SPLIT_TAIL: usize = 4 * AAC_FRAME as usize;

/// How music is encoded in two halves at once and spliced on an AAC frame boundary `s` (the
/// frame nearest its middle): the first encoder's packets up to `s`, then the second's from
/// `s` on. The second encoder starts [`SPLIT_LEAD_IN`] early, so at the splice both have
/// coded the same music with the same window shape and the decoder's overlap-add joins them
/// like neighbouring frames of one encode: on the trailer, the SNR of the blocks at the
/// splice (33–37 dB) is that of any block of a single encode (median 37 dB), and the decoded
/// track is sample-aligned with music.wav and as long as a single encode's. Used alike by
/// the encoders in this process and by ffmpeg processes ([`super::mux`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Halves {
    /// The first encoder gets the music's frames `..a_end`; its first `a_packets` are kept.
    pub a_end: usize,
    pub a_packets: usize,
    /// The second gets the frames from `b_start` on; its packets from `b_first` on are kept.
    pub b_start: usize,
    pub b_first: usize,
}

impl Halves {
    /// The halves of `frames` samples of music; `None` if too short to split.
    pub(crate) fn of(frames: usize) -> Option<Self> {
        let f = AAC_FRAME as usize;
        let s = frames / 2 / f * f;
        (s >= SPLIT_LEAD_IN).then(|| Halves {
            a_end: (s + SPLIT_TAIL).min(frames),
            a_packets: s / f + 1,
            b_start: s - SPLIT_LEAD_IN,
            b_first: SPLIT_LEAD_IN / f + 1,
        })
    }
}

/// [`encode`], in two [`Halves`] at once when `split` (and the music is long enough).
pub(crate) fn encode_split(pcm: &[f32], split: bool) -> Result<(Packets, [u8; 2]), String> {
    const CH: usize = CHANNELS as usize;
    let Some(h) = split.then(|| Halves::of(pcm.len() / CH)).flatten() else {
        return encode(pcm, 0, usize::MAX);
    };
    let (a, b) = std::thread::scope(|scope| {
        let b = std::thread::Builder::new()
            .name("aac-2".into())
            .spawn_scoped(scope, || {
                encode(&pcm[h.b_start * CH..], h.b_first, usize::MAX)
            });
        let a = encode(&pcm[..h.a_end * CH], 0, h.a_packets);
        let b = match b {
            Ok(h) => h.join().expect("AAC encoder thread panicked"),
            Err(e) => Err(format!("cannot start a thread: {e}")),
        };
        (a, b)
    });
    let ((mut a, config), (b, config_b)) = (a?, b?);
    if config != config_b {
        return Err("the two halves' encoders disagree on the format".into());
    }
    a.append(b);
    Ok((a, config))
}

#[cfg(undertone_lavc)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void, CString};

    use super::{AAC_BITRATE, AAC_CODER};
    use crate::music::{CHANNELS, SAMPLE_RATE};
    use crate::score::mp4out::{AAC_FRAME, AAC_PRIMING};

    /// The AudioSpecificConfig's object type of AAC-LC.
    const AAC_LC: u8 = 2;

    #[repr(C)]
    struct UtAac {
        _private: [u8; 0],
    }
    type PacketCb = extern "C" fn(user: *mut c_void, data: *const u8, size: c_int);

    extern "C" {
        fn ut_aac_open(
            out: *mut *mut UtAac,
            sample_rate: c_int,
            channels: c_int,
            bit_rate: i64,
            coder: *const c_char,
            frame_len: c_int,
            initial_padding: *mut c_int,
        ) -> c_int;
        fn ut_aac_config(e: *const UtAac, buf: *mut u8, len: c_int) -> c_int;
        fn ut_aac_encode(
            e: *mut UtAac,
            pcm: *const i16,
            frames: c_int,
            cb: PacketCb,
            user: *mut c_void,
        ) -> c_int;
        fn ut_aac_close(e: *mut UtAac);
    }

    fn av_error(what: &str, code: c_int) -> String {
        let text = crate::lavc::error_text(code);
        format!("libavcodec's AAC encoder {what}: {text}")
    }

    /// One libavcodec AAC encoder (after a successful [`load`]).
    pub(super) struct Encoder(*mut UtAac);

    // SAFETY: an encoder is used by one thread at a time (&mut self); libavcodec's contexts
    // may move between threads.
    unsafe impl Send for Encoder {}

    impl Encoder {
        pub(super) fn new() -> Result<Self, String> {
            super::available().map_err(str::to_owned)?;
            let coder = CString::new(AAC_CODER).expect("no NUL");
            let (mut raw, mut padding) = (std::ptr::null_mut(), 0);
            // SAFETY: the out-pointers are valid; coder outlives the call.
            let r = unsafe {
                ut_aac_open(
                    &mut raw,
                    SAMPLE_RATE as c_int,
                    CHANNELS as c_int,
                    i64::from(AAC_BITRATE),
                    coder.as_ptr(),
                    AAC_FRAME as c_int,
                    &mut padding,
                )
            };
            if r < 0 {
                return Err(av_error("cannot be opened", r));
            }
            let enc = Encoder(raw);
            if padding as u64 != AAC_PRIMING {
                return Err(format!(
                    "libavcodec's AAC encoder primes {padding} samples, not {AAC_PRIMING}"
                ));
            }
            Ok(enc)
        }

        /// The AudioSpecificConfig's first two bytes (object type, sampling frequency index,
        /// channels), as an ADTS header gives them. The encoder's own adds three bytes that
        /// only say "no SBR" (its `0x2B7` sync extension); scored.mp4's `esds` carries the
        /// two, as it did when the packets came from ADTS.
        pub(super) fn config(&self) -> Result<[u8; 2], String> {
            let mut asc = [0u8; 2];
            // SAFETY: self.0 is an open encoder; asc is writable for 2 bytes.
            let n = unsafe { ut_aac_config(self.0, asc.as_mut_ptr(), 2) };
            if n < 2 || asc[0] >> 3 != AAC_LC {
                return Err(format!(
                    "libavcodec's AAC encoder gave an unexpected decoder config \
                     ({n} bytes, object type {})",
                    asc[0] >> 3
                ));
            }
            Ok(asc)
        }

        /// Encodes one frame (at most [`AAC_FRAME`] samples per channel, interleaved).
        pub(super) fn send(
            &mut self,
            pcm: &[i16],
            out: &mut dyn FnMut(&[u8]),
        ) -> Result<(), String> {
            let frames = pcm.len() / CHANNELS as usize;
            debug_assert!(frames > 0 && frames as u64 <= AAC_FRAME);
            self.call(pcm.as_ptr(), frames as c_int, out)
        }

        /// Ends the music: the encoder's last packets.
        pub(super) fn flush(&mut self, out: &mut dyn FnMut(&[u8])) -> Result<(), String> {
            self.call(std::ptr::null(), 0, out)
        }

        fn call(
            &mut self,
            pcm: *const i16,
            frames: c_int,
            out: &mut dyn FnMut(&[u8]),
        ) -> Result<(), String> {
            extern "C" fn trampoline(user: *mut c_void, data: *const u8, size: c_int) {
                // SAFETY: user is the &mut &mut dyn FnMut passed below, alive for the call;
                // data holds size bytes while the callback runs.
                unsafe {
                    let out = &mut *(user as *mut &mut dyn FnMut(&[u8]));
                    out(std::slice::from_raw_parts(data, size.max(0) as usize));
                }
            }
            let mut out = out;
            // SAFETY: self.0 is open; pcm holds frames × CHANNELS samples (or is unused
            // when frames is 0); the callback's user pointer lives across the call.
            let r = unsafe {
                ut_aac_encode(
                    self.0,
                    pcm,
                    frames,
                    trampoline,
                    &mut out as *mut &mut dyn FnMut(&[u8]) as *mut c_void,
                )
            };
            if r < 0 {
                return Err(av_error("failed", r));
            }
            Ok(())
        }
    }

    impl Drop for Encoder {
        fn drop(&mut self) {
            // SAFETY: self.0 came from ut_aac_open and is closed once.
            unsafe { ut_aac_close(self.0) }
        }
    }
}

#[cfg(not(undertone_lavc))]
mod ffi {
    pub(super) enum Encoder {}

    impl Encoder {
        pub(super) fn new() -> Result<Self, String> {
            Err(super::available().unwrap_err().to_owned())
        }
        pub(super) fn config(&self) -> Result<[u8; 2], String> {
            match *self {}
        }
        pub(super) fn send(&mut self, _: &[i16], _: &mut dyn FnMut(&[u8])) -> Result<(), String> {
            match *self {}
        }
        pub(super) fn flush(&mut self, _: &mut dyn FnMut(&[u8])) -> Result<(), String> {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A chord with a slow swell and a little noise, interleaved stereo.
    fn music(seconds: f64) -> Vec<f32> {
        let n = (seconds * crate::music::SAMPLE_RATE as f64) as usize;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .flat_map(|i| {
                let t = i as f64 / crate::music::SAMPLE_RATE as f64;
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let noise = (seed >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
                let swell = 0.5 - 0.4 * (t * 1.3).cos();
                let l = swell
                    * ((t * 220.0 * std::f64::consts::TAU).sin() * 0.4
                        + (t * 277.2 * std::f64::consts::TAU).sin() * 0.2)
                    + 0.02 * noise;
                let r = swell * (t * 329.6 * std::f64::consts::TAU).sin() * 0.4 - 0.02 * noise;
                [l as f32, r as f32]
            })
            .collect()
    }

    /// The packets, and their ADTS framing, are the bytes an ffmpeg process writes for the
    /// same music (`-c:a aac -aac_coder fast -b:a 192k -flags:a +bitexact -f adts`), and the
    /// last packet ends the music (priming + music rounded up to frames, + the flush).
    #[test]
    fn packets_are_those_of_an_ffmpeg_process() {
        if !COMPILED {
            eprintln!("skipped: built without libavcodec-dev (build.rs warned)");
            return;
        }
        available().expect("libavcodec opens where it was built");
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("music.wav");
        let pcm = music(2.5);
        crate::score::write_wav(&wav, &pcm).unwrap();
        let o = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&wav)
            .args(["-c:a", "aac", "-aac_coder", AAC_CODER, "-b:a"])
            .arg(AAC_BITRATE.to_string())
            .args(["-flags:a", "+bitexact", "-f", "adts", "-"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (packets, config) = encode(&pcm, 0, usize::MAX).unwrap();
        assert_eq!(config, [0x11, 0x90], "AAC-LC, 48 kHz, stereo");
        let frames = pcm.len() / 2;
        let expected = (frames as u64).div_ceil(AAC_FRAME) as usize + 1;
        assert!(
            packets.sizes.len() >= expected,
            "{} packets for {frames} samples",
            packets.sizes.len()
        );
        assert!(
            packets.adts(config) == o.stdout,
            "not the bytes ffmpeg writes"
        );
        // a range of them: packets 3..7
        let (some, _) = encode(&pcm, 3, 4).unwrap();
        assert_eq!(some.sizes, packets.sizes[3..7]);
    }
}
