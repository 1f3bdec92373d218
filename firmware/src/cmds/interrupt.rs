//! An interrupted `score` or `refine` (Ctrl-C, `kill`, a closed terminal) leaves nothing
//! behind: its staging folder goes, with the output folder when the run created it, and its
//! ffmpeg processes are stopped (a re-encode would otherwise run on for minutes, and a muxer
//! finish a partial scored.mp4). The outputs of an earlier run in the folder stay as they were.

use std::path::PathBuf;

/// The signals that end a run: interrupt, terminate, hang-up.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Takes [`SIGNALS`] from now on: they are blocked in the calling thread (and so in every
/// thread it starts; child processes start with none blocked) and a watcher thread waits
/// for them, then removes `staging` (and `created_out_dir`, if empty), stops this process's
/// children and exits with 128 + the signal's number, as a shell reports a killed command.
/// Call it before any other thread starts.
pub fn clean_up_on_interrupt(
    staging: PathBuf,
    created_out_dir: Option<PathBuf>,
) -> std::io::Result<()> {
    // SAFETY: plain sigset manipulation on a local set, and pthread_sigmask on this thread.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: waits on a valid, initialised set that this thread has blocked too.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            // Held until the exit: no child starts after the look for them.
            let _no_more = crate::children::stop_spawning();
            stop_children();
            let _ = std::fs::remove_dir_all(&staging);
            if let Some(dir) = created_out_dir {
                let _ = std::fs::remove_dir(&dir); // only if nothing else is in it
            }
            eprintln!("interrupted: nothing was written");
            std::process::exit(128 + sig);
        })?;
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
