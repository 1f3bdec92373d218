//! Camera pixel formats to 8-bit luma, and area resampling to the analysis size.
//!
//! Only luma is analysed, so each format keeps its Y samples: YUYV (4:2:2 packed, Y at even
//! bytes), NV12 (Y plane then interleaved CbCr), GREY (Y only) and MJPEG (decoded, Y kept).
//! `stride` is the driver's bytes per line (`bytesperline`), which may exceed the width.

use super::SourceError;

/// Pixel formats the V4L2 source negotiates, in order of preference (cheapest to read first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Grey,
    Yuyv,
    Nv12,
    Mjpeg,
}

impl PixelFormat {
    /// Preference order for negotiation.
    pub const PREFERENCE: [PixelFormat; 4] = [
        PixelFormat::Grey,
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::Mjpeg,
    ];

    /// The V4L2 fourcc.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Grey => *b"GREY",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::Mjpeg => *b"MJPG",
        }
    }

    /// The format for a fourcc, if undertone reads it.
    pub fn from_fourcc(code: &[u8; 4]) -> Option<PixelFormat> {
        PixelFormat::PREFERENCE
            .into_iter()
            .find(|f| &f.fourcc() == code)
    }

    /// Bytes per line when the driver reports none.
    pub fn default_stride(self, width: u32) -> u32 {
        match self {
            PixelFormat::Yuyv => width * 2,
            _ => width,
        }
    }
}

fn bad(what: &str, detail: String) -> SourceError {
    SourceError::BadFrame {
        what: what.to_string(),
        detail,
    }
}

/// Extracts the luma of one captured buffer (`bytes`, as the driver filled it) into a
/// `width * height` vector.
pub fn to_luma(
    format: PixelFormat,
    bytes: &[u8],
    width: u32,
    height: u32,
    stride: u32,
) -> Result<Vec<u8>, SourceError> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 {
        return Err(bad(
            "camera buffer",
            format!("frame size {width}x{height} is empty"),
        ));
    }
    let stride = if stride == 0 {
        format.default_stride(width) as usize
    } else {
        stride as usize
    };
    match format {
        PixelFormat::Mjpeg => return mjpeg_luma(bytes, width, height),
        PixelFormat::Grey | PixelFormat::Nv12 => {
            let need = stride * (h - 1) + w;
            if bytes.len() < need || stride < w {
                return Err(bad(
                    "camera buffer",
                    format!(
                        "{format:?} {width}x{height} needs {need} bytes, got {}",
                        bytes.len()
                    ),
                ));
            }
        }
        PixelFormat::Yuyv => {
            let need = stride * (h - 1) + 2 * w;
            if bytes.len() < need || stride < 2 * w {
                return Err(bad(
                    "camera buffer",
                    format!(
                        "YUYV {width}x{height} needs {need} bytes, got {}",
                        bytes.len()
                    ),
                ));
            }
        }
    }
    let mut out = Vec::with_capacity(w * h);
    let lut = limited_to_full();
    for y in 0..h {
        let row = &bytes[y * stride..];
        match format {
            PixelFormat::Yuyv => {
                out.extend(row[..2 * w].iter().step_by(2).map(|&v| lut[v as usize]))
            }
            PixelFormat::Nv12 => out.extend(row[..w].iter().map(|&v| lut[v as usize])),
            _ => out.extend_from_slice(&row[..w]),
        }
    }
    Ok(out)
}

/// V4L2's default quantisation for Y'CbCr formats (YUYV, NV12) is limited range (16..235);
/// the file source gets full-range luma from ffmpeg, as do GREY and JPEG (JFIF). Expanding
/// keeps thresholds in grey levels meaning the same for cameras and files.
fn limited_to_full() -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        *v = ((i as f32 - 16.0) * 255.0 / 219.0)
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    lut
}

/// Decodes an MJPEG frame to luma at `width` x `height` (the negotiated size).
fn mjpeg_luma(bytes: &[u8], width: u32, height: u32) -> Result<Vec<u8>, SourceError> {
    let mut dec = jpeg_decoder::Decoder::new(bytes);
    let pixels = dec
        .decode()
        .map_err(|e| bad("MJPEG frame", format!("cannot decode: {e}")))?;
    let info = dec
        .info()
        .ok_or_else(|| bad("MJPEG frame", "no image header".into()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    if info.width as u32 != width || info.height as u32 != height {
        return Err(bad(
            "MJPEG frame",
            format!("decoded {w}x{h}, negotiated {width}x{height}"),
        ));
    }
    let comps = info.pixel_format.pixel_bytes();
    match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => Ok(pixels.into_iter().take(w * h).collect()),
        // Full-range BT.601 luma of the decoded RGB (JFIF's own Y definition).
        jpeg_decoder::PixelFormat::RGB24 => Ok(pixels
            .chunks_exact(comps)
            .take(w * h)
            .map(|p| {
                (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8
            })
            .collect()),
        other => Err(bad(
            "MJPEG frame",
            format!("unsupported JPEG pixel format {other:?}"),
        )),
    }
}

/// Area-averaging resample of an 8-bit image: each output pixel is the mean of the input
/// pixels it covers (every input pixel counts), so downscaling never aliases fine texture into
/// fake motion. Upscaling repeats pixels.
pub fn resize_area(src: &[u8], w: u32, h: u32, dw: u32, dh: u32) -> Vec<u8> {
    let (w, h, dw, dh) = (w as usize, h as usize, dw as usize, dh as usize);
    assert_eq!(src.len(), w * h, "resize_area: buffer is not {w}x{h}");
    if w == dw && h == dh {
        return src.to_vec();
    }
    let span = |i: usize, n: usize, dn: usize| {
        let a = i * n / dn;
        let b = ((i + 1) * n / dn).max(a + 1).min(n);
        (a.min(n - 1), b)
    };
    let cols: Vec<(usize, usize)> = (0..dw).map(|x| span(x, w, dw)).collect();
    // Sum rows of each output row band into a column accumulator, then average per column span.
    let mut acc = vec![0u32; w];
    let mut out = Vec::with_capacity(dw * dh);
    for y in 0..dh {
        let (y0, y1) = span(y, h, dh);
        acc.iter_mut().for_each(|a| *a = 0);
        for row in src[y0 * w..y1 * w].chunks_exact(w) {
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as u32;
            }
        }
        let rows = (y1 - y0) as u32;
        for &(x0, x1) in &cols {
            let s: u32 = acc[x0..x1].iter().sum();
            let n = rows * (x1 - x0) as u32;
            out.push(((s + n / 2) / n) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    fn clip(name: &str) -> PathBuf {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/clips")
            .join(name);
        assert!(
            p.exists(),
            "{} is missing: run tools/clips/fetch.sh first",
            p.display()
        );
        p
    }

    /// One frame of a real clip as ffmpeg writes it in `pix_fmt` (the bytes a camera sends in
    /// that format), plus ffmpeg's own full-range luma decoded from those very bytes.
    fn ffmpeg_frame(pix_fmt: &str, codec: &[&str], w: u32, h: u32) -> (Vec<u8>, Vec<u8>) {
        let run = |input: Option<&[u8]>, args: &[&str]| {
            use std::io::Write;
            let mut c = Command::new("ffmpeg");
            c.args(["-v", "error"]);
            match input {
                None => {
                    c.args(["-ss", "2", "-i"]).arg(clip("bikes.mp4"));
                    c.args(["-frames:v", "1", "-vf", &format!("scale={w}:{h}")]);
                }
                Some(_) => {
                    let size = format!("{w}x{h}");
                    if codec.contains(&"rawvideo") {
                        c.args(["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", &size]);
                    }
                    c.args(["-i", "-"]);
                }
            }
            let mut child = c
                .args(args)
                .arg("-")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("ffmpeg runs");
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.unwrap_or_default()).unwrap();
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "ffmpeg failed: {err}");
            out.stdout
        };
        let mut a = vec!["-pix_fmt", pix_fmt];
        a.extend_from_slice(codec);
        let bytes = run(None, &a);
        let gray = run(Some(&bytes), &["-pix_fmt", "gray", "-f", "rawvideo"]);
        (bytes, gray)
    }

    #[test]
    fn yuyv_nv12_grey_luma_matches_ffmpeg_exactly() {
        let (w, h) = (320, 136);
        for (fmt, pf) in [
            ("yuyv422", PixelFormat::Yuyv),
            ("nv12", PixelFormat::Nv12),
            ("gray", PixelFormat::Grey),
        ] {
            let (bytes, gray) = ffmpeg_frame(fmt, &["-f", "rawvideo"], w, h);
            let luma = to_luma(pf, &bytes, w, h, 0).unwrap();
            // ffmpeg's gray is its Y plane at full range conversion = the same Y samples.
            let diff = luma
                .iter()
                .zip(&gray)
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .max()
                .unwrap();
            assert!(diff <= 1, "{fmt}: luma differs from ffmpeg's by {diff}");
        }
    }

    #[test]
    fn padded_stride_is_honoured() {
        let (w, h) = (320, 136);
        let (bytes, gray) = ffmpeg_frame("yuyv422", &["-f", "rawvideo"], w, h);
        let stride = w * 2 + 64;
        let mut padded = vec![0xAAu8; (stride * h) as usize];
        for y in 0..h as usize {
            padded[y * stride as usize..y * stride as usize + 2 * w as usize]
                .copy_from_slice(&bytes[y * 2 * w as usize..(y + 1) * 2 * w as usize]);
        }
        let luma = to_luma(PixelFormat::Yuyv, &padded, w, h, stride).unwrap();
        let diff = luma
            .iter()
            .zip(&gray)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(diff <= 1);
    }

    #[test]
    fn mjpeg_luma_is_close_to_ffmpeg() {
        let (w, h) = (320, 136);
        let (jpeg, gray) = ffmpeg_frame(
            "yuvj422p",
            &["-c:v", "mjpeg", "-q:v", "3", "-f", "mjpeg"],
            w,
            h,
        );
        let luma = to_luma(PixelFormat::Mjpeg, &jpeg, w, h, 0).unwrap();
        let mean_err: f64 = luma
            .iter()
            .zip(&gray)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / luma.len() as f64;
        // JPEG is lossy: the decoded luma is within a few grey levels of the original.
        assert!(mean_err < 3.0, "MJPEG luma mean error {mean_err}");
    }

    #[test]
    fn short_or_corrupt_buffers_are_errors_not_panics() {
        assert!(to_luma(PixelFormat::Yuyv, &[0u8; 10], 320, 240, 0).is_err());
        assert!(to_luma(PixelFormat::Nv12, &[0u8; 100], 320, 240, 0).is_err());
        assert!(to_luma(PixelFormat::Grey, &[], 0, 0, 0).is_err());
        let err = to_luma(PixelFormat::Mjpeg, b"\xFF\xD8not a jpeg", 320, 240, 0).unwrap_err();
        assert!(err.to_string().contains("MJPEG"), "{err}");
    }

    #[test]
    fn resize_area_averages_and_handles_odd_sizes() {
        let src: Vec<u8> = (0..16).map(|i| (i * 10) as u8).collect();
        assert_eq!(resize_area(&src, 4, 4, 2, 2), vec![25, 45, 105, 125]);
        assert_eq!(resize_area(&[7], 1, 1, 3, 2), vec![7; 6]);
        let odd: Vec<u8> = (0..(7 * 5)).map(|i| i as u8).collect();
        assert_eq!(resize_area(&odd, 7, 5, 3, 2).len(), 6);
    }

    #[test]
    fn fourcc_roundtrip() {
        for f in PixelFormat::PREFERENCE {
            assert_eq!(PixelFormat::from_fourcc(&f.fourcc()), Some(f));
        }
        assert_eq!(PixelFormat::from_fourcc(b"RGB3"), None);
    }
}
