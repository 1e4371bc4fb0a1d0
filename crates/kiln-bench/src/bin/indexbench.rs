//! Search time per query against the collection's size, exact and through the HNSW graph: `cargo run
//! --release -p kiln-bench --bin indexbench [-- SIZES [GRAPH_SIZES]]` (default 10000,100000,1000000 exact
//! and 100000 with the graph; documents of 384 values, MiniLM's width). The vectors are clustered as
//! sentence vectors are (2,000 random centres, each document its centre plus noise of a third of its
//! length), since random vectors in 384 dimensions have no near neighbours to find. Prints one JSON line
//! per size: the median milliseconds of 100 queries for the 10 best documents, exact and, where built,
//! through the graph with its build time and recall@10 (the share of the exact top 10 it finds).

use kiln::index::{Document, HnswSettings, Index, IndexInfo};
use std::time::Instant;

fn sizes(arg: Option<String>, default: &[usize]) -> Vec<usize> {
    arg.map(|s| {
        s.split(',').filter(|n| !n.is_empty()).map(|n| n.parse().expect("SIZES: numbers separated by commas")).collect()
    })
    .unwrap_or(default.to_vec())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let exact_sizes = sizes(std::env::args().nth(1), &[10_000, 100_000, 1_000_000]);
    let graph_sizes = sizes(std::env::args().nth(2), &[100_000]);
    let dim = 384;
    let mut rng = kiln::core::Rng::new(3);
    let centres: Vec<Vec<f32>> = (0..2000).map(|_| (0..dim).map(|_| rng.normal() as f32).collect()).collect();
    let point = |rng: &mut kiln::core::Rng| -> Vec<f32> {
        let c = &centres[rng.below(centres.len())];
        c.iter().map(|x| x + rng.normal() as f32 / 3.0).collect()
    };
    let mut all: Vec<usize> = exact_sizes.iter().chain(&graph_sizes).copied().collect();
    all.sort();
    all.dedup();
    for n in all {
        let vecs: Vec<Vec<f32>> = (0..n).map(|_| point(&mut rng)).collect();
        let docs = (0..n).map(|i| Document { row: i + 1, text: String::new() }).collect();
        let info = IndexInfo {
            format: String::new(),
            model: Default::default(),
            source: Default::default(),
            column: String::new(),
            documents: n,
            dim,
            approximate: None,
        };
        let mut index = Index::from_vectors(info, docs, vecs).unwrap();
        let queries: Vec<Vec<f32>> = (0..100).map(|_| point(&mut rng)).collect();
        let mut exact_ms = Vec::new();
        let mut exact_top = Vec::new();
        for q in &queries {
            let t = Instant::now();
            let hits = index.search_exact(q, 10).unwrap();
            exact_ms.push(t.elapsed().as_secs_f64() * 1e3);
            exact_top.push(hits.iter().map(|h| h.doc.row).collect::<Vec<_>>());
        }
        let mut line = serde_json::json!({"documents": n, "dim": dim, "exact_query_ms": median(exact_ms)});
        if graph_sizes.contains(&n) {
            let settings = HnswSettings::default();
            let t = Instant::now();
            index = index.with_graph(settings).unwrap();
            let build_s = t.elapsed().as_secs_f64();
            let (mut ms, mut found) = (Vec::new(), 0);
            for (q, top) in queries.iter().zip(&exact_top) {
                let t = Instant::now();
                let hits = index.search(q, 10).unwrap();
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                found += hits.iter().filter(|h| top.contains(&h.doc.row)).count();
            }
            line["graph"] = serde_json::json!({
                "m": settings.m, "ef_construction": settings.ef_construction, "ef_search": settings.ef_search,
                "build_s": build_s, "query_ms": median(ms), "recall_at_10": found as f64 / (10 * queries.len()) as f64,
            });
        }
        println!("{line}");
    }
}
