//! Exact cosine search's time per query against the collection's size: `cargo run --release -p kiln-bench
//! --bin indexbench [-- SIZES]` (default 10000,100000,1000000 documents of 384 values, MiniLM's width;
//! random unit vectors). Prints one JSON line per size: the median milliseconds of 20 queries for the
//! 5 best documents.

use kiln::index::{Document, Index, IndexInfo};
use std::time::Instant;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .map(|s| s.split(',').map(|n| n.parse().expect("SIZES: numbers separated by commas")).collect())
        .unwrap_or(vec![10_000, 100_000, 1_000_000]);
    let dim = 384;
    let mut rng = kiln::core::Rng::new(3);
    for n in sizes {
        let vecs: Vec<Vec<f32>> = (0..n).map(|_| (0..dim).map(|_| rng.normal() as f32).collect()).collect();
        let docs = (0..n).map(|i| Document { row: i + 1, text: String::new() }).collect();
        let info = IndexInfo {
            format: String::new(),
            model: Default::default(),
            source: Default::default(),
            column: String::new(),
            documents: n,
            dim,
        };
        let index = Index::from_vectors(info, docs, vecs).unwrap();
        let mut ms = Vec::new();
        for _ in 0..20 {
            let q: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
            let t = Instant::now();
            let hits = index.search(&q, 5).unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(hits.len(), 5);
        }
        ms.sort_by(f64::total_cmp);
        println!("{}", serde_json::json!({"documents": n, "dim": dim, "query_ms": ms[ms.len() / 2]}));
    }
}
