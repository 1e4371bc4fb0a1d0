//! The approximate part of an index: a graph of the unit vectors (HNSW, Malkov and Yashunin 2018, from the
//! `hnsw_rs` crate) that a query walks instead of scoring every document. A query visits a few thousand
//! vectors whatever the collection's size; what it finds is usually, not always, the exact top k, so an
//! index built with it also keeps every vector and can answer exactly (`Index::search_exact`).
//!
//! Measured (`cargo run --release -p kiln-bench --bin indexbench`) on 2 cores, 384 values: see index/mod.rs's
//! header. `kiln index build` builds the graph from `APPROXIMATE_FROM` documents on.

use crate::{Error, Result};
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// From this many documents `kiln index build` adds the graph unless told otherwise: here an exact search
/// reads 150 MB of vectors a query and takes 7.5 ms, as long as embedding a short question, and it grows
/// with the collection (79 ms at 1,000,000) while a walk of the graph stays under a millisecond.
pub const APPROXIMATE_FROM: usize = 100_000;
/// The files' basename inside the index folder: `ann.hnsw.graph` and `ann.hnsw.data`.
pub(super) const BASENAME: &str = "ann";
pub(super) const FILES: [&str; 2] = ["ann.hnsw.graph", "ann.hnsw.data"];

/// How the graph is built and walked (index.json's `approximate`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HnswSettings {
    /// Links per vector (the paper's M; 16 is hnswlib's default).
    pub m: usize,
    /// Candidates kept while linking a new vector (hnswlib's ef_construction).
    pub ef_construction: usize,
    /// Candidates kept while searching (at least k); more finds the exact top k more often, slower.
    pub ef_search: usize,
}

impl Default for HnswSettings {
    fn default() -> Self {
        HnswSettings { m: 16, ef_construction: 200, ef_search: 64 }
    }
}

/// 1 − a·b for unit vectors (cosine distance), never below 0 nor NaN (a NaN vector is as far as can be),
/// with the index's vectorized dot product.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnitCosine;

impl hnsw_rs::anndists::dist::Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = 1.0 - super::dot(a, b);
        if d.is_nan() { 2.0 } else { d.max(0.0) }
    }
}

pub(super) type Graph = Hnsw<'static, f32, UnitCosine>;

/// The graph of `vectors` ([n, dim], unit rows), built on every core.
pub(super) fn build(vectors: &[f32], dim: usize, s: HnswSettings) -> Result<Graph> {
    let n = vectors.len() / dim.max(1);
    if !(1..=256).contains(&s.m) || s.ef_construction == 0 || s.ef_search == 0 {
        return Err(Error::Config(format!(
            "index: HNSW m must be 1 to 256 and ef_construction, ef_search positive, got {s:?}"
        )));
    }
    // The crate's maximum of layers (16), which its file format requires; about ln(n)/ln(m) are used.
    let graph = Hnsw::new(s.m, n.max(1), 16, s.ef_construction, UnitCosine);
    let rows: Vec<(&[f32], usize)> = vectors.chunks_exact(dim).enumerate().map(|(i, v)| (v, i)).collect();
    graph.parallel_insert_slice(&rows);
    Ok(graph)
}

/// The ids and distances of the `k` nearest documents the graph finds, nearest first.
pub(super) fn search(graph: &Graph, q: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
    graph.search(q, k, ef.max(k)).into_iter().map(|n| (n.d_id, n.distance)).collect()
}

/// Writes the graph's files into `dir`.
pub(super) fn save(graph: &Graph, dir: &Path) -> Result<()> {
    let name = graph
        .file_dump(dir, BASENAME)
        .map_err(|e| Error::Io { path: dir.display().to_string(), message: format!("writing the HNSW graph: {e}") })?;
    if name != BASENAME {
        return Err(Error::Io {
            path: dir.display().to_string(),
            message: format!("the HNSW graph was written as `{name}`, not `{BASENAME}` (files were in the way)"),
        });
    }
    Ok(())
}

/// Reads the graph's files from `dir`. The reader is kept for the life of the process: the crate's graph
/// borrows it (a few hundred bytes per load).
pub(super) fn load(dir: &Path) -> Result<Graph> {
    for f in FILES {
        if !dir.join(f).is_file() {
            return Err(Error::Config(format!(
                "{}: index.json says the index has an HNSW graph, but {f} is missing; rebuild the index",
                dir.display()
            )));
        }
    }
    let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, BASENAME)));
    io.load_hnsw::<f32, UnitCosine>()
        .map_err(|e| Error::Config(format!("{}: the HNSW graph does not load ({e}); rebuild the index", dir.display())))
}
