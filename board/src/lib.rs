//! Board support for the undertone box: board profiles, the GPIO button and the status
//! LED, and the hardware watchdog. The logic is written against the embedded-hal 1.0
//! digital traits and a [`Clock`](task::Clock), so tests run it with in-memory pins on a
//! simulated clock; on the device the pins are `linux-embedded-hal` `CdevPin`s (GPIO
//! character device). The user guide is `docs/guide/board.md`.
//!
//! | module | what |
//! |---|---|
//! | `profile` | [`Profile`]: a TOML per board (camera, ALSA PCM, GPIO lines, watchdog, accelerator) |
//! | `button` | debounce, short and long press |
//! | `led` | [`LedState`] patterns (off, starting, running, device missing, error) |
//! | `gpio` | a profile's line opened as a `CdevPin`, errors naming chip, line and key |
//! | `watchdog` | `/dev/watchdog`: arm, kick, magic close |
//! | `task` | [`BoardLoop`] (one instant of logic), [`spawn`] (the device thread) |
//! | `mem` | in-memory pins and a simulated clock |

pub mod button;
pub mod gpio;
pub mod led;
pub mod mem;
pub mod profile;
pub mod task;
pub mod watchdog;

pub use button::{Button, ButtonTiming, Press};
pub use led::{Led, LedState};
pub use profile::{Profile, ProfileError};
pub use task::{spawn, start_named, Action, BoardHandle, BoardLoop, EngineView};
