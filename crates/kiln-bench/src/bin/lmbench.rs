//! A GGUF language model's speed: `cargo run --release -p kiln-bench --bin lmbench -- MODEL.gguf [PROMPT_TOKENS
//! [NEW_TOKENS]]` (default 128 and 64). Times the prompt (one forward over all its tokens) and greedy
//! generation (one token at a time, through the cache), as llama.cpp's `llama-bench` does (pp and tg), with the
//! default arithmetic and with `fast8` (llama.cpp's), and prints one JSON line with tokens per second and the
//! peak resident memory. KILN_THREADS sets the threads.

use kiln::llm::Lm;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: lmbench MODEL.gguf [PROMPT_TOKENS [NEW_TOKENS]]");
    let pp: usize = args.next().map_or(128, |s| s.parse().expect("PROMPT_TOKENS: a number"));
    let tg: usize = args.next().map_or(64, |s| s.parse().expect("NEW_TOKENS: a number"));
    kiln::threads::configure(None).unwrap();
    let mut lm = Lm::open(std::path::Path::new(&path)).unwrap();
    let text = "The history of the city begins with a small settlement on the river, where traders met to exchange "
        .repeat(pp / 8 + 2);
    let prompt: Vec<u32> = lm.encode(&text).unwrap().into_iter().take(pp).collect();
    // The default arithmetic (16-bit activations) and llama.cpp's (`fast8`), each the best of three.
    let mut runs = Vec::new();
    for fast8 in [false, true] {
        lm.model.fast8 = fast8;
        let (mut best_pp, mut best_tg) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            let mut cache = lm.model.cache(pp + tg + 1);
            let t = Instant::now();
            let mut logits = lm.model.forward(&prompt, &mut cache).unwrap();
            best_pp = best_pp.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..tg {
                let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
                logits = lm.model.forward(&[next], &mut cache).unwrap();
            }
            best_tg = best_tg.min(t.elapsed().as_secs_f64());
        }
        runs.push((prompt.len() as f64 / best_pp, tg as f64 / best_tg));
    }
    println!(
        "{}",
        serde_json::json!({
            "model": path, "threads": kiln::threads::current(),
            "prompt_tokens": prompt.len(), "prompt_tokens_per_s": runs[0].0,
            "new_tokens": tg, "generate_tokens_per_s": runs[0].1,
            "fast8_prompt_tokens_per_s": runs[1].0, "fast8_generate_tokens_per_s": runs[1].1,
            "peak_rss_mib": kiln_bench::peak_rss_mib(),
        })
    );
}
