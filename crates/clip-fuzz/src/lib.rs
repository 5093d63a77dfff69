//! The fuzz suite: one target per parser that reads untrusted bytes, a deterministic mutator, and a bounded
//! campaign ([`campaign`]) that CI runs over the committed corpus (`corpus/<target>/`). The same targets run
//! under libFuzzer from `fuzz/` for long campaigns (see its README).
//!
//! A target returns normally whatever its input; a panic, an abort (failed allocation) or a hang is a finding.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::missing_safety_doc)]
mod mutate;
mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use mutate::Mutator;
pub use targets::{target, Target, TARGETS};

/// The committed seed corpus of `target`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Every file of a directory (sorted, so runs are repeatable); none when it does not exist.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// What a campaign did.
#[derive(Debug, Default)]
pub struct CampaignReport {
    pub seeds: usize,
    pub runs: usize,
}

/// Runs `target` on every seed, then on mutations of the seeds (round-robin) until `runs` mutated inputs or
/// `budget` time, whichever comes first. Deterministic for a given `seed`. A finding panics the caller's thread
/// with the input's description (the mutated bytes are written to `findings/` beside the corpus).
pub fn campaign(target: &Target, seed: u64, runs: usize, budget: Duration) -> CampaignReport {
    let seeds: Vec<Vec<u8>> = files_in(&corpus_dir(target.name))
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    assert!(!seeds.is_empty(), "no seeds for target {}", target.name);
    for input in &seeds {
        run_checked(target, input);
    }
    let mut mutator = Mutator::new(seed);
    let start = Instant::now();
    let mut done = 0;
    while done < runs && start.elapsed() < budget {
        let base = &seeds[done % seeds.len()];
        let other = &seeds[(done * 7 + 3) % seeds.len()];
        let input = mutator.mutate(base, other);
        run_checked(target, &input);
        done += 1;
    }
    CampaignReport {
        seeds: seeds.len(),
        runs: done,
    }
}

/// Runs one input; on a panic, saves the input under `findings/<target>/` and panics with its path.
pub fn run_checked(target: &Target, input: &[u8]) {
    // An abort (failed allocation, stack overflow) cannot be caught: with CLIP_FUZZ_SAVE_CURRENT set, each
    // input is written first, so the one that killed the process is left behind.
    if std::env::var_os("CLIP_FUZZ_SAVE_CURRENT").is_some() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("findings");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("current-{}", target.name)), input);
    }
    let outcome = std::panic::catch_unwind(|| (target.run)(input));
    if outcome.is_err() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("findings")
            .join(target.name);
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("crash-{:016x}", fnv1a(input)));
        let _ = std::fs::write(&path, input);
        panic!(
            "target {} panicked on an input of {} bytes, saved as {}",
            target.name,
            input.len(),
            path.display()
        );
    }
}

/// Caps this process's address space (Linux `RLIMIT_AS`), so that an unbounded allocation fails at the cap
/// instead of taking the machine's memory. Idempotent.
pub fn cap_memory(bytes: u64) {
    #[cfg(unix)]
    {
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit reads one rlimit struct we own; lowering a soft limit cannot harm the process.
        unsafe {
            libc::setrlimit(libc::RLIMIT_AS, &limit);
        }
    }
    #[cfg(not(unix))]
    let _ = bytes;
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
