//! An interrupted `score` or `refine` (Ctrl-C, `kill`, a closed terminal) leaves nothing
//! behind: its staging folder goes, with the output folder when the run created it, and its
//! ffmpeg processes are stopped (a re-encode would otherwise run on for minutes, and a muxer
//! finish a partial scored.mp4). The outputs of an earlier run in the folder stay as they were.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

/// The signals that end a run: interrupt, terminate, hang-up.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Write end of the pipe that hands a caught signal to the watcher thread.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // Async-signal-safe: an atomic load and one write(2) of one byte.
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    let b = sig as u8;
    // SAFETY: writes one byte from a live local to a pipe this process opened.
    unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
}

/// Takes [`SIGNALS`] from now on: a handler hands them to a watcher thread (through a pipe;
/// a handler, unlike a blocked mask, is not inherited by the ffmpeg processes, which stay
/// stoppable by `kill`), which removes `staging` (and `created_out_dir`, if empty), stops
/// this process's children and exits with 128 + the signal's number, as a shell reports a
/// killed command.
pub fn clean_up_on_interrupt(
    staging: PathBuf,
    created_out_dir: Option<PathBuf>,
) -> std::io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two descriptors of a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let [read_fd, write_fd] = fds;
    SIGNAL_PIPE.store(write_fd, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            let mut b = 0u8;
            // SAFETY: reads one byte into a live local from the pipe's read end.
            let n = loop {
                let n = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
                if n >= 0
                    || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    break n;
                }
            };
            if n != 1 {
                return;
            }
            // Held until the exit: nothing else reaches stderr (the work failing as its
            // children are killed would report that), and no child starts after the look
            // for them.
            let mut err = std::io::stderr().lock();
            let _no_more = crate::children::stop_spawning();
            stop_children();
            let _ = std::fs::remove_dir_all(&staging);
            if let Some(dir) = created_out_dir {
                let _ = std::fs::remove_dir(&dir); // only if nothing else is in it
            }
            let _ = writeln!(err, "interrupted: nothing was written");
            std::process::exit(128 + i32::from(b));
        })?;
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction with a handler that only writes to a pipe; SA_RESTART
        // keeps the other threads' system calls going until the exit.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Kills this process's child processes (the ffmpeg decoders, encoders and muxer), found in
/// `/proc/self/task/*/children`, and waits until they are gone (a killed process still runs
/// until the kernel has torn it down: a muxer was seen alive after the exit); where the
/// kernel does not list them they end on their own (a decoder at its next write to the
/// closed pipe, a muxer at the end of its input).
fn stop_children() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        pids.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    for &pid in &pids {
        // SAFETY: signals a process this one started (its pid cannot be reused before this
        // process reaps it).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in &pids {
        // SAFETY: reaps a child of this process; another thread waiting on it may reap it
        // first, and this call then returns at once (ECHILD).
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}
