//! Thread priority for background work. The model's kernels split each operation across all cores and
//! wait for the slowest part, so a decoding thread that preempts one kernel thread stalls the whole
//! operation. Decoding threads therefore run at the lowest priority: they take the cores whenever the
//! model waits (for input or between operations) and rarely interrupt it otherwise.

/// Gives the calling thread the lowest scheduling priority (nice 19). Best effort: where the platform has
/// no per-thread priority, or refuses the change, the thread keeps its priority.
pub fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is passed.
        unsafe {
            let tid = libc::gettid();
            // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value alone.
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn lowers_only_the_calling_thread() {
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let inside = std::thread::spawn(|| {
            super::lower_current_thread();
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        })
        .join()
        .unwrap();
        assert_eq!(inside, 19);
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, before);
    }
}
