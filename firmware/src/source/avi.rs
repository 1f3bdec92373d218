//! The stream facts of an AVI file, read from its `hdrl` header list in process.
//!
//! As for MP4 ([`super::mp4`]), asking ffprobe costs about 60 ms of CPU and 70 ms of wall
//! time before it reads a byte, before the decoder can start; on OpenCV's 11 s
//! `Megamind.avi` that was a quarter of a bare decode. An AVI states everything the source
//! needs in the header list at its start: the first video stream's `strh` (frame rate as
//! `dwRate / dwScale`, length in frames) and `strf` (a BITMAPINFOHEADER: coded width and
//! height, compression four-character code). AVI frames sit on a constant-rate grid (a
//! skipped frame is an empty chunk, still counted), so the facts are those ffprobe gives.
//! A file whose RIFF size runs past its end (cut off), a header this reader does not
//! expect, or a compression code outside [`CODECS`] gets `None`, and the caller asks
//! ffprobe, which also classifies broken files.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Largest header list read; real ones are a few kilobytes (OpenDML's super-index included).
const MAX_HDRL_BYTES: usize = 1 << 20;
/// Bytes of `strh` up to and including `dwLength`.
const STRH_MIN: usize = 36;
/// Bytes of a BITMAPINFOHEADER up to and including `biCompression`.
const STRF_MIN: usize = 20;

/// Compression codes (compared in upper case) and the codec names ffmpeg gives them: the
/// common ones of AVI files met in practice. `0` is an uncompressed bitmap (BI_RGB).
const CODECS: [(&[u8; 4], &str); 38] = [
    (b"H264", "h264"),
    (b"X264", "h264"),
    (b"AVC1", "h264"),
    (b"HEVC", "hevc"),
    (b"H265", "hevc"),
    (b"HVC1", "hevc"),
    (b"XVID", "mpeg4"),
    (b"DIVX", "mpeg4"),
    (b"DX50", "mpeg4"),
    (b"FMP4", "mpeg4"),
    (b"MP4V", "mpeg4"),
    (b"MP4S", "mpeg4"),
    (b"M4S2", "mpeg4"),
    (b"3IV2", "mpeg4"),
    (b"DIV3", "msmpeg4v3"),
    (b"MP43", "msmpeg4v3"),
    (b"DIV4", "msmpeg4v3"),
    (b"DIV5", "msmpeg4v3"),
    (b"DIV6", "msmpeg4v3"),
    (b"MPG3", "msmpeg4v3"),
    (b"AP41", "msmpeg4v3"),
    (b"MP42", "msmpeg4v2"),
    (b"DIV2", "msmpeg4v2"),
    (b"MPG4", "msmpeg4v1"),
    (b"MP41", "msmpeg4v1"),
    (b"MJPG", "mjpeg"),
    (b"CVID", "cinepak"),
    (b"MPG1", "mpeg1video"),
    (b"MPG2", "mpeg2video"),
    (b"WMV1", "wmv1"),
    (b"WMV2", "wmv2"),
    (b"WMV3", "wmv3"),
    (b"VP80", "vp8"),
    (b"VP90", "vp9"),
    (b"AV01", "av1"),
    (b"FFV1", "ffv1"),
    (b"HFYU", "huffyuv"),
    (b"DVSD", "dvvideo"),
];

/// The facts of an AVI's first video stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AviVideo {
    pub width: u32,
    pub height: u32,
    /// The frame rate is `rate / scale` frames per second (`dwRate`, `dwScale`).
    pub rate: u32,
    pub scale: u32,
    /// Frames in the stream (skipped ones included: they hold the frame before).
    pub frames: u64,
    /// The codec as ffmpeg names it.
    pub codec: &'static str,
}

impl AviVideo {
    pub fn fps(&self) -> f64 {
        f64::from(self.rate) / f64::from(self.scale)
    }

    /// Seconds: frames × scale / rate to the microsecond, as ffprobe states it (so the
    /// analysis of an AVI is what it was when ffprobe was asked, byte for byte).
    pub fn duration(&self) -> f64 {
        let ticks = u128::from(self.frames) * u128::from(self.scale);
        let micros = ticks as f64 * 1e6 / f64::from(self.rate);
        micros.round() / 1e6
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The chunks of a RIFF list body: (id, payload).
fn chunks(mut b: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let id = b.get(..4)?;
        let len = u32_at(b, 4)? as usize;
        let body = b.get(8..8 + len)?;
        // chunks are padded to an even size
        b = b.get(8 + len + (len & 1)..).unwrap_or(&[]);
        Some((id, body))
    })
}

fn codec_of(code: &[u8]) -> Option<&'static str> {
    if code == [0, 0, 0, 0] {
        return Some("rawvideo");
    }
    let upper = code.to_ascii_uppercase();
    CODECS
        .iter()
        .find(|(c, _)| c.as_slice() == upper.as_slice())
        .map(|&(_, name)| name)
}

/// The first video stream's facts of the AVI at `path`, or `None` for anything else.
pub(crate) fn probe(path: &Path) -> Option<AviVideo> {
    let mut file = File::open(path).ok()?;
    let file_len = file.metadata().ok()?.len();
    let mut head = [0u8; 24];
    file.read_exact(&mut head).ok()?;
    if &head[..4] != b"RIFF" || &head[8..12] != b"AVI " {
        return None;
    }
    // a file cut off before its end is left to ffprobe (and the decoder's checks)
    if u64::from(u32_at(&head, 4)?) + 8 > file_len {
        return None;
    }
    // the header list comes first
    if &head[12..16] != b"LIST" || &head[20..24] != b"hdrl" {
        return None;
    }
    let hdrl_len = (u32_at(&head, 16)? as usize).checked_sub(4)?;
    if hdrl_len > MAX_HDRL_BYTES {
        return None;
    }
    let mut hdrl = vec![0u8; hdrl_len];
    file.read_exact(&mut hdrl).ok()?;
    for (id, body) in chunks(&hdrl) {
        if id != b"LIST" || body.get(..4)? != b"strl" {
            continue;
        }
        let mut strh = None;
        let mut strf = None;
        for (id, b) in chunks(&body[4..]) {
            match id {
                b"strh" => strh = Some(b),
                b"strf" => strf = Some(b),
                _ => {}
            }
        }
        let strh = strh?;
        if strh.len() < STRH_MIN || &strh[..4] != b"vids" {
            continue;
        }
        let strf = strf.filter(|f| f.len() >= STRF_MIN)?;
        let (scale, rate, length) = (u32_at(strh, 20)?, u32_at(strh, 24)?, u32_at(strh, 32)?);
        let (width, height) = (i32_at(strf, 4)?, i32_at(strf, 8)?.checked_abs()?);
        if scale == 0 || rate == 0 || length == 0 || width <= 0 || height == 0 {
            return None;
        }
        return Some(AviVideo {
            width: width as u32,
            height: height as u32,
            rate,
            scale,
            frames: u64::from(length),
            codec: codec_of(&strf[16..20])?,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    fn ffprobe(path: &Path) -> (u32, u32, f64, f64, String) {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args([
                "stream=width,height,avg_frame_rate,duration,codec_name",
                "-of",
                "json",
            ])
            .arg(path)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = &v["streams"][0];
        let rate = s["avg_frame_rate"].as_str().unwrap();
        let (n, d) = rate.split_once('/').unwrap();
        (
            s["width"].as_u64().unwrap() as u32,
            s["height"].as_u64().unwrap() as u32,
            n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap(),
            s["duration"].as_str().unwrap().parse().unwrap(),
            s["codec_name"].as_str().unwrap().to_string(),
        )
    }

    fn make(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let ok = Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg("testsrc2=s=176x144:r=15:d=2")
            .args(["-f", "lavfi", "-i", "sine=d=2"])
            .args(args)
            .arg(&path)
            .status()
            .unwrap();
        assert!(ok.success(), "ffmpeg could not make {name}");
        path
    }

    /// AVIs of several codecs, rates and stream orders read as ffprobe reads them.
    #[test]
    fn avis_read_as_ffprobe_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            make(dir.path(), "mjpeg.avi", &["-map", "0:v", "-c:v", "mjpeg"]),
            make(
                dir.path(),
                "divx3.avi",
                &["-map", "0:v", "-c:v", "msmpeg4", "-r", "30000/1001"],
            ),
            // the audio stream first, the video second
            make(
                dir.path(),
                "xvid.avi",
                &[
                    "-map", "1:a", "-map", "0:v", "-c:v", "mpeg4", "-vtag", "XVID",
                ],
            ),
            make(
                dir.path(),
                "cinepak.avi",
                &["-map", "0:v", "-c:v", "cinepak"],
            ),
            make(
                dir.path(),
                "h264.avi",
                &["-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast"],
            ),
        ];
        for path in &files {
            let v = probe(path).unwrap_or_else(|| panic!("{} was not read", path.display()));
            let (w, h, fps, duration, codec) = ffprobe(path);
            let name = path.display();
            assert_eq!((v.width, v.height), (w, h), "{name}");
            assert!((v.fps() - fps).abs() < 1e-6, "{name}: {} vs {fps}", v.fps());
            assert_eq!(v.duration(), duration, "{name}");
            assert_eq!(v.codec, codec, "{name}");
        }
    }

    /// A cut-off AVI, one with no video, other files and a missing one are left to ffprobe.
    #[test]
    fn anything_else_is_left_to_ffprobe() {
        let dir = tempfile::tempdir().unwrap();
        let whole = make(dir.path(), "whole.avi", &["-map", "0:v", "-c:v", "mjpeg"]);
        let bytes = std::fs::read(&whole).unwrap();
        let cut = dir.path().join("cut.avi");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(probe(&cut), None);
        let sound = make(dir.path(), "sound.avi", &["-map", "1:a"]);
        assert_eq!(probe(&sound), None);
        let text = dir.path().join("notes.avi");
        std::fs::write(&text, b"RIFF and nothing after it").unwrap();
        assert_eq!(probe(&text), None);
        assert_eq!(probe(&dir.path().join("missing.avi")), None);
        let mp4 = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/clips/bikes.mp4");
        assert_eq!(probe(&mp4), None);
    }
}
