//! Child processes (ffmpeg, ffprobe) of the offline engine start through here, so that an
//! interrupted run can stop every one of them: a child is started while [`SPAWNING`] is held
//! shared, and the interrupt handler (`cmds::interrupt`) holds it exclusively while it looks
//! for children to stop and until the process exits. A child forked but not yet running
//! ffmpeg (a copy of undertone) would otherwise be missed, and go on to run it.

use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{RwLock, RwLockWriteGuard};

static SPAWNING: RwLock<()> = RwLock::new(());

/// Starts `cmd` (as [`Command::spawn`]); `Command::spawn` returns once the child runs the
/// program, so a child it returns is one the interrupt handler finds.
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let _shared = SPAWNING.read().unwrap_or_else(|e| e.into_inner());
    cmd.spawn()
}

/// Runs `cmd` to its end and collects its output (as [`Command::output`]: stdin closed,
/// stdout and stderr captured unless set); only the start holds [`SPAWNING`].
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    let child = {
        let _shared = SPAWNING.read().unwrap_or_else(|e| e.into_inner());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?
    };
    child.wait_with_output()
}

/// No child starts while the returned guard lives (the interrupt handler keeps it until the
/// process exits).
pub fn stop_spawning() -> RwLockWriteGuard<'static, ()> {
    SPAWNING.write().unwrap_or_else(|e| e.into_inner())
}
