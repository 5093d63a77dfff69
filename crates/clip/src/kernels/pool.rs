//! A persistent pool for the kernels' fork-join work: `run_parts(n, f)` calls `f(0..n)` with part 0 on the caller
//! and the others on long-lived workers, which spin briefly after each job before parking. Starting scoped
//! threads costs ~30 µs per call here, and a ViT-B/32 forward makes ~75 such calls per image: 6% of batch-1
//! latency. A caller that finds the pool in use (another thread's forward) falls back to scoped threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins for the next job before parking: a forward's ops follow each other closely, but
/// a longer spin takes the core from the decoding threads of `clip embed`'s pipeline (200 µs cost it 8 points of
/// end-to-end throughput here, for 10% lower batch-1 latency).
const SPIN: Duration = Duration::from_micros(50);
/// How long a caller spins for its helpers before yielding the core to other threads.
const WAIT_SPIN: Duration = Duration::from_micros(50);

const IDLE: u8 = 0;
const READY: u8 = 1;
const DONE: u8 = 2;
const PANICKED: u8 = 3;

/// The job a worker runs: a type-erased `&(dyn Fn(usize) + Sync)` that lives on the caller's stack until every
/// worker has reported back.
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    part: usize,
}

struct Slot {
    state: AtomicU8,
    job: Mutex<Option<Job>>,
    thread: OnceLock<Thread>,
}

// SAFETY: the raw job pointer is only dereferenced while the dispatching caller blocks in `run_parts`.
unsafe impl Send for Job {}

struct Pool {
    slots: Vec<&'static Slot>,
    busy: Mutex<()>,
    /// The process whose threads the workers are: `fork()` copies the pool but not its threads, so a forked
    /// child (Python's multiprocessing) must not wait for them.
    owner: u32,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let workers = crate::threads::count() - 1;
        let slots = (0..workers)
            .map(|i| {
                let slot: &'static Slot = Box::leak(Box::new(Slot {
                    state: AtomicU8::new(IDLE),
                    job: Mutex::new(None),
                    thread: OnceLock::new(),
                }));
                let handle = thread::Builder::new()
                    .name(format!("clip-kernel-{i}"))
                    .spawn(move || worker(slot))
                    .expect("start a kernel worker thread");
                let _ = slot.thread.set(handle.thread().clone());
                slot
            })
            .collect();
        Pool {
            slots,
            busy: Mutex::new(()),
            owner: std::process::id(),
        }
    })
}

fn worker(slot: &'static Slot) {
    loop {
        let idle_since = Instant::now();
        while slot.state.load(Ordering::Acquire) != READY {
            if idle_since.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                thread::park();
            }
        }
        let job = slot.job.lock().unwrap_or_else(|e| e.into_inner()).take();
        let outcome = match job {
            // SAFETY: the caller keeps `f` alive until this slot leaves READY (see `run_parts`).
            Some(job) => catch_unwind(AssertUnwindSafe(|| unsafe { (*job.f)(job.part) })),
            None => Ok(()),
        };
        slot.state.store(
            if outcome.is_ok() { DONE } else { PANICKED },
            Ordering::Release,
        );
    }
}

/// Calls `f(part)` for every part in `0..parts`, in parallel on up to the machine's cores, and returns when all
/// are done. Parts beyond the pool's size run on the caller after its own.
pub fn run_parts(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        if parts == 1 {
            f(0);
        }
        return;
    }
    let pool = pool();
    let scoped = || {
        thread::scope(|scope| {
            for part in 1..parts {
                scope.spawn(move || f(part));
            }
            f(0);
        })
    };
    if pool.owner != std::process::id() {
        // A process forked from the pool's owner: its workers do not exist here.
        return scoped();
    }
    let Ok(_guard) = pool.busy.try_lock() else {
        // Another thread's work holds the pool: scoped threads, as before the pool existed.
        return scoped();
    };
    let helpers = pool.slots.len().min(parts - 1);
    // SAFETY (lifetime erasure): `f` outlives every use, because this function does not return before each
    // helper's slot has left READY.
    let erased: *const (dyn Fn(usize) + Sync) = unsafe {
        std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
    };
    for (i, slot) in pool.slots.iter().take(helpers).enumerate() {
        *slot.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(Job {
            f: erased,
            part: i + 1,
        });
        slot.state.store(READY, Ordering::Release);
        if let Some(t) = slot.thread.get() {
            t.unpark();
        }
    }
    let mine = catch_unwind(AssertUnwindSafe(|| {
        f(0);
        for part in helpers + 1..parts {
            f(part);
        }
    }));
    let mut helper_panicked = false;
    for slot in pool.slots.iter().take(helpers) {
        let waiting_since = Instant::now();
        loop {
            match slot.state.load(Ordering::Acquire) {
                DONE => break,
                PANICKED => {
                    helper_panicked = true;
                    break;
                }
                // A helper that was descheduled (the decoding threads of a pipeline share the cores): give
                // the core away rather than spin against it.
                _ if waiting_since.elapsed() > WAIT_SPIN => thread::yield_now(),
                _ => std::hint::spin_loop(),
            }
        }
        slot.state.store(IDLE, Ordering::Release);
    }
    if let Err(payload) = mine {
        std::panic::resume_unwind(payload);
    }
    assert!(!helper_panicked, "a kernel worker panicked");
}

/// Splits `data` into chunks of `chunk` values and calls `f(index, chunk)` for each through [`run_parts`].
pub fn run_chunks_mut<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let chunk = chunk.max(1);
    let (len, base) = (data.len(), SharedMut(data.as_mut_ptr()));
    run_parts(len.div_ceil(chunk), &|i| {
        let start = i * chunk;
        // SAFETY: chunk `i` covers start..start + chunk, disjoint from every other part's.
        let part = unsafe {
            std::slice::from_raw_parts_mut(base.get().add(start), chunk.min(len - start))
        };
        f(i, part)
    });
}

/// A new vector of `len` values made in chunks of `chunk` across the cores: `fill(index, start, dst)` writes the
/// values `start..start + n` to `dst` (`n` = the chunk's length), which is not zeroed first.
///
/// # Safety
/// `fill` writes every one of the chunk's values through `dst` (the vector exposes them afterwards).
pub unsafe fn new_in_chunks<T: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, usize, &mut [std::mem::MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let chunk = chunk.max(1);
    let mut out: Vec<T> = Vec::with_capacity(len);
    let base = SharedMut(out.as_mut_ptr().cast::<std::mem::MaybeUninit<T>>());
    run_parts(len.div_ceil(chunk), &|i| {
        let start = i * chunk;
        // SAFETY: chunk `i` covers start..start + chunk within the allocation, disjoint from the others.
        let part = unsafe {
            std::slice::from_raw_parts_mut(base.get().add(start), chunk.min(len - start))
        };
        fill(i, start, part);
    });
    // SAFETY: the caller's `fill` wrote every value.
    unsafe { out.set_len(len) };
    out
}

/// A pointer to data that parts write disjointly.
pub struct SharedMut<T>(pub *mut T);

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper rather than the raw field).
    pub fn get(self) -> *mut T {
        self.0
    }
}
impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}
// SAFETY: users write disjoint regions (see `run_chunks_mut` and the kernels).
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_part_runs_once_also_from_concurrent_callers() {
        let callers: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(|| {
                    for parts in [0, 1, 2, 3, 7] {
                        let hits: Vec<AtomicUsize> =
                            (0..parts).map(|_| AtomicUsize::new(0)).collect();
                        run_parts(parts, &|p| {
                            hits[p].fetch_add(1, Ordering::Relaxed);
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
    }

    #[test]
    fn a_panicking_part_reaches_the_caller_and_the_pool_keeps_working() {
        let result = catch_unwind(|| run_parts(2, &|p| assert_ne!(p, 1, "part 1 fails")));
        assert!(result.is_err());
        let count = AtomicUsize::new(0);
        run_parts(2, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_forked_child_computes_without_the_parents_workers() {
        run_parts(4, &|_| {});
        // SAFETY: the child only runs `run_parts` and leaves with `_exit`.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let hits: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
            run_parts(4, &|p| {
                hits[p].fetch_add(1, Ordering::Relaxed);
            });
            let ok = hits.iter().all(|h| h.load(Ordering::Relaxed) == 1);
            // SAFETY: ends the child without running the parent's atexit handlers or test harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let start = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: waits for the child forked above.
            let done = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
            if done == child {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                // SAFETY: the child forked above.
                unsafe { libc::kill(child, libc::SIGKILL) };
                panic!("the forked child hung waiting for workers that stayed in the parent");
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status}"
        );
    }
}
