//! Semantic photo search over CLIP embeddings: `clip index`, `clip search` and `clip dups` as a library.
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! let clip = clip::Clip::load("ViT-B/32", &clip::LoadOptions::default())?;
//! let options = clip_search::IndexOptions { model_spec: "ViT-B/32".into(), ..Default::default() };
//! let summary = clip_search::index(&clip, Path::new("photos.db"), &[PathBuf::from("Pictures")], &options, |_| {})?;
//! let searcher = clip_search::Searcher::open(Path::new("photos.db"))?;
//! let query = clip_search::Query::parse(&["a dog on a beach"], &[])?;
//! let hits = searcher.search(&searcher.query_vector(&clip, &query)?, &Default::default())?;
//! # Ok::<(), clip_search::SearchError>(())
//! ```
//!
//! # Layers
//!
//! Modules use only modules declared before them (`tests/layers.rs` checks it):
//!
//! 0. `vectors`, `hnsw` — arithmetic: dot products, top-k, the approximate-neighbour graph (own errors)
//! 1. `error` — the crate's error type
//! 2. `store` (the SQLite index), `facts` (hash, EXIF), `identity` (which model), `walk`, `lock`
//! 3. derived files: `matrix` (exact), `ann` (graph beside the index)
//! 4. capabilities: `index`, `query`, `search`, `dups`, `bench`

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::missing_safety_doc)]
// Layer 0
pub mod vectors;
pub mod hnsw;
// Layer 1
mod error;
// Layer 2
mod store;
mod facts;
mod identity;
mod walk;
mod lock;
// Layer 3
mod matrix;
mod ann;
// Layer 4
mod index;
mod query;
mod search;
mod dups;
pub mod bench;

pub use ann::{hnsw_path, AnnOptions, DEFAULT_EF_SEARCH, DEFAULT_THRESHOLD};
pub use dups::{find_duplicates, DupGroup};
pub use error::{Result, SearchError};
pub use facts::parse_date_bound;
pub use index::{index, Failure, IndexOptions, IndexProgress, IndexSummary, COMMIT_BATCH};
pub use lock::lock_path;
pub use matrix::{vectors_path, VectorMatrix};
pub use query::{Query, Term, TermKind};
pub use search::{Hit, Method, SearchOptions, Searcher};
pub use store::{Filter, ImageRecord, Store, StoredModel};
pub use walk::IMAGE_EXTENSIONS;
