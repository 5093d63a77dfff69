//! The search benchmark behind `clip bench --search-vectors`: on given vectors and queries, the time to build
//! the HNSW graph, and per-query latency (one query at a time, as a search tool serves them) of exact search
//! and of the graph, with the graph's recall@k against exact search.

use std::time::Instant;

use serde::Serialize;

use crate::hnsw::{Hnsw, HnswParams};
use crate::matrix::VectorMatrix;
use crate::vectors::normalize;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AnnLatency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// Mean over queries of |ANN top-k ∩ exact top-k| / k.
    pub recall_at_k: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchBenchReport {
    pub vectors: usize,
    pub dim: usize,
    pub queries: usize,
    pub top_k: usize,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    /// Threads the graph was built and exact search ran on (a graph query runs on one).
    pub threads: usize,
    /// The SIMD level of the dot products.
    pub dot: &'static str,
    pub build_seconds: f64,
    pub exact: Latency,
    pub ann: AnnLatency,
    /// The graph at each further beam width asked for (same graph, same queries).
    pub ann_sweep: Vec<SweepPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub ef_search: usize,
    #[serde(flatten)]
    pub latency: AnnLatency,
}

#[derive(Debug, Clone)]
pub struct SearchBenchOptions {
    pub top_k: usize,
    pub params: HnswParams,
    pub ef_search: usize,
    /// Further beam widths to measure on the same graph.
    pub sweep: Vec<usize>,
}

fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Latency {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        mean_ms: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
    }
}

/// Runs the benchmark on `vectors` (`n x dim`, row-major) and `queries` (`q x dim`); rows are normalised
/// first. Returns the report and the graph's result rows for each query (row indices into `vectors`).
pub fn bench_search(
    mut vectors: Vec<f32>,
    mut queries: Vec<f32>,
    dim: usize,
    options: &SearchBenchOptions,
) -> crate::error::Result<(SearchBenchReport, Vec<Vec<u64>>)> {
    for row in vectors.chunks_mut(dim).chain(queries.chunks_mut(dim)) {
        normalize(row);
    }
    let n = vectors.len() / dim;
    let matrix = VectorMatrix::from_rows((0..n as i64).collect(), vectors, dim);
    let start = Instant::now();
    let mut graph = Hnsw::new(dim, options.params);
    let items: Vec<(u64, &[f32])> = (0..n).map(|row| (row as u64, matrix.row(row))).collect();
    graph.insert_batch(&items, clip::threads::count())?;
    let build_seconds = start.elapsed().as_secs_f64();

    let k = options.top_k;
    let mut exact_ms = Vec::new();
    let mut truths = Vec::new();
    for query in queries.chunks(dim) {
        let start = Instant::now();
        let exact = matrix.search(query, k, None);
        exact_ms.push(start.elapsed().as_secs_f64() * 1e3);
        truths.push(
            exact
                .iter()
                .map(|(id, _)| *id as u64)
                .collect::<std::collections::HashSet<u64>>(),
        );
    }
    let run_graph = |ef: usize| {
        let mut ms = Vec::new();
        let mut hits = 0usize;
        let mut rows = Vec::new();
        for (query, truth) in queries.chunks(dim).zip(&truths) {
            let start = Instant::now();
            let approximate = graph.search(query, k, ef.max(k));
            ms.push(start.elapsed().as_secs_f64() * 1e3);
            hits += approximate
                .iter()
                .filter(|(id, _)| truth.contains(id))
                .count();
            rows.push(
                approximate
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect::<Vec<u64>>(),
            );
        }
        let l = latency(ms);
        let point = AnnLatency {
            p50_ms: l.p50_ms,
            p99_ms: l.p99_ms,
            mean_ms: l.mean_ms,
            recall_at_k: hits as f64 / (truths.len() * k).max(1) as f64,
        };
        (point, rows)
    };
    let (ann, ann_rows) = run_graph(options.ef_search);
    let ann_sweep = options
        .sweep
        .iter()
        .map(|&ef| SweepPoint {
            ef_search: ef,
            latency: run_graph(ef).0,
        })
        .collect();
    let q = queries.len() / dim;
    let report = SearchBenchReport {
        vectors: n,
        dim,
        queries: q,
        top_k: k,
        m: options.params.m,
        ef_construction: options.params.ef_construction,
        ef_search: options.ef_search,
        threads: clip::threads::count(),
        dot: crate::vectors::dot_level(),
        build_seconds,
        exact: latency(exact_ms),
        ann,
        ann_sweep,
    };
    Ok((report, ann_rows))
}
