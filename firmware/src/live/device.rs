//! The life of a device the engine depends on (camera, audio output): Missing → Starting →
//! Running, Stalled when it stops delivering, and back to Missing with a reopen backoff.
//!
//! [`DeviceMachine`] is the pure state machine (no I/O, no allocation, so the playback
//! thread can use it too); [`Capture`] drives it for a [`Source`]: it opens the camera (or
//! file) with backoff, reads frames, notices a device that errors or goes quiet, closes
//! it and opens it again, and never blocks longer than one read or one backoff step.
//! Both are tested on a [`SimulatedClock`](super::clock::SimulatedClock).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::clock::Clock;
use crate::source::{Frame, Source, SourceError};

/// First wait before reopening a device that failed: short, because a USB camera or DAC
/// that was bumped usually re-enumerates within a fraction of a second.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between reopen attempts. The promise is "capture back within 2 s of the
/// device's return": with at most 1 s between attempts plus the first frame (a camera
/// delivers one within a few hundred ms of streaming on) that holds, and a failed open of
/// a missing `/dev/video0` is a single cheap syscall, so trying every second for hours
/// costs nothing.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A running device that delivers nothing for this long is Stalled (shown in the log,
/// report and metrics). 1 s is 30 missed frames at 30 fps, well past any jitter.
pub const STALL_AFTER: Duration = Duration::from_secs(1);
/// A stalled device is closed and reopened after this long without data: some UVC
/// cameras wedge (no error, no frames) and only come back after a close/open.
pub const REOPEN_STALLED_AFTER: Duration = Duration::from_secs(3);

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Not open: absent, or failed and waiting for the next reopen attempt.
    Missing = 0,
    /// Opened, waiting for its first frame (or period).
    Starting = 1,
    /// Delivering.
    Running = 2,
    /// Open but silent for longer than [`STALL_AFTER`].
    Stalled = 3,
}

impl DeviceState {
    /// All states, in metric-label order.
    pub const ALL: [DeviceState; 4] = [
        DeviceState::Missing,
        DeviceState::Starting,
        DeviceState::Running,
        DeviceState::Stalled,
    ];

    /// Lower-case name for logs, reports and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            DeviceState::Missing => "missing",
            DeviceState::Starting => "starting",
            DeviceState::Running => "running",
            DeviceState::Stalled => "stalled",
        }
    }

    fn from_u8(v: u8) -> DeviceState {
        match v {
            1 => DeviceState::Starting,
            2 => DeviceState::Running,
            3 => DeviceState::Stalled,
            _ => DeviceState::Missing,
        }
    }
}

/// A device state readable from any thread (metrics, report) and written by one.
#[derive(Debug)]
pub struct AtomicState(AtomicU8);

impl AtomicState {
    pub fn new(s: DeviceState) -> Self {
        AtomicState(AtomicU8::new(s as u8))
    }
    pub fn load(&self) -> DeviceState {
        DeviceState::from_u8(self.0.load(Ordering::Acquire))
    }
    pub fn store(&self, s: DeviceState) {
        self.0.store(s as u8, Ordering::Release);
    }
}

/// What the owner of a device should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Try to open the device now.
    Open,
    /// Nothing to do until this time (a reopen backoff is running).
    WaitUntil(Duration),
    /// The device is open: read from it.
    Read,
    /// The device went quiet for too long: close it (then the machine says `Open` later).
    Close,
}

/// The state machine of one device, driven by the times its owner reports events at.
#[derive(Debug, Clone)]
pub struct DeviceMachine {
    state: DeviceState,
    /// When the next open may be tried (meaningful in Missing).
    next_open: Duration,
    /// Wait after the next failure.
    backoff: Duration,
    /// Last time the device delivered (or was opened).
    last_progress: Duration,
    /// Number of state changes so far (for "did anything happen" checks).
    transitions: u64,
}

impl DeviceMachine {
    /// A device not yet opened: the first [`DeviceMachine::next`] says `Open`.
    pub fn new(now: Duration) -> Self {
        DeviceMachine {
            state: DeviceState::Missing,
            next_open: now,
            backoff: BACKOFF_MIN,
            last_progress: now,
            transitions: 0,
        }
    }

    pub fn state(&self) -> DeviceState {
        self.state
    }

    /// How many times the state changed.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    fn set(&mut self, s: DeviceState) {
        if s != self.state {
            self.state = s;
            self.transitions += 1;
        }
    }

    /// What to do at `now`; also turns a silent Running device into Stalled.
    pub fn next(&mut self, now: Duration) -> Action {
        match self.state {
            DeviceState::Missing if now >= self.next_open => Action::Open,
            DeviceState::Missing => Action::WaitUntil(self.next_open),
            DeviceState::Starting | DeviceState::Running | DeviceState::Stalled => {
                let quiet = now.saturating_sub(self.last_progress);
                if quiet >= REOPEN_STALLED_AFTER {
                    Action::Close
                } else {
                    if self.state == DeviceState::Running && quiet >= STALL_AFTER {
                        self.set(DeviceState::Stalled);
                    }
                    Action::Read
                }
            }
        }
    }

    /// The device opened.
    pub fn opened(&mut self, now: Duration) {
        self.last_progress = now;
        self.set(DeviceState::Starting);
    }

    /// Opening failed: wait the backoff, then double it (up to [`BACKOFF_MAX`]).
    pub fn open_failed(&mut self, now: Duration) {
        self.schedule_reopen(now);
    }

    /// The device delivered (a frame, a period): Running, and the backoff starts over.
    pub fn progress(&mut self, now: Duration) {
        self.last_progress = now;
        self.backoff = BACKOFF_MIN;
        self.set(DeviceState::Running);
    }

    /// The device failed while open (gone, error) or was closed for stalling: Missing,
    /// reopened after the backoff.
    pub fn failed(&mut self, now: Duration) {
        self.schedule_reopen(now);
    }

    fn schedule_reopen(&mut self, now: Duration) {
        self.set(DeviceState::Missing);
        self.next_open = now + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// What [`Capture::poll`] produced.
#[derive(Debug)]
pub enum CaptureEvent {
    /// A frame from the device.
    Frame(Frame),
    /// No frame this time; the device is in this state (the engine plays its calm
    /// fallback while it is not Running).
    NoFrame(DeviceState),
    /// A file source reached its clean end.
    End,
}

/// Opens a frame source, reads it, and reopens it with backoff whenever it fails.
pub struct Capture<'c, S, F> {
    open: F,
    source: Option<S>,
    machine: DeviceMachine,
    clock: &'c dyn Clock,
    /// Visible to metrics and the report.
    state: std::sync::Arc<AtomicState>,
    what: String,
}

impl<'c, S, F> Capture<'c, S, F>
where
    S: Source,
    F: FnMut() -> Result<S, SourceError>,
{
    /// `open` makes a fresh source each time the device is (re)opened; `what` names it
    /// in the log (`v4l2:/dev/video0`).
    pub fn new(what: impl Into<String>, open: F, clock: &'c dyn Clock) -> Self {
        Capture {
            open,
            source: None,
            machine: DeviceMachine::new(clock.now()),
            clock,
            state: std::sync::Arc::new(AtomicState::new(DeviceState::Missing)),
            what: what.into(),
        }
    }

    /// The device state, shared with metrics and the report.
    pub fn state_handle(&self) -> std::sync::Arc<AtomicState> {
        self.state.clone()
    }

    pub fn state(&self) -> DeviceState {
        self.machine.state()
    }

    /// One step: reads a frame if the device is open, otherwise tries to open it or waits
    /// for the backoff (at most `max_wait`, so the caller's loop keeps its own rhythm).
    pub fn poll(&mut self, max_wait: Duration) -> CaptureEvent {
        let before = self.machine.state();
        let ev = self.step(max_wait);
        let after = self.machine.state();
        if after != before {
            tracing::info!(device = %self.what, from = before.name(), to = after.name(), "capture state");
        }
        self.state.store(after);
        ev
    }

    fn step(&mut self, max_wait: Duration) -> CaptureEvent {
        let now = self.clock.now();
        match self.machine.next(now) {
            Action::WaitUntil(t) => {
                self.clock.sleep(t.saturating_sub(now).min(max_wait));
                CaptureEvent::NoFrame(self.machine.state())
            }
            Action::Open => {
                match (self.open)() {
                    Ok(s) => {
                        self.source = Some(s);
                        self.machine.opened(self.clock.now());
                    }
                    Err(e) => {
                        tracing::warn!(device = %self.what, error = %e, "cannot open; retrying with backoff");
                        self.machine.open_failed(self.clock.now());
                    }
                }
                CaptureEvent::NoFrame(self.machine.state())
            }
            Action::Close => {
                tracing::warn!(device = %self.what, "no frames for {:?}; closing and reopening", REOPEN_STALLED_AFTER);
                self.source = None;
                self.machine.failed(self.clock.now());
                CaptureEvent::NoFrame(self.machine.state())
            }
            Action::Read => {
                let Some(src) = self.source.as_mut() else {
                    self.machine.failed(now);
                    return CaptureEvent::NoFrame(self.machine.state());
                };
                match src.next_frame() {
                    Ok(Some(f)) => {
                        self.machine.progress(self.clock.now());
                        CaptureEvent::Frame(f)
                    }
                    Ok(None) => CaptureEvent::End,
                    Err(e) => {
                        tracing::warn!(device = %self.what, error = %e, "capture failed; reopening with backoff");
                        self.source = None;
                        self.machine.failed(self.clock.now());
                        CaptureEvent::NoFrame(self.machine.state())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::clock::SimulatedClock;
    use crate::source::SourceInfo;
    use std::path::PathBuf;
    use std::sync::Arc;

    const FRAME_PERIOD: Duration = Duration::from_micros(33_333);

    /// A camera that exists only between the times in `present`, on a simulated clock:
    /// this isolates the supervisor's timing (the real V4L2 and file sources are tested
    /// in `source`). Reading takes one frame period, as a camera's blocking dequeue does.
    struct TimedCamera {
        clock: Arc<SimulatedClock>,
        info: SourceInfo,
        gone_from: Duration,
        back_at: Duration,
    }

    impl TimedCamera {
        fn present(&self, t: Duration) -> bool {
            t < self.gone_from || t >= self.back_at
        }
    }

    impl Source for TimedCamera {
        fn info(&self) -> &SourceInfo {
            &self.info
        }
        fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
            self.clock.sleep(FRAME_PERIOD);
            let t = self.clock.now();
            if !self.present(t) {
                return Err(SourceError::CameraGone {
                    device: PathBuf::from("/dev/video0"),
                    detail: "ENODEV".into(),
                });
            }
            Ok(Some(Frame {
                pts: t.as_secs_f64(),
                width: 32,
                height: 32,
                gray: vec![0; 32 * 32],
            }))
        }
    }

    fn camera(clock: &Arc<SimulatedClock>, gone_from: f64, back_at: f64) -> TimedCamera {
        TimedCamera {
            clock: clock.clone(),
            info: SourceInfo {
                width: 32,
                height: 32,
                fps: 30.0,
                duration: None,
                codec: None,
            },
            gone_from: Duration::from_secs_f64(gone_from),
            back_at: Duration::from_secs_f64(back_at),
        }
    }

    /// Runs a capture loop over `seconds` of simulated time; returns (time, state, got a frame).
    fn run(gone_from: f64, back_at: f64, seconds: f64) -> Vec<(Duration, DeviceState, bool)> {
        let clock = Arc::new(SimulatedClock::new());
        let probe = camera(&clock, gone_from, back_at);
        let c2 = clock.clone();
        let mut cap = Capture::new(
            "sim",
            move || {
                let cam = camera(&c2, gone_from, back_at);
                if cam.present(c2.now()) {
                    Ok(cam)
                } else {
                    Err(SourceError::Camera {
                        device: PathBuf::from("/dev/video0"),
                        detail: "No such device".into(),
                    })
                }
            },
            &*clock,
        );
        drop(probe);
        let mut log = Vec::new();
        while clock.now() < Duration::from_secs_f64(seconds) {
            let ev = cap.poll(Duration::from_millis(50));
            let frame = matches!(ev, CaptureEvent::Frame(_));
            log.push((clock.now(), cap.state(), frame));
            // The engine loop does other work between polls; keep simulated time moving
            // even on steps that do not sleep (opening).
            clock.advance(Duration::from_millis(1));
        }
        log
    }

    #[test]
    fn capture_comes_back_within_two_seconds_of_the_device() {
        // Camera unplugged at 2 s for a long outage (the backoff reaches its maximum),
        // back at 20.3 s.
        let log = run(2.0, 20.3, 25.0);
        let first_after = log
            .iter()
            .find(|(t, _, f)| *f && t.as_secs_f64() >= 20.3)
            .expect("capture never came back");
        let delay = first_after.0.as_secs_f64() - 20.3;
        assert!(delay <= 2.0, "capture back {delay:.3} s after the device");
        assert!(delay <= BACKOFF_MAX.as_secs_f64() + 0.1, "{delay}");
        // Missing while it was gone, no frames then.
        assert!(log
            .iter()
            .filter(|(t, _, _)| t.as_secs_f64() > 2.1 && t.as_secs_f64() < 20.3)
            .all(|(_, s, f)| !f && *s == DeviceState::Missing));
        // Running before and after.
        assert_eq!(
            log.iter()
                .find(|(t, _, _)| t.as_secs_f64() > 1.0)
                .unwrap()
                .1,
            DeviceState::Running
        );
        assert_eq!(log.last().unwrap().1, DeviceState::Running);
    }

    #[test]
    fn short_outage_reopens_fast() {
        let log = run(1.0, 1.25, 3.0);
        let first_after = log
            .iter()
            .find(|(t, _, f)| *f && t.as_secs_f64() >= 1.25)
            .unwrap();
        assert!(first_after.0.as_secs_f64() - 1.25 <= 0.5);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_on_progress() {
        let mut m = DeviceMachine::new(Duration::ZERO);
        assert_eq!(m.next(Duration::ZERO), Action::Open);
        let mut t = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..6 {
            m.open_failed(t);
            match m.next(t) {
                Action::WaitUntil(u) => {
                    waits.push(u - t);
                    t = u;
                }
                a => panic!("{a:?}"),
            }
            assert_eq!(m.next(t), Action::Open);
        }
        let ms: Vec<u128> = waits.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        m.opened(t);
        assert_eq!(m.state(), DeviceState::Starting);
        m.progress(t);
        assert_eq!(m.state(), DeviceState::Running);
        m.failed(t);
        assert_eq!(m.next(t), Action::WaitUntil(t + BACKOFF_MIN));
    }

    #[test]
    fn silent_device_stalls_then_is_reopened() {
        let mut m = DeviceMachine::new(Duration::ZERO);
        m.opened(Duration::ZERO);
        m.progress(Duration::from_millis(10));
        assert_eq!(m.next(Duration::from_millis(500)), Action::Read);
        assert_eq!(m.state(), DeviceState::Running);
        assert_eq!(m.next(Duration::from_millis(1100)), Action::Read);
        assert_eq!(m.state(), DeviceState::Stalled);
        m.progress(Duration::from_millis(1200));
        assert_eq!(m.state(), DeviceState::Running);
        assert_eq!(m.next(Duration::from_millis(4300)), Action::Close);
        m.failed(Duration::from_millis(4300));
        assert_eq!(m.state(), DeviceState::Missing);
    }

    #[test]
    fn atomic_state_round_trips() {
        let a = AtomicState::new(DeviceState::Missing);
        for s in DeviceState::ALL {
            a.store(s);
            assert_eq!(a.load(), s);
        }
    }
}
