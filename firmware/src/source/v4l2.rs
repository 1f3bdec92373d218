//! V4L2 camera source (the `v4l` crate): MMAP streaming, format negotiation among GREY,
//! YUYV, NV12 and MJPEG (cheapest luma first), requested size and rate, driver timestamps.
//!
//! A camera that is unplugged (ENODEV/ENXIO/EIO, the node vanishing) or that stops
//! delivering frames for [`STALL_TIMEOUT`] yields [`SourceError::CameraGone`]; the caller keeps
//! the music going and reopens with backoff. Nothing here blocks without a timeout.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{debug, info};
use v4l::buffer::Type;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::convert::{resize_area, to_luma, PixelFormat};
use super::{AnalysisSize, Frame, Source, SourceError, SourceInfo};

/// MMAP buffers: enough for the driver to keep capturing while one frame is converted
/// (4 is what most UVC drivers default to).
const BUFFER_COUNT: u32 = 4;
/// A live camera delivers a frame every 33-200 ms; two seconds without one means it is gone
/// or wedged (USB hubs sometimes stall without ENODEV).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What to ask the camera for (the driver picks the nearest it supports).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureRequest {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for CaptureRequest {
    /// 640x480 at 30 fps: every UVC camera offers it, and it is already 4x the analysis width.
    fn default() -> Self {
        CaptureRequest {
            width: 640,
            height: 480,
            fps: 30,
        }
    }
}

/// Frames from a V4L2 capture device.
pub struct V4l2Source {
    device: PathBuf,
    // Declared before `_dev` so the stream (and its mappings) is dropped first.
    stream: MmapStream<'static>,
    _dev: Device,
    format: PixelFormat,
    width: u32,
    height: u32,
    stride: u32,
    analysis: (u32, u32),
    info: SourceInfo,
    t0: Option<f64>,
    gone: bool,
}

/// Maps an I/O error from the device to a source error: unplug and stall errors become
/// [`SourceError::CameraGone`].
pub fn classify_io(device: &Path, e: &io::Error) -> SourceError {
    // ENODEV: device unplugged; ENXIO: no such device address; EIO: USB transfer failed after
    // unplug; ENOENT: the node itself disappeared; ESHUTDOWN: the USB endpoint was shut down.
    const GONE: [i32; 5] = [19, 6, 5, 2, 108];
    let gone = e.raw_os_error().is_some_and(|c| GONE.contains(&c))
        || matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::NotFound);
    if gone {
        SourceError::CameraGone {
            device: device.to_path_buf(),
            detail: e.to_string(),
        }
    } else {
        SourceError::Camera {
            device: device.to_path_buf(),
            detail: e.to_string(),
        }
    }
}

impl V4l2Source {
    /// Opens `device` (e.g. `/dev/video0`), negotiates a format and starts streaming.
    pub fn open(
        device: &Path,
        req: CaptureRequest,
        analysis: AnalysisSize,
    ) -> Result<Self, SourceError> {
        let dp = device.to_path_buf();
        let io_err = |e: io::Error| classify_io(&dp, &e);
        let dev = Device::with_path(device).map_err(io_err)?;
        let offered: Vec<FourCC> = dev
            .enum_formats()
            .map_err(io_err)?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let format = PixelFormat::PREFERENCE
            .into_iter()
            .find(|f| offered.iter().any(|o| o.repr == f.fourcc()))
            .ok_or_else(|| SourceError::NoUsableFormat {
                device: dp.clone(),
                offered: offered
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let mut fmt = dev.format().map_err(io_err)?;
        fmt.width = req.width;
        fmt.height = req.height;
        fmt.fourcc = FourCC::new(&format.fourcc());
        let fmt = dev.set_format(&fmt).map_err(io_err)?;
        if fmt.fourcc.repr != format.fourcc() {
            return Err(SourceError::Camera {
                device: dp,
                detail: format!(
                    "asked for {}, the driver set {}",
                    FourCC::new(&format.fourcc()),
                    fmt.fourcc
                ),
            });
        }
        let params = dev
            .set_params(&v4l::video::capture::Parameters::with_fps(req.fps.max(1)))
            .map_err(io_err)?;
        let fps = if params.interval.numerator > 0 {
            params.interval.denominator as f64 / params.interval.numerator as f64
        } else {
            req.fps as f64
        };
        let mut stream =
            MmapStream::with_buffers(&dev, Type::VideoCapture, BUFFER_COUNT).map_err(io_err)?;
        stream.set_timeout(STALL_TIMEOUT);
        let analysis_size = analysis.frame_size(fmt.width, fmt.height);
        info!(device = %device.display(), format = ?format, w = fmt.width, h = fmt.height, fps, "camera streaming");
        Ok(V4l2Source {
            device: dp,
            stream,
            _dev: dev,
            format,
            width: fmt.width,
            height: fmt.height,
            stride: fmt.stride,
            analysis: analysis_size,
            info: SourceInfo {
                width: fmt.width,
                height: fmt.height,
                fps,
                duration: None,
                codec: None,
            },
            t0: None,
            gone: false,
        })
    }

    /// The negotiated pixel format.
    pub fn pixel_format(&self) -> PixelFormat {
        self.format
    }
}

impl Source for V4l2Source {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.gone {
            return Err(SourceError::CameraGone {
                device: self.device.clone(),
                detail: "closed after an earlier error".into(),
            });
        }
        let (bytes, meta) = match self.stream.next() {
            Ok(x) => x,
            Err(e) => {
                let err = classify_io(&self.device, &e);
                self.gone = matches!(err, SourceError::CameraGone { .. });
                return Err(err);
            }
        };
        let used = (meta.bytesused as usize).min(bytes.len());
        let data = if used > 0 { &bytes[..used] } else { bytes };
        let luma = to_luma(self.format, data, self.width, self.height, self.stride)?;
        let ts = meta.timestamp.sec as f64 + meta.timestamp.usec as f64 * 1e-6;
        let t0 = *self.t0.get_or_insert(ts);
        let (aw, ah) = self.analysis;
        let gray = resize_area(&luma, self.width, self.height, aw, ah);
        debug!(seq = meta.sequence, "camera frame");
        Ok(Some(Frame {
            pts: (ts - t0).max(0.0),
            width: aw,
            height: ah,
            gray,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unplug_errors_mean_camera_gone() {
        let d = Path::new("/dev/video0");
        for code in [19, 6, 5, 2] {
            let e = io::Error::from_raw_os_error(code);
            assert!(
                matches!(classify_io(d, &e), SourceError::CameraGone { .. }),
                "errno {code}"
            );
        }
        let stall = io::Error::new(io::ErrorKind::TimedOut, "no frame");
        let msg = classify_io(d, &stall).to_string();
        assert!(
            msg.contains("/dev/video0") && msg.contains("camera gone"),
            "{msg}"
        );
        let busy = io::Error::from_raw_os_error(16); // EBUSY: another program holds it
        assert!(matches!(classify_io(d, &busy), SourceError::Camera { .. }));
    }

    #[test]
    fn a_missing_device_is_camera_gone_not_a_hang() {
        let err = V4l2Source::open(
            Path::new("/dev/video-undertone-none"),
            CaptureRequest::default(),
            AnalysisSize::default(),
        )
        .err()
        .expect("no such device");
        assert!(matches!(err, SourceError::CameraGone { .. }), "{err}");
    }
}
