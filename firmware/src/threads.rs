//! Scheduling of this process's own threads.

/// Gives the calling thread the nice value `nice` (Linux schedules threads one by one, so the
/// rest of the process keeps its own). Best effort: on failure the thread runs as it is.
pub(crate) fn set_nice(nice: libc::c_int) {
    // SAFETY: gettid and setpriority take no pointers; on our own thread id, setpriority
    // changes only this thread's nice value.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice)
    };
    if rc != 0 {
        tracing::debug!(nice, "could not change a thread's priority");
    }
}
