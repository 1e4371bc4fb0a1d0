//! Sentence embedding speed of a pretrained encoder folder, kiln's side of bench/embed_side_by_side.py:
//! `embedbench MODEL_DIR TEXTS_FILE` (one text per line). Prints one JSON line: texts per second embedding
//! them all at batch 32 (the median of three passes; sorted by length into batches, as
//! sentence-transformers does), the median milliseconds of one text alone (50 texts), and peak RSS.
//! `KILN_PROFILE=1` also prints the time per op of one pass at batch 32 and of the 50 single texts.

use kiln::pretrained::Encoder;
use kiln_bench::{median, peak_rss_mib};
use std::time::Instant;

fn main() -> kiln::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: embedbench MODEL_DIR TEXTS_FILE");
        std::process::exit(2);
    }
    let mut enc = Encoder::open(&args[1])?;
    let text = std::fs::read_to_string(&args[2]).map_err(|e| kiln::Error::io(std::path::Path::new(&args[2]), &e))?;
    let texts: Vec<&str> = text.lines().collect();
    enc.embed(&texts[..64.min(texts.len())], 32, &mut |_| {})?;
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        enc.embed(&texts, 32, &mut |_| {})?;
        rates.push(texts.len() as f64 / t.elapsed().as_secs_f64());
    }
    if std::env::var_os("KILN_PROFILE").is_some() {
        enc.graph_mut().set_profiling(true);
        eprintln!("batch 32:");
        enc.embed(&texts, 32, &mut |_| {})?;
        for (name, fwd, _, calls) in enc.graph_mut().profile().map(|p| p.rows()).unwrap_or_default() {
            eprintln!("{name:>14} {fwd:8.3} s {calls:8} calls");
        }
        enc.graph_mut().set_profiling(false);
    }
    let profile_one = std::env::var_os("KILN_PROFILE").is_some();
    enc.graph_mut().set_profiling(profile_one);
    let mut one = Vec::new();
    for s in texts.iter().take(50) {
        let t = Instant::now();
        enc.embed(&[s], 1, &mut |_| {})?;
        one.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if profile_one {
        eprintln!("one text at a time ({} texts, {:.3} s in all):", one.len(), one.iter().sum::<f64>() / 1e3);
        for (name, fwd, _, calls) in enc.graph_mut().profile().map(|p| p.rows()).unwrap_or_default() {
            eprintln!("{name:>14} {fwd:8.3} s {calls:8} calls");
        }
        enc.graph_mut().set_profiling(false);
    }
    println!(
        "{}",
        serde_json::json!({"per_s": median(&mut rates), "one_ms": median(&mut one), "rss": peak_rss_mib(), "texts": texts.len()})
    );
    Ok(())
}
