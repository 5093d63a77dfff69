//! `clip index`: bring an index up to date with folders of photos. Unchanged files (same size and
//! modification time) are not read; new and changed files are read once, hashed, and embedded unless a file
//! with the same content is already indexed (a rename or copy reuses its embedding); files no longer found
//! under the folders walked are removed. Work is committed in batches, so a killed run loses at most one
//! batch and the next run continues from there. Afterwards the derived files (vector matrix, HNSW graph) are
//! brought up to date.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::ann::{self, AnnOptions};
use crate::error::Result;
use crate::facts::{content_hash, exif_facts, utc_date};
use crate::identity::{check_same_model, model_identity};
use crate::lock::WriterLock;
use crate::matrix::{vectors_path, VectorMatrix};
use crate::store::{ContentHash, ImageRecord, Store};
use crate::walk::{absolute_root, walk, FoundFile};

/// Files embedded per committed transaction: what a kill can lose, and the cost of one commit spread thin.
pub const COMMIT_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// The model's `--model` text, stored so that searches can load it again.
    pub model_spec: String,
    pub dtype: clip::Precision,
    /// Wait for another run on the same index to finish instead of failing at once.
    pub wait: bool,
    pub ann: AnnOptions,
    /// Files per committed transaction (default [`COMMIT_BATCH`]).
    pub commit_batch: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            model_spec: String::new(),
            dtype: clip::Precision::F32,
            wait: false,
            ann: AnnOptions::default(),
            commit_batch: COMMIT_BATCH,
        }
    }
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct IndexProgress {
    /// Files to read (new or changed) and how many are done.
    pub total: usize,
    pub done: usize,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Failure {
    pub path: String,
    pub error: String,
}

impl Failure {
    /// The error, prefixed with the path unless the message already names it.
    pub fn error_line(&self) -> String {
        if self.error.contains(&self.path) {
            self.error.clone()
        } else {
            format!("{}: {}", self.path, self.error)
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IndexSummary {
    /// New paths (including those whose embedding was reused from identical content).
    pub added: usize,
    /// Paths whose file changed and was embedded again.
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
    /// Of `added` and `updated`: files whose embedding was taken from an indexed file with the same content.
    pub reused: usize,
    pub failed: Vec<Failure>,
    /// Images in the index after the run.
    pub total: usize,
    /// Whether the approximate-neighbour graph is in use (the index is at least `ann.threshold` images).
    pub ann: bool,
}

/// What preparing one file learnt; `prepare` runs on the decode threads and records it here.
struct Prepared {
    hash: ContentHash,
    width: u32,
    height: u32,
    taken: Option<String>,
    camera: Option<String>,
}

/// Indexes `roots` into the index at `db` with `clip` (loaded from `options.model_spec`).
pub fn index(
    clip: &clip::Clip,
    db: &Path,
    roots: &[PathBuf],
    options: &IndexOptions,
    mut on_progress: impl FnMut(IndexProgress),
) -> Result<IndexSummary> {
    let roots: Vec<PathBuf> = roots
        .iter()
        .map(|r| absolute_root(r))
        .collect::<Result<_>>()?;
    let _lock = WriterLock::acquire(db, options.wait)?;
    let mut store = Store::open_or_create(db)?;
    let given = model_identity(clip, &options.model_spec, options.dtype, &store, true)?;
    match store.model()? {
        Some(stored) => check_same_model(&store, &stored, &given)?,
        None => store.set_model(&given)?,
    }
    let dim = given.dim;

    let found = walk(&roots);
    let mut summary = IndexSummary {
        failed: found
            .failed
            .iter()
            .map(|(p, e)| Failure {
                path: p.display().to_string(),
                error: e.clone(),
            })
            .collect(),
        ..Default::default()
    };
    let states = store.file_states()?;
    let mut todo: Vec<&FoundFile> = Vec::new();
    let mut seen: HashSet<&Path> = HashSet::new();
    for file in &found.files {
        seen.insert(&file.path);
        match states.get(&file.path) {
            Some(s) if s.size == file.size && s.mtime_ns == file.mtime_ns => summary.unchanged += 1,
            _ => todo.push(file),
        }
    }

    let mut known = store.hashes()?;
    let mut done = 0;
    on_progress(IndexProgress {
        total: todo.len(),
        done,
    });
    for batch in todo.chunks(options.commit_batch.max(1)) {
        let mut records = Vec::with_capacity(batch.len());
        let mut stale = Vec::new();
        let prepared: Vec<Mutex<Option<Prepared>>> =
            batch.iter().map(|_| Mutex::new(None)).collect();
        let slots: Vec<usize> = (0..batch.len()).collect();
        let results = clip.encode_images_with(
            &slots,
            |&i| prepare(clip, batch[i], &known, &prepared[i]),
            |n| {
                on_progress(IndexProgress {
                    total: todo.len(),
                    done: done + n,
                })
            },
        );
        done += batch.len();
        for ((file, result), prepared) in batch.iter().zip(results).zip(prepared) {
            let existed = states.contains_key(&file.path);
            let facts = prepared.into_inner().ok().flatten();
            let (mut width, mut height) = facts.as_ref().map_or((0, 0), |f| (f.width, f.height));
            let embedding = match (result, &facts) {
                (Ok(Some(mut embedding)), Some(_)) => {
                    if !crate::vectors::normalize(&mut embedding) {
                        Err("the model's embedding of this image is zero or not finite".to_string())
                    } else {
                        Ok(embedding)
                    }
                }
                (Ok(None), Some(facts)) => match store.twin_of(&facts.hash)? {
                    Some(twin) => {
                        summary.reused += 1;
                        (width, height) = (twin.width, twin.height);
                        Ok(twin.embedding)
                    }
                    None => Err("its content was indexed a moment ago but is gone".to_string()),
                },
                (Ok(_), None) => Err("it was not read".to_string()),
                (Err(e), _) => Err(e.to_string()),
            };
            let (Ok(embedding), Some(facts)) = (embedding.clone(), facts) else {
                let error = embedding.err().unwrap_or_default();
                summary.failed.push(Failure {
                    path: file.path.display().to_string(),
                    error,
                });
                // A changed file that no longer reads must not keep the embedding of its old content.
                if existed {
                    stale.push(file.path.clone());
                    summary.removed += 1;
                }
                continue;
            };
            if existed {
                summary.updated += 1;
            } else {
                summary.added += 1;
            }
            known.insert(facts.hash);
            records.push(ImageRecord {
                path: file.path.clone(),
                size: file.size,
                mtime_ns: file.mtime_ns,
                hash: facts.hash,
                width,
                height,
                date: facts
                    .taken
                    .clone()
                    .unwrap_or_else(|| utc_date(file.mtime_ns)),
                taken: facts.taken,
                camera: facts.camera,
                embedding,
            });
        }
        store.commit(&records, &stale)?;
    }

    let gone: Vec<PathBuf> = states
        .keys()
        .filter(|p| roots.iter().any(|r| p.starts_with(r)) && !seen.contains(p.as_path()))
        .cloned()
        .collect();
    summary.removed += gone.len();
    store.commit(&[], &gone)?;

    let matrix = refresh_vectors(&store, db, dim)?;
    summary.total = matrix.len();
    summary.ann = ann::refresh(db, &matrix, &options.ann)?;
    Ok(summary)
}

/// Reads, hashes and decodes one file; `None` when its content is already indexed (no need to embed it).
fn prepare(
    clip: &clip::Clip,
    file: &FoundFile,
    known: &HashSet<ContentHash>,
    out: &Mutex<Option<Prepared>>,
) -> clip::Result<Option<Vec<f32>>> {
    let bytes = clip::io::read_input(&file.path, clip::io::Input::Image)?;
    let hash = content_hash(&bytes);
    let exif = exif_facts(&bytes);
    let (pixels, width, height) = if known.contains(&hash) {
        (None, 0, 0)
    } else {
        let image = clip::preprocess::decode_named(&bytes, &file.path)?;
        let (w, h) = (image.width(), image.height());
        let pixels = clip::preprocess::preprocess_image(&image, clip.preprocess_config())?;
        (Some(pixels), w, h)
    };
    if let Ok(mut slot) = out.lock() {
        *slot = Some(Prepared {
            hash,
            width,
            height,
            taken: exif.taken,
            camera: exif.camera,
        });
    }
    Ok(pixels)
}

/// Rewrites `<db>.vectors` when it does not reflect the index's generation; returns the current matrix.
pub fn refresh_vectors(store: &Store, db: &Path, dim: usize) -> Result<VectorMatrix> {
    let path = vectors_path(db);
    let generation = store.generation()?;
    if let Some(matrix) = VectorMatrix::open(&path, dim, generation)? {
        return Ok(matrix);
    }
    let matrix = VectorMatrix::from_store(store, dim)?;
    matrix.save(&path)?;
    Ok(matrix)
}
