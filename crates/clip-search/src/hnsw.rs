//! An approximate nearest-neighbour index: a hierarchical navigable small-world graph (HNSW) after Malkov &
//! Yashunin, "Efficient and robust approximate nearest neighbor search using Hierarchical Navigable Small World
//! graphs" (arXiv:1603.09320, 2016; IEEE TPAMI 2018). Insertion follows Algorithm 1, the layer search
//! Algorithm 2, and neighbours are chosen with the heuristic of Algorithm 4, both when a node is connected and
//! when an overfull neighbour list is pruned.
//!
//! Vectors are L2-normalised f32 embeddings and similarity is their dot product (the cosine), so "closer" means
//! "larger dot product" throughout. The index is a derived cache beside the SQLite store: ids can be inserted
//! after a load, removed ids are tombstoned (they still route searches but are never returned) until they
//! outnumber the live ones and the graph is rebuilt, and [`Hnsw::save`] replaces the file atomically.
//!
//! # File format (little-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `CLIPHNSW` |
//! | 4 | version (1) |
//! | 4 + 4 + 4 | dim, m, ef_construction |
//! | 8 | stamp |
//! | 8 | node count `n` |
//! | 4 | entry point slot (`u32::MAX` when empty) |
//! | 4 | max level |
//! | 8·n | ids |
//! | n | tombstones (0 or 1) |
//! | n | levels |
//! | 4·n·dim | vectors |
//! | … | per node, per layer 0..=level: neighbour count (u32), then that many u32 slots |

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};

use crate::vectors::dot;

const MAGIC: &[u8; 8] = b"CLIPHNSW";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 48;
/// Levels are drawn from an exponential distribution; the cap only matters for pathological draws with a small
/// `m`, and bounds what a forged file can ask for.
const MAX_LEVEL: u8 = 16;
/// Slots are u32 (half the memory of usize in the neighbour lists); the largest value marks "no entry point".
const NO_ENTRY: u32 = u32::MAX;
/// [`Hnsw::insert_batch`] inserts one at a time until the graph has this many nodes: a round searches the graph
/// as it stood before the round, so there must be a graph worth searching.
const BATCH_SEQUENTIAL: usize = 256;
/// A round is at most this fraction of the graph (1/8), so most of a new node's candidates come from a real
/// search…
const ROUND_FRACTION: usize = 8;
/// …and at most this many nodes: each new node also scores the earlier nodes of its round exactly (128 dot
/// products on average, a few per cent of a search), and a round is split into claims of [`CLAIM`] nodes, so
/// 16 workers still get 4 claims each. Independent of the thread count, so that every count above 1 builds the
/// same graph.
const MAX_ROUND: usize = 256;
/// Nodes a worker claims at a time: small enough to balance the load, large enough to keep the shared counter
/// cold.
const CLAIM: usize = 4;

/// Construction parameters: `m` neighbours per node on the upper layers (`2·m` on layer 0) and the beam width
/// used while inserting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 100,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HnswError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid HNSW index: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("vector for id {id} has {got} values, the index holds {dim}")]
    Dimension { id: u64, got: usize, dim: usize },
    #[error("vector for id {id} has a value that is not finite")]
    NotFinite { id: u64 },
    #[error("the index is full ({nodes} nodes, tombstones included)")]
    Full { nodes: usize },
}

/// A node seen from a query: ordered by similarity, ties broken towards the lower slot so that every heap and
/// sort is deterministic.
#[derive(Debug, Clone, Copy)]
struct Scored {
    sim: f32,
    slot: u32,
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sim
            .total_cmp(&other.sim)
            .then_with(|| other.slot.cmp(&self.slot))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

/// The visited set of one layer search: a mark per slot, cleared by bumping the epoch rather than by rewriting
/// the array, so that an insertion into a large graph does not pay for the whole graph.
#[derive(Debug, Clone, Default)]
struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn with_len(n: usize) -> Self {
        Visited {
            marks: vec![0; n],
            epoch: 1,
        }
    }

    fn reset(&mut self, n: usize) {
        if self.epoch == u32::MAX {
            self.marks.clear();
            self.epoch = 0;
        }
        self.epoch += 1;
        self.marks.resize(n, 0);
    }

    /// Marks `slot`; whether it was unmarked.
    fn first_visit(&mut self, slot: u32) -> bool {
        let mark = &mut self.marks[slot as usize];
        if *mark == self.epoch {
            false
        } else {
            *mark = self.epoch;
            true
        }
    }
}

/// The HNSW graph. Nodes live in slots `0..n`; a removed id keeps its slot (a tombstone) until the rebuild.
#[derive(Clone)]
pub struct Hnsw {
    dim: usize,
    params: HnswParams,
    stamp: u64,
    /// Per slot; a tombstoned id may reappear in a later slot when it is inserted again.
    ids: Vec<u64>,
    /// Slot `i` at `[i * dim..(i + 1) * dim]`.
    vectors: Vec<f32>,
    removed: Vec<bool>,
    removed_count: usize,
    levels: Vec<u8>,
    /// Layer-0 neighbours of each slot (up to `2·m`).
    layer0: Vec<Vec<u32>>,
    /// `upper[slot][layer - 1]`: the neighbours on layers `1..=level` (up to `m`).
    upper: Vec<Vec<Vec<u32>>>,
    /// Live id → slot.
    live: HashMap<u64, u32>,
    entry: Option<u32>,
    max_level: u8,
    /// Reused by insertions (which hold `&mut self`); searches allocate their own so that they can share `&self`.
    scratch: Visited,
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("dim", &self.dim)
            .field("params", &self.params)
            .field("stamp", &self.stamp)
            .field("live", &self.live.len())
            .field("tombstones", &self.removed_count)
            .field("max_level", &self.max_level)
            .finish_non_exhaustive()
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hnsw {
    /// An empty index of `dim`-dimensional vectors. `m` is raised to at least 2 (the level distribution divides
    /// by ln m) and `ef_construction` to at least 1.
    pub fn new(dim: usize, params: HnswParams) -> Self {
        Hnsw {
            dim,
            params: HnswParams {
                m: params.m.max(2),
                ef_construction: params.ef_construction.max(1),
            },
            stamp: 0,
            ids: Vec::new(),
            vectors: Vec::new(),
            removed: Vec::new(),
            removed_count: 0,
            levels: Vec::new(),
            layer0: Vec::new(),
            upper: Vec::new(),
            live: HashMap::new(),
            entry: None,
            max_level: 0,
            scratch: Visited::default(),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Live (not removed) ids.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Whether `id` is live.
    pub fn contains(&self, id: u64) -> bool {
        self.live.contains_key(&id)
    }

    /// The live ids, in slot order.
    pub fn ids(&self) -> Vec<u64> {
        self.ids
            .iter()
            .zip(&self.removed)
            .filter(|(_, removed)| !**removed)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A caller-defined stamp saved with the index (the database's generation it reflects).
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    pub fn set_stamp(&mut self, stamp: u64) {
        self.stamp = stamp;
    }

    /// Inserts (or replaces: remove + insert) `id`. The vector should be L2-normalised; it must have `dim`
    /// finite values. Deterministic: a node's level is drawn from splitmix64 of its id and slot, so the same
    /// sequence of calls gives the same graph.
    pub fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), HnswError> {
        self.check(id, vector)?;
        // Checked before the removal so that a refused replacement keeps the old vector.
        if self.ids.len() >= NO_ENTRY as usize {
            return Err(HnswError::Full {
                nodes: self.ids.len(),
            });
        }
        self.remove(id);
        self.add_node(id, vector);
        Ok(())
    }

    /// Inserts many (id, vector) pairs using `threads` threads (1 = the same as calling insert in order).
    ///
    /// Every item is checked first (dimension, finite values, room in the index): an invalid one is an error
    /// before anything is inserted. When an id appears more than once in `items` the last one wins, in the
    /// place of its last occurrence; an id that is already live is replaced, as [`Hnsw::insert`] does.
    ///
    /// With `threads` ≤ 1 (0 counts as 1) the graph is exactly the one that calling [`Hnsw::insert`] for each
    /// (deduplicated) item in order builds. With more, nodes are added in rounds: every node of a round
    /// searches the graph as it stood before the round, in parallel, and also considers the earlier nodes of
    /// its round by exact similarity; then its links are set, and the reverse links added and pruned, per
    /// target list in parallel. Round sizes depend only on the graph's size, never on `threads`, so every
    /// thread count above 1 builds the same graph, byte for byte, from the same index and items (and more
    /// than 64 threads are never used: a round has 256 nodes at most, claimed 4 at a time). When the
    /// replacements would leave tombstones outnumbering live nodes, the whole graph is rebuilt this way, from
    /// the live nodes and the batch together.
    pub fn insert_batch(
        &mut self,
        items: &[(u64, &[f32])],
        threads: usize,
    ) -> Result<(), HnswError> {
        for &(id, vector) in items {
            self.check(id, vector)?;
        }
        let mut last: HashMap<u64, usize> = HashMap::with_capacity(items.len());
        for (i, &(id, _)) in items.iter().enumerate() {
            last.insert(id, i);
        }
        let unique: Vec<(u64, &[f32])> = items
            .iter()
            .enumerate()
            .filter(|&(i, (id, _))| last[id] == i)
            .map(|(_, &item)| item)
            .collect();
        if self.ids.len().saturating_add(unique.len()) > NO_ENTRY as usize {
            return Err(HnswError::Full {
                nodes: self.ids.len(),
            });
        }
        if threads <= 1 {
            for &(id, vector) in &unique {
                self.insert(id, vector)?;
            }
            return Ok(());
        }
        for &(id, _) in &unique {
            self.tombstone(id);
        }
        if self.removed_count * 2 > self.ids.len() {
            // One parallel build of everything rather than a sequential rebuild now and appends after it.
            let mut all: Vec<(u64, &[f32])> = Vec::with_capacity(self.live.len() + unique.len());
            for slot in 0..self.ids.len() {
                if !self.removed[slot] {
                    all.push((self.ids[slot], self.vector(slot as u32)));
                }
            }
            all.extend_from_slice(&unique);
            let mut fresh = Hnsw::new(self.dim, self.params);
            fresh.stamp = self.stamp;
            fresh.append(&all, threads);
            *self = fresh;
        } else {
            self.append(&unique, threads);
        }
        Ok(())
    }

    /// Tombstones `id`; whether it was live. Removed nodes still route searches but are never returned. When
    /// tombstones outnumber live nodes the graph is rebuilt from the live ones, so they cannot degrade searches
    /// (or hold memory) for ever.
    pub fn remove(&mut self, id: u64) -> bool {
        if !self.tombstone(id) {
            return false;
        }
        if self.removed_count * 2 > self.ids.len() {
            self.rebuild();
        }
        true
    }

    /// The `k` best live ids by dot product with `query`, best first (ties: lower id first), searching layer 0
    /// with a beam of `max(ef, k)`. Empty when `k` is 0, the index is empty or the query has the wrong length.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        if k == 0 || self.live.is_empty() || query.len() != self.dim {
            return Vec::new();
        }
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        let ef = ef.max(k);
        let mut ep = self.scored(query, entry);
        for layer in (1..=self.max_level).rev() {
            ep = self.greedy(query, ep, layer);
        }
        let mut visited = Visited::with_len(self.ids.len());
        let found = self.search_layer(query, &[ep], ef, 0, true, &mut visited);
        let mut best: Vec<(u64, f32)> = found
            .iter()
            .map(|s| (self.ids[s.slot as usize], s.sim))
            .collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        best.truncate(k);
        best
    }

    /// Writes the index to `path` atomically: a temporary file in the same directory, fsync, rename, fsync of
    /// the directory. A crash leaves either the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<(), HnswError> {
        let write_error = |source: io::Error| HnswError::Write {
            path: path.to_path_buf(),
            source,
        };
        let Some(name) = path.file_name() else {
            return Err(write_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            )));
        };
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let (tmp, file) = create_temporary(dir, name).map_err(write_error)?;
        let written = (|| -> io::Result<()> {
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            self.write_to(&mut writer)?;
            let file = writer.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if let Err(source) = written {
            let _ = fs::remove_file(&tmp);
            return Err(write_error(source));
        }
        sync_dir(dir).map_err(write_error)
    }

    /// Reads a file written by [`Hnsw::save`]. Every count is checked against the file's length before anything
    /// is allocated, and every neighbour against the node count, so a truncated or forged file is
    /// [`HnswError::Corrupt`], never a panic or a huge allocation.
    pub fn load(path: &Path) -> Result<Self, HnswError> {
        let bytes = fs::read(path).map_err(|source| HnswError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes).map_err(|reason| HnswError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })
    }

    // --- graph -----------------------------------------------------------------------------------------------

    /// What [`Hnsw::insert`] requires of an item: `dim` values, all finite.
    fn check(&self, id: u64, vector: &[f32]) -> Result<(), HnswError> {
        if vector.len() != self.dim {
            return Err(HnswError::Dimension {
                id,
                got: vector.len(),
                dim: self.dim,
            });
        }
        if !vector.iter().all(|x| x.is_finite()) {
            return Err(HnswError::NotFinite { id });
        }
        Ok(())
    }

    /// Marks `id`'s node removed, without the rebuild check; whether it was live.
    fn tombstone(&mut self, id: u64) -> bool {
        let Some(slot) = self.live.remove(&id) else {
            return false;
        };
        self.removed[slot as usize] = true;
        self.removed_count += 1;
        true
    }

    fn vector(&self, slot: u32) -> &[f32] {
        let start = slot as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    fn scored(&self, query: &[f32], slot: u32) -> Scored {
        Scored {
            sim: dot(query, self.vector(slot)),
            slot,
        }
    }

    /// Neighbours of `slot` on `layer`; callers only ask for layers up to the node's level (a link on layer `l`
    /// only ever points at a node whose level is at least `l`).
    fn neighbours(&self, slot: u32, layer: u8) -> &[u32] {
        if layer == 0 {
            &self.layer0[slot as usize]
        } else {
            &self.upper[slot as usize][layer as usize - 1]
        }
    }

    fn neighbours_mut(&mut self, slot: u32, layer: u8) -> &mut Vec<u32> {
        if layer == 0 {
            &mut self.layer0[slot as usize]
        } else {
            &mut self.upper[slot as usize][layer as usize - 1]
        }
    }

    /// Layer 0 holds every node, so it gets twice the links (the paper's M_max0 = 2·M).
    fn capacity(&self, layer: u8) -> usize {
        if layer == 0 {
            self.params.m.saturating_mul(2)
        } else {
            self.params.m
        }
    }

    /// floor(-ln(U) · mL) with mL = 1/ln(m): the paper's level distribution, which keeps the expected number of
    /// layers logarithmic and the overlap between layers small.
    fn draw_level(&self, id: u64, slot: u32) -> u8 {
        let bits = splitmix64(splitmix64(id) ^ u64::from(slot));
        // Uniform in (0, 1]: never ln(0).
        let u = ((bits >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let level = (-u.ln() / (self.params.m as f64).ln()).floor();
        level.min(f64::from(MAX_LEVEL)) as u8
    }

    /// Algorithm 1: descend greedily to the node's top layer, then on each layer down to 0 find
    /// `ef_construction` candidates, link the new node to a heuristic selection of them and link back.
    /// The caller has validated the vector and the node count.
    fn add_node(&mut self, id: u64, vector: &[f32]) {
        let (slot, level) = self.push_node(id, vector);
        let Some(entry) = self.entry else {
            self.entry = Some(slot);
            self.max_level = level;
            return;
        };

        let mut visited = std::mem::take(&mut self.scratch);
        let mut ep = self.scored(vector, entry);
        for layer in (level.saturating_add(1)..=self.max_level).rev() {
            ep = self.greedy(vector, ep, layer);
        }
        let mut entries = vec![ep];
        for layer in (0..=level.min(self.max_level)).rev() {
            visited.reset(self.ids.len());
            // Tombstones take part: they are still graph nodes, and routing through them is what they are for.
            let found = self.search_layer(
                vector,
                &entries,
                self.params.ef_construction,
                layer,
                false,
                &mut visited,
            );
            let chosen = self.select_neighbours(&found, self.params.m);
            for &neighbour in &chosen {
                self.link(neighbour, slot, layer);
            }
            *self.neighbours_mut(slot, layer) = chosen;
            entries = found;
        }
        self.scratch = visited;
        if level > self.max_level {
            self.entry = Some(slot);
            self.max_level = level;
        }
    }

    /// Adds a node's slot, level and vector with no links yet (and makes its id live).
    fn push_node(&mut self, id: u64, vector: &[f32]) -> (u32, u8) {
        let slot = self.ids.len() as u32;
        let level = self.draw_level(id, slot);
        self.ids.push(id);
        self.vectors.extend_from_slice(vector);
        self.removed.push(false);
        self.levels.push(level);
        self.layer0.push(Vec::new());
        self.upper.push(vec![Vec::new(); level as usize]);
        self.live.insert(id, slot);
        (slot, level)
    }

    /// Adds validated items whose ids are not live: one at a time while the graph is small, then in rounds
    /// spread over `threads` workers (see [`Hnsw::insert_batch`]).
    fn append(&mut self, items: &[(u64, &[f32])], threads: usize) {
        let mut rest = items;
        while let Some((&(id, vector), tail)) = rest.split_first() {
            if self.ids.len() >= BATCH_SEQUENTIAL {
                break;
            }
            self.add_node(id, vector);
            rest = tail;
        }
        // One visited set per worker, kept across rounds; a round has no work for more workers than claims.
        let mut scratch = vec![Visited::default(); threads.clamp(1, MAX_ROUND.div_ceil(CLAIM))];
        while !rest.is_empty() {
            let size = (self.ids.len() / ROUND_FRACTION)
                .clamp(1, MAX_ROUND)
                .min(rest.len());
            let (round, tail) = rest.split_at(size);
            self.add_round(round, &mut scratch);
            rest = tail;
        }
    }

    /// Adds one round of nodes to a non-empty graph. The result does not depend on how many workers
    /// (`scratch.len()`) share the work: each node's links are a function of the graph before the round and
    /// of the round's vectors alone.
    fn add_round(&mut self, round: &[(u64, &[f32])], scratch: &mut [Visited]) {
        let Some(entry) = self.entry else {
            unreachable!("rounds start once the graph has nodes");
        };
        let first = self.ids.len() as u32;
        for &(id, vector) in round {
            self.push_node(id, vector);
        }
        let end = self.ids.len() as u32;

        // Each new node's own lists, searched in parallel on the graph before the round (nothing links to the
        // new nodes yet, so no search reaches them; the entry point and top level are the old ones).
        let lists = {
            let this = &*self;
            parallel_map(round.len(), scratch, |k, visited| {
                this.round_lists(entry, first, first + k as u32, visited)
            })
        };
        for (k, node) in lists.into_iter().enumerate() {
            let slot = first as usize + k;
            let mut layers = node.into_iter();
            self.layer0[slot] = layers.next().unwrap_or_default();
            self.upper[slot] = layers.collect();
        }

        // Reverse links, grouped by the list they go into, then each list extended and pruned once, in
        // parallel (the lists are disjoint; the pruning reads only vectors and the list itself).
        let mut links: Vec<(u32, u8, u32)> = Vec::new();
        for slot in first..end {
            for layer in 0..=self.levels[slot as usize] {
                for &target in self.neighbours(slot, layer) {
                    links.push((target, layer, slot));
                }
            }
        }
        links.sort_unstable();
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        for i in 1..=links.len() {
            if i == links.len() || links[i].0 != links[start].0 || links[i].1 != links[start].1 {
                groups.push(start..i);
                start = i;
            }
        }
        let updated = {
            let this = &*self;
            let mut workers = vec![(); scratch.len()];
            parallel_map(groups.len(), &mut workers, |g, _| {
                let group = &links[groups[g].clone()];
                let (target, layer) = (group[0].0, group[0].1);
                this.extended(target, layer, group.iter().map(|link| link.2))
            })
        };
        for (group, list) in groups.iter().zip(updated) {
            let (target, layer, _) = links[group.start];
            *self.neighbours_mut(target, layer) = list;
        }

        for slot in first..end {
            let level = self.levels[slot as usize];
            if level > self.max_level {
                self.entry = Some(slot);
                self.max_level = level;
            }
        }
    }

    /// The lists (layers `0..=level`) of `slot`, a node of the round starting at `first`: Algorithm 1's search
    /// on the graph as it stood before the round, from `entry`, with the round's earlier nodes (by exact
    /// similarity) added to each layer's candidates, best `ef_construction` kept, heuristic selection.
    fn round_lists(
        &self,
        entry: u32,
        first: u32,
        slot: u32,
        visited: &mut Visited,
    ) -> Vec<Vec<u32>> {
        let vector = self.vector(slot);
        let level = self.levels[slot as usize];
        let top = self.max_level;
        let mut found: Vec<Vec<Scored>> = vec![Vec::new(); level as usize + 1];
        let mut ep = self.scored(vector, entry);
        for layer in (level.saturating_add(1)..=top).rev() {
            ep = self.greedy(vector, ep, layer);
        }
        let start = level.min(top);
        for layer in (0..=start).rev() {
            visited.reset(self.ids.len());
            let entries: &[Scored] = if layer == start {
                std::slice::from_ref(&ep)
            } else {
                &found[layer as usize + 1]
            };
            let layer_found = self.search_layer(
                vector,
                entries,
                self.params.ef_construction,
                layer,
                false,
                visited,
            );
            found[layer as usize] = layer_found;
        }
        let earlier: Vec<Scored> = (first..slot).map(|j| self.scored(vector, j)).collect();
        found
            .into_iter()
            .enumerate()
            .map(|(layer, mut candidates)| {
                // Only earlier nodes that can make the best `ef_construction` join (most cannot): a short sort.
                let worst = (candidates.len() >= self.params.ef_construction)
                    .then(|| candidates.last().copied())
                    .flatten();
                candidates.extend(earlier.iter().filter(|s| {
                    self.levels[s.slot as usize] as usize >= layer && worst.is_none_or(|w| **s > w)
                }));
                candidates.sort_unstable_by(|a, b| b.cmp(a));
                candidates.truncate(self.params.ef_construction);
                self.select_neighbours(&candidates, self.params.m)
            })
            .collect()
    }

    /// `target`'s list on `layer` with `new` appended, pruned as [`Hnsw::link`] prunes when it is overfull.
    fn extended(&self, target: u32, layer: u8, new: impl Iterator<Item = u32>) -> Vec<u32> {
        let mut list = self.neighbours(target, layer).to_vec();
        list.extend(new);
        let capacity = self.capacity(layer);
        if list.len() <= capacity {
            return list;
        }
        let base = self.vector(target);
        let mut candidates: Vec<Scored> = list.iter().map(|&s| self.scored(base, s)).collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        self.select_neighbours(&candidates, capacity)
    }

    /// Adds `new` to `target`'s list on `layer`; an overfull list is pruned with the same heuristic, so that
    /// long-range links survive rather than only the nearest ones.
    fn link(&mut self, target: u32, new: u32, layer: u8) {
        let capacity = self.capacity(layer);
        let list = self.neighbours_mut(target, layer);
        list.push(new);
        if list.len() <= capacity {
            return;
        }
        let base = self.vector(target);
        let mut candidates: Vec<Scored> = self
            .neighbours(target, layer)
            .iter()
            .map(|&s| self.scored(base, s))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let kept = self.select_neighbours(&candidates, capacity);
        *self.neighbours_mut(target, layer) = kept;
    }

    /// Algorithm 4 (without extending the candidates, as the paper advises beyond tiny dimensions): take the
    /// candidates best first and keep one only if it is closer to the base than to every neighbour kept so far.
    /// That spreads links over directions (bridging clusters) instead of spending them all on one dense clump.
    /// `candidates` are sorted best first, their `sim` being to the base.
    fn select_neighbours(&self, candidates: &[Scored], m: usize) -> Vec<u32> {
        let mut chosen: Vec<u32> = Vec::with_capacity(m.min(candidates.len()));
        for candidate in candidates {
            if chosen.len() >= m {
                break;
            }
            let v = self.vector(candidate.slot);
            if chosen
                .iter()
                .all(|&kept| dot(v, self.vector(kept)) < candidate.sim)
            {
                chosen.push(candidate.slot);
            }
        }
        chosen
    }

    /// Greedy walk on one upper layer (Algorithm 2 with ef = 1): move to the best neighbour until none improves.
    fn greedy(&self, query: &[f32], start: Scored, layer: u8) -> Scored {
        let mut best = start;
        loop {
            let current = best.slot;
            for &n in self.neighbours(current, layer) {
                let s = self.scored(query, n);
                if s > best {
                    best = s;
                }
            }
            if best.slot == current {
                return best;
            }
        }
    }

    /// Algorithm 2: beam search of width `ef` on one layer from `entries`, best first.
    ///
    /// With `live_only`, tombstones are expanded but kept out of the results, and the search only stops once
    /// it holds `ef` live results (or has exhausted what it can reach): otherwise a beam crowded with tombstones
    /// would return fewer than `k` ids.
    fn search_layer(
        &self,
        query: &[f32],
        entries: &[Scored],
        ef: usize,
        layer: u8,
        live_only: bool,
        visited: &mut Visited,
    ) -> Vec<Scored> {
        let mut candidates: BinaryHeap<Scored> = BinaryHeap::new();
        // Min-heap: its top is the worst result, the one to drop.
        let mut results: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
        let keep = |slot: u32| !live_only || !self.removed[slot as usize];
        for &e in entries {
            if visited.first_visit(e.slot) {
                candidates.push(e);
                if keep(e.slot) {
                    results.push(Reverse(e));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        while let Some(c) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| c < w.0) {
                break;
            }
            for &n in self.neighbours(c.slot, layer) {
                if !visited.first_visit(n) {
                    continue;
                }
                let s = self.scored(query, n);
                if results.len() >= ef && results.peek().is_some_and(|w| s < w.0) {
                    continue;
                }
                candidates.push(s);
                if keep(n) {
                    results.push(Reverse(s));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        let mut found: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
        found.sort_unstable_by(|a, b| b.cmp(a));
        found
    }

    /// Builds the graph again from the live nodes in slot order (same ids, vectors, parameters and stamp).
    fn rebuild(&mut self) {
        let mut fresh = Hnsw::new(self.dim, self.params);
        fresh.stamp = self.stamp;
        let live = self.live.len();
        fresh.ids.reserve(live);
        fresh.vectors.reserve(live * self.dim);
        for slot in 0..self.ids.len() {
            if !self.removed[slot] {
                fresh.add_node(self.ids[slot], self.vector(slot as u32));
            }
        }
        *self = fresh;
    }

    // --- persistence -----------------------------------------------------------------------------------------

    fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let too_large = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} does not fit the file format"),
            )
        };
        let dim = u32::try_from(self.dim).map_err(|_| too_large("the dimension"))?;
        let m = u32::try_from(self.params.m).map_err(|_| too_large("m"))?;
        let ef =
            u32::try_from(self.params.ef_construction).map_err(|_| too_large("ef_construction"))?;
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&dim.to_le_bytes())?;
        w.write_all(&m.to_le_bytes())?;
        w.write_all(&ef.to_le_bytes())?;
        w.write_all(&self.stamp.to_le_bytes())?;
        w.write_all(&(self.ids.len() as u64).to_le_bytes())?;
        w.write_all(&self.entry.unwrap_or(NO_ENTRY).to_le_bytes())?;
        w.write_all(&u32::from(self.max_level).to_le_bytes())?;
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        for chunk in self.ids.chunks(8192) {
            buf.clear();
            chunk
                .iter()
                .for_each(|id| buf.extend_from_slice(&id.to_le_bytes()));
            w.write_all(&buf)?;
        }
        buf.clear();
        buf.extend(self.removed.iter().map(|&r| u8::from(r)));
        w.write_all(&buf)?;
        w.write_all(&self.levels)?;
        for chunk in self.vectors.chunks(16384) {
            buf.clear();
            chunk
                .iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            w.write_all(&buf)?;
        }
        for (slot, &level) in self.levels.iter().enumerate() {
            for layer in 0..=level {
                let list = self.neighbours(slot as u32, layer);
                buf.clear();
                buf.extend_from_slice(&(list.len() as u32).to_le_bytes());
                list.iter()
                    .for_each(|n| buf.extend_from_slice(&n.to_le_bytes()));
                w.write_all(&buf)?;
            }
        }
        Ok(())
    }

    fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < HEADER_LEN {
            return Err(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ));
        }
        let mut r = Reader { bytes, pos: 0 };
        if r.take(8)? != MAGIC {
            return Err("bad magic".into());
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "version {version}, this program reads version {VERSION}"
            ));
        }
        let dim = r.u32()? as usize;
        let m = r.u32()? as usize;
        let ef_construction = r.u32()? as usize;
        let stamp = r.u64()?;
        let count = r.u64()?;
        let entry = r.u32()?;
        let max_level = r.u32()?;
        if m < 2 || ef_construction == 0 {
            return Err(format!(
                "m {m} or ef_construction {ef_construction} too small"
            ));
        }
        let max_level = match u8::try_from(max_level) {
            Ok(level) if level <= MAX_LEVEL => level,
            _ => return Err(format!("max level {max_level} above {MAX_LEVEL}")),
        };
        // Each node takes at least its id, tombstone, level, vector and layer-0 count: refuse a count the file
        // cannot hold before allocating anything for it.
        let per_node = 8 + 1 + 1 + 4 * dim as u64 + 4;
        let available = (bytes.len() - HEADER_LEN) as u64;
        if count
            .checked_mul(per_node)
            .is_none_or(|need| need > available)
        {
            return Err(format!(
                "{count} nodes of dimension {dim} do not fit in {} bytes",
                bytes.len()
            ));
        }
        if count >= u64::from(NO_ENTRY) {
            return Err(format!("{count} nodes, more than the format's slots"));
        }
        // Fits: bounded by the file's length.
        let n = count as usize;

        let ids: Vec<u64> = r
            .take_n(n, 8)?
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        let mut removed = Vec::with_capacity(n);
        for (slot, &b) in r.take_n(n, 1)?.iter().enumerate() {
            match b {
                0 => removed.push(false),
                1 => removed.push(true),
                _ => return Err(format!("tombstone byte {b} at slot {slot}")),
            }
        }
        let levels = r.take_n(n, 1)?.to_vec();
        if let Some((slot, level)) = levels.iter().enumerate().find(|(_, &l)| l > max_level) {
            return Err(format!(
                "slot {slot} has level {level}, above the max level {max_level}"
            ));
        }
        let mut vectors = Vec::with_capacity(n * dim);
        for c in r.take_n(n.saturating_mul(dim), 4)?.chunks_exact(4) {
            let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if !x.is_finite() {
                return Err(format!(
                    "a non-finite value in the vector of slot {}",
                    vectors.len() / dim.max(1)
                ));
            }
            vectors.push(x);
        }

        let mut layer0 = Vec::with_capacity(n);
        let mut upper = Vec::with_capacity(n);
        for (slot, &level) in levels.iter().enumerate() {
            let mut above = Vec::with_capacity(level as usize);
            for layer in 0..=level {
                let len = r.u32()? as usize;
                let capacity = if layer == 0 { m.saturating_mul(2) } else { m };
                if len > capacity {
                    return Err(format!(
                        "slot {slot} has {len} neighbours on layer {layer}, more than {capacity}"
                    ));
                }
                let mut list = Vec::with_capacity(len);
                for c in r.take_n(len, 4)?.chunks_exact(4) {
                    let neighbour = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    // Searches index by these slots and by the neighbour's own lists on this layer.
                    let valid = (neighbour as usize) < n
                        && neighbour as usize != slot
                        && levels[neighbour as usize] >= layer;
                    if !valid {
                        return Err(format!(
                            "slot {slot} links to slot {neighbour} on layer {layer}"
                        ));
                    }
                    list.push(neighbour);
                }
                if layer == 0 {
                    layer0.push(list);
                } else {
                    above.push(list);
                }
            }
            upper.push(above);
        }
        if r.pos != bytes.len() {
            return Err(format!("{} bytes after the last list", bytes.len() - r.pos));
        }

        let entry = if n == 0 {
            if entry != NO_ENTRY || max_level != 0 {
                return Err("an entry point in an empty graph".into());
            }
            None
        } else {
            if entry as usize >= n || levels[entry as usize] != max_level {
                return Err(format!(
                    "entry point {entry} is not a node on the top level {max_level}"
                ));
            }
            Some(entry)
        };
        let mut live = HashMap::with_capacity(n);
        for (slot, (&id, &gone)) in ids.iter().zip(&removed).enumerate() {
            if !gone && live.insert(id, slot as u32).is_some() {
                return Err(format!("id {id} is live in two slots"));
            }
        }
        let removed_count = removed.iter().filter(|&&r| r).count();
        Ok(Hnsw {
            dim,
            params: HnswParams { m, ef_construction },
            stamp,
            ids,
            vectors,
            removed,
            removed_count,
            levels,
            layer0,
            upper,
            live,
            entry,
            max_level,
            scratch: Visited::default(),
        })
    }
}

/// `f(0..count)` in order, computed by `states.len()` scoped threads (inline when one suffices), each with its
/// own state. Workers claim a few indices at a time, so which worker computes what varies from run to run, but
/// the result does not.
fn parallel_map<S, T, F>(count: usize, states: &mut [S], f: F) -> Vec<T>
where
    S: Send,
    T: Send,
    F: Fn(usize, &mut S) -> T + Sync,
{
    let workers = states.len().min(count.div_ceil(CLAIM));
    if workers <= 1 {
        let Some(state) = states.first_mut() else {
            unreachable!("at least one worker state");
        };
        return (0..count).map(|i| f(i, state)).collect();
    }
    let next = AtomicUsize::new(0);
    let parts: Vec<Vec<(usize, T)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = states[..workers]
            .iter_mut()
            .map(|state| {
                let (next, f) = (&next, &f);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(CLAIM, AtomicOrdering::Relaxed);
                        if start >= count {
                            return done;
                        }
                        for i in start..(start + CLAIM).min(count) {
                            done.push((i, f(i, state)));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut slots: Vec<Option<T>> = std::iter::repeat_with(|| None).take(count).collect();
    for (i, value) in parts.into_iter().flatten() {
        slots[i] = Some(value);
    }
    slots
        .into_iter()
        .map(|value| value.expect("every index is claimed once"))
        .collect()
}

/// Bounds-checked little-endian reads over the file's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.truncated())?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// `count` items of `size` bytes.
    fn take_n(&mut self, count: usize, size: usize) -> Result<&'a [u8], String> {
        let len = count.checked_mul(size).ok_or_else(|| self.truncated())?;
        self.take(len)
    }

    fn truncated(&self) -> String {
        format!(
            "truncated: {} bytes, more needed after byte {}",
            self.bytes.len(),
            self.pos
        )
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// A new file beside `path`'s name in `dir`, named by process and call so that concurrent saves never share
/// one; a name left behind by a crashed process (whose pid may be reused) is skipped, not reused.
fn create_temporary(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for _ in 0..1000 {
        let tmp = dir.join(format!(
            ".{}.{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, AtomicOrdering::Relaxed)
        ));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary file name",
    ))
}

/// Makes the rename itself durable: on POSIX the directory entry is only on disk once the directory is synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 stream: the tests' own seeded generator.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            splitmix64(self.0)
        }

        /// Uniform in (0, 1].
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }

        /// Box–Muller.
        fn gaussian(&mut self) -> f32 {
            let (u, v) = (self.uniform(), self.uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        }
    }

    fn unit(mut v: Vec<f32>) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    /// Unit vectors around 30 gaussian cluster centres, one in ten pure noise: photo embeddings are clumpy.
    struct Clusters {
        centres: Vec<Vec<f32>>,
        dim: usize,
    }

    impl Clusters {
        fn new(dim: usize) -> Self {
            let mut rng = Rng(0xC1u64);
            let centres = (0..30)
                .map(|_| unit((0..dim).map(|_| rng.gaussian()).collect()))
                .collect();
            Clusters { centres, dim }
        }

        fn sample(&self, rng: &mut Rng) -> Vec<f32> {
            if rng.below(10) == 0 {
                return unit((0..self.dim).map(|_| rng.gaussian()).collect());
            }
            let centre = &self.centres[rng.below(self.centres.len())];
            let sigma = 0.8 / (self.dim as f32).sqrt();
            unit(centre.iter().map(|c| c + sigma * rng.gaussian()).collect())
        }

        fn points(&self, n: usize, seed: u64) -> Vec<(u64, Vec<f32>)> {
            let mut rng = Rng(seed);
            // Sparse, unordered ids: slots and ids must not be confused anywhere.
            (0..n)
                .map(|i| (10_000 + (i as u64 * 7919) % 100_003, self.sample(&mut rng)))
                .collect()
        }
    }

    fn build(points: &[(u64, Vec<f32>)], dim: usize) -> Hnsw {
        let mut index = Hnsw::new(dim, HnswParams::default());
        for (id, v) in points {
            index.insert(*id, v).expect("valid vector");
        }
        index
    }

    /// Brute force over `points`, best first, ties by id.
    fn exact(points: &[(u64, Vec<f32>)], query: &[f32], k: usize) -> Vec<(u64, f32)> {
        let mut all: Vec<(u64, f32)> = points.iter().map(|(id, v)| (*id, dot(query, v))).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    fn recall(got: &[(u64, f32)], want: &[(u64, f32)]) -> f64 {
        let hits = want
            .iter()
            .filter(|(id, _)| got.iter().any(|(g, _)| g == id))
            .count();
        hits as f64 / want.len() as f64
    }

    /// Checks order and exact scores of every result, and returns the mean recall@k over `queries`.
    fn mean_recall(
        index: &Hnsw,
        points: &[(u64, Vec<f32>)],
        queries: &[Vec<f32>],
        k: usize,
        ef: usize,
    ) -> f64 {
        let by_id: HashMap<u64, &Vec<f32>> = points.iter().map(|(id, v)| (*id, v)).collect();
        let mut total = 0.0;
        for q in queries {
            let got = index.search(q, k, ef);
            assert_eq!(got.len(), k.min(points.len()));
            for pair in got.windows(2) {
                assert!(
                    pair[0].1 > pair[1].1 || (pair[0].1 == pair[1].1 && pair[0].0 < pair[1].0),
                    "not best first: {pair:?}"
                );
            }
            for (id, score) in &got {
                let v = by_id.get(id).expect("a returned id is live");
                assert!((dot(q, v) - score).abs() < 1e-6);
            }
            total += recall(&got, &exact(points, q, k));
        }
        total / queries.len() as f64
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clip-hnsw-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn recall_at_10_on_clustered_vectors() {
        let data = Clusters::new(64);
        let points = data.points(3000, 1);
        let index = build(&points, 64);
        assert_eq!(index.len(), 3000);
        let mut rng = Rng(2);
        let queries: Vec<Vec<f32>> = (0..100).map(|_| data.sample(&mut rng)).collect();
        let r64 = mean_recall(&index, &points, &queries, 10, 64);
        let r16 = mean_recall(&index, &points, &queries, 10, 16);
        eprintln!("recall@10: ef=16 {r16:.3}, ef=64 {r64:.3}");
        assert!(r64 >= 0.95, "recall@10 at ef=64: {r64}");
        // A stored vector finds itself first.
        for (id, v) in points.iter().step_by(97) {
            assert_eq!(index.search(v, 1, 64)[0].0, *id);
        }
    }

    fn batch(points: &[(u64, Vec<f32>)]) -> Vec<(u64, &[f32])> {
        points.iter().map(|(id, v)| (*id, v.as_slice())).collect()
    }

    fn bytes(index: &Hnsw) -> Vec<u8> {
        let mut out = Vec::new();
        index.write_to(&mut out).expect("write");
        out
    }

    #[test]
    fn batch_recall_matches_sequential() {
        let data = Clusters::new(64);
        let points = data.points(3000, 1);
        let mut rng = Rng(2);
        let queries: Vec<Vec<f32>> = (0..100).map(|_| data.sample(&mut rng)).collect();
        let sequential = build(&points, 64);
        let r_seq = mean_recall(&sequential, &points, &queries, 10, 64);
        let mut files = Vec::new();
        for threads in [1, 2, 4] {
            let mut index = Hnsw::new(64, HnswParams::default());
            index
                .insert_batch(&batch(&points), threads)
                .expect("insert_batch");
            assert_eq!(index.len(), 3000);
            let r = mean_recall(&index, &points, &queries, 10, 64);
            eprintln!("recall@10 at ef=64: sequential {r_seq:.3}, insert_batch({threads}) {r:.3}");
            assert!(r >= 0.95, "threads {threads}: recall@10 {r}");
            for (id, v) in points.iter().step_by(97) {
                assert_eq!(index.search(v, 1, 64)[0].0, *id, "threads {threads}");
            }
            files.push(bytes(&index));
        }
        assert!(
            files[0] == bytes(&sequential),
            "one thread is insert in order"
        );
        assert!(
            files[1] == files[2],
            "every count above one builds the same graph"
        );
    }

    #[test]
    fn batch_of_clusters_the_graph_has_not_seen() {
        // The nodes of one round do not see each other's links, only each other's vectors: a batch made of new
        // clusters, or sorted by cluster (photos of one event arrive together), must still link up.
        let data = Clusters::new(64);
        let all = data.points(4000, 31);
        let nearest = |v: &[f32]| {
            (0..data.centres.len())
                .max_by(|&a, &b| dot(v, &data.centres[a]).total_cmp(&dot(v, &data.centres[b])))
                .expect("centres")
        };
        let mut rng = Rng(32);
        let queries: Vec<Vec<f32>> = (0..100).map(|_| data.sample(&mut rng)).collect();

        let (old, new): (Vec<_>, Vec<_>) = all.iter().cloned().partition(|(_, v)| nearest(v) < 15);
        let mut index = build(&old, 64);
        index.insert_batch(&batch(&new), 2).expect("batch");
        let r = mean_recall(&index, &all, &queries, 10, 64);
        eprintln!("new clusters in one batch: recall@10 {r:.3}");
        assert!(r >= 0.95, "new clusters: recall {r}");

        let mut sorted = all.clone();
        sorted.sort_by_key(|(id, v)| (nearest(v), *id));
        let mut index = Hnsw::new(64, HnswParams::default());
        index.insert_batch(&batch(&sorted), 2).expect("batch");
        let r = mean_recall(&index, &all, &queries, 10, 64);
        eprintln!("a batch sorted by cluster: recall@10 {r:.3}");
        assert!(r >= 0.95, "sorted by cluster: recall {r}");
    }

    #[test]
    fn batch_is_deterministic() {
        let data = Clusters::new(16);
        let points = data.points(1500, 12);
        let run = |threads: usize| {
            let mut index = Hnsw::new(16, HnswParams::default());
            index.insert_batch(&batch(&points), threads).expect("batch");
            bytes(&index)
        };
        let two = run(2);
        assert!(run(2) == two, "same input, same threads, same file");
        // Which worker takes which node varies; the graph does not. A huge count is capped, not allocated.
        for threads in [3, usize::MAX] {
            assert!(run(threads) == two, "threads {threads}");
        }
    }

    #[test]
    fn batch_into_a_graph_with_nodes_and_tombstones() {
        let data = Clusters::new(32);
        let old = data.points(1200, 13);
        for threads in [1, 2] {
            let mut index = build(&old, 32);
            let mut live: HashMap<u64, Vec<f32>> = old.iter().cloned().collect();
            let mut gone = Vec::new();
            for (id, _) in old.iter().step_by(4) {
                assert!(index.remove(*id));
                live.remove(id);
                gone.push(*id);
            }
            assert_eq!(index.removed_count, 300, "tombstones, no rebuild");
            let mut items: Vec<(u64, Vec<f32>)> = data
                .points(900, 14)
                .into_iter()
                .enumerate()
                .map(|(i, (_, v))| (2_000_000 + i as u64, v))
                .collect();
            // Replacements of live ids, a removed id back, and an id twice (the last one wins).
            let fresh = data.points(3, 15);
            items.push((old[1].0, fresh[0].1.clone()));
            items.push((old[4].0, fresh[1].1.clone()));
            items.push((2_000_000, fresh[2].1.clone()));
            gone.retain(|g| *g != old[4].0);
            for (id, v) in &items {
                live.insert(*id, v.clone());
            }
            let pairs: Vec<(u64, &[f32])> =
                items.iter().map(|(id, v)| (*id, v.as_slice())).collect();
            index.insert_batch(&pairs, threads).expect("batch");
            assert_eq!(index.len(), live.len(), "threads {threads}");
            assert!(
                index.ids.len() > index.len(),
                "threads {threads}: tombstones kept"
            );
            let points: Vec<(u64, Vec<f32>)> = live.into_iter().collect();
            for (id, v) in &points {
                assert!(index.contains(*id));
                let found = index.search(v, 1, 64)[0];
                assert!(
                    (found.1 - 1.0).abs() < 1e-5,
                    "threads {threads}: id {id} {found:?}"
                );
            }
            let mut rng = Rng(16);
            let queries: Vec<Vec<f32>> = (0..60).map(|_| data.sample(&mut rng)).collect();
            for q in &queries {
                for (id, _) in index.search(q, points.len(), 64) {
                    assert!(!gone.contains(&id), "threads {threads}: removed id {id}");
                }
            }
            let r = mean_recall(&index, &points, &queries, 10, 64);
            eprintln!("after a batch into a graph with tombstones ({threads}): recall@10 {r:.3}");
            assert!(r >= 0.95, "threads {threads}: recall {r}");
        }
    }

    #[test]
    fn batch_replacing_most_ids_rebuilds_once() {
        let data = Clusters::new(16);
        let old = data.points(600, 17);
        let mut index = build(&old, 16);
        index.remove(old[0].0);
        // New vectors for 400 of the 599 live ids, and 100 new ids.
        let new = data.points(500, 18);
        let items: Vec<(u64, &[f32])> = new
            .iter()
            .enumerate()
            .map(|(i, (_, v))| {
                let id = if i < 400 {
                    old[i + 1].0
                } else {
                    5_000_000 + i as u64
                };
                (id, v.as_slice())
            })
            .collect();
        index.insert_batch(&items, 2).expect("batch");
        assert_eq!(index.len(), 699);
        assert_eq!(
            index.ids.len(),
            699,
            "rebuilt from the live nodes and the batch"
        );
        assert_eq!(index.removed_count, 0);
        assert!(!index.contains(old[0].0));
        for (id, v) in items.iter().step_by(7) {
            assert_eq!(index.search(v, 1, 64)[0].0, *id);
        }
        for (id, v) in old.iter().skip(401).step_by(7) {
            assert_eq!(index.search(v, 1, 64)[0].0, *id);
        }
    }

    #[test]
    fn an_invalid_item_fails_the_batch_before_any_insert() {
        let data = Clusters::new(8);
        let points = data.points(400, 19);
        let mut index = build(&points[..100], 8);
        let before = bytes(&index);
        let short = [1.0f32, 0.0];
        let mut nan = points[0].1.clone();
        nan[3] = f32::NAN;
        for threads in [1, 2] {
            let mut items = batch(&points[100..]);
            items.insert(250, (77, &short));
            match index.insert_batch(&items, threads) {
                Err(HnswError::Dimension {
                    id: 77,
                    got: 2,
                    dim: 8,
                }) => {}
                other => panic!("{other:?}"),
            }
            items[250] = (78, &nan);
            assert!(matches!(
                index.insert_batch(&items, threads),
                Err(HnswError::NotFinite { id: 78 })
            ));
            assert!(bytes(&index) == before, "threads {threads}");
            assert_eq!(index.len(), 100);
        }
    }

    #[test]
    fn an_empty_batch_is_a_no_op() {
        let mut empty = Hnsw::new(8, HnswParams::default());
        let data = Clusters::new(8);
        let points = data.points(50, 20);
        let mut index = build(&points, 8);
        index.remove(points[0].0);
        for threads in [0, 1, 4] {
            let (a, b) = (bytes(&empty), bytes(&index));
            empty.insert_batch(&[], threads).expect("empty");
            index.insert_batch(&[], threads).expect("empty");
            assert!(bytes(&empty) == a && bytes(&index) == b);
        }
        // A batch smaller than the sequential start behaves like inserts in order, whatever the threads.
        let mut small = Hnsw::new(8, HnswParams::default());
        small.insert_batch(&batch(&points), 4).expect("batch");
        assert!(bytes(&small) == bytes(&build(&points, 8)));
    }

    /// Documentation of the speed-up, not a check: run with
    /// `cargo test --release -p clip-search --lib bench_batch_build -- --ignored --nocapture`
    /// (`HNSW_BENCH_N=100000` for another size). "Rounds on one thread" is the batch algorithm without the
    /// threads: what it costs over insertion in order, apart from what parallelism gains.
    #[test]
    #[ignore]
    fn bench_batch_build() {
        let n = std::env::var("HNSW_BENCH_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        let dim = 512;
        let data = Clusters::new(dim);
        let points = data.points(n, 21);
        let items = batch(&points);
        let mut rng = Rng(22);
        let queries: Vec<Vec<f32>> = (0..200).map(|_| data.sample(&mut rng)).collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        eprintln!("{n} clustered vectors of dim {dim}, m 16, ef_construction 100, {cores} cores");
        let report = |what: &str, build: &dyn Fn(&mut Hnsw)| {
            let mut index = Hnsw::new(dim, HnswParams::default());
            let start = std::time::Instant::now();
            build(&mut index);
            let seconds = start.elapsed().as_secs_f64();
            let r64 = mean_recall(&index, &points, &queries, 10, 64);
            let r128 = mean_recall(&index, &points, &queries, 10, 128);
            eprintln!("{what:<28} {seconds:6.2} s  recall@10 ef=64 {r64:.3}, ef=128 {r128:.3}");
        };
        report("insert in order (batch 1)", &|index| {
            for &(id, v) in &items {
                index.insert(id, v).expect("insert");
            }
        });
        report("rounds on one thread", &|index| index.append(&items, 1));
        let mut counts = vec![2];
        if cores > 2 {
            counts.push(cores);
        }
        for threads in counts {
            report(&format!("insert_batch({threads})"), &|index| {
                index.insert_batch(&items, threads).expect("batch")
            });
        }
    }

    #[test]
    fn removed_ids_are_never_returned_and_recall_holds() {
        let data = Clusters::new(64);
        let mut points = data.points(3000, 3);
        let mut index = build(&points, 64);
        let mut rng = Rng(4);
        let queries: Vec<Vec<f32>> = (0..60).map(|_| data.sample(&mut rng)).collect();

        let check = |index: &Hnsw, live: &[(u64, Vec<f32>)], gone: &[u64], stage: &str| {
            assert_eq!(index.len(), live.len());
            for id in gone {
                assert!(!index.contains(*id));
            }
            let mut sorted_ids = index.ids();
            sorted_ids.sort_unstable();
            let mut want: Vec<u64> = live.iter().map(|(id, _)| *id).collect();
            want.sort_unstable();
            assert_eq!(sorted_ids, want);
            for (i, q) in queries.iter().enumerate() {
                let k = [1, 10, 100, live.len()][i % 4];
                let got = index.search(q, k, 64);
                // k = len included: the graph is connected, so every live id is reachable.
                assert_eq!(got.len(), k.min(live.len()), "{stage}: k={k}");
                for (id, _) in &got {
                    assert!(!gone.contains(id), "{stage}: removed id {id} returned");
                }
            }
            let r = mean_recall(index, live, &queries, 10, 64);
            eprintln!(
                "{stage}: recall@10 at ef=64 {r:.3} over {} live",
                live.len()
            );
            assert!(r >= 0.95, "{stage}: recall {r}");
        };

        // A third removed: tombstones, no rebuild yet.
        let mut gone = Vec::new();
        let mut i = 0;
        points.retain(|(id, _)| {
            i += 1;
            let remove = i % 3 == 0;
            if remove {
                assert!(index.remove(*id));
                gone.push(*id);
            }
            !remove
        });
        assert!(!index.remove(gone[0]), "a second removal is a no-op");
        assert_eq!(index.ids.len(), 3000, "no rebuild below half");
        check(&index, &points, &gone, "a third removed");

        // Past half the nodes: the graph is rebuilt from the live ones.
        let extra: Vec<(u64, Vec<f32>)> = points.drain(..600).collect();
        for (id, _) in &extra {
            assert!(index.remove(*id));
            gone.push(*id);
        }
        assert!(index.ids.len() < 3000, "rebuilt");
        assert_eq!(index.removed_count, index.ids.len() - index.len());
        check(&index, &points, &gone, "after the rebuild");

        // Re-inserting a removed id brings it back.
        let (id, v) = extra[5].clone();
        index.insert(id, &v).expect("insert");
        assert!(index.contains(id));
        assert_eq!(index.search(&v, 1, 64)[0].0, id);
        gone.retain(|g| *g != id);
        points.push((id, v));
        check(&index, &points, &gone, "after re-insertion");
    }

    #[test]
    fn insert_replaces_an_existing_id() {
        let data = Clusters::new(16);
        let points = data.points(300, 5);
        let mut index = build(&points, 16);
        let (id, old) = points[10].clone();
        let new = points[20].1.clone();
        index.insert(id, &new).expect("insert");
        assert_eq!(index.len(), 300);
        let got = index.search(&new, 2, 32);
        let ids: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert!(ids.contains(&id) && ids.contains(&points[20].0), "{got:?}");
        // The old vector no longer scores as itself.
        let back = index.search(&old, 300, 300);
        let score = back.iter().find(|g| g.0 == id).expect("live").1;
        assert!((score - dot(&old, &new)).abs() < 1e-6);
    }

    #[test]
    fn same_inserts_give_the_same_file() {
        let data = Clusters::new(16);
        let points = data.points(500, 6);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        build(&points, 16).write_to(&mut a).expect("write");
        build(&points, 16).write_to(&mut b).expect("write");
        assert_eq!(a, b);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = temp_dir("round-trip");
        let path = dir.join("index.hnsw");
        let data = Clusters::new(32);
        let points = data.points(1500, 7);
        let mut index = build(&points, 32);
        for (id, _) in points.iter().step_by(5) {
            index.remove(*id);
        }
        index.set_stamp(42);
        index.save(&path).expect("save");
        let loaded = Hnsw::load(&path).expect("load");
        assert_eq!(loaded.stamp(), 42);
        assert_eq!(loaded.dim(), 32);
        assert_eq!(loaded.params(), index.params());
        assert_eq!(loaded.len(), index.len());
        assert_eq!(loaded.ids(), index.ids());
        let mut rng = Rng(8);
        for _ in 0..100 {
            let q = data.sample(&mut rng);
            assert_eq!(loaded.search(&q, 10, 40), index.search(&q, 10, 40));
        }
        // Saving again over the file replaces it and leaves no temporary behind.
        loaded.save(&path).expect("save over");
        assert_eq!(fs::read_dir(&dir).expect("dir").count(), 1);

        // Insertion after a load.
        let mut loaded = loaded;
        let more = data.points(200, 9);
        for (i, (_, v)) in more.iter().enumerate() {
            loaded.insert(1_000_000 + i as u64, v).expect("insert");
        }
        assert_eq!(loaded.len(), index.len() + 200);
        for (i, (_, v)) in more.iter().enumerate().step_by(13) {
            assert_eq!(loaded.search(v, 1, 40)[0].0, 1_000_000 + i as u64);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let dir = temp_dir("corrupt");
        let data = Clusters::new(8);
        let points = data.points(200, 10);
        let mut index = build(&points, 8);
        index.remove(points[3].0);
        let mut good = Vec::new();
        index.write_to(&mut good).expect("write");
        let path = dir.join("bad.hnsw");
        let load = |bytes: &[u8]| {
            fs::write(&path, bytes).expect("write");
            Hnsw::load(&path)
        };
        assert!(load(&good).is_ok());
        let corrupt = |bytes: &[u8], what: &str| match load(bytes) {
            Err(HnswError::Corrupt { reason, .. }) => reason,
            other => panic!("{what}: {other:?}"),
        };

        corrupt(&[], "zero bytes");
        for cut in [
            1,
            7,
            8,
            20,
            47,
            48,
            100,
            48 + 200 * 8 + 5,
            good.len() / 2,
            good.len() - 1,
        ] {
            corrupt(&good[..cut], &format!("cut at {cut}"));
        }
        let mut longer = good.clone();
        longer.push(0);
        corrupt(&longer, "a trailing byte");

        let mut magic = good.clone();
        magic[0] ^= 0xff;
        assert_eq!(corrupt(&magic, "magic"), "bad magic");
        let mut version = good.clone();
        version[8] = 2;
        corrupt(&version, "version");

        // Node 0's layer-0 list starts right after the vectors; point its first neighbour past the end.
        let lists = HEADER_LEN + 200 * (8 + 1 + 1 + 4 * 8);
        assert!(!index.layer0[0].is_empty());
        let mut outside = good.clone();
        outside[lists + 4..lists + 8].copy_from_slice(&200u32.to_le_bytes());
        let reason = corrupt(&outside, "neighbour out of range");
        assert!(reason.contains("links to slot 200"), "{reason}");
        let mut selfish = good.clone();
        selfish[lists + 4..lists + 8].copy_from_slice(&0u32.to_le_bytes());
        corrupt(&selfish, "a node linked to itself");
        let mut long_list = good.clone();
        long_list[lists..lists + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        corrupt(&long_list, "a list longer than 2m");

        let mut tombstone = good.clone();
        tombstone[HEADER_LEN + 200 * 8] = 7;
        corrupt(&tombstone, "tombstone byte");
        let mut nan = good.clone();
        let vectors = HEADER_LEN + 200 * 10;
        nan[vectors..vectors + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        corrupt(&nan, "a NaN in a vector");
        let mut entry = good.clone();
        entry[40..44].copy_from_slice(&5000u32.to_le_bytes());
        corrupt(&entry, "entry point out of range");

        // Forged headers whose counts would ask for huge allocations.
        for (offset, value) in [(32, u64::MAX), (32, 1u64 << 40), (32, u64::from(u32::MAX))] {
            let mut forged = good.clone();
            forged[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
            corrupt(&forged, &format!("count {value}"));
        }
        let mut wide = good.clone();
        wide[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        corrupt(&wide, "a huge dimension");
        let mut tall = good.clone();
        tall[44..48].copy_from_slice(&1000u32.to_le_bytes());
        corrupt(&tall, "a huge max level");

        // Every possible truncation, on a small graph.
        let small = build(&points[..20], 8);
        let mut bytes = Vec::new();
        small.write_to(&mut bytes).expect("write");
        for cut in 0..bytes.len() {
            assert!(Hnsw::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Hnsw::parse(&bytes).is_ok());

        match Hnsw::load(&dir.join("missing.hnsw")) {
            Err(HnswError::Io { .. }) => {}
            other => panic!("missing file: {other:?}"),
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_and_degenerate_searches() {
        let mut index = Hnsw::new(4, HnswParams::default());
        assert!(index.is_empty());
        assert!(index.search(&[1.0, 0.0, 0.0, 0.0], 5, 10).is_empty());
        match index.insert(1, &[1.0, 0.0]) {
            Err(HnswError::Dimension {
                id: 1,
                got: 2,
                dim: 4,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            index.insert(1, &[f32::NAN, 0.0, 0.0, 0.0]),
            Err(HnswError::NotFinite { id: 1 })
        ));
        assert!(index.is_empty());

        let e = |i: usize| {
            let mut v = vec![0.0; 4];
            v[i] = 1.0;
            v
        };
        for i in 0..4 {
            index.insert(i as u64 + 1, &e(i)).expect("insert");
        }
        let q = unit(vec![1.0, 0.5, 0.0, 0.0]);
        assert!(index.search(&q, 0, 10).is_empty());
        assert!(
            index.search(&q[..3], 2, 10).is_empty(),
            "wrong query length"
        );
        let all = index.search(&q, 100, 1);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].0, 1);
        assert_eq!(all[1].0, 2);
        // Ties (ids 3 and 4 both score 0) come lower id first.
        assert_eq!((all[2].0, all[3].0), (3, 4));

        // Removing everything leaves an empty, usable index.
        for id in 1..=4 {
            assert!(index.remove(id));
        }
        assert!(index.is_empty());
        assert!(index.search(&q, 3, 10).is_empty());
        index.insert(9, &e(2)).expect("insert");
        assert_eq!(index.search(&q, 3, 10), vec![(9, 0.0)]);

        // An empty index saves and loads.
        let dir = temp_dir("empty");
        let path = dir.join("empty.hnsw");
        Hnsw::new(4, HnswParams::default())
            .save(&path)
            .expect("save");
        let loaded = Hnsw::load(&path).expect("load");
        assert!(loaded.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn searches_share_the_index_across_threads() {
        fn is_sync<T: Send + Sync>() {}
        is_sync::<Hnsw>();
        let data = Clusters::new(16);
        let points = data.points(400, 11);
        let index = build(&points, 16);
        std::thread::scope(|s| {
            for t in 0..2 {
                let (index, points) = (&index, &points);
                s.spawn(move || {
                    for (id, v) in points.iter().skip(t).step_by(7) {
                        assert_eq!(index.search(v, 1, 32)[0].0, *id);
                    }
                });
            }
        });
    }
}
