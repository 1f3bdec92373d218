//! The dashboard's camera snapshot: the engine's luma frame as an 8-bit grayscale PNG.

use crate::live::control::Snapshot;

/// Encodes a luma frame; `None` when its size and pixel count disagree.
pub fn png(s: &Snapshot) -> Option<Vec<u8>> {
    if s.width == 0 || s.height == 0 || s.gray.len() != (s.width * s.height) as usize {
        return None;
    }
    let mut out = Vec::with_capacity(s.gray.len() / 2 + 128);
    {
        let mut enc = png::Encoder::new(&mut out, s.width, s.height);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        // Speed over size: a few frames a second on a small ARM core.
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header().ok()?;
        w.write_image_data(&s.gray).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_decoder() {
        let (w, h) = (64u32, 36u32);
        let gray: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
        let s = Snapshot {
            t: 1.0,
            width: w,
            height: h,
            gray: gray.clone(),
        };
        let bytes = png(&s).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (w, h));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(&buf[..info.buffer_size()], &gray[..]);
        assert!(png(&Snapshot {
            gray: vec![0; 3],
            ..s
        })
        .is_none());
    }
}
