//! The board task: samples the button, draws the LED and feeds the hardware watchdog, on
//! its own thread, and talks to the engine only through two closures (what the engine
//! shows, what the user asks), so this crate does not depend on the firmware.
//!
//! [`BoardLoop::step`] is the whole logic for one instant; [`spawn`] runs it every
//! [`POLL`] on the device with `CdevPin`s, and the tests run it on a [`SimClock`](crate::mem::SimClock)
//! with in-memory pins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use embedded_hal::digital::{InputPin, OutputPin};
use linux_embedded_hal::CdevPin;

use crate::button::{Button, ButtonTiming, Press};
use crate::gpio::{open_line, Direction};
use crate::led::{Led, LedState};
use crate::profile::Profile;
use crate::watchdog::Watchdog;

/// Button sampling period: 6 samples inside the 30 ms debounce, ≈ 200 cheap ioctls a second.
pub const POLL: Duration = Duration::from_millis(5);
/// How often the engine's view is read (a status copy behind a mutex): the LED and the
/// refinement options need nothing faster.
pub const VIEW_EVERY: Duration = Duration::from_millis(100);
/// The hardware watchdog is kicked at this fraction of its timeout.
const KICK_FRACTION: u32 = 3;

/// Monotonic time for control loops.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
    fn sleep(&self, d: Duration);
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// What the board needs to know about the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineView {
    /// Camera and audio states as `DeviceState::name()` spells them.
    pub camera: String,
    pub audio: String,
    /// The engine waits for a refinement option (after a dislike).
    pub disliked: bool,
    /// The refinement options that fit the music now playing, in the engine's order.
    pub options: Vec<String>,
    /// A counter the engine bumps whenever it publishes something (`Control::version`):
    /// while it moves, the engine is alive.
    pub progress: u64,
}

/// What the button asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dislike,
    /// Apply this refinement option (one of [`EngineView::options`]).
    Apply(String),
    Like,
}

/// Turns presses into engine actions. A short press means "not this: try the next
/// option": it dislikes the music (once) and applies the engine's options one after the
/// other, one per press; when the engine has not published options yet, the first one is
/// applied as soon as they appear. A long press keeps the music (like) and starts over.
#[derive(Debug, Clone, Default)]
pub struct Refiner {
    cursor: usize,
    waiting: bool,
}

impl Refiner {
    pub fn on_press(&mut self, press: Press, view: &EngineView) -> Vec<Action> {
        match press {
            Press::Long => {
                self.cursor = 0;
                self.waiting = false;
                vec![Action::Like]
            }
            Press::Short => {
                let mut out = vec![];
                if !view.disliked {
                    out.push(Action::Dislike);
                }
                if view.options.is_empty() {
                    self.waiting = true;
                } else {
                    out.push(Action::Apply(
                        view.options[self.cursor % view.options.len()].clone(),
                    ));
                    self.cursor += 1;
                }
                out
            }
        }
    }

    /// Called with every fresh view: applies the first option once it appears after a
    /// press that found none.
    pub fn on_view(&mut self, view: &EngineView) -> Option<Action> {
        if self.waiting && !view.options.is_empty() {
            self.waiting = false;
            self.cursor = 1;
            return Some(Action::Apply(view.options[0].clone()));
        }
        None
    }
}

/// The board's state machine for one button, one LED and a watchdog, over any pins.
pub struct BoardLoop<B: InputPin, L: OutputPin> {
    button: Option<(B, Button)>,
    led: Option<Led<L>>,
    refiner: Refiner,
    /// Set when the firmware reports a fatal error: the LED shows it whatever the view says.
    error: Arc<AtomicBool>,
    watchdog: Option<Watchdog>,
    last_kick: Duration,
    last_progress: (u64, Duration),
    /// Without progress for this long, the watchdog is no longer fed.
    stall_after: Duration,
    /// Failures of a pin read/write, logged once each.
    pin_failed: (bool, bool),
}

impl<B: InputPin, L: OutputPin> BoardLoop<B, L> {
    pub fn new(button: Option<B>, led: Option<L>, timing: ButtonTiming) -> Self {
        Self {
            button: button.map(|b| (b, Button::new(timing))),
            led: led.map(Led::new),
            refiner: Refiner::default(),
            error: Arc::new(AtomicBool::new(false)),
            watchdog: None,
            last_kick: Duration::ZERO,
            last_progress: (0, Duration::ZERO),
            stall_after: Duration::from_secs(10),
            pin_failed: (false, false),
        }
    }

    /// Feeds `wd` while the engine's progress counter moves at least every `stall_after`.
    pub fn with_watchdog(mut self, wd: Watchdog, stall_after: Duration) -> Self {
        self.watchdog = Some(wd);
        self.stall_after = stall_after;
        self
    }

    /// A flag that, once set, turns the LED to [`LedState::Error`].
    pub fn error_flag(&self) -> Arc<AtomicBool> {
        self.error.clone()
    }

    /// The LED state for a view.
    pub fn led_state(&self, view: &EngineView) -> LedState {
        if self.error.load(Ordering::Relaxed) {
            LedState::Error
        } else {
            LedState::from_devices(&view.camera, &view.audio)
        }
    }

    /// One instant: sample the button, map presses to actions, redraw the LED, feed the
    /// watchdog. `view` is the latest engine view (`fresh` when it was just read).
    pub fn step(&mut self, now: Duration, view: &EngineView, fresh: bool) -> Vec<Action> {
        let mut actions = vec![];
        if let Some((pin, button)) = self.button.as_mut() {
            match pin.is_high() {
                Ok(level) => {
                    if let Some(p) = button.update(now, level) {
                        tracing::info!(press = ?p, "button");
                        actions.extend(self.refiner.on_press(p, view));
                    }
                }
                Err(e) if !self.pin_failed.0 => {
                    self.pin_failed.0 = true;
                    tracing::warn!(error = ?e, "button: cannot read the line; the button is ignored until it reads again");
                }
                Err(_) => {}
            }
        }
        if fresh {
            actions.extend(self.refiner.on_view(view));
        }
        let state = self.led_state(view);
        if let Some(led) = self.led.as_mut() {
            led.set(state, now);
            if let Err(e) = led.tick(now) {
                if !self.pin_failed.1 {
                    self.pin_failed.1 = true;
                    tracing::warn!(error = ?e, "led: cannot write the line");
                }
            }
        }
        if view.progress != self.last_progress.0 {
            self.last_progress = (view.progress, now);
        }
        if let Some(wd) = self.watchdog.as_mut() {
            let alive = now.saturating_sub(self.last_progress.1) < self.stall_after
                && !self.error.load(Ordering::Relaxed);
            if alive && now.saturating_sub(self.last_kick) >= wd.timeout() / KICK_FRACTION {
                if let Err(e) = wd.kick() {
                    tracing::warn!(error = %e, "watchdog");
                }
                self.last_kick = now;
            }
        }
        actions
    }

    /// Switches the LED off and gives back nothing (the pins are released on drop).
    pub fn shutdown(&mut self, now: Duration) {
        if let Some(led) = self.led.as_mut() {
            led.set(LedState::Off, now);
            let _ = led.tick(now);
        }
    }
}

/// The running board task; stopping it (drop) switches the LED off, disarms the watchdog
/// and releases the lines.
pub struct BoardHandle {
    stop: Arc<AtomicBool>,
    error: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    problems: Vec<String>,
}

impl BoardHandle {
    /// What could not be set up (each a full message naming the profile key); the task
    /// runs with what could.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Shows the error pattern from now on.
    pub fn set_error(&self) {
        self.error.store(true, Ordering::Relaxed);
    }

    /// True when neither the button, the LED nor the watchdog could be opened.
    pub fn is_idle(&self) -> bool {
        self.thread.is_none()
    }
}

impl Drop for BoardHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `lp` every [`POLL`] on `clock` until `stop`: reads the view every [`VIEW_EVERY`]
/// and hands every action to `act`.
pub fn run_loop<B: InputPin, L: OutputPin, C: Clock>(
    lp: &mut BoardLoop<B, L>,
    clock: &C,
    stop: &AtomicBool,
    mut view: impl FnMut() -> EngineView,
    mut act: impl FnMut(Action),
) {
    let mut current = view();
    let mut last_view = clock.now();
    let mut fresh = true;
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        if now.saturating_sub(last_view) >= VIEW_EVERY {
            current = view();
            last_view = now;
            fresh = true;
        }
        for a in lp.step(now, &current, fresh) {
            act(a);
        }
        fresh = false;
        clock.sleep(POLL);
    }
    lp.shutdown(clock.now());
}

/// Starts the board task for `profile` on the device: opens the button, the LED and the
/// watchdog the profile names, and runs on a named thread. A line or watchdog that cannot
/// be opened is logged with a message naming the profile key and left out; the rest runs
/// (the music never depends on the button).
pub fn spawn(
    profile: &Profile,
    view: impl FnMut() -> EngineView + Send + 'static,
    act: impl FnMut(Action) + Send + 'static,
) -> BoardHandle {
    let mut problems = vec![];
    let mut note = |e: String| {
        tracing::warn!("{e}; going on without it");
        problems.push(e);
    };
    let button = profile.button.as_ref().and_then(|s| {
        open_line("button", s, Direction::Input, &profile.origin)
            .map_err(|e| note(e.to_string()))
            .ok()
    });
    let led = profile.led.as_ref().and_then(|s| {
        open_line("led", s, Direction::Output, &profile.origin)
            .map_err(|e| note(e.to_string()))
            .ok()
    });
    let watchdog = profile.watchdog.as_ref().and_then(|w| {
        Watchdog::open(&w.device, w.timeout_s)
            .map_err(|e| note(e.to_string()))
            .ok()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let nothing = button.is_none() && led.is_none() && watchdog.is_none();
    let mut lp: BoardLoop<CdevPin, CdevPin> = BoardLoop::new(button, led, ButtonTiming::default());
    if let Some(wd) = watchdog {
        // Stalled for most of the timeout: stop feeding, so the board resets.
        let stall = wd.timeout() * 2 / 3;
        lp = lp.with_watchdog(wd, stall);
    }
    let error = lp.error_flag();
    let thread = if nothing {
        None
    } else {
        let stop = stop.clone();
        let view = Mutex::new(view);
        let spawned = std::thread::Builder::new()
            .name("board".into())
            .spawn(move || {
                let clock = MonotonicClock::default();
                let mut view = view.into_inner().unwrap_or_else(|e| e.into_inner());
                run_loop(&mut lp, &clock, &stop, &mut view, act);
            });
        match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                note(format!("board: cannot start its thread: {e}"));
                None
            }
        }
    };
    tracing::info!(board = %profile.name, problems = problems.len(), "board task");
    BoardHandle {
        stop,
        error,
        thread,
        problems,
    }
}

/// [`spawn`] for the profile the config names (`[web] board`): a profile that cannot be
/// resolved is logged and nothing runs (None); the music never depends on the board.
pub fn start_named(
    name: &str,
    view: impl FnMut() -> EngineView + Send + 'static,
    act: impl FnMut(Action) + Send + 'static,
) -> Option<BoardHandle> {
    match Profile::resolve(name) {
        Ok(p) => Some(spawn(&p, view, act)),
        Err(e) => {
            tracing::warn!("{e}; going on without the board's button, LED and watchdog");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{MemPin, SimClock};

    fn view(options: &[&str], disliked: bool) -> EngineView {
        EngineView {
            camera: "running".into(),
            audio: "running".into(),
            disliked,
            options: options.iter().map(|s| s.to_string()).collect(),
            progress: 0,
        }
    }

    #[test]
    fn short_presses_walk_the_options_and_a_long_press_keeps() {
        let mut r = Refiner::default();
        let v = view(&["calmer", "simpler", "genre=pop"], false);
        assert_eq!(
            r.on_press(Press::Short, &v),
            vec![Action::Dislike, Action::Apply("calmer".into())]
        );
        let v = view(&["calmer", "simpler", "genre=pop"], true);
        assert_eq!(
            r.on_press(Press::Short, &v),
            vec![Action::Apply("simpler".into())]
        );
        assert_eq!(
            r.on_press(Press::Short, &v),
            vec![Action::Apply("genre=pop".into())]
        );
        // Wraps around.
        assert_eq!(
            r.on_press(Press::Short, &v),
            vec![Action::Apply("calmer".into())]
        );
        assert_eq!(r.on_press(Press::Long, &v), vec![Action::Like]);
        assert_eq!(
            r.on_press(Press::Short, &v),
            vec![Action::Apply("calmer".into())]
        );
    }

    #[test]
    fn options_published_after_the_press_are_applied_when_they_appear() {
        let mut r = Refiner::default();
        assert_eq!(
            r.on_press(Press::Short, &view(&[], false)),
            vec![Action::Dislike]
        );
        assert_eq!(r.on_view(&view(&[], true)), None);
        assert_eq!(
            r.on_view(&view(&["busier", "calmer"], true)),
            Some(Action::Apply("busier".into()))
        );
        assert_eq!(r.on_view(&view(&["busier", "calmer"], true)), None);
        assert_eq!(
            r.on_press(Press::Short, &view(&["busier", "calmer"], true)),
            vec![Action::Apply("calmer".into())]
        );
    }

    /// The whole loop on a simulated clock with in-memory pins: a finger presses the
    /// button (active high here) at given times; the engine's view changes; the LED's
    /// waveform and the actions are checked.
    #[test]
    fn the_loop_turns_presses_into_actions_and_draws_the_led() {
        let clock = SimClock::new();
        let button = MemPin::new(&clock, false);
        let led = MemPin::new(&clock, false);
        let mut lp = BoardLoop::new(
            Some(button.clone()),
            Some(led.clone()),
            ButtonTiming::default(),
        );
        let stop = AtomicBool::new(false);
        let actions = std::cell::RefCell::new(vec![]);
        // The script, by time in ms: camera starting until 1 s, then running; a tap at
        // 2.0–2.1 s; a 1.5 s hold from 3 s; camera lost at 6 s; stop at 8 s.
        let view_fn = || {
            let t = clock.now().as_millis() as u64;
            button.set_level((2000..2100).contains(&t) || (3000..4500).contains(&t));
            if t >= 8000 {
                stop.store(true, Ordering::Relaxed);
            }
            let camera = match t {
                0..1000 => "starting",
                1000..6000 => "running",
                _ => "missing",
            };
            EngineView {
                camera: camera.into(),
                audio: "running".into(),
                disliked: false,
                options: vec!["calmer".into()],
                progress: t / 500,
            }
        };
        // The view closure drives the button too, so it must be read every step: wrap it
        // in a loop that samples at POLL (VIEW_EVERY only rate-limits fresh views).
        let mut last = EngineView::default();
        while !stop.load(Ordering::Relaxed) {
            let now = clock.now();
            let v = view_fn();
            let fresh = v != last;
            last = v.clone();
            for a in lp.step(now, &v, fresh) {
                actions.borrow_mut().push((now.as_millis() as u64, a));
            }
            clock.sleep(POLL);
        }
        lp.shutdown(clock.now());
        assert_eq!(
            actions.into_inner(),
            vec![
                (2130, Action::Dislike),
                (2130, Action::Apply("calmer".into())),
                (3800, Action::Like)
            ]
        );
        let h: Vec<(u64, bool)> = led
            .history()
            .into_iter()
            .map(|(t, l)| (t.as_millis() as u64, l))
            .collect();
        // Starting blinks (on at 0, off at 500), steady on at 1 s, double blink from 6 s,
        // off at the stop.
        assert_eq!(
            h,
            vec![
                (0, true),
                (500, false),
                (1000, true),
                (6120, false),
                (6300, true),
                (6420, false),
                (7500, true),
                (7620, false),
                (7800, true),
                (7920, false),
            ]
        );
    }

    #[test]
    fn run_loop_stops_and_switches_the_led_off() {
        let clock = SimClock::new();
        let led = MemPin::new(&clock, false);
        let mut lp: BoardLoop<MemPin, MemPin> =
            BoardLoop::new(None, Some(led.clone()), ButtonTiming::default());
        let stop = AtomicBool::new(false);
        run_loop(
            &mut lp,
            &clock,
            &stop,
            || {
                if clock.now() >= Duration::from_secs(2) {
                    stop.store(true, Ordering::Relaxed);
                }
                view(&[], false)
            },
            |_| {},
        );
        let h = led.history();
        assert_eq!(h.first().map(|x| x.1), Some(true));
        assert_eq!(h.last().map(|x| x.1), Some(false));
        assert!(clock.now() >= Duration::from_secs(2));
    }
}
