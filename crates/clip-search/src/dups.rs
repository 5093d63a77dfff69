//! `clip dups`: groups of near-duplicate images, the connected components of the graph whose edges join
//! images with cosine similarity at least the threshold. Below the ANN threshold every pair is compared
//! (exact); above it, each image's neighbours come from the HNSW graph (approximate: a pair the graph misses
//! is not joined directly, though it usually still lands in the same group through others).

use crate::search::Searcher;
use crate::store::ImageRecord;
use crate::vectors::dot;

/// Neighbours asked of the graph per image when the index is large.
const GRAPH_NEIGHBOURS: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct DupGroup {
    /// Members, ordered by path.
    pub images: Vec<(i64, ImageRecord)>,
    /// The lowest similarity among the edges that joined the group.
    pub min_score: f32,
}

struct DisjointSets {
    parent: Vec<usize>,
}

impl DisjointSets {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// Groups of at least two images, largest first (ties: by first path).
pub fn find_duplicates(searcher: &Searcher, threshold: f32) -> crate::error::Result<Vec<DupGroup>> {
    let matrix = searcher.matrix();
    let n = matrix.len();
    let rows: Vec<usize> = (0..n).collect();
    let edges: Vec<Vec<(usize, f32)>> = match searcher.graph() {
        Some(graph) => clip::threads::parallel_map(&rows, |&i| {
            graph
                .search(matrix.row(i), GRAPH_NEIGHBOURS, GRAPH_NEIGHBOURS * 2)
                .into_iter()
                .filter_map(|(id, _)| matrix.row_of(id as i64))
                .filter(|&j| j > i)
                .map(|j| (j, dot(matrix.row(i), matrix.row(j))))
                .filter(|&(_, s)| s >= threshold)
                .collect()
        }),
        None => clip::threads::parallel_map(&rows, |&i| {
            ((i + 1)..n)
                .map(|j| (j, dot(matrix.row(i), matrix.row(j))))
                .filter(|&(_, s)| s >= threshold)
                .collect()
        }),
    };
    let mut sets = DisjointSets::new(n);
    for (i, list) in edges.iter().enumerate() {
        for &(j, _) in list {
            sets.union(i, j);
        }
    }
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let root = sets.find(i);
        members.entry(root).or_default().push(i);
    }
    let mut min_score: std::collections::HashMap<usize, f32> = Default::default();
    for (i, list) in edges.iter().enumerate() {
        for &(_, s) in list {
            let root = sets.find(i);
            let entry = min_score.entry(root).or_insert(f32::INFINITY);
            *entry = entry.min(s);
        }
    }
    let mut groups = Vec::new();
    for (root, rows) in members {
        if rows.len() < 2 {
            continue;
        }
        let ids: Vec<i64> = rows.iter().map(|&r| matrix.ids()[r]).collect();
        let mut images = searcher.store().records(&ids)?;
        images.sort_by(|a, b| a.1.path.cmp(&b.1.path));
        groups.push(DupGroup {
            images,
            min_score: min_score.get(&root).copied().unwrap_or(1.0),
        });
    }
    groups.sort_by(|a, b| {
        b.images
            .len()
            .cmp(&a.images.len())
            .then_with(|| a.images[0].1.path.cmp(&b.images[0].1.path))
    });
    Ok(groups)
}
