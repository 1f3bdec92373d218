//! ALSA playback on a real-time thread fed by a lock-free ring.
//!
//! The engine (any thread) calls [`Sink::write`], which copies into a preallocated SPSC
//! ring ([`crate::live::ring`]). The `playback` thread, promoted to `SCHED_FIFO` where the
//! system allows it, pops one period at a time, converts it into a preallocated buffer of
//! the device's sample format and hands it to `snd_pcm_writei`. In its steady state it
//! never allocates, locks, logs or does any I/O but the PCM; everything it knows goes out
//! through the atomics of [`PlaybackStatus`], which the engine, the metrics and the
//! report read.
//!
//! Failure handling, each in its own arm:
//! - ring empty (the engine is late): wait a quarter period and look again; when the
//!   device has at most one period left, count it as `starved`. Nothing is padded: the
//!   device plays exactly the engine's samples, and if it runs dry ALSA reports it;
//! - `EPIPE` (underrun: the device ran dry): count it, `try_recover` (prepare), go on —
//!   the device restarts once the start threshold is queued again;
//! - `ESTRPIPE` (system suspend): count it, `resume` (retrying while `EAGAIN`), else `prepare`;
//! - `EIO` (the device took nothing for longer than the kernel waits for room, 1.1 × the
//!   buffer and at least 100 ms: "DMA or IRQ trouble", seen on virtio-snd when the host is
//!   late): count it as a `stall`, `drop` and `prepare` the PCM (the stream is still
//!   running, which `snd_pcm_recover` does not handle), go on; reopen only if that fails;
//! - anything else (`ENODEV` when a USB DAC is unplugged, `EBADFD`): close the PCM
//!   and reopen it with the backoff of [`DeviceMachine`]; meanwhile the ring is drained at
//!   real-time pace (paced by `CLOCK_MONOTONIC`), so the engine never blocks on a missing
//!   device and its clock keeps running.
//!
//! The hardware buffer (period size and count) is [`HwBuffer`]: the defaults below suit a
//! real board; a board profile may ask for another (`audio_period_frames`,
//! `audio_periods`; docs/guide/board.md).
//!
//! The master clock: [`PlaybackStatus::position`] = frames handed to the device (or
//! discarded at real-time pace while it was missing) minus the device's current delay,
//! i.e. the frame the listener hears now.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};

use super::{to_i16, Sink, SinkError};
use crate::live::clock::{Clock, RealClock};
use crate::live::device::{Action, AtomicState, DeviceMachine, DeviceState};
use crate::live::ring::{ring, Consumer, Producer};
use crate::music::{CHANNELS, SAMPLE_RATE};

/// Frames per ALSA period by default: 1024 frames = 21.3 ms at 48 kHz. Small enough that the clock
/// resolution and the queued latency stay far below the reaction budget (1 beat + 100 ms),
/// large enough that a small ARM board under load wakes the thread in time (period
/// wakeups of 5 ms and less cost measurable CPU on a Cortex-A53 and glitch under load).
pub const PERIOD_FRAMES: usize = 1024;
/// Periods in the ALSA hardware buffer by default: 4 × 21.3 ms = 85 ms queued at most. Survives a
/// scheduling hiccup of about three periods (64 ms) without an xrun; more would only add
/// latency between the engine's decision and the speaker.
pub const BUFFER_PERIODS: usize = 4;
/// The smallest period the sink accepts, frames (1.3 ms): below it every wakeup is overhead.
/// Profiles are held to a narrower range (`undertone_board::AUDIO_PERIOD_FRAMES_RANGE`).
pub const MIN_PERIOD_FRAMES: usize = 64;
/// Default size of the software ring between the engine and the playback thread: 0.5 s.
/// The engine renders ahead (one or two bars of *plans*, but audio only a bit ahead of the
/// hardware buffer), so a cut seen now still changes audio that is not yet queued; half a
/// second absorbs a slow render step (a model step, a template load) without an underrun.
pub const DEFAULT_RING_FRAMES: usize = SAMPLE_RATE as usize / 2;
/// `Sink::write` gives up when the playback thread has consumed nothing for this long
/// (it is stuck in the driver): the caller gets an error instead of a hang.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// `ESTRPIPE`: how many times `resume` is retried while it answers `EAGAIN` (100 ms apart,
/// 1 s in all) before falling back to `prepare`.
const RESUME_TRIES: u32 = 10;
/// SCHED_FIFO priority of the playback thread: above ordinary threads, below the
/// kernel's own IRQ threads (50) so the sound card's interrupt still wins.
const RT_PRIORITY: i32 = 40;

const CH: usize = CHANNELS as usize;

/// The ALSA hardware buffer asked of the device: `periods` periods of `period_frames`
/// frames. ALSA picks the nearest the device supports; the sink follows what it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwBuffer {
    pub period_frames: usize,
    pub periods: usize,
}

impl Default for HwBuffer {
    fn default() -> Self {
        HwBuffer {
            period_frames: PERIOD_FRAMES,
            periods: BUFFER_PERIODS,
        }
    }
}

impl HwBuffer {
    /// The board profile's buffer (`audio_period_frames`, `audio_periods`), each key it
    /// leaves out at the default.
    pub fn from_profile(period_frames: Option<u32>, periods: Option<u32>) -> HwBuffer {
        let d = HwBuffer::default();
        HwBuffer {
            period_frames: period_frames.map_or(d.period_frames, |v| v as usize),
            periods: periods.map_or(d.periods, |v| v as usize),
        }
    }

    /// The buffer of the board profile `name` (`[web] board`), the default when that
    /// profile cannot be resolved (the board task logs why, naming the profile and key).
    pub fn for_board(name: &str) -> HwBuffer {
        match undertone_board::Profile::resolve(name) {
            Ok(p) => HwBuffer::from_profile(p.audio_period_frames, p.audio_periods),
            Err(e) => {
                tracing::debug!("audio buffer: the default ({e})");
                HwBuffer::default()
            }
        }
    }

    /// Frames in the whole buffer.
    pub fn frames(&self) -> usize {
        self.period_frames * self.periods
    }

    fn check(&self) -> Result<(), String> {
        if self.period_frames < MIN_PERIOD_FRAMES || self.periods < 2 {
            return Err(format!(
                "a hardware buffer of {} periods of {} frames cannot play; give at least 2 \
                 periods of {MIN_PERIOD_FRAMES} frames (board profile keys `audio_periods`, \
                 `audio_period_frames`)",
                self.periods, self.period_frames
            ));
        }
        Ok(())
    }
}

/// Options of an ALSA sink.
#[derive(Debug, Clone)]
pub struct AlsaOptions {
    /// Software ring size in frames.
    pub ring_frames: usize,
    /// Try to promote the playback thread to SCHED_FIFO.
    pub realtime: bool,
}

impl Default for AlsaOptions {
    fn default() -> Self {
        AlsaOptions {
            ring_frames: DEFAULT_RING_FRAMES,
            realtime: true,
        }
    }
}

/// Counters and state of the playback thread, written by it, read by anyone.
#[derive(Debug)]
pub struct PlaybackStatus {
    /// Frames given to the device, plus frames
    /// discarded at real-time pace while the device was missing.
    frames_out: AtomicU64,
    /// The device's delay (frames queued in it) at the last write.
    delay: AtomicU64,
    /// Frames of engine audio taken from the ring.
    ring_frames: AtomicU64,
    /// Times the ring ran dry while the device had at most one period left (the engine
    /// was late; an underrun usually follows).
    starved: AtomicU64,
    /// Frames of engine audio dropped because the device was missing.
    discarded_frames: AtomicU64,
    /// ALSA underruns (EPIPE), each recovered with `try_recover`.
    underruns: AtomicU64,
    /// The device took nothing within the kernel's wait (EIO), each recovered with
    /// drop + prepare.
    stalls: AtomicU64,
    suspends: AtomicU64,
    reopens: AtomicU64,
    /// errno of the last device error (0 = none).
    last_errno: AtomicI32,
    /// The period and buffer the device gave at the last open, frames (0 before).
    period_frames: AtomicU64,
    buffer_frames: AtomicU64,
    state: AtomicState,
    /// The thread has finished (ring closed and drained, or stopped).
    finished: AtomicBool,
    /// Ask the thread to stop now, dropping what is queued.
    abort: AtomicBool,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PlaybackStats {
    /// The master clock: the frame the listener hears now.
    pub position: u64,
    /// Frames queued in the device.
    pub delay_frames: u64,
    pub ring_frames: u64,
    /// Times the engine left the device nearly dry.
    pub starved: u64,
    pub discarded_frames: u64,
    /// ALSA underruns (EPIPE: the device ran dry), each recovered.
    pub underruns: u64,
    /// Times the device took nothing for longer than the kernel waits (EIO), each
    /// recovered by drop + prepare (an audible gap, like an underrun).
    pub stalls: u64,
    /// Suspends (ESTRPIPE) recovered.
    pub suspends: u64,
    /// Times the device was opened again after failing.
    pub reopens: u64,
    pub last_errno: i32,
    /// The ALSA period the device gave, frames.
    pub period_frames: u64,
    /// The ALSA hardware buffer the device gave, frames.
    pub buffer_frames: u64,
    pub state: DeviceState,
}

impl PlaybackStatus {
    fn new() -> Self {
        PlaybackStatus {
            frames_out: AtomicU64::new(0),
            delay: AtomicU64::new(0),
            ring_frames: AtomicU64::new(0),
            starved: AtomicU64::new(0),
            discarded_frames: AtomicU64::new(0),
            underruns: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            suspends: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            last_errno: AtomicI32::new(0),
            period_frames: AtomicU64::new(0),
            buffer_frames: AtomicU64::new(0),
            state: AtomicState::new(DeviceState::Missing),
            finished: AtomicBool::new(false),
            abort: AtomicBool::new(false),
        }
    }

    /// The master clock: frames out minus the device's delay.
    pub fn position(&self) -> u64 {
        let out = self.frames_out.load(Ordering::Acquire);
        out.saturating_sub(self.delay.load(Ordering::Acquire))
    }

    pub fn state(&self) -> DeviceState {
        self.state.load()
    }

    pub fn underruns(&self) -> u64 {
        self.underruns.load(Ordering::Relaxed)
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> PlaybackStats {
        PlaybackStats {
            position: self.position(),
            delay_frames: self.delay.load(Ordering::Relaxed),
            ring_frames: self.ring_frames.load(Ordering::Relaxed),
            starved: self.starved.load(Ordering::Relaxed),
            discarded_frames: self.discarded_frames.load(Ordering::Relaxed),
            underruns: self.underruns.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
            suspends: self.suspends.load(Ordering::Relaxed),
            reopens: self.reopens.load(Ordering::Relaxed),
            last_errno: self.last_errno.load(Ordering::Relaxed),
            period_frames: self.period_frames.load(Ordering::Relaxed),
            buffer_frames: self.buffer_frames.load(Ordering::Relaxed),
            state: self.state.load(),
        }
    }
}

/// Plays PCM on an ALSA device from a real-time thread.
pub struct AlsaSink {
    device: String,
    /// The period asked for: `write` naps a quarter of it while the ring is full.
    period: Duration,
    producer: Option<Producer>,
    status: Arc<PlaybackStatus>,
    thread: Option<JoinHandle<()>>,
}

impl AlsaSink {
    /// Starts the playback thread on PCM `device`. The device is opened by the thread (and
    /// reopened by it when lost); this fails only when the thread cannot be made or the
    /// first open fails for a reason that will not heal (a wrong name or a device that
    /// cannot play 48 kHz stereo). The hardware buffer is the default [`HwBuffer`].
    pub fn start(device: &str, opts: AlsaOptions) -> Result<AlsaSink, SinkError> {
        AlsaSink::start_with_buffer(device, opts, HwBuffer::default())
    }

    /// [`AlsaSink::start`] asking the device for the hardware buffer `hw` (a board
    /// profile's `audio_period_frames` × `audio_periods`); a buffer that cannot play (under
    /// two periods, or periods under [`MIN_PERIOD_FRAMES`]) is refused naming the keys.
    pub fn start_with_buffer(
        device: &str,
        opts: AlsaOptions,
        hw: HwBuffer,
    ) -> Result<AlsaSink, SinkError> {
        hw.check().map_err(|detail| SinkError::Alsa {
            device: device.into(),
            detail,
        })?;
        // Fail fast on a name that cannot work; the thread handles devices that come and go.
        match open_pcm(device, hw) {
            Ok(p) => {
                let (period, buffer) = p.2;
                tracing::info!(
                    device,
                    period_frames = period,
                    buffer_frames = buffer,
                    asked_period = hw.period_frames,
                    asked_periods = hw.periods,
                    "ALSA hardware buffer"
                );
            }
            Err(OpenError::Unusable(detail)) => {
                return Err(SinkError::Alsa {
                    device: device.into(),
                    detail,
                })
            }
            Err(OpenError::Alsa(e)) if e.errno() == libc::ENOENT => {
                return Err(SinkError::Alsa {
                    device: device.into(),
                    detail: format!("no such PCM ({e}); list them with `aplay -L`"),
                })
            }
            Err(OpenError::Alsa(e)) => {
                tracing::warn!(device, error = %e, "audio device not available yet; will keep trying");
            }
        }
        let (producer, consumer) = ring(opts.ring_frames.max(hw.period_frames) * CH);
        let status = Arc::new(PlaybackStatus::new());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(), i32>>(1);
        let st = status.clone();
        let name = device.to_string();
        let realtime = opts.realtime;
        let thread = std::thread::Builder::new()
            .name("playback".into())
            .spawn(move || {
                let rt = if realtime { promote_realtime() } else { Ok(()) };
                let _ = tx.send(rt);
                Playback::new(name, hw, consumer, st).run();
            })
            .map_err(|e| SinkError::Alsa {
                device: device.into(),
                detail: format!("cannot start the playback thread: {e}"),
            })?;
        match rx.recv() {
            Ok(Ok(())) if realtime => {
                tracing::info!(
                    device,
                    priority = RT_PRIORITY,
                    "playback thread is SCHED_FIFO"
                )
            }
            Ok(Err(errno)) => tracing::warn!(
                device,
                error = %std::io::Error::from_raw_os_error(errno),
                "playback thread stays at normal priority (real-time scheduling not allowed: \
                 grant CAP_SYS_NICE or an rtprio limit, e.g. LimitRTPRIO= in the unit)"
            ),
            _ => {}
        }
        Ok(AlsaSink {
            device: device.into(),
            period: period_of(hw.period_frames),
            producer: Some(producer),
            status,
            thread: Some(thread),
        })
    }

    /// The shared counters and the master clock.
    pub fn status(&self) -> Arc<PlaybackStatus> {
        self.status.clone()
    }

    /// Room in the software ring, in samples: a `write` of at most this many returns at once.
    pub fn free_samples(&self) -> usize {
        self.producer.as_ref().map_or(0, |p| p.free())
    }

    /// Samples waiting in the software ring.
    pub fn queued_samples(&self) -> usize {
        self.producer.as_ref().map_or(0, |p| p.len())
    }

    /// Headroom in frames: how far ahead of the listener the engine's audio is (ring plus
    /// device queue).
    pub fn headroom_frames(&self) -> u64 {
        (self.queued_samples() / CH) as u64 + self.status.delay.load(Ordering::Relaxed)
    }

    /// Stops now, dropping queued audio (SIGKILL-like stops are not needed: this returns
    /// as soon as the thread's current write returns).
    pub fn abort(&mut self) {
        self.status.abort.store(true, Ordering::Release);
        self.producer = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Sink for AlsaSink {
    fn write(&mut self, samples: &[f32]) -> Result<(), SinkError> {
        if !samples.len().is_multiple_of(CH) {
            return Err(SinkError::PartialFrame {
                samples: samples.len(),
            });
        }
        let Some(p) = self.producer.as_mut() else {
            return Err(SinkError::Stopped);
        };
        let mut off = 0;
        let mut last_progress = Instant::now();
        // A quarter period: often enough to keep the ring topped up, rare enough to cost nothing.
        let nap = self.period / 4;
        while off < samples.len() {
            let n = p.push(&samples[off..]);
            off += n;
            if n > 0 {
                last_progress = Instant::now();
                continue;
            }
            if self.status.is_finished() {
                return Err(SinkError::Alsa {
                    device: self.device.clone(),
                    detail: "the playback thread has stopped".into(),
                });
            }
            if last_progress.elapsed() > WRITE_STALL_TIMEOUT {
                return Err(SinkError::Stalled {
                    device: self.device.clone(),
                    seconds: WRITE_STALL_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(nap);
        }
        Ok(())
    }

    fn position(&self) -> u64 {
        self.status.position()
    }

    fn stop(&mut self) -> Result<(), SinkError> {
        // Closing the ring lets the thread play what is left, drain the device and exit.
        self.producer = None;
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| SinkError::Alsa {
                device: self.device.clone(),
                detail: "the playback thread panicked".into(),
            })?;
        }
        Ok(())
    }
}

impl Drop for AlsaSink {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Promotes the calling thread to SCHED_FIFO; the errno when not allowed.
fn promote_realtime() -> Result<(), i32> {
    promote_current_thread(RT_PRIORITY)
}

/// Puts the calling thread on SCHED_FIFO at `priority`; the errno when not allowed.
pub(crate) fn promote_current_thread(priority: i32) -> Result<(), i32> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: plain syscall wrapper on the current thread with a valid parameter.
    let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(r)
    }
}

#[derive(Debug)]
enum OpenError {
    /// ALSA said no (the device may come back).
    Alsa(alsa::Error),
    /// The device exists but cannot play what we make; retrying will not help.
    Unusable(String),
}

impl From<alsa::Error> for OpenError {
    fn from(e: alsa::Error) -> Self {
        OpenError::Alsa(e)
    }
}

/// The sample formats the thread can write, best first: 16-bit is what nearly every DAC
/// takes natively; 32-bit for I2S codecs that take nothing else; float for software PCMs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SampleFormat {
    S16,
    S32,
    F32,
}

/// An open PCM: its sample format and the (period, buffer) it gave, frames.
type OpenPcm = (PCM, SampleFormat, (u64, u64));

/// Opens and configures `name`: interleaved stereo at 48 kHz, the period and buffer of `hw`
/// (or the nearest the device has), starting once all but one period is queued.
fn open_pcm(name: &str, hw: HwBuffer) -> Result<OpenPcm, OpenError> {
    let pcm = PCM::new(name, Direction::Playback, false)?;
    let format;
    {
        let hwp = HwParams::any(&pcm)?;
        hwp.set_access(Access::RWInterleaved)?;
        format = if hwp.test_format(Format::s16()).is_ok() {
            hwp.set_format(Format::s16())?;
            SampleFormat::S16
        } else if hwp.test_format(Format::s32()).is_ok() {
            hwp.set_format(Format::s32())?;
            SampleFormat::S32
        } else if hwp.test_format(Format::float()).is_ok() {
            hwp.set_format(Format::float())?;
            SampleFormat::F32
        } else {
            return Err(OpenError::Unusable(
                "takes none of S16, S32, FLOAT; use a plughw: or default PCM, which convert".into(),
            ));
        };
        hwp.set_channels(CHANNELS as u32).map_err(|e| {
            OpenError::Unusable(format!("cannot play stereo ({e}); use a plughw: PCM"))
        })?;
        hwp.set_rate(SAMPLE_RATE, ValueOr::Nearest)?;
        let rate = hwp.get_rate()?;
        if rate != SAMPLE_RATE {
            return Err(OpenError::Unusable(format!(
                "plays {rate} Hz, not {SAMPLE_RATE} Hz; use a plughw: PCM, which resamples"
            )));
        }
        hwp.set_period_size_near(hw.period_frames as alsa::pcm::Frames, ValueOr::Nearest)?;
        hwp.set_buffer_size_near(hw.frames() as alsa::pcm::Frames)?;
        pcm.hw_params(&hwp)?;
    }
    let got;
    {
        let hwp = pcm.hw_params_current()?;
        let buffer = hwp.get_buffer_size()?;
        let period = hwp.get_period_size()?;
        let swp = pcm.sw_params_current()?;
        // The device starts once all but one period of the buffer is queued, so the first
        // wakeups already have a cushion.
        swp.set_start_threshold((buffer - period).max(1))?;
        swp.set_avail_min(period)?;
        pcm.sw_params(&swp)?;
        got = (period.max(0) as u64, buffer.max(0) as u64);
    }
    Ok((pcm, format, got))
}

/// The time `frames` frames play for.
fn period_of(frames: usize) -> Duration {
    Duration::from_micros(frames as u64 * 1_000_000 / SAMPLE_RATE as u64)
}

/// The playback thread's state; everything it needs is allocated in `new`.
struct Playback {
    name: String,
    /// Frames taken from the ring per write: the period asked for.
    period_frames: usize,
    /// One period of time.
    period: Duration,
    hw: HwBuffer,
    ring: Consumer,
    status: Arc<PlaybackStatus>,
    clock: RealClock,
    machine: DeviceMachine,
    pcm: Option<(PCM, SampleFormat)>,
    buf: Vec<f32>,
    out16: Vec<i16>,
    out32: Vec<i32>,
    /// Some engine audio has arrived (before it, an empty ring is not the engine being late).
    primed: bool,
    /// The ring ran dry with the device nearly empty and has not been refilled since.
    starving: bool,
    /// While the device is missing: when discarding began and how much was discarded,
    /// so discarding follows the monotonic clock without drift.
    missing_since: Option<(Duration, u64)>,
    opened_once: bool,
    /// Where alsa-lib's messages from this thread go (see `quiet_alsa_lib`).
    alsa_messages: Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>,
}

impl Playback {
    fn new(name: String, hw: HwBuffer, ring: Consumer, status: Arc<PlaybackStatus>) -> Self {
        let clock = RealClock::new();
        let pf = hw.period_frames;
        Playback {
            name,
            period_frames: pf,
            period: period_of(pf),
            hw,
            ring,
            status,
            machine: DeviceMachine::new(clock.now()),
            clock,
            pcm: None,
            buf: vec![0.0; pf * CH],
            out16: vec![0; pf * CH],
            out32: vec![0; pf * CH],
            primed: false,
            starving: false,
            missing_since: None,
            opened_once: false,
            alsa_messages: None,
        }
    }

    /// alsa-lib prints some errors (a failed open, a lost server) to stderr by default;
    /// this thread does no I/O but the PCM, so on it they go to an in-memory buffer that
    /// is replaced (dropped) after each failed open.
    fn quiet_alsa_lib(&mut self) {
        self.alsa_messages = alsa::Output::local_error_handler().ok();
    }

    fn publish(&self) {
        self.status.state.store(self.machine.state());
    }

    fn run(mut self) {
        self.quiet_alsa_lib();
        loop {
            if self.status.abort.load(Ordering::Acquire) {
                if let Some((pcm, _)) = &self.pcm {
                    let _ = pcm.drop();
                }
                break;
            }
            let now = self.clock.now();
            let action = self.machine.next(now);
            self.publish();
            let done = match action {
                Action::Open => {
                    self.open(now);
                    false
                }
                Action::WaitUntil(_) => self.discard_period(),
                Action::Close => {
                    self.close_failed(0);
                    false
                }
                Action::Read => self.play_period(),
            };
            if done {
                break;
            }
        }
        self.publish();
        self.status.finished.store(true, Ordering::Release);
    }

    fn open(&mut self, now: Duration) {
        match open_pcm(&self.name, self.hw) {
            Ok((pcm, fmt, (period, buffer))) => {
                self.status.period_frames.store(period, Ordering::Relaxed);
                self.status.buffer_frames.store(buffer, Ordering::Relaxed);
                self.pcm = Some((pcm, fmt));
                if self.opened_once {
                    self.status.reopens.fetch_add(1, Ordering::Relaxed);
                }
                self.opened_once = true;
                self.missing_since = None;
                self.machine.opened(now);
                // An open device is healthy until a write says otherwise.
                self.machine.progress(now);
            }
            Err(e) => {
                // Drop what alsa-lib said about this attempt (a device gone for days
                // must not grow a buffer); the errno below is what we keep.
                self.quiet_alsa_lib();
                let errno = match e {
                    OpenError::Alsa(e) => e.errno(),
                    OpenError::Unusable(_) => libc::EINVAL,
                };
                self.status.last_errno.store(errno, Ordering::Relaxed);
                self.machine.open_failed(now);
            }
        }
    }

    fn close_failed(&mut self, errno: i32) {
        if errno != 0 {
            self.status.last_errno.store(errno, Ordering::Relaxed);
        }
        self.pcm = None;
        self.status.delay.store(0, Ordering::Release);
        self.machine.failed(self.clock.now());
        self.publish();
    }

    /// Device missing: drop one period's worth of the ring at real-time pace so the engine
    /// and its clock go on. Returns true when the ring is closed and empty.
    fn discard_period(&mut self) -> bool {
        let now = self.clock.now();
        let (since, done) = *self.missing_since.get_or_insert((now, 0));
        let due = ((now - since).as_secs_f64() * SAMPLE_RATE as f64) as u64;
        let frames = due.saturating_sub(done).min(self.period_frames as u64 * 4);
        if frames > 0 {
            let got = (self.ring.skip(frames as usize * CH) / CH) as u64;
            self.status
                .discarded_frames
                .fetch_add(got, Ordering::Relaxed);
            self.status.frames_out.fetch_add(frames, Ordering::Release);
            if let Some(m) = self.missing_since.as_mut() {
                m.1 += frames;
            }
        }
        if self.ring.is_closed() && self.ring.is_empty() {
            return true;
        }
        self.clock.sleep(self.period);
        false
    }

    /// Plays up to one period of what the ring holds. Returns true when finished.
    fn play_period(&mut self) -> bool {
        let n = self.ring.pop(&mut self.buf[..self.period_frames * CH]);
        if n > 0 {
            self.primed = true;
            self.starving = false;
            self.status
                .ring_frames
                .fetch_add((n / CH) as u64, Ordering::Relaxed);
            self.write(n / CH);
            return false;
        }
        if self.ring.is_closed() {
            // The producer is done and everything was played: let the device finish.
            if let Some((pcm, _)) = &self.pcm {
                let _ = pcm.drain();
            }
            self.status.delay.store(0, Ordering::Release);
            return true;
        }
        if self.primed && !self.starving {
            // The engine is late. If the device is about to run dry, say so; the xrun
            // itself (EPIPE on the next write) is counted and recovered in `write`.
            let queued = self
                .pcm
                .as_ref()
                .and_then(|(p, _)| p.delay().ok())
                .unwrap_or(0);
            if queued <= self.period_frames as alsa::pcm::Frames {
                self.starving = true;
                self.status.starved.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Nothing to play: wait a quarter period. Not the device's fault, so it stays healthy.
        self.clock.sleep(self.period / 4);
        self.machine.progress(self.clock.now());
        false
    }

    /// Writes `frames` frames from `buf` to the device, handling each error in its arm.
    fn write(&mut self, frames: usize) {
        let Some((pcm, fmt)) = self.pcm.take() else {
            return;
        };
        match self.write_to(&pcm, fmt, frames) {
            Ok(()) => {
                self.pcm = Some((pcm, fmt));
                self.machine.progress(self.clock.now());
            }
            Err(errno) => {
                drop(pcm);
                self.close_failed(errno);
            }
        }
    }

    /// Converts and writes; `Err(errno)` when the device must be closed and reopened.
    fn write_to(&mut self, pcm: &PCM, fmt: SampleFormat, frames: usize) -> Result<(), i32> {
        let samples = frames * CH;
        match fmt {
            SampleFormat::S16 => {
                for (o, &s) in self.out16[..samples].iter_mut().zip(&self.buf[..samples]) {
                    *o = to_i16(s);
                }
            }
            SampleFormat::S32 => {
                for (o, &s) in self.out32[..samples].iter_mut().zip(&self.buf[..samples]) {
                    *o = (s.clamp(-1.0, 1.0) as f64 * i32::MAX as f64).round() as i32;
                }
            }
            SampleFormat::F32 => {}
        }
        let mut done = 0usize;
        // `done` when an EIO was last recovered in place: a second EIO with nothing written
        // since is a device that fails at once, not a late one (reopen, with backoff).
        let mut eio_at: Option<usize> = None;
        while done < frames {
            let r = match fmt {
                SampleFormat::S16 => pcm
                    .io_i16()
                    .and_then(|io| io.writei(&self.out16[done * CH..samples])),
                SampleFormat::S32 => pcm
                    .io_i32()
                    .and_then(|io| io.writei(&self.out32[done * CH..samples])),
                SampleFormat::F32 => pcm
                    .io_f32()
                    .and_then(|io| io.writei(&self.buf[done * CH..samples])),
            };
            match r {
                Ok(w) => {
                    done += w;
                    self.status
                        .frames_out
                        .fetch_add(w as u64, Ordering::Release);
                }
                Err(e) if e.errno() == libc::EPIPE => {
                    self.status.underruns.fetch_add(1, Ordering::Relaxed);
                    if pcm.try_recover(e, true).is_err() {
                        return Err(libc::EPIPE);
                    }
                }
                Err(e) if e.errno() == libc::ESTRPIPE => {
                    self.status.suspends.fetch_add(1, Ordering::Relaxed);
                    let mut resumed = false;
                    for _ in 0..RESUME_TRIES {
                        match pcm.resume() {
                            Ok(()) => {
                                resumed = true;
                                break;
                            }
                            Err(e) if e.errno() == libc::EAGAIN => {
                                self.clock.sleep(Duration::from_millis(100))
                            }
                            Err(_) => break,
                        }
                    }
                    if !resumed && pcm.prepare().is_err() {
                        return Err(libc::ESTRPIPE);
                    }
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) if e.errno() == libc::EIO => {
                    // The kernel waited 1.1 buffers (at least 100 ms) for room and the
                    // device took nothing: the stream is still running, so
                    // `snd_pcm_recover` does not apply. Stop it and prepare it again, as
                    // after an underrun; the device restarts at the start threshold. If
                    // that fails, or the device fails again before taking a frame, it is
                    // gone (reopen).
                    self.status.last_errno.store(libc::EIO, Ordering::Relaxed);
                    if eio_at == Some(done) {
                        return Err(libc::EIO);
                    }
                    self.status.stalls.fetch_add(1, Ordering::Relaxed);
                    eio_at = Some(done);
                    if pcm.drop().is_err() || pcm.prepare().is_err() {
                        return Err(libc::EIO);
                    }
                }
                Err(e) => {
                    // ENODEV (unplugged), EBADFD...: the device is gone; reopen later.
                    return Err(e.errno());
                }
            }
        }
        if let Ok(d) = pcm.delay() {
            self.status.delay.store(d.max(0) as u64, Ordering::Release);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hardware_buffer_follows_the_profile_keys_it_has() {
        assert_eq!(
            HwBuffer::from_profile(None, None),
            HwBuffer {
                period_frames: PERIOD_FRAMES,
                periods: BUFFER_PERIODS
            }
        );
        let vm = HwBuffer::from_profile(Some(2048), Some(6));
        assert_eq!(
            (vm.period_frames, vm.periods, vm.frames()),
            (2048, 6, 12_288)
        );
        assert_eq!(HwBuffer::for_board("qemu-virt"), vm);
        assert_eq!(HwBuffer::for_board("rpi5"), HwBuffer::default());
        assert_eq!(HwBuffer::for_board("no-such-board"), HwBuffer::default());
        let half = HwBuffer::from_profile(None, Some(8));
        assert_eq!((half.period_frames, half.periods), (PERIOD_FRAMES, 8));
        assert_eq!(period_of(2048), Duration::from_micros(42_666));
    }

    #[test]
    fn a_buffer_that_cannot_play_is_refused_naming_the_keys() {
        for hw in [
            HwBuffer::from_profile(Some(1024), Some(1)),
            HwBuffer::from_profile(Some(32), Some(4)),
        ] {
            let e = AlsaSink::start_with_buffer("null", AlsaOptions::default(), hw)
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains("\"null\""), "{e}");
            assert!(
                e.contains(&format!(
                    "{} periods of {} frames",
                    hw.periods, hw.period_frames
                )),
                "{e}"
            );
            assert!(
                e.contains("`audio_periods`") && e.contains("`audio_period_frames`"),
                "{e}"
            );
        }
        assert!(HwBuffer::default().check().is_ok());
    }
}
