//! `clip search`: rank the images of an index by cosine similarity to a query vector. Exact search (every
//! stored embedding, through the memory-mapped matrix) is the default; an index of at least the ANN
//! threshold uses its HNSW graph instead, unless filters apply or exact search is asked for. Filters
//! (`under`, `after`, `before`) select candidates first, and the ranking is exact over them.

use std::path::{Path, PathBuf};

use crate::ann::{open_current, AnnOptions};
use crate::error::{Result, SearchError};
use crate::hnsw::Hnsw;
use crate::identity::{check_same_model, model_identity};
use crate::matrix::{vectors_path, VectorMatrix};
use crate::query::{Query, TermKind};
use crate::store::{Filter, ImageRecord, Store, StoredModel};
use crate::vectors::{dot, normalize};

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub top_k: usize,
    /// Results scoring below this are left out.
    pub min_score: Option<f32>,
    pub filter: Filter,
    /// Rank every image exactly even where the graph would be used.
    pub exact: bool,
    pub ef_search: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            top_k: 10,
            min_score: None,
            filter: Filter::default(),
            exact: false,
            ef_search: AnnOptions::default().ef_search,
        }
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: i64,
    pub score: f32,
    pub record: ImageRecord,
}

/// How a search was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Exact,
    Approximate,
}

/// An index opened for searching: the store, its matrix, and its graph when current.
pub struct Searcher {
    store: Store,
    model: StoredModel,
    matrix: VectorMatrix,
    graph: Option<Hnsw>,
    ann_threshold: usize,
}

impl Searcher {
    /// Opens the index at `db` read-only. A stale or missing matrix is read from the index itself, and a stale
    /// graph is not used (both are brought up to date by the next `clip index`).
    pub fn open(db: &Path) -> Result<Self> {
        Self::open_with(db, crate::ann::DEFAULT_THRESHOLD)
    }

    pub fn open_with(db: &Path, ann_threshold: usize) -> Result<Self> {
        let store = Store::open_read_only(db)?;
        let model = store.model()?.ok_or_else(|| SearchError::NotAnIndex {
            path: db.to_path_buf(),
            reason: "no `clip index` run has stored a model in it yet".into(),
        })?;
        let generation = store.generation()?;
        let matrix = match VectorMatrix::open(&vectors_path(db), model.dim, generation)? {
            Some(matrix) => matrix,
            None => VectorMatrix::from_store(&store, model.dim)?,
        };
        let graph = if matrix.len() >= ann_threshold {
            open_current(db, model.dim, generation)
        } else {
            None
        };
        Ok(Self {
            store,
            model,
            matrix,
            graph,
            ann_threshold,
        })
    }

    /// The model the index was built with.
    pub fn model(&self) -> &StoredModel {
        &self.model
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn matrix(&self) -> &VectorMatrix {
        &self.matrix
    }

    pub fn graph(&self) -> Option<&Hnsw> {
        self.graph.as_ref()
    }

    pub fn len(&self) -> usize {
        self.matrix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.matrix.is_empty()
    }

    /// Refuses `clip` unless it is the model the index was built with.
    pub fn check_model(&self, clip: &clip::Clip, spec: &str, dtype: clip::Precision) -> Result<()> {
        let given = model_identity(clip, spec, dtype, &self.store, false)?;
        check_same_model(&self.store, &self.model, &given)
    }

    /// The query's vector: the weighted sum of its terms' normalised embeddings, normalised. An image term
    /// that is in the index (same size and modification time) uses its stored embedding.
    pub fn query_vector(&self, clip: &clip::Clip, query: &Query) -> Result<Vec<f32>> {
        let mut sum = vec![0f32; self.model.dim];
        for term in &query.terms {
            let mut embedding = match &term.kind {
                TermKind::Text(text) => clip
                    .encode_texts(&[text.as_str()], false)?
                    .pop()
                    .unwrap_or_default(),
                TermKind::Image(path) => self.image_embedding(clip, path)?,
            };
            if embedding.len() != sum.len() || !normalize(&mut embedding) {
                return Err(SearchError::Query(format!(
                    "the model gave no usable embedding for {:?}",
                    term.kind
                )));
            }
            for (s, e) in sum.iter_mut().zip(&embedding) {
                *s += term.weight * e;
            }
        }
        if !normalize(&mut sum) {
            return Err(SearchError::Query(
                "the terms cancel out: the query vector is zero".into(),
            ));
        }
        Ok(sum)
    }

    fn image_embedding(&self, clip: &clip::Clip, path: &Path) -> Result<Vec<f32>> {
        if let Ok(absolute) = std::fs::canonicalize(path) {
            if let Some(id) = self.store.id_of(&absolute)? {
                if let Some((_, record)) = self.store.records(&[id])?.pop() {
                    let unchanged = crate::identity::file_stat(&absolute)
                        .is_ok_and(|(size, mtime)| size == record.size && mtime == record.mtime_ns);
                    if unchanged {
                        return Ok(record.embedding);
                    }
                }
            }
        }
        let mut results = clip.encode_image_files(&[PathBuf::from(path)], |_| {});
        Ok(results
            .pop()
            .unwrap_or_else(|| Err(clip::ClipError::InvalidInput("no embedding".into())))?)
    }

    /// Which method a search with `options` uses.
    pub fn method(&self, options: &SearchOptions) -> Method {
        if !options.exact && options.filter.is_empty() && self.graph.is_some() {
            Method::Approximate
        } else {
            Method::Exact
        }
    }

    /// The best `options.top_k` images for `vector` (unit length), best first.
    pub fn search(&self, vector: &[f32], options: &SearchOptions) -> Result<Vec<Hit>> {
        if vector.len() != self.model.dim {
            return Err(SearchError::Query(format!(
                "the query vector has {} values, the index holds {}",
                vector.len(),
                self.model.dim
            )));
        }
        let ranked: Vec<(i64, f32)> = match (self.method(options), &self.graph) {
            (Method::Approximate, Some(graph)) => graph
                .search(vector, options.top_k, options.ef_search.max(options.top_k))
                .into_iter()
                .map(|(id, _)| id as i64)
                .filter_map(|id| {
                    // Scores are recomputed from the matrix, so both methods report the same numbers.
                    self.matrix
                        .row_of(id)
                        .map(|row| (id, dot(vector, self.matrix.row(row))))
                })
                .collect(),
            _ => {
                let rows: Option<Vec<usize>> = if options.filter.is_empty() {
                    None
                } else {
                    Some(
                        self.store
                            .ids_matching(&options.filter)?
                            .into_iter()
                            .filter_map(|id| self.matrix.row_of(id))
                            .collect(),
                    )
                };
                self.matrix.search(vector, options.top_k, rows.as_deref())
            }
        };
        let mut ranked = ranked;
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(min) = options.min_score {
            ranked.retain(|(_, score)| *score >= min);
        }
        let ids: Vec<i64> = ranked.iter().map(|(id, _)| *id).collect();
        let records = self.store.records(&ids)?;
        Ok(records
            .into_iter()
            .zip(ranked)
            .map(|((id, record), (_, score))| Hit { id, score, record })
            .collect())
    }

    pub fn ann_threshold(&self) -> usize {
        self.ann_threshold
    }
}
