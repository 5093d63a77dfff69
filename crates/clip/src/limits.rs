//! Limits on sizes that come from flags, config files and headers, checked before anything is sized by them,
//! so that no input can make the process abort on a failed allocation or wake the kernel's OOM killer. Each
//! error names the value and the limit. File sizes are limited where files are read ([`clip_io::Input`]).

use crate::error::{ClipError, Result};

/// Largest crop / input image side in pixels (preprocessing sizes, `image_size` in configs).
pub use clip_preprocess::MAX_SIZE as MAX_IMAGE_SIZE;
/// Largest context length in tokens (`--context-length`, `max_position_embeddings`).
pub use clip_tokenizer::MAX_CONTEXT_LENGTH;

/// Largest batch `clip bench` measures (ViT-B/32 at 1024 images needs about 12 GB of activations).
pub const MAX_BATCH: usize = 1024;

/// Largest `n_images` of Stable Diffusion conditioning (rows per half of the batch).
pub const MAX_N_IMAGES: usize = 256;

/// Memory a single request may plan to use: the machine's physical memory, or less when the process runs
/// under an address-space or data limit (`ulimit -v`), or `CLIP_MEMORY_LIMIT` (bytes, or with K/M/G) when set.
pub fn memory_budget() -> u64 {
    if let Some(bytes) = std::env::var("CLIP_MEMORY_LIMIT")
        .ok()
        .and_then(|v| clip_io::parse_size(&v).ok())
    {
        return bytes;
    }
    let mut budget = physical_memory().unwrap_or(u64::MAX);
    for limit in address_space_limits() {
        budget = budget.min(limit);
    }
    budget
}

/// Refuses work whose planned memory (`bytes`, an estimate made before allocating) exceeds the budget.
pub fn check_memory(what: &str, bytes: u64) -> Result<()> {
    let budget = memory_budget();
    if bytes > budget {
        return Err(ClipError::InvalidInput(format!(
            "{what} needs about {} MiB of memory, more than the {} MiB available (set CLIP_MEMORY_LIMIT to \
             change the budget)",
            bytes / (1 << 20),
            budget / (1 << 20)
        )));
    }
    Ok(())
}

/// Refuses a count above its limit: "`what` N is larger than the limit of L".
pub fn check_count(what: &str, value: usize, limit: usize) -> Result<()> {
    if value > limit {
        return Err(ClipError::InvalidInput(format!(
            "{what} {value} is larger than the limit of {limit}"
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && page > 0).then(|| pages as u64 * page as u64)
}

#[cfg(not(unix))]
fn physical_memory() -> Option<u64> {
    None
}

#[cfg(unix)]
fn address_space_limits() -> Vec<u64> {
    let mut out = Vec::new();
    for resource in [libc::RLIMIT_AS, libc::RLIMIT_DATA] {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct we own.
        if unsafe { libc::getrlimit(resource, &mut limit) } == 0
            && limit.rlim_cur != libc::RLIM_INFINITY
        {
            out.push(limit.rlim_cur);
        }
    }
    out
}

#[cfg(not(unix))]
fn address_space_limits() -> Vec<u64> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_memory_over_the_limit_are_named() {
        assert!(check_count("batch size", 1024, MAX_BATCH).is_ok());
        let err = check_count("batch size", 100_000, MAX_BATCH)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "batch size 100000 is larger than the limit of 1024");
        let err = check_memory("a test", u64::MAX).unwrap_err().to_string();
        assert!(err.starts_with("a test needs about "), "{err}");
        assert!(memory_budget() > 1 << 20);
    }
}
