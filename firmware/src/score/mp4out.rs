//! scored.mp4 written in process, for a video in a plain MP4/MOV whose stream mp4 carries
//! as it is: the input's video samples and sample tables copied, beside the AAC packets
//! ffmpeg's encoder wrote, with the `moov` in front (what `-movflags +faststart` gives).
//!
//! ffmpeg muxing the same thing costs a process (about 45 ms of CPU to load its 215
//! libraries, taken from the note model while the music is composed) and, once the music
//! is encoded, a demux and mux of the whole video and a second pass over the file to move
//! its `moov` to the front, on the critical path of `score` (30 s of 960x540: about 55 ms
//! between the encoders' exit and the muxer's, `strace -f -tt`). Here the `moov` is built
//! from the tables first, and the samples are copied after it in one pass.
//!
//! Only what can be copied exactly takes this path ([`CopiedVideo::read`]); anything else
//! (another container, fragments, several video tracks or sample entries, samples in
//! another file, an `hev1` or `mp4v` entry, which ffmpeg relabels or filters) is muxed by
//! ffmpeg as before. What is kept of the video track (ISO/IEC 14496-12): `tkhd` (its
//! matrix, so a phone's rotation, and its size), `edts` (the edit list: where the video
//! starts and what it shows, in the movie's time scale, which scored.mp4 keeps), `mdhd`,
//! and the sample tables indexed by sample (`stsd`, `stts`, `ctts`, `cslg`, `stss`,
//! `sdtp`, `sgpd`, `sbgp`, `stsz`); the tables of file offsets (`stsc`, `stco`/`co64`) are
//! rebuilt for the new layout; creation times, names and metadata are dropped, as
//! `-map_metadata -1 -fflags +bitexact` does.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::aac::Packets;
use crate::music::{CHANNELS, SAMPLE_RATE};
use crate::source::mp4::{
    be32, be64, children, only, read_moov, sample_places, sample_sizes, self_contained, stts_runs,
    video_trak, VideoTrak,
};

/// Sample entries whose streams are copied here (H.264, HEVC with its parameter sets in
/// the entry, AV1, VP9).
const COPIED_ENTRIES: [&[u8; 4]; 5] = [b"avc1", b"avc3", b"hvc1", b"av01", b"vp09"];
/// Boxes of the video's sample table kept as they are: they index samples, not bytes.
const KEPT_TABLES: [&[u8; 4]; 8] = [
    b"stts", b"ctts", b"cslg", b"stss", b"sdtp", b"sgpd", b"sbgp", b"stsz",
];
/// Samples per AAC packet.
pub(crate) const AAC_FRAME: u64 = 1024;
/// Samples of silence ffmpeg's AAC encoder puts before the music (its first packet); the
/// audio's edit list starts after them.
pub(crate) const AAC_PRIMING: u64 = 1024;
/// The samples are interleaved in chunks of this many per second of each track, as
/// ffmpeg's mp4 muxer does (a player reading the file front to back finds the audio and
/// the video of the same moment near each other).
const CHUNKS_PER_SECOND: u64 = 2;
/// Largest run of the input's bytes read at once while the video samples are copied.
const COPY_RUN: u64 = 4 << 20;
/// `language` of the tracks' `mdhd`: "und", packed as three 5-bit letters.
const LANGUAGE_UND: u16 = 0x55C4;
/// 16.16 fixed point 1.0, and 8.8 fixed point 1.0.
const FIXED_ONE: u32 = 0x0001_0000;
const VOLUME_ONE: u16 = 0x0100;
/// The identity matrix of `mvhd` and `tkhd`.
const MATRIX: [u32; 9] = [FIXED_ONE, 0, 0, 0, FIXED_ONE, 0, 0, 0, 0x4000_0000];
/// MPEG-4 Systems descriptor tags of an `esds` box, and its objectTypeIndication for AAC
/// and streamType for audio.
const ES_DESCRIPTOR: u8 = 0x03;
const DECODER_CONFIG: u8 = 0x04;
const DECODER_SPECIFIC: u8 = 0x05;
const SL_CONFIG: u8 = 0x06;
const OTI_AAC: u8 = 0x40;
const STREAM_AUDIO: u8 = 0x05;
/// Track ids in scored.mp4.
const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;
/// `tkhd` flags: enabled, in the movie.
const TRACK_ENABLED_IN_MOVIE: u32 = 0x3;

/// The video track of a plain MP4/MOV, ready to be copied into scored.mp4.
#[derive(Debug)]
pub(crate) struct CopiedVideo {
    path: PathBuf,
    movie_timescale: u32,
    media_timescale: u32,
    /// `tkhd`'s payload, with its times cleared and its id set.
    tkhd: Vec<u8>,
    /// The track's duration in movie ticks (from `tkhd`).
    duration: u64,
    /// `edts`'s payload, as it was.
    edts: Option<Vec<u8>>,
    /// `mdhd`'s payload, with its times cleared and its language "und".
    mdhd: Vec<u8>,
    /// The boxes of [`KEPT_TABLES`] present, in the input's order, as they were.
    tables: Vec<([u8; 4], Vec<u8>)>,
    /// Every sample's offset in the input and size, in decoding order.
    samples: Vec<(u64, u32)>,
    /// Every sample's decoding time, in media ticks.
    decode_times: Vec<u64>,
}

impl CopiedVideo {
    /// The video track of `path` if it can be copied here (see the module doc), else
    /// `None` (ffmpeg muxes it).
    pub(crate) fn read(path: &Path) -> Option<Self> {
        let (moov, file_len) = read_moov(path)?;
        let VideoTrak {
            trak,
            mdia,
            movie_timescale,
        } = video_trak(&moov)?;
        let (trak, mdia) = (&trak, &mdia);
        let mut tkhd = only(trak, b"tkhd")?.to_vec();
        let duration = if *tkhd.first()? == 1 {
            tkhd.get_mut(4..20)?.fill(0);
            tkhd.get_mut(20..24)?
                .copy_from_slice(&VIDEO_TRACK.to_be_bytes());
            be64(&tkhd, 28)?
        } else {
            tkhd.get_mut(4..12)?.fill(0);
            tkhd.get_mut(12..16)?
                .copy_from_slice(&VIDEO_TRACK.to_be_bytes());
            u64::from(be32(&tkhd, 20)?)
        };
        tkhd[1..4].copy_from_slice(&TRACK_ENABLED_IN_MOVIE.to_be_bytes()[1..]);
        let edts = match trak.iter().filter(|(k, _)| k == b"edts").count() {
            0 => None,
            1 => Some(only(trak, b"edts")?.to_vec()),
            _ => return None,
        };
        let mut mdhd = only(mdia, b"mdhd")?.to_vec();
        let (media_timescale, language_at) = if *mdhd.first()? == 1 {
            mdhd.get_mut(4..20)?.fill(0);
            (be32(&mdhd, 20)?, 32)
        } else {
            mdhd.get_mut(4..12)?.fill(0);
            (be32(&mdhd, 12)?, 20)
        };
        mdhd.get_mut(language_at..language_at + 2)?
            .copy_from_slice(&LANGUAGE_UND.to_be_bytes());
        let minf = children(only(mdia, b"minf")?)?;
        if !self_contained(only(&minf, b"dinf")?)? {
            return None;
        }
        let stbl = children(only(&minf, b"stbl")?)?;
        let stsd = only(&stbl, b"stsd")?;
        if be32(stsd, 4)? != 1
            || !COPIED_ENTRIES
                .iter()
                .any(|e| stsd.get(12..16) == Some(&e[..]))
        {
            return None;
        }
        let mut tables = Vec::new();
        for (kind, body) in &stbl {
            if kind == b"stsd" || KEPT_TABLES.contains(&kind) {
                if tables.iter().any(|(k, _)| k == kind) {
                    return None;
                }
                tables.push((*kind, body.to_vec()));
            }
        }
        let sizes = sample_sizes(only(&stbl, b"stsz")?, file_len)?;
        let samples = sample_places(&stbl, &sizes, file_len)?;
        let mut decode_times = Vec::with_capacity(samples.len());
        let mut t = 0u64;
        for (count, delta) in stts_runs(only(&stbl, b"stts")?)? {
            for _ in 0..count {
                if decode_times.len() == samples.len() {
                    return None;
                }
                decode_times.push(t);
                t += u64::from(delta);
            }
        }
        if decode_times.len() != samples.len()
            || samples.is_empty()
            || media_timescale == 0
            || movie_timescale == 0
        {
            return None;
        }
        Some(CopiedVideo {
            path: path.to_path_buf(),
            movie_timescale,
            media_timescale,
            tkhd,
            duration,
            edts,
            mdhd,
            tables,
            samples,
            decode_times,
        })
    }
}

/// The music as AAC packets (the ADTS headers ffmpeg's encoder wrote taken off).
#[derive(Debug)]
pub(crate) struct AacTrack {
    data: Vec<u8>,
    sizes: Vec<u32>,
    /// The AudioSpecificConfig (object type, sampling frequency index, channels).
    config: [u8; 2],
    /// Samples per channel of the music: what the edit list shows after the priming.
    frames: u64,
}

impl AacTrack {
    /// The packets of an ADTS stream holding `frames` samples of music after the encoder's
    /// priming; an error says what is wrong with the stream.
    pub(crate) fn from_adts(adts: &[u8], frames: u64) -> Result<Self, String> {
        let (mut data, mut sizes) = (Vec::with_capacity(adts.len()), Vec::new());
        let mut config = None;
        let mut at = 0;
        while at < adts.len() {
            let h = adts
                .get(at..at + 7)
                .ok_or("the AAC stream ends inside a packet header")?;
            if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
                return Err(format!("no ADTS packet at byte {at} of the AAC stream"));
            }
            let header = if h[1] & 0x01 == 1 { 7 } else { 9 };
            let len =
                ((h[3] as usize & 0x03) << 11) | ((h[4] as usize) << 3) | (h[5] as usize >> 5);
            if h[6] & 0x03 != 0 {
                return Err("an ADTS packet holds several AAC frames".into());
            }
            let object = (h[2] >> 6) + 1;
            let rate_index = (h[2] >> 2) & 0x0F;
            let channels = ((h[2] & 0x01) << 2) | (h[3] >> 6);
            let asc = [
                (object << 3) | (rate_index >> 1),
                ((rate_index & 1) << 7) | (channels << 3),
            ];
            if *config.get_or_insert(asc) != asc {
                return Err("the AAC stream changes its format".into());
            }
            let body = adts
                .get(at + header..at + len)
                .filter(|_| len > header)
                .ok_or("the AAC stream ends inside a packet")?;
            data.extend_from_slice(body);
            sizes.push(body.len() as u32);
            at += len;
        }
        let config = config.ok_or("the AAC encoder wrote no packets")?;
        Self::from_packets(Packets { data, sizes }, config, frames)
    }

    /// The packets of an encoder (its priming first) holding `frames` samples of music,
    /// with their AudioSpecificConfig.
    pub(crate) fn from_packets(
        packets: Packets,
        config: [u8; 2],
        frames: u64,
    ) -> Result<Self, String> {
        let Packets { data, sizes } = packets;
        if (sizes.len() as u64) * AAC_FRAME < frames + AAC_PRIMING {
            return Err(format!(
                "the AAC stream holds {} packets, too few for {frames} samples",
                sizes.len()
            ));
        }
        Ok(AacTrack {
            data,
            sizes,
            config,
            frames,
        })
    }
}

/// One chunk of the output: `count` samples of one track from `first` on.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    video: bool,
    first: usize,
    count: usize,
}

/// Why scored.mp4 could not be written: the input could not be read (it changed or went
/// away since it was analysed), or the output could not be written.
#[derive(Debug)]
pub(crate) enum WriteError {
    Read(io::Error),
    Write(io::Error),
}

/// Writes scored.mp4 at `out`: `video` copied from its file and `audio` after it, the
/// `moov` in front. Deterministic: the same inputs give the same bytes.
pub(crate) fn write(out: &Path, video: &CopiedVideo, audio: &AacTrack) -> Result<(), WriteError> {
    use WriteError::{Read, Write as Put};
    let Layout {
        chunks,
        ftyp,
        moov,
        payload,
        mdat_header,
    } = layout(video, audio);
    let src = File::open(&video.path).map_err(Read)?;
    let mut w = BufWriter::with_capacity(1 << 20, File::create(out).map_err(Put)?);
    let mut head = ftyp;
    head.extend_from_slice(&moov);
    if mdat_header == 16 {
        head.extend_from_slice(&1u32.to_be_bytes());
        head.extend_from_slice(b"mdat");
        head.extend_from_slice(&(payload + 16).to_be_bytes());
    } else {
        head.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
        head.extend_from_slice(b"mdat");
    }
    w.write_all(&head).map_err(Put)?;
    let mut buf = Vec::new();
    let mut audio_at = 0usize;
    for c in &chunks {
        if c.video {
            // runs of samples that lie end to end in the input are read at once
            let samples = &video.samples[c.first..c.first + c.count];
            let mut i = 0;
            while i < samples.len() {
                let (start, mut len) = (samples[i].0, u64::from(samples[i].1));
                i += 1;
                while i < samples.len() && samples[i].0 == start + len && len < COPY_RUN {
                    len += u64::from(samples[i].1);
                    i += 1;
                }
                buf.resize(len as usize, 0);
                src.read_exact_at(&mut buf, start).map_err(Read)?;
                w.write_all(&buf).map_err(Put)?;
            }
        } else {
            let bytes: usize = audio.sizes[c.first..c.first + c.count]
                .iter()
                .map(|&s| s as usize)
                .sum();
            w.write_all(&audio.data[audio_at..audio_at + bytes])
                .map_err(Put)?;
            audio_at += bytes;
        }
    }
    // fsynced here, beside the rest of the work, not at the commit
    let file = w.into_inner().map_err(|e| Put(e.into_error()))?;
    file.sync_all().map_err(Put)
}

/// What goes before the samples, and their order.
struct Layout {
    chunks: Vec<Chunk>,
    ftyp: Vec<u8>,
    moov: Vec<u8>,
    /// Bytes of the samples, and of the `mdat` header before them (16 past 4 GB).
    payload: u64,
    mdat_header: u64,
}

fn layout(video: &CopiedVideo, audio: &AacTrack) -> Layout {
    let chunks = interleave(video, audio);
    let payload: u64 =
        video.samples.iter().map(|s| u64::from(s.1)).sum::<u64>() + audio.data.len() as u64;
    let mdat_header: u64 = if payload + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    let ftyp = ftyp(video);
    // The moov's size does not depend on the offsets it holds, only on their width.
    let narrow = moov(video, audio, &chunks, 0, false).len() as u64;
    let wide = ftyp.len() as u64 + narrow + mdat_header + payload > u64::from(u32::MAX);
    let start = ftyp.len() as u64 + moov(video, audio, &chunks, 0, wide).len() as u64 + mdat_header;
    let moov = moov(video, audio, &chunks, start, wide);
    Layout {
        chunks,
        ftyp,
        moov,
        payload,
        mdat_header,
    }
}

/// The chunks in file order: for each slice of [`CHUNKS_PER_SECOND`], the video samples
/// decoded in it, then the audio packets.
fn interleave(video: &CopiedVideo, audio: &AacTrack) -> Vec<Chunk> {
    let video_slot =
        |i: usize| video.decode_times[i] * CHUNKS_PER_SECOND / u64::from(video.media_timescale);
    let audio_slot = |j: usize| j as u64 * AAC_FRAME * CHUNKS_PER_SECOND / u64::from(SAMPLE_RATE);
    let (nv, na) = (video.samples.len(), audio.sizes.len());
    let (mut i, mut j) = (0, 0);
    let mut chunks = Vec::new();
    while i < nv || j < na {
        let slot = match (i < nv, j < na) {
            (true, true) => video_slot(i).min(audio_slot(j)),
            (true, false) => video_slot(i),
            _ => audio_slot(j),
        };
        // the samples of each track up to this slot, as one chunk
        let mut take = |video: bool, at: &mut usize, n: usize, slot_of: &dyn Fn(usize) -> u64| {
            let first = *at;
            while *at < n && slot_of(*at) <= slot {
                *at += 1;
            }
            if *at > first {
                chunks.push(Chunk {
                    video,
                    first,
                    count: *at - first,
                });
            }
        };
        take(true, &mut i, nv, &video_slot);
        take(false, &mut j, na, &audio_slot);
    }
    chunks
}

/// Appends a box of type `kind` whose body `body` writes.
fn put_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - at).expect("a box of the moov fits in 4 GB");
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a full box (version and flags first).
fn put_full(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    put_box(out, kind, |o| {
        o.push(version);
        o.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(o);
    });
}

fn u16s(o: &mut Vec<u8>, v: u16) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u32s(o: &mut Vec<u8>, v: u32) {
    o.extend_from_slice(&v.to_be_bytes());
}
fn u64s(o: &mut Vec<u8>, v: u64) {
    o.extend_from_slice(&v.to_be_bytes());
}

fn ftyp(video: &CopiedVideo) -> Vec<u8> {
    let mut o = Vec::new();
    put_box(&mut o, b"ftyp", |o| {
        o.extend_from_slice(b"isom");
        u32s(o, 0x200);
        o.extend_from_slice(b"isomiso2");
        if entry_type(video) == Some(*b"avc1") || entry_type(video) == Some(*b"avc3") {
            o.extend_from_slice(b"avc1");
        }
        o.extend_from_slice(b"mp41");
    });
    o
}

/// The type of the video's sample entry.
fn entry_type(video: &CopiedVideo) -> Option<[u8; 4]> {
    let stsd = &video.tables.iter().find(|(k, _)| k == b"stsd")?.1;
    stsd.get(12..16)?.try_into().ok()
}

/// Ticks of `clock` in `from`-ticks `t`, rounded to the nearest.
fn rescale(t: u64, from: u64, clock: u64) -> u64 {
    ((u128::from(t) * u128::from(clock) + u128::from(from) / 2) / u128::from(from)) as u64
}

/// The `moov` of scored.mp4, the samples starting at file offset `start` in `chunks`' order;
/// chunk offsets are 64-bit when `wide`.
fn moov(
    video: &CopiedVideo,
    audio: &AacTrack,
    chunks: &[Chunk],
    start: u64,
    wide: bool,
) -> Vec<u8> {
    // file offset of every chunk, per track
    let (mut video_offsets, mut audio_offsets) = (Vec::new(), Vec::new());
    let (mut video_counts, mut audio_counts) = (Vec::new(), Vec::new());
    let mut at = start;
    for c in chunks {
        let bytes: u64 = if c.video {
            video_offsets.push(at);
            video_counts.push(c.count);
            video.samples[c.first..c.first + c.count]
                .iter()
                .map(|s| u64::from(s.1))
                .sum()
        } else {
            audio_offsets.push(at);
            audio_counts.push(c.count);
            audio.sizes[c.first..c.first + c.count]
                .iter()
                .map(|&s| u64::from(s))
                .sum()
        };
        at += bytes;
    }
    let movie = u64::from(video.movie_timescale);
    let audio_duration = rescale(audio.frames, u64::from(SAMPLE_RATE), movie);
    let duration = video.duration.max(audio_duration);
    let mut o = Vec::new();
    put_box(&mut o, b"moov", |o| {
        let v1 = duration > u64::from(u32::MAX);
        put_full(o, b"mvhd", u8::from(v1), 0, |o| {
            if v1 {
                u64s(o, 0);
                u64s(o, 0);
                u32s(o, video.movie_timescale);
                u64s(o, duration);
            } else {
                u32s(o, 0);
                u32s(o, 0);
                u32s(o, video.movie_timescale);
                u32s(o, duration as u32);
            }
            u32s(o, FIXED_ONE); // rate
            u16s(o, VOLUME_ONE);
            o.extend_from_slice(&[0; 10]);
            MATRIX.iter().for_each(|&m| u32s(o, m));
            o.extend_from_slice(&[0; 24]); // pre_defined
            u32s(o, AUDIO_TRACK + 1); // next_track_ID
        });
        put_box(o, b"trak", |o| {
            put_box(o, b"tkhd", |o| o.extend_from_slice(&video.tkhd));
            if let Some(edts) = &video.edts {
                put_box(o, b"edts", |o| o.extend_from_slice(edts));
            }
            put_box(o, b"mdia", |o| {
                put_box(o, b"mdhd", |o| o.extend_from_slice(&video.mdhd));
                handler(o, b"vide", "VideoHandler");
                put_box(o, b"minf", |o| {
                    put_full(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                    data_information(o);
                    put_box(o, b"stbl", |o| {
                        for (kind, body) in &video.tables {
                            put_box(o, kind, |o| o.extend_from_slice(body));
                        }
                        chunk_tables(o, &video_counts, &video_offsets, wide);
                    });
                });
            });
        });
        put_box(o, b"trak", |o| {
            audio_trak(
                o,
                audio,
                audio_duration,
                &audio_counts,
                &audio_offsets,
                wide,
            )
        });
    });
    o
}

fn handler(o: &mut Vec<u8>, kind: &[u8; 4], name: &str) {
    put_full(o, b"hdlr", 0, 0, |o| {
        u32s(o, 0); // pre_defined
        o.extend_from_slice(kind);
        o.extend_from_slice(&[0; 12]);
        o.extend_from_slice(name.as_bytes());
        o.push(0);
    });
}

/// `dinf` with one data reference: this file.
fn data_information(o: &mut Vec<u8>) {
    put_box(o, b"dinf", |o| {
        put_full(o, b"dref", 0, 0, |o| {
            u32s(o, 1);
            put_full(o, b"url ", 0, 1, |_| {});
        });
    });
}

/// `stsc` and `stco` (or `co64`) for chunks of `counts` samples at `offsets`.
fn chunk_tables(o: &mut Vec<u8>, counts: &[usize], offsets: &[u64], wide: bool) {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for (i, &n) in counts.iter().enumerate() {
        if runs.last().is_none_or(|r| r.1 != n as u32) {
            runs.push((i as u32 + 1, n as u32));
        }
    }
    put_full(o, b"stsc", 0, 0, |o| {
        u32s(o, runs.len() as u32);
        for (first, n) in &runs {
            u32s(o, *first);
            u32s(o, *n);
            u32s(o, 1);
        }
    });
    put_full(o, if wide { b"co64" } else { b"stco" }, 0, 0, |o| {
        u32s(o, offsets.len() as u32);
        for &off in offsets {
            if wide {
                u64s(o, off);
            } else {
                u32s(o, off as u32);
            }
        }
    });
}

fn audio_trak(
    o: &mut Vec<u8>,
    audio: &AacTrack,
    duration: u64,
    counts: &[usize],
    offsets: &[u64],
    wide: bool,
) {
    let v1 = duration > u64::from(u32::MAX);
    put_full(o, b"tkhd", u8::from(v1), TRACK_ENABLED_IN_MOVIE, |o| {
        if v1 {
            u64s(o, 0);
            u64s(o, 0);
            u32s(o, AUDIO_TRACK);
            u32s(o, 0);
            u64s(o, duration);
        } else {
            u32s(o, 0);
            u32s(o, 0);
            u32s(o, AUDIO_TRACK);
            u32s(o, 0);
            u32s(o, duration as u32);
        }
        o.extend_from_slice(&[0; 8]);
        u16s(o, 0); // layer
        u16s(o, 1); // alternate_group
        u16s(o, VOLUME_ONE);
        u16s(o, 0);
        MATRIX.iter().for_each(|&m| u32s(o, m));
        u32s(o, 0); // width
        u32s(o, 0); // height
    });
    // The edit skips the encoder's priming and ends with the music.
    put_box(o, b"edts", |o| {
        put_full(o, b"elst", u8::from(v1), 0, |o| {
            u32s(o, 1);
            if v1 {
                u64s(o, duration);
                u64s(o, AAC_PRIMING);
            } else {
                u32s(o, duration as u32);
                u32s(o, AAC_PRIMING as u32);
            }
            u32s(o, FIXED_ONE);
        });
    });
    let packets = audio.sizes.len() as u64;
    put_box(o, b"mdia", |o| {
        let media = packets * AAC_FRAME;
        let v1 = media > u64::from(u32::MAX);
        put_full(o, b"mdhd", u8::from(v1), 0, |o| {
            if v1 {
                u64s(o, 0);
                u64s(o, 0);
                u32s(o, SAMPLE_RATE);
                u64s(o, media);
            } else {
                u32s(o, 0);
                u32s(o, 0);
                u32s(o, SAMPLE_RATE);
                u32s(o, media as u32);
            }
            u16s(o, LANGUAGE_UND);
            u16s(o, 0);
        });
        handler(o, b"soun", "SoundHandler");
        put_box(o, b"minf", |o| {
            put_full(o, b"smhd", 0, 0, |o| o.extend_from_slice(&[0; 4]));
            data_information(o);
            put_box(o, b"stbl", |o| {
                put_full(o, b"stsd", 0, 0, |o| {
                    u32s(o, 1);
                    put_box(o, b"mp4a", |o| {
                        o.extend_from_slice(&[0; 6]);
                        u16s(o, 1); // data_reference_index
                        o.extend_from_slice(&[0; 8]);
                        u16s(o, CHANNELS);
                        u16s(o, 16); // sample size
                        u32s(o, 0);
                        u32s(o, SAMPLE_RATE << 16);
                        esds(o, audio);
                    });
                });
                put_full(o, b"stts", 0, 0, |o| {
                    u32s(o, 1);
                    u32s(o, packets as u32);
                    u32s(o, AAC_FRAME as u32);
                });
                put_full(o, b"stsz", 0, 0, |o| {
                    u32s(o, 0);
                    u32s(o, audio.sizes.len() as u32);
                    audio.sizes.iter().for_each(|&s| u32s(o, s));
                });
                chunk_tables(o, counts, offsets, wide);
                // Each packet needs the one before it decoded (a pre-roll of one packet),
                // as ffmpeg's muxer states for AAC.
                put_full(o, b"sgpd", 1, 0, |o| {
                    o.extend_from_slice(b"roll");
                    u32s(o, 2); // default_length
                    u32s(o, 1); // entry_count
                    u16s(o, (-1i16) as u16);
                });
                put_full(o, b"sbgp", 0, 0, |o| {
                    o.extend_from_slice(b"roll");
                    u32s(o, 1);
                    u32s(o, packets as u32);
                    u32s(o, 1);
                });
            });
        });
    });
}

/// The `esds` of the AAC track: its decoder config and bit rates.
fn esds(o: &mut Vec<u8>, audio: &AacTrack) {
    let seconds = (audio.sizes.len() as u64 * AAC_FRAME) as f64 / f64::from(SAMPLE_RATE);
    let average = (audio.data.len() as f64 * 8.0 / seconds.max(1e-9)).round() as u32;
    // the most bits in any second (packets per second, rounded up)
    let per_second = (u64::from(SAMPLE_RATE)).div_ceil(AAC_FRAME) as usize;
    let mut most = 0u64;
    let mut window = 0u64;
    for (i, &s) in audio.sizes.iter().enumerate() {
        window += u64::from(s);
        if i >= per_second {
            window -= u64::from(audio.sizes[i - per_second]);
        }
        most = most.max(window);
    }
    let biggest = audio.sizes.iter().copied().max().unwrap_or(0);
    let descriptor = |o: &mut Vec<u8>, tag: u8, body: &[u8]| {
        o.push(tag);
        o.push(body.len() as u8);
        o.extend_from_slice(body);
    };
    let mut specific = Vec::new();
    descriptor(&mut specific, DECODER_SPECIFIC, &audio.config);
    let mut config = vec![OTI_AAC, (STREAM_AUDIO << 2) | 1];
    config.extend_from_slice(&biggest.to_be_bytes()[1..]); // bufferSizeDB, 24 bits
    config.extend_from_slice(&((most * 8) as u32).to_be_bytes());
    config.extend_from_slice(&average.to_be_bytes());
    config.extend_from_slice(&specific);
    let mut es = Vec::new();
    es.extend_from_slice(&(AUDIO_TRACK as u16).to_be_bytes()); // ES_ID
    es.push(0); // flags
    descriptor(&mut es, DECODER_CONFIG, &config);
    descriptor(&mut es, SL_CONFIG, &[0x02]);
    put_full(o, b"esds", 0, 0, |o| descriptor(o, ES_DESCRIPTOR, &es));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A video of more than 4 GB gets 64-bit chunk offsets (`co64`) and a 64-bit `mdat`
    /// size, and its audio chunks lie after the video chunks of the same half second.
    #[test]
    fn past_4_gb_the_offsets_are_64_bit() {
        // 2 s at 25 frames/s of 200 MB frames (never read: only the layout is built)
        let frames = 50u64;
        let stsd = {
            let mut o = Vec::new();
            u32s(&mut o, 0);
            u32s(&mut o, 1);
            put_box(&mut o, b"avc1", |o| o.extend_from_slice(&[0; 78]));
            o
        };
        let video = CopiedVideo {
            path: PathBuf::from("/nonexistent"),
            movie_timescale: 1000,
            media_timescale: 12800,
            tkhd: vec![0; 84],
            duration: 2000,
            edts: None,
            mdhd: vec![0; 24],
            tables: vec![(*b"stsd", stsd)],
            samples: (0..frames)
                .map(|i| (i * 200_000_000, 200_000_000))
                .collect(),
            decode_times: (0..frames).map(|i| i * 512).collect(),
        };
        let packets = 2 * SAMPLE_RATE as usize / AAC_FRAME as usize + 2;
        let audio = AacTrack {
            data: vec![0; packets * 500],
            sizes: vec![500; packets],
            config: [0x11, 0x90],
            frames: 2 * u64::from(SAMPLE_RATE),
        };
        let l = layout(&video, &audio);
        assert_eq!(l.mdat_header, 16);
        assert_eq!(l.payload, frames * 200_000_000 + packets as u64 * 500);
        let moov = children(&l.moov[8..]).unwrap();
        let traks: Vec<_> = moov.iter().filter(|(k, _)| k == b"trak").collect();
        let offsets = |trak: &[u8]| {
            let trak = children(trak).unwrap();
            let mdia = children(only(&trak, b"mdia").unwrap()).unwrap();
            let minf = children(only(&mdia, b"minf").unwrap()).unwrap();
            let stbl = children(only(&minf, b"stbl").unwrap()).unwrap();
            assert!(only(&stbl, b"stco").is_none());
            let co64 = only(&stbl, b"co64").unwrap();
            let n = be32(co64, 4).unwrap() as usize;
            (0..n)
                .map(|i| be64(co64, 8 + 8 * i).unwrap())
                .collect::<Vec<_>>()
        };
        let (v, a) = (offsets(traks[0].1), offsets(traks[1].1));
        assert_eq!(v.len(), 4, "a video chunk per half second");
        let first = (l.ftyp.len() + l.moov.len()) as u64 + 16;
        assert_eq!(v[0], first);
        // half a second of video (13 frames: times 0 to 6144 of 12800 ticks), then its audio
        assert_eq!(a[0], first + 13 * 200_000_000);
        assert!(v[2] > u64::from(u32::MAX) && a[3] > v[3]);
    }

    /// A damaged `moov` is read without a panic: as a video to copy, or as none (ffmpeg
    /// then muxes it, or says what is wrong).
    #[test]
    fn a_damaged_moov_never_panics() {
        let clip = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/clips/bikes.mp4");
        let bytes = std::fs::read(&clip).unwrap();
        let (moov, _) = read_moov(&clip).unwrap();
        let at = bytes
            .windows(moov.len())
            .position(|w| w == &moov[..])
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.mp4");
        assert!(CopiedVideo::read(&clip).is_some());
        // a fixed-seed walk over the moov's bytes: one to three set to 0x00, 0xFF or 0x7F
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut damaged = bytes.clone();
            for _ in 0..=next() % 3 {
                let i = at + (next() % moov.len() as u64) as usize;
                damaged[i] = [0x00, 0xFF, 0x7F][(next() % 3) as usize];
            }
            std::fs::write(&path, &damaged).unwrap();
            let _ = CopiedVideo::read(&path);
        }
        // and cut short anywhere in it
        for cut in (at..at + moov.len()).step_by(97) {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(CopiedVideo::read(&path).is_none());
        }
    }

    #[test]
    fn adts_headers_give_the_decoder_config() {
        // two packets of AAC-LC, 48 kHz, stereo, no CRC: 7-byte headers, 3 and 2 byte bodies
        let header = |len: usize| {
            let len = len + 7;
            [
                0xFF,
                0xF1,
                (1 << 6) | (3 << 2),
                (2 << 6) | ((len >> 11) & 0x3) as u8,
                ((len >> 3) & 0xFF) as u8,
                (((len & 0x7) << 5) | 0x1F) as u8,
                0xFC,
            ]
        };
        let mut adts = header(3).to_vec();
        adts.extend_from_slice(&[1, 2, 3]);
        adts.extend_from_slice(&header(2));
        adts.extend_from_slice(&[4, 5]);
        let t = AacTrack::from_adts(&adts, 1000).unwrap();
        assert_eq!(t.config, [0x11, 0x90]); // AAC-LC, 48 kHz, 2 channels
        assert_eq!(t.sizes, [3, 2]);
        assert_eq!(t.data, [1, 2, 3, 4, 5]);
        assert!(AacTrack::from_adts(&adts, 2000).is_err(), "too few packets");
        assert!(
            AacTrack::from_adts(&adts[..12], 0).is_err(),
            "cut inside a packet"
        );
        assert!(AacTrack::from_adts(&[0u8; 9], 0).is_err(), "not ADTS");
    }
}
