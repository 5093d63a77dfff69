//! How many threads the library computes with: one number for the kernels' pool, the row kernels and the
//! image decoders, fixed when first used. [`set`] (through `LoadOptions::threads`) or the `CLIP_THREADS`
//! environment variable choose it; by default every core the process may use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static CHOSEN: OnceLock<usize> = OnceLock::new();
/// A count asked for before first use.
static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// The thread count, fixed on the first call.
pub fn count() -> usize {
    *CHOSEN.get_or_init(|| {
        let requested = REQUESTED.load(Ordering::Relaxed);
        if requested > 0 {
            return requested;
        }
        std::env::var("CLIP_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// Asks for `n` threads. Effective only before the first computation (the kernels' pool is started once);
/// afterwards an error names the count in use, unless it is already `n`.
pub fn set(n: usize) -> Result<(), String> {
    if n == 0 {
        return Err("the thread count must be at least 1".into());
    }
    match CHOSEN.get() {
        Some(&current) if current != n => Err(format!(
            "the thread count is already fixed at {current} for this process"
        )),
        Some(_) => Ok(()),
        None => {
            REQUESTED.store(n, Ordering::Relaxed);
            match count() {
                current if current == n => Ok(()),
                current => Err(format!(
                    "the thread count is already fixed at {current} for this process"
                )),
            }
        }
    }
}

/// Maps `f` over `items` on [`count`] threads, keeping order. Each thread takes the next unclaimed item, so one
/// slow item (a large photo) does not leave the other threads idle.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = count().min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_order_with_uneven_work() {
        let items: Vec<u64> = (0..37).collect();
        let out = parallel_map(&items, |&i| {
            // Early items are slow, so later ones finish first on another thread.
            let micros = if i < 3 { 3000 } else { 10 };
            std::thread::sleep(std::time::Duration::from_micros(micros));
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(parallel_map(&[] as &[u64], |&i| i).is_empty());
    }

    #[test]
    fn the_count_is_fixed_once_used() {
        let n = count();
        assert!(n >= 1);
        assert!(set(n).is_ok());
        assert!(set(n + 1).is_err());
        assert!(set(0).is_err());
    }
}
