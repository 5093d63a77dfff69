//! Refuses to compute in a process forked from one that already used the library. The library's kernels keep
//! a pool of worker threads for the life of the process; `fork()` copies the pool's bookkeeping but not its
//! threads, so a child's first matrix product would wait forever for workers that do not exist there (as
//! `multiprocessing`'s default "fork" start method on Linux does). A clear `ClipError` replaces that hang.

use std::sync::atomic::{AtomicU32, Ordering};

use pyo3::PyResult;

use crate::errors::ClipError;

/// The process that first loaded a model (0: none yet).
static OWNER: AtomicU32 = AtomicU32::new(0);

/// Call before any work that may start or use the kernels' thread pool (loading and encoding).
pub fn check() -> PyResult<()> {
    let pid = std::process::id();
    match OWNER.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => Ok(()),
        Err(owner) if owner == pid => Ok(()),
        // With one thread the pool has no workers, and a forked child computes like its parent.
        Err(_) if clip::threads::count() == 1 => Ok(()),
        Err(owner) => Err(ClipError::new_err(format!(
            "clip_rs was used in process {owner} and this process was forked from it: the library's worker \
             threads do not survive fork(). Start workers with multiprocessing's \"spawn\" or \"forkserver\" \
             method, or load models only in the child processes"
        ))),
    }
}
