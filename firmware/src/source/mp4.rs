//! The stream facts of a plain MP4/MOV file, read from its `moov` box in process.
//!
//! Starting ffprobe costs about 60 ms of CPU and 70 ms of wall time before it reads a byte
//! (the dynamic linker resolving the symbols of ffmpeg's 200-odd libraries), which is a
//! third of a bare decode of a 10-second 640x272 clip. The common case, an MP4/MOV with one
//! video track, at a constant frame rate or a variable one (a phone's recording), is
//! answered here from the same boxes ffprobe reads; anything else (several video tracks, an
//! edit list that cuts or pauses, fragments, a box this reader does not expect) gets `None`,
//! and the caller asks ffprobe, which also classifies broken files.
//!
//! What is read (ISO/IEC 14496-12): the track whose `hdlr` is `vide`; its `mdhd` time scale
//! and duration; the first sample entry of `stsd` (a VisualSampleEntry: coded width and
//! height); `stts` (the samples' durations: all the same, or a constant rate rounded to a
//! coarse clock, such as 29.97 frames/s in milliseconds, 33 and 34 ms by turns, which an MKV
//! remuxed to MP4 or a 1 ms-clock muxer writes; see [`MAX_DURATION_SPREAD`]; anything else is
//! a variable rate, whose frames per second are ffprobe's `avg_frame_rate` all the same);
//! `stsz` (the sample count);
//! `elst` (at most one edit, at normal rate, that shows every frame: the usual start offset
//! of B-frames, not a cut); `mvhd`'s time scale (the edit's duration is in it); and `stss`
//! and `ctts`, which place the key frames (where a second decoder can start, see
//! `FileSource`). A file cut with `-c copy` at a point after its first key frame keeps the
//! frames before the cut and an edit that hides them: what plays, and ffprobe's duration, is
//! the edit, so such a file goes to ffprobe.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Largest `moov` box read (its sample tables grow with the file: about 12 bytes a frame,
/// so 64 MB covers days of video); a larger one is left to ffprobe.
const MAX_MOOV_BYTES: u64 = 64 << 20;

/// Offsets in a VisualSampleEntry (from the entry's start, header included) of its width and
/// height: 8 (box header) + 8 (SampleEntry: reserved, data_reference_index) + 16 (pre_defined
/// and reserved fields).
const VISUAL_WIDTH_AT: usize = 32;
const VISUAL_HEIGHT_AT: usize = 34;
/// Offset in a VisualSampleEntry of its child boxes (`esds`, `avcC`, …): the width and
/// height, then resolutions, frame count, compressor name, depth and a pre_defined field.
const VISUAL_CHILDREN_AT: usize = 86;

/// MPEG-4 Systems descriptor tags (ISO/IEC 14496-1) read from an `esds` box.
const ES_DESCRIPTOR_TAG: u8 = 0x03;
const DECODER_CONFIG_TAG: u8 = 0x04;
/// `objectTypeIndication` values of an `mp4v` entry's decoder config: MPEG-4 Part 2, the
/// MPEG-2 video profiles, MPEG-1 video and JPEG. ffmpeg's mp4 muxer writes an MPEG-2,
/// MPEG-1 or MJPEG stream it copies into an `mp4v` entry with one of the latter.
const OTI_MPEG4_VISUAL: u8 = 0x20;
const OTI_MPEG2_VISUAL: std::ops::RangeInclusive<u8> = 0x60..=0x65;
const OTI_MPEG1_VISUAL: u8 = 0x6A;
const OTI_JPEG: u8 = 0x6C;

/// An edit at normal speed in `elst` (16.16 fixed point).
const ELST_RATE_ONE: u32 = 0x0001_0000;

/// Largest spread of the samples' durations (longest − shortest) read as a constant rate,
/// in parts of the mean duration: a rate rounded to the media clock spreads by one tick
/// (29.97 frames/s on a 1 ms clock: 33 and 34 ms, 3 %; an MKV remuxed to MP4, on a 1/16 ms
/// clock with its millisecond times: 41–42 ms at 24 frames/s); a dropped frame doubles a
/// duration, a real rate change differs more. Such files are read as variable-rate: their
/// key frames are not placed (a file is split between two decoders only at a constant rate).
const MAX_DURATION_SPREAD: f64 = 1.0 / 8.0;

/// The facts of the video track of a plain MP4/MOV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mp4Video {
    pub width: u32,
    pub height: u32,
    /// The type of the first sample entry (`avc1`, `hvc1`, …: the codec and how it is stored).
    pub entry: [u8; 4],
    /// The `objectTypeIndication` of an `mp4v` entry's `esds` (which codec `mp4v` holds).
    pub object_type: Option<u8>,
    /// Ticks per second of the track's media clock.
    pub timescale: u32,
    /// Ticks all the samples last together (`stts`).
    pub total_ticks: u64,
    /// Ticks the track lasts: `mdhd`'s duration where a muxer wrote it a little short of the
    /// samples' total (by at most a frame), else that total.
    pub duration_ticks: u64,
    pub samples: u32,
    /// Whether the samples last the same (to within [`MAX_DURATION_SPREAD`]).
    pub constant_rate: bool,
    /// Frames (numbered from 0 in presentation order, at [`Mp4Video::fps`]) that are sync
    /// samples, where a decoder can start without earlier pictures; ascending. Empty at a
    /// variable rate, where frame numbers at the mean rate do not say where a frame is.
    pub keyframes: Vec<u64>,
}

impl Mp4Video {
    /// Frames per second: ffprobe's `avg_frame_rate` (samples over their total duration),
    /// which is also its `r_frame_rate` when every sample lasts the same.
    pub fn fps(&self) -> f64 {
        (u64::from(self.samples) * u64::from(self.timescale)) as f64 / self.total_ticks as f64
    }

    /// The codec as ffmpeg names it, for the sample entries of the common codecs: MP4's, and
    /// a camera's or an editor's MOV entries for MJPEG, MPEG-2 (HDV, XDCAM, IMX), DV and
    /// ProRes, and a 3GP's H.263 (scored.mp4 re-encodes those, so they must not pass as
    /// unknown).
    pub fn codec(&self) -> Option<&'static str> {
        let e = &self.entry;
        Some(match e {
            b"avc1" | b"avc3" => "h264",
            b"hvc1" | b"hev1" => "hevc",
            b"av01" => "av1",
            b"vp09" => "vp9",
            b"mp4v" => match self.object_type {
                Some(OTI_MPEG1_VISUAL) => "mpeg1video",
                Some(t) if OTI_MPEG2_VISUAL.contains(&t) => "mpeg2video",
                Some(OTI_JPEG) => "mjpeg",
                Some(OTI_MPEG4_VISUAL) | None => "mpeg4",
                Some(_) => return None,
            },
            b"s263" | b"h263" => "h263",
            b"jpeg" | b"mjpa" | b"mjpb" | b"AVDJ" | b"dmb1" => "mjpeg",
            b"m1v " | b"mp1v" => "mpeg1video",
            b"m2v1" | b"mp2v" => "mpeg2video",
            [b'h', b'd', b'v', _] | [b'x', b'd', b'v' | b'5', _] => "mpeg2video",
            [b'm', b'x', b'3' | b'4' | b'5', b'p' | b'n'] => "mpeg2video",
            b"dvc " | b"dvcp" | b"dvpp" | b"dv5n" | b"dv5p" => "dvvideo",
            [b'd', b'v', b'h', _] => "dvvideo",
            b"apch" | b"apcn" | b"apcs" | b"apco" | b"ap4h" | b"ap4x" => "prores",
            _ => return None,
        })
    }

    /// Seconds (ffprobe's stream `duration`: the shorter of `mdhd`'s and the samples'
    /// total), to the microsecond as ffprobe states it.
    pub fn duration(&self) -> f64 {
        let micros = self.duration_ticks as f64 * 1e6 / self.timescale as f64;
        micros.round() / 1e6
    }
}

/// The video facts of `path` if it is a plain MP4/MOV (see the module doc), else `None`.
pub(crate) fn probe(path: &Path) -> Option<Mp4Video> {
    video_of_moov(&read_moov(path)?.0)
}

/// The payload of the `moov` box of `path`, an ISO media file (MP4, MOV, 3GP), and the
/// file's length; `None` for any other file, or a `moov` over [`MAX_MOOV_BYTES`].
pub(crate) fn read_moov(path: &Path) -> Option<(Vec<u8>, u64)> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut at = 0u64;
    let mut first = true;
    while at + 8 <= len {
        f.seek(SeekFrom::Start(at)).ok()?;
        let mut h = [0u8; 16];
        f.read_exact(&mut h[..8]).ok()?;
        let kind = [h[4], h[5], h[6], h[7]];
        if first && !matches!(&kind, b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide") {
            return None; // not an ISO media file
        }
        first = false;
        let (size, header) = match u32::from_be_bytes([h[0], h[1], h[2], h[3]]) {
            0 => (len - at, 8),
            1 => {
                f.read_exact(&mut h[8..16]).ok()?;
                (u64::from_be_bytes(h[8..16].try_into().ok()?), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header || at.checked_add(size)? > len {
            return None;
        }
        if &kind == b"moov" {
            if size - header > MAX_MOOV_BYTES {
                return None;
            }
            let mut moov = vec![0u8; (size - header) as usize];
            f.read_exact(&mut moov).ok()?;
            return Some((moov, len));
        }
        at += size;
    }
    None
}

/// The child boxes of `data`: (type, payload). `None` if a size runs past the data.
pub(crate) fn children(data: &[u8]) -> Option<Vec<([u8; 4], &[u8])>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let h = data.get(at..at + 8)?;
        let kind = [h[4], h[5], h[6], h[7]];
        let (size, header) = match u32::from_be_bytes([h[0], h[1], h[2], h[3]]) {
            0 => (data.len() - at, 8),
            1 => {
                let b = data.get(at + 8..at + 16)?;
                (
                    usize::try_from(u64::from_be_bytes(b.try_into().ok()?)).ok()?,
                    16,
                )
            }
            n => (n as usize, 8),
        };
        if size < header {
            return None;
        }
        let end = at.checked_add(size)?;
        out.push((kind, data.get(at + header..end)?));
        at = end;
    }
    Some(out)
}

/// The payload of the only child of type `kind`; `None` if it is missing or repeated.
pub(crate) fn only<'a>(boxes: &[([u8; 4], &'a [u8])], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let mut found = boxes.iter().filter(|(k, _)| k == kind);
    let first = found.next()?.1;
    found.next().is_none().then_some(first)
}

pub(crate) fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn be64(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

pub(crate) fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

/// The boxes of a `moov` that describe its video: the only video track's children and its
/// `mdia`'s children, and the movie's time scale (`mvhd`).
pub(crate) struct VideoTrak<'a> {
    pub trak: Vec<([u8; 4], &'a [u8])>,
    pub mdia: Vec<([u8; 4], &'a [u8])>,
    pub movie_timescale: u32,
}

/// The video track of `moov`'s payload; `None` for a fragmented file (the samples are in
/// the fragments, not these tables), no video track or several (ffprobe decides which is
/// first), or a box that does not parse.
pub(crate) fn video_trak(moov: &[u8]) -> Option<VideoTrak<'_>> {
    let boxes = children(moov)?;
    if boxes.iter().any(|(k, _)| k == b"mvex") {
        return None;
    }
    let mut videos = Vec::new();
    for (_, trak) in boxes.iter().filter(|(k, _)| k == b"trak") {
        let trak = children(trak)?;
        let mdia = children(only(&trak, b"mdia")?)?;
        let hdlr = only(&mdia, b"hdlr")?;
        if hdlr.get(8..12)? == b"vide" {
            videos.push((trak, mdia));
        }
    }
    let mvhd = only(&boxes, b"mvhd")?;
    let movie_timescale = if *mvhd.first()? == 1 {
        be32(mvhd, 20)?
    } else {
        be32(mvhd, 12)?
    };
    let (trak, mdia) = videos.pop().filter(|_| videos.is_empty())?;
    Some(VideoTrak {
        trak,
        mdia,
        movie_timescale,
    })
}

fn video_of_moov(moov: &[u8]) -> Option<Mp4Video> {
    let VideoTrak {
        trak,
        mdia,
        movie_timescale,
    } = video_trak(moov)?;
    let (trak, mdia) = (&trak, &mdia);
    // The edit: where it starts in the media, and how long it lasts (movie ticks).
    let mut edit: Option<(i64, u64)> = None;
    if let Some(edts) = trak.iter().find(|(k, _)| k == b"edts") {
        let elst = only(&children(edts.1)?, b"elst")?;
        let (version, n) = (*elst.first()?, be32(elst, 4)?);
        if n > 1 {
            return None;
        }
        if n == 1 {
            let (length, start, rate) = if version == 1 {
                (be64(elst, 8)?, be64(elst, 16)? as i64, be32(elst, 24)?)
            } else {
                (
                    u64::from(be32(elst, 8)?),
                    be32(elst, 12)? as i32 as i64,
                    be32(elst, 16)?,
                )
            };
            if start < 0 || rate != ELST_RATE_ONE || length == 0 {
                return None; // an empty edit (a pause), a speed change, or no length
            }
            edit = Some((start, length));
        }
    }
    let media_time = edit.map_or(0, |(start, _)| start);
    let mdhd = only(mdia, b"mdhd")?;
    let (timescale, duration) = if *mdhd.first()? == 1 {
        (be32(mdhd, 20)?, be64(mdhd, 24)?)
    } else {
        (be32(mdhd, 12)?, u64::from(be32(mdhd, 16)?))
    };
    let minf = children(only(mdia, b"minf")?)?;
    let stbl = children(only(&minf, b"stbl")?)?;
    let stsd = only(&stbl, b"stsd")?;
    if be32(stsd, 4)? < 1 {
        return None;
    }
    let entry = stsd.get(8..)?;
    let entry_type: [u8; 4] = entry.get(4..8)?.try_into().ok()?;
    let object_type = if &entry_type == b"mp4v" {
        entry
            .get(VISUAL_CHILDREN_AT..be32(entry, 0)? as usize)
            .and_then(children)
            .and_then(|c| c.iter().find(|(k, _)| k == b"esds").map(|e| e.1))
            .and_then(esds_object_type)
    } else {
        None
    };
    let (width, height) = (
        be16(entry, VISUAL_WIDTH_AT)?,
        be16(entry, VISUAL_HEIGHT_AT)?,
    );
    let stts = stts_runs(only(&stbl, b"stts")?)?;
    let samples = u32::try_from(stts.iter().map(|&(n, _)| u64::from(n)).sum::<u64>()).ok()?;
    let total: u64 = stts.iter().map(|&(n, d)| u64::from(n) * u64::from(d)).sum();
    let used = stts.iter().filter(|&&(n, _)| n > 0);
    let shortest = used.clone().map(|&(_, d)| d).min()?;
    let longest = used.map(|&(_, d)| d).max()?;
    let mean = total as f64 / f64::from(samples.max(1));
    let constant_rate = f64::from(longest - shortest) <= MAX_DURATION_SPREAD * mean;
    let stsz = only(&stbl, b"stsz")?;
    let plain = timescale > 0
        && samples > 0
        && shortest > 0
        && width > 0
        && height > 0
        && be32(stsz, 8)? == samples
        // ffprobe's stream duration is the shorter of mdhd's and the samples' (a cut made
        // with `-c copy` keeps the source's longer mdhd; an MKV remuxed to MP4 gets one a
        // few ticks short; a phone's ends at the last frame's start, a frame short); one
        // shorter by more than a frame is left to it
        && (duration as f64) >= total as f64 - mean;
    if !plain || movie_timescale == 0 {
        return None;
    }
    if let Some((start, length)) = edit {
        // The frames are presented over [first, first + total) media ticks; the edit must
        // show them: start at or before the first, and end no earlier than the last one's
        // start. A phone (`box.mp4`) ends its edit and its `mdhd` at the last frame's start,
        // a frame short of the samples' total: ffprobe's duration is then the edit's, and
        // ours `mdhd`'s, the same. An edit shorter than the track's duration would make
        // ffprobe's shorter too, and is left to it.
        let first = first_presentation(&ctts_runs(&stbl)?, &stts);
        let shown = u128::from(length) * u128::from(timescale) / u128::from(movie_timescale);
        let end = i128::from(first) + i128::from(total);
        let shown_end = (i128::from(start) + shown as i128) as f64;
        let last = stts
            .iter()
            .rev()
            .find(|&&(n, _)| n > 0)
            .map_or(mean, |&(_, d)| f64::from(d));
        if start > first
            || shown_end < end as f64 - last
            || (shown as f64) < duration.min(total) as f64 - 1.0
        {
            return None; // the edit hides frames at the start or the end
        }
    }
    let keyframes = if constant_rate {
        keyframes(&stbl, &stts, samples, mean, media_time)?
    } else {
        Vec::new()
    };
    Some(Mp4Video {
        width: u32::from(width),
        height: u32::from(height),
        entry: entry_type,
        object_type,
        timescale,
        total_ticks: total,
        duration_ticks: duration.min(total),
        samples,
        constant_rate,
        keyframes,
    })
}

/// The `objectTypeIndication` in an `esds` box's body (version and flags first): the
/// ES_Descriptor's DecoderConfigDescriptor's first byte.
fn esds_object_type(esds: &[u8]) -> Option<u8> {
    /// A descriptor's tag and the offset of its body (its size takes 1 to 4 bytes, 7 bits
    /// each, the top bit set on all but the last).
    fn descriptor(d: &[u8], at: usize) -> Option<(u8, usize)> {
        let tag = *d.get(at)?;
        let mut i = at + 1;
        for _ in 0..4 {
            let b = *d.get(i)?;
            i += 1;
            if b & 0x80 == 0 {
                return Some((tag, i));
            }
        }
        None
    }
    let (tag, body) = descriptor(esds, 4)?;
    if tag != ES_DESCRIPTOR_TAG {
        return None;
    }
    // ES_ID, then flags naming the optional fields that follow
    let flags = *esds.get(body + 2)?;
    let mut at = body + 3;
    if flags & 0x80 != 0 {
        at += 2; // dependsOn_ES_ID
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*esds.get(at)?); // URL
    }
    if flags & 0x20 != 0 {
        at += 2; // OCR_ES_Id
    }
    let (tag, config) = descriptor(esds, at)?;
    (tag == DECODER_CONFIG_TAG).then(|| esds.get(config).copied())?
}

/// The sample durations of `stts` as runs of (samples, ticks each).
pub(crate) fn stts_runs(stts: &[u8]) -> Option<Vec<(u32, u32)>> {
    let n = be32(stts, 4)? as usize;
    (0..n)
        .map(|i| Some((be32(stts, 8 + 8 * i)?, be32(stts, 12 + 8 * i)?)))
        .collect()
}

/// Decode times of samples taken in ascending order (`stts` runs walked once).
struct DecodeClock<'a> {
    runs: &'a [(u32, u32)],
    /// The current run, and the index and decode time of its first sample.
    run: usize,
    first: u64,
    ticks: u64,
}

impl<'a> DecodeClock<'a> {
    fn new(runs: &'a [(u32, u32)]) -> Self {
        DecodeClock {
            runs,
            run: 0,
            first: 0,
            ticks: 0,
        }
    }

    /// The decode time of sample `index` (not below any index asked before).
    fn at(&mut self, index: u64) -> u64 {
        while let Some(&(count, delta)) = self.runs.get(self.run) {
            if index < self.first + u64::from(count) {
                return self.ticks + (index - self.first) * u64::from(delta);
            }
            self.first += u64::from(count);
            self.ticks += u64::from(count) * u64::from(delta);
            self.run += 1;
        }
        self.ticks // past the last sample: the end
    }
}

/// The composition offsets of `ctts` (B-frame reordering) as runs of (samples, offset);
/// empty when the box is absent (every offset 0).
fn ctts_runs(stbl: &[([u8; 4], &[u8])]) -> Option<Vec<(u32, i64)>> {
    let Some((_, ctts)) = stbl.iter().find(|(k, _)| k == b"ctts") else {
        return Some(Vec::new());
    };
    let signed = *ctts.first()? == 1;
    let n = be32(ctts, 4)? as usize;
    (0..n)
        .map(|i| {
            let count = be32(ctts, 8 + 8 * i)?;
            let raw = be32(ctts, 12 + 8 * i)?;
            let off = if signed {
                raw as i32 as i64
            } else {
                i64::from(raw)
            };
            Some((count, off))
        })
        .collect()
}

/// The earliest presentation time of any sample (media ticks, before the edit): each run of
/// composition offsets presents its first sample earliest, since decode times grow.
fn first_presentation(runs: &[(u32, i64)], stts: &[(u32, u32)]) -> i64 {
    let mut clock = DecodeClock::new(stts);
    let mut index = 0u64;
    let mut first = None::<i64>;
    for &(count, off) in runs {
        if count > 0 {
            let t = clock.at(index) as i64 + off;
            first = Some(first.map_or(t, |f| f.min(t)));
        }
        index += u64::from(count);
    }
    first.unwrap_or(0)
}

/// The presentation frame numbers of the sync samples (`stss`; every sample when it is
/// absent). A sample's presentation time is its decode time (`stts`) plus its composition
/// offset (`ctts`, B-frame reordering) minus the edit's start (`media_time`); its frame
/// number, that over the samples' `mean` duration.
fn keyframes(
    stbl: &[([u8; 4], &[u8])],
    stts: &[(u32, u32)],
    samples: u32,
    mean: f64,
    media_time: i64,
) -> Option<Vec<u64>> {
    let sync: Vec<u32> = match stbl.iter().find(|(k, _)| k == b"stss") {
        None => (1..=samples).collect(),
        Some((_, stss)) => {
            let n = be32(stss, 4)? as usize;
            (0..n)
                .map(|i| be32(stss, 8 + 4 * i))
                .collect::<Option<Vec<u32>>>()?
        }
    };
    let runs = ctts_runs(stbl)?;
    let offset_of = |index: u64| -> i64 {
        let mut at = 0u64;
        for &(count, off) in &runs {
            at += u64::from(count);
            if index < at {
                return off;
            }
        }
        0
    };
    let mut sync = sync;
    sync.sort_unstable(); // ascending, as the spec has them: the clock walks forward
    let mut clock = DecodeClock::new(stts);
    let mut frames: Vec<u64> = sync
        .into_iter()
        .filter(|&s| s >= 1 && s <= samples)
        .filter_map(|s| {
            let index = u64::from(s - 1);
            let pts = clock.at(index) as i64 + offset_of(index) - media_time;
            (pts >= 0).then(|| (pts as f64 / mean).round() as u64)
        })
        .collect();
    frames.sort_unstable();
    frames.dedup();
    Some(frames)
}

/// Whether every data reference of a `dinf` is the file itself (flag 1 of a `url ` or, in
/// a MOV, an `alis` entry).
pub(crate) fn self_contained(dinf: &[u8]) -> Option<bool> {
    let dref = only(&children(dinf)?, b"dref")?;
    let entries = children(dref.get(8..)?)?;
    Some(
        !entries.is_empty()
            && entries.len() as u32 == be32(dref, 4)?
            && entries.iter().all(|(k, body)| {
                (k == b"url " || k == b"alis") && body.get(3).is_some_and(|f| f & 1 == 1)
            }),
    )
}

/// The sample sizes of `stsz` (one size for all, or a table), which must fit in a file of
/// `file_len` bytes.
pub(crate) fn sample_sizes(stsz: &[u8], file_len: u64) -> Option<Vec<u32>> {
    let (fixed, count) = (be32(stsz, 4)?, be32(stsz, 8)? as usize);
    if fixed != 0 {
        // a damaged count is not allocated for
        return (u64::from(fixed) * count as u64 <= file_len).then(|| vec![fixed; count]);
    }
    if stsz.len() < 12 + 4 * count {
        return None;
    }
    (0..count).map(|i| be32(stsz, 12 + 4 * i)).collect()
}

/// Where each sample lies in the file (`stsc` over `stco` or `co64`), checked against its
/// length; `None` if the tables disagree or a sample lies outside the file.
pub(crate) fn sample_places(
    stbl: &[([u8; 4], &[u8])],
    sizes: &[u32],
    file_len: u64,
) -> Option<Vec<(u64, u32)>> {
    let chunks: Vec<u64> = match (only(stbl, b"stco"), only(stbl, b"co64")) {
        (Some(stco), None) => {
            let n = be32(stco, 4)? as usize;
            (0..n)
                .map(|i| be32(stco, 8 + 4 * i).map(u64::from))
                .collect::<Option<_>>()?
        }
        (None, Some(co64)) => {
            let n = be32(co64, 4)? as usize;
            (0..n)
                .map(|i| be64(co64, 8 + 8 * i))
                .collect::<Option<_>>()?
        }
        _ => return None,
    };
    let stsc = only(stbl, b"stsc")?;
    let runs = be32(stsc, 4)? as usize;
    let mut out = Vec::with_capacity(sizes.len());
    for r in 0..runs {
        let at = 8 + 12 * r;
        let (first, per_chunk, entry) = (be32(stsc, at)?, be32(stsc, at + 4)?, be32(stsc, at + 8)?);
        let end = if r + 1 < runs {
            be32(stsc, at + 12)?
        } else {
            chunks.len() as u32 + 1
        };
        if entry != 1 || first < 1 || end < first || end as usize > chunks.len() + 1 {
            return None;
        }
        for chunk in first..end {
            let mut offset = chunks[chunk as usize - 1];
            for _ in 0..per_chunk {
                let size = *sizes.get(out.len())?;
                if offset.checked_add(u64::from(size))? > file_len {
                    return None;
                }
                out.push((offset, size));
                offset += u64::from(size);
            }
        }
    }
    (out.len() == sizes.len()).then_some(out)
}

/// How to decode the video of a plain MP4/MOV in this process ([`super::lavcdec`]): the
/// codec, its configuration record, and every sample in decoding order with its place in
/// the file and the frame it presents.
#[derive(Debug)]
pub(crate) struct DecodePlan {
    /// libavcodec's name of the decoder.
    pub codec: &'static str,
    /// The sample entry's codec configuration record (`avcC`, `hvcC`): the decoder's
    /// extradata.
    pub config: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub samples: Vec<PlannedSample>,
}

/// One sample of a [`DecodePlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlannedSample {
    pub offset: u64,
    pub size: u32,
    /// The frame it presents, numbered from 0 at the track's rate.
    pub frame: u32,
    /// A sync sample (`stss`): decoding can start here.
    pub sync: bool,
}

/// How near the middle between two frames (in frames) a sample's presentation time may be
/// before [`decode_plan`] leaves the file to ffmpeg: there the fps filter's rounding of the
/// rate to a fraction could put it in the other frame. A rate rounded to a coarse clock (33
/// and 34 ms by turns) moves a sample by a few hundredths of a frame.
const AMBIGUOUS_FRAME: f64 = 0.1;

/// The sample entries decoded in process, the box holding each one's configuration, and the
/// decoder.
const PLANNED_ENTRIES: [(&[u8; 4], &[u8; 4], &str); 4] = [
    (b"avc1", b"avcC", "h264"),
    (b"avc3", b"avcC", "h264"),
    (b"hvc1", b"hvcC", "hevc"),
    (b"hev1", b"hvcC", "hevc"),
];

/// The [`DecodePlan`] of `path`, if its video is one this process decodes exactly as an
/// ffmpeg process with an `fps` filter at the track's own rate would: a plain MP4/MOV
/// ([`probe`]) at a constant rate (a rate rounded to a coarse clock included) with H.264 or
/// HEVC in one sample entry, whose samples present frames 0, 1, 2, … with none missing or
/// repeated after the edit (so the `fps` filter passes each picture through as the next
/// frame). A sample's frame is its presentation time over the mean duration, rounded, as the
/// filter rounds it; one that falls near the middle between two frames (where the filter's
/// own rounding of the rate could decide) leaves the file to ffmpeg. Anything else (a
/// variable rate, a track that starts later than the file, other codecs) gets `None` and is
/// decoded by ffmpeg.
pub(crate) fn decode_plan(path: &Path) -> Option<DecodePlan> {
    let (moov, file_len) = read_moov(path)?;
    let video = video_of_moov(&moov)?;
    let (_, _, codec) = PLANNED_ENTRIES
        .iter()
        .find(|(e, _, _)| **e == video.entry)?;
    let config_box = PLANNED_ENTRIES
        .iter()
        .find(|(e, _, _)| **e == video.entry)?
        .1;
    let VideoTrak { trak, mdia, .. } = video_trak(&moov)?;
    let media_time = match trak.iter().find(|(k, _)| k == b"edts") {
        None => 0,
        Some((_, edts)) => {
            let elst = only(&children(edts)?, b"elst")?;
            match (*elst.first()?, be32(elst, 4)?) {
                (_, 0) => 0,
                (1, 1) => be64(elst, 16)? as i64,
                (_, 1) => be32(elst, 12)? as i32 as i64,
                _ => return None,
            }
        }
    };
    let minf = children(only(&mdia, b"minf")?)?;
    if !self_contained(only(&minf, b"dinf")?)? {
        return None;
    }
    let stbl = children(only(&minf, b"stbl")?)?;
    let stsd = only(&stbl, b"stsd")?;
    if be32(stsd, 4)? != 1 {
        return None;
    }
    let entry = stsd.get(8..)?;
    let config = entry
        .get(VISUAL_CHILDREN_AT..be32(entry, 0)? as usize)
        .and_then(children)?
        .into_iter()
        .find(|(k, _)| k == config_box)?
        .1
        .to_vec();
    if !video.constant_rate {
        return None;
    }
    let stts = stts_runs(only(&stbl, b"stts")?)?;
    let sizes = sample_sizes(only(&stbl, b"stsz")?, file_len)?;
    let places = sample_places(&stbl, &sizes, file_len)?;
    if places.len() != video.samples as usize {
        return None;
    }
    let sync: Option<Vec<bool>> = match only(&stbl, b"stss") {
        None => Some(vec![true; places.len()]),
        Some(stss) => {
            let mut s = vec![false; places.len()];
            for i in 0..be32(stss, 4)? as usize {
                *s.get_mut((be32(stss, 8 + 4 * i)? as usize).checked_sub(1)?)? = true;
            }
            Some(s)
        }
    };
    let sync = sync?;
    let ctts = ctts_runs(&stbl)?;
    let mut offsets = ctts
        .iter()
        .flat_map(|&(n, off)| std::iter::repeat_n(off, n as usize));
    let mut seen = vec![false; places.len()];
    let mut samples = Vec::with_capacity(places.len());
    let mut clock = DecodeClock::new(&stts);
    // frames per tick: the rate ffmpeg's fps filter is given (Mp4Video::fps) over the clock
    let per_tick = places.len() as f64 / video.total_ticks as f64;
    for (i, (&(offset, size), &sync)) in places.iter().zip(&sync).enumerate() {
        let off = if ctts.is_empty() { 0 } else { offsets.next()? };
        let shown = clock.at(i as u64) as i64 + off - media_time;
        let exact = shown as f64 * per_tick;
        if shown < 0 || (exact.fract() - 0.5).abs() < AMBIGUOUS_FRAME {
            return None;
        }
        let frame = exact.round() as usize;
        if std::mem::replace(seen.get_mut(frame)?, true) {
            return None;
        }
        samples.push(PlannedSample {
            offset,
            size,
            frame: frame as u32,
            sync,
        });
    }
    Some(DecodePlan {
        codec,
        config,
        width: video.width,
        height: video.height,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    fn clip(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/clips")
            .join(name)
    }

    /// ffprobe's (width, height, r_frame_rate, avg_frame_rate, stream duration) of the first
    /// video stream.
    fn ffprobe(path: &Path) -> (u32, u32, String, String, f64) {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args([
                "stream=width,height,r_frame_rate,avg_frame_rate,duration",
                "-of",
            ])
            .args(["default=nw=1"])
            .arg(path)
            .output()
            .expect("ffprobe runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("ffprobe gave no {k}: {text}"))
                .to_string()
        };
        (
            get("width").parse().unwrap(),
            get("height").parse().unwrap(),
            get("r_frame_rate"),
            get("avg_frame_rate"),
            get("duration").parse().unwrap(),
        )
    }

    fn rate(s: &str) -> f64 {
        let (n, d) = s.split_once('/').unwrap();
        n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap()
    }

    /// Every bundled clip is a plain MP4, and so is a cut of the trailer made with `-c copy`
    /// (its mdhd keeps a longer duration than its samples'); what is read here is what
    /// ffprobe reports.
    #[test]
    fn plain_mp4s_read_as_ffprobe_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let cut = dir.path().join("trailer_20s.mp4");
        let made = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(clip("trailer_bbb.mp4"))
            .args(["-t", "20", "-c", "copy"])
            .arg(&cut)
            .status()
            .unwrap();
        assert!(made.success());
        // A constant rate on a coarse clock (sample durations of 33 and 34 ms by turns): 29.97
        // frames/s with B-frames on a 1 ms clock, and 24 frames/s remuxed from an MKV (the
        // trailer; MKV keeps milliseconds, the MP4 gets a 1/16 ms clock and an mdhd 5 ticks
        // short of the samples' total).
        let ntsc = dir.path().join("ntsc_1ms.mp4");
        let made = Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg("testsrc2=s=320x240:r=30000/1001:d=6")
            .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "48"])
            .args(["-video_track_timescale", "1000"])
            .arg(&ntsc)
            .status()
            .unwrap();
        assert!(made.success());
        let mkv = dir.path().join("trailer.mkv");
        let remuxed = dir.path().join("trailer_from_mkv.mp4");
        for (from, to, extra) in [
            (clip("trailer_bbb.mp4"), &mkv, &["-an"][..]),
            (mkv.clone(), &remuxed, &[][..]),
        ] {
            let made = Command::new("ffmpeg")
                .args(["-v", "error", "-i"])
                .arg(&from)
                .args(extra)
                .args(["-c", "copy"])
                .arg(to)
                .status()
                .unwrap();
            assert!(made.success());
        }
        for (path, one_duration) in [
            (clip("bikes.mp4"), true),
            (clip("bigbuckbunny.mp4"), true),
            (clip("carphone_pristine.mp4"), true),
            (clip("trailer_bbb.mp4"), true),
            (cut, true),
            (ntsc, false),
            (remuxed, false),
        ] {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let v = probe(&path).unwrap_or_else(|| panic!("{name}: not read as a plain MP4"));
            let (w, h, r, avg, d) = ffprobe(&path);
            assert_eq!((v.width, v.height), (w, h), "{name}");
            // ffprobe guesses r_frame_rate on a coarse clock (24/1 for 23.9995...)
            assert!(
                !one_duration || (v.fps() - rate(&r)).abs() < 1e-9,
                "{name}: {} vs {r}",
                v.fps()
            );
            assert!(
                (v.fps() - rate(&avg)).abs() < 1e-9,
                "{name}: {} vs {avg}",
                v.fps()
            );
            assert_eq!(v.duration(), d, "{name}");
            assert_eq!(v.keyframes, ffprobe_keyframes(&path, v.fps()), "{name}");
            assert_eq!(
                v.codec(),
                Some("h264"),
                "{name}: every bundled clip is H.264"
            );
        }
    }

    /// ffprobe's key frames, as frame numbers at `fps`.
    fn ffprobe_keyframes(path: &Path, fps: f64) -> Vec<u64> {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-skip_frame",
                "nokey",
            ])
            .args(["-show_entries", "frame=pts_time", "-of", "csv=p=0"])
            .arg(path)
            .output()
            .expect("ffprobe runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
            .map(|t| (t * fps).round() as u64)
            .collect()
    }

    /// Variable-rate files are read as ffprobe reads them: frames per second its
    /// `avg_frame_rate`, its duration, no key frames placed, not a constant rate.
    #[test]
    fn variable_rate_mp4s_read_as_ffprobe_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, source: &str| {
            let path = dir.path().join(name);
            let made = Command::new("ffmpeg")
                .args(["-v", "error", "-f", "lavfi", "-i", source])
                .args(["-fps_mode", "passthrough", "-c:v", "libx264"])
                .args(["-preset", "ultrafast"])
                .arg(&path)
                .status()
                .unwrap();
            assert!(made.success());
            path
        };
        let files = [
            // frames at 25/s, then at 10/s
            make(
                "two_rates.mp4",
                "testsrc=size=64x48:rate=25:duration=1,setpts='if(lt(N,12),N/25/TB,(12/25+(N-12)/10)/TB)'",
            ),
            // 30 frames/s on an uneven 90 kHz clock (as muxed here: frames of 1/48 s and
            // 1/24 s), as a phone's recording can be
            make(
                "uneven.mp4",
                "testsrc=size=64x48:rate=30:duration=3,settb=1/90000,setpts='(N/30+0.004*mod(N*7,5))/TB'",
            ),
        ];
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let v = probe(&path).unwrap_or_else(|| panic!("{name}: not read"));
            let (w, h, _r, avg, d) = ffprobe(&path);
            assert_eq!((v.width, v.height), (w, h), "{name}");
            assert!(!v.constant_rate, "{name}");
            assert!(
                (v.fps() - rate(&avg)).abs() < 1e-9,
                "{name}: {} vs {avg}",
                v.fps()
            );
            assert_eq!(v.duration(), d, "{name}");
            assert!(v.keyframes.is_empty(), "{name}");
        }
    }

    /// A phone's recording ends its edit and its `mdhd` at the last frame's start, a frame
    /// short of the samples' total: read, with ffprobe's duration (the edit's).
    #[test]
    fn an_edit_that_ends_at_the_last_frames_start_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let made_path = dir.path().join("made.mp4");
        let made = Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg("testsrc=size=64x48:rate=30:duration=3")
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0"])
            .arg(&made_path)
            .status()
            .unwrap();
        assert!(made.success());
        let mut bytes = std::fs::read(&made_path).unwrap();
        let at = |bytes: &[u8], kind: &[u8; 4]| {
            let hits: Vec<usize> = bytes
                .windows(4)
                .enumerate()
                .filter(|(_, w)| w == kind)
                .map(|(i, _)| i + 4)
                .collect();
            assert_eq!(hits.len(), 1, "one {kind:?} box");
            hits[0]
        };
        let put = |bytes: &mut Vec<u8>, at: usize, v: u32| {
            bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
        };
        // version-0 boxes as ffmpeg writes them: the track's clock and its frames' ticks
        let mdhd = at(&bytes, b"mdhd");
        let timescale = be32(&bytes, mdhd + 12).unwrap();
        let total = be32(&bytes, mdhd + 16).unwrap();
        let stts = at(&bytes, b"stts");
        assert_eq!(be32(&bytes, stts + 4), Some(1), "one stts run");
        let frame = be32(&bytes, stts + 12).unwrap();
        // the movie's clock set to the track's, so the edit can end on any tick
        let short = total - frame;
        let mvhd = at(&bytes, b"mvhd");
        put(&mut bytes, mvhd + 12, timescale);
        put(&mut bytes, mvhd + 16, short);
        let elst = at(&bytes, b"elst");
        assert_eq!(be32(&bytes, elst + 4), Some(1), "one edit");
        put(&mut bytes, elst + 8, short);
        put(&mut bytes, mdhd + 16, short);
        let path = dir.path().join("phone_like.mp4");
        std::fs::write(&path, &bytes).unwrap();
        let v = probe(&path).expect("read in process");
        let (_, _, _, avg, d) = ffprobe(&path);
        assert!(v.constant_rate);
        assert!((v.fps() - rate(&avg)).abs() < 1e-9, "{} vs {avg}", v.fps());
        assert_eq!(v.duration(), d);
        assert!((d - 89.0 / 30.0).abs() < 1e-6, "a frame short of 3 s: {d}");
    }

    /// Files this reader leaves to ffprobe: not MP4, cut short before the index, a cut that
    /// hides frames, and nothing at all.
    #[test]
    fn anything_else_is_left_to_ffprobe() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(clip("bikes.mp4")).unwrap();
        let cut = dir.path().join("cut.mp4");
        // bikes.mp4 keeps its moov at the end: half the file has no index
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(probe(&cut), None);
        let text = dir.path().join("notes.mp4");
        std::fs::write(&text, b"these are not the frames you are looking for").unwrap();
        assert_eq!(probe(&text), None);
        assert_eq!(probe(&dir.path().join("missing.mp4")), None);
        // a cut with `-c copy` from a point past the first key frame: the frames before it
        // stay in the file, hidden by the edit (13.1 s of frames, 8.1 s shown)
        let late = dir.path().join("late_cut.mp4");
        let made = Command::new("ffmpeg")
            .args(["-v", "error", "-ss", "5", "-t", "8", "-i"])
            .arg(clip("trailer_bbb.mp4"))
            .args(["-c", "copy"])
            .arg(&late)
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(probe(&late), None);
    }

    /// The codec is named from the sample entry and, for `mp4v`, from its `esds`: ffmpeg
    /// copies MPEG-2, MPEG-1 and MJPEG into `mp4v` entries, and a MOV names MJPEG `jpeg`.
    /// scored.mp4 re-encodes those, so they must not read as MPEG-4 Part 2 or unknown.
    #[test]
    fn codecs_are_named_from_the_sample_entry_and_its_decoder_config() {
        let dir = tempfile::tempdir().unwrap();
        for (name, codec, extra) in [
            ("mpeg4.mp4", "mpeg4", &["-c:v", "mpeg4"][..]),
            ("mpeg2.mp4", "mpeg2video", &["-c:v", "mpeg2video"][..]),
            ("mpeg1.mp4", "mpeg1video", &["-c:v", "mpeg1video"][..]),
            ("mjpeg.mp4", "mjpeg", &["-c:v", "mjpeg"][..]),
            ("mjpeg.mov", "mjpeg", &["-c:v", "mjpeg"][..]),
            ("prores.mov", "prores", &["-c:v", "prores_ks"][..]),
            (
                "h264.mov",
                "h264",
                &["-c:v", "libx264", "-preset", "ultrafast"][..],
            ),
        ] {
            let path = dir.path().join(name);
            crate::testutil::lavfi_video(&path, "testsrc2=s=160x120:r=25:d=0.4", extra);
            let v = probe(&path).unwrap_or_else(|| panic!("{name}: not read"));
            assert_eq!(v.codec(), Some(codec), "{name}: {:?}", v.entry);
            assert_eq!((v.width, v.height, v.samples), (160, 120, 10), "{name}");
        }
    }

    /// Sample entries of cameras and editors ffmpeg does not write (HDV, XDCAM, IMX, DVCPRO
    /// HD, ProRes 4444 XQ): named so that scored.mp4 re-encodes them at once; an `mp4v` with
    /// an object type of another codec is left unnamed (copied if the muxer takes it).
    #[test]
    fn camera_sample_entries_are_named() {
        let video = |entry: &[u8; 4], object_type: Option<u8>| Mp4Video {
            width: 1920,
            height: 1080,
            entry: *entry,
            object_type,
            timescale: 25,
            total_ticks: 25,
            duration_ticks: 25,
            samples: 25,
            constant_rate: true,
            keyframes: vec![0],
        };
        for (entry, codec) in [
            (b"hdv3", "mpeg2video"),
            (b"xdv7", "mpeg2video"),
            (b"xd5c", "mpeg2video"),
            (b"mx5p", "mpeg2video"),
            (b"m2v1", "mpeg2video"),
            (b"mjpa", "mjpeg"),
            (b"dvh5", "dvvideo"),
            (b"dvcp", "dvvideo"),
            (b"ap4x", "prores"),
            (b"apcn", "prores"),
            (b"avc3", "h264"),
        ] {
            assert_eq!(video(entry, None).codec(), Some(codec), "{entry:?}");
        }
        assert_eq!(video(b"mp4v", Some(0x61)).codec(), Some("mpeg2video"));
        assert_eq!(video(b"mp4v", None).codec(), Some("mpeg4"));
        assert_eq!(video(b"mp4v", Some(0x6D)).codec(), None, "PNG in mp4v");
        assert_eq!(
            video(b"s263", None).codec(),
            Some("h263"),
            "a 3GP phone video"
        );
        assert_eq!(video(b"xyz1", None).codec(), None);
    }
}
