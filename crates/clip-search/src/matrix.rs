//! The embeddings as one contiguous row-major matrix, for exact search: written beside the index as
//! `<db>.vectors` after each `clip index` run and memory-mapped by searches, so a query reads the rows from
//! the page cache instead of copying them out of SQLite. The file records the index generation it reflects;
//! a stale or damaged file is never used (the matrix is then read from the index itself).
//!
//! Layout (little-endian): 64-byte header (`CLIPVECS`, version u32, dim u32, count u64, generation u64, zero
//! padding), then `count` ids (i64, ascending), then `count x dim` f32 values.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, SearchError};
use crate::store::Store;
use crate::vectors::{dot, top_k};

const MAGIC: &[u8; 8] = b"CLIPVECS";
const VERSION: u32 = 1;
const HEADER: usize = 64;

pub fn vectors_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".vectors");
    PathBuf::from(name)
}

enum Backing {
    Mapped(memmap2::Mmap),
    Owned { ids: Vec<i64>, values: Vec<f32> },
}

/// Ids (ascending) and their L2-normalised embeddings.
pub struct VectorMatrix {
    backing: Backing,
    dim: usize,
    count: usize,
    generation: u64,
}

impl VectorMatrix {
    /// Reads every embedding of `store` into memory.
    pub fn from_store(store: &Store, dim: usize) -> Result<Self> {
        let mut ids = Vec::new();
        let mut values = Vec::new();
        let mut bad = None;
        store.for_each_embedding(|id, embedding| {
            if embedding.len() != dim {
                bad.get_or_insert(id);
                return;
            }
            ids.push(id);
            values.extend_from_slice(embedding);
        })?;
        if let Some(id) = bad {
            return Err(SearchError::NotAnIndex {
                path: store.path().to_path_buf(),
                reason: format!("image {id} has an embedding of another size than {dim}"),
            });
        }
        Ok(Self {
            count: ids.len(),
            backing: Backing::Owned { ids, values },
            dim,
            generation: store.generation()?,
        })
    }

    /// A matrix of `ids` (ascending) and their rows (`ids.len() x dim` values).
    pub fn from_rows(ids: Vec<i64>, values: Vec<f32>, dim: usize) -> Self {
        Self {
            count: ids.len(),
            backing: Backing::Owned { ids, values },
            dim,
            generation: 0,
        }
    }

    /// Maps `path`; an absent, stale (`generation` differs), damaged or other-sized file gives `Ok(None)`.
    pub fn open(path: &Path, dim: usize, generation: u64) -> Result<Option<Self>> {
        let Ok(file) = std::fs::File::open(path) else {
            return Ok(None);
        };
        // SAFETY: the file is only ever replaced by rename, never written in place, so the mapping's bytes do
        // not change under it.
        let Ok(map) = (unsafe { memmap2::Mmap::map(&file) }) else {
            return Ok(None);
        };
        let Some(matrix) = Self::from_map(map, dim) else {
            return Ok(None);
        };
        Ok((matrix.generation == generation).then_some(matrix))
    }

    fn from_map(map: memmap2::Mmap, dim: usize) -> Option<Self> {
        let header = map.get(..HEADER)?;
        let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().unwrap_or([0; 8]));
        if &header[..8] != MAGIC || u32_at(8) != VERSION || u32_at(12) as usize != dim {
            return None;
        }
        let count = usize::try_from(u64_at(16)).ok()?;
        let generation = u64_at(24);
        let expected = count
            .checked_mul(8)?
            .checked_add(count.checked_mul(dim)?.checked_mul(4)?)?
            .checked_add(HEADER)?;
        if map.len() != expected || !cfg!(target_endian = "little") {
            return None;
        }
        let matrix = Self {
            backing: Backing::Mapped(map),
            dim,
            count,
            generation,
        };
        // Ids must ascend for `row_of`'s binary search.
        matrix
            .ids()
            .windows(2)
            .all(|w| w[0] < w[1])
            .then_some(matrix)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn ids(&self) -> &[i64] {
        match &self.backing {
            Backing::Owned { ids, .. } => ids,
            Backing::Mapped(map) => cast_slice(&map[HEADER..HEADER + 8 * self.count]),
        }
    }

    fn values(&self) -> &[f32] {
        match &self.backing {
            Backing::Owned { values, .. } => values,
            Backing::Mapped(map) => {
                let start = HEADER + 8 * self.count;
                cast_slice(&map[start..start + 4 * self.count * self.dim])
            }
        }
    }

    pub fn row(&self, index: usize) -> &[f32] {
        &self.values()[index * self.dim..(index + 1) * self.dim]
    }

    /// The row holding `id`.
    pub fn row_of(&self, id: i64) -> Option<usize> {
        self.ids().binary_search(&id).ok()
    }

    /// Exact top-`k` by dot product over all rows, or only over `rows` when given: (id, score), best first.
    pub fn search(&self, query: &[f32], k: usize, rows: Option<&[usize]>) -> Vec<(i64, f32)> {
        const CHUNK: usize = 8192;
        let score = |r: usize| (r, dot(query, self.row(r)));
        // Each chunk keeps its own best k; the union holds the global best k.
        let partial = match rows {
            Some(rows) => {
                let chunks: Vec<&[usize]> = rows.chunks(CHUNK).collect();
                clip::threads::parallel_map(&chunks, |chunk| {
                    top_k(chunk.iter().map(|&r| score(r)), k)
                })
            }
            // All rows: ranges, not a list of every row index (8 MB per query at a million rows).
            None => {
                let starts: Vec<usize> = (0..self.count).step_by(CHUNK).collect();
                clip::threads::parallel_map(&starts, |&start| {
                    top_k((start..(start + CHUNK).min(self.count)).map(score), k)
                })
            }
        };
        let ids = self.ids();
        top_k(partial.into_iter().flatten(), k)
            .into_iter()
            .map(|(row, score)| (ids[row], score))
            .collect()
    }

    /// Writes the matrix to `path` atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = {
            let mut name = path.as_os_str().to_os_string();
            name.push(format!(".tmp{}", std::process::id()));
            PathBuf::from(name)
        };
        let write_error = |source| SearchError::Write {
            path: path.to_path_buf(),
            source,
        };
        let result = (|| -> std::io::Result<()> {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
            let mut header = [0u8; HEADER];
            header[..8].copy_from_slice(MAGIC);
            header[8..12].copy_from_slice(&VERSION.to_le_bytes());
            header[12..16].copy_from_slice(&(self.dim as u32).to_le_bytes());
            header[16..24].copy_from_slice(&(self.count as u64).to_le_bytes());
            header[24..32].copy_from_slice(&self.generation.to_le_bytes());
            out.write_all(&header)?;
            for id in self.ids() {
                out.write_all(&id.to_le_bytes())?;
            }
            for value in self.values() {
                out.write_all(&value.to_le_bytes())?;
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(write_error)
    }
}

/// Views bytes from the mapping as values; the mapping is page-aligned and every offset used is a multiple of
/// the value size, so nothing is left over.
fn cast_slice<T: Copy>(bytes: &[u8]) -> &[T] {
    // SAFETY: i64 and f32 have no invalid bit patterns; `align_to` only yields correctly aligned middle parts.
    let (head, values, tail) = unsafe { bytes.align_to::<T>() };
    debug_assert!(head.is_empty() && tail.is_empty());
    if head.is_empty() && tail.is_empty() {
        values
    } else {
        &[]
    }
}
