//! Times the quantized products alone (`QMatrix::matmul_t_q8`), so a change to one kernel can be measured
//! without a whole model: `cargo run --release -p kiln-bench --bin qbench`. Shapes of SmolLM2-135M's
//! feed-forward (gate [1536, 576], down [576, 1536]) for one token (generation), 48 and 128 (prompts), each
//! type llama.cpp's GGUF files use, with 8-bit and 16-bit activations; KILN_THREADS sets the threads. Prints
//! the median time per product and the rate at which it reads the weights (GB/s) and multiplies (G pairs of
//! values a second), for each path the processor runs (AVX2, AVX-512 VNNI, AMX), the paths taking turns;
//! QBENCH_PATHS=Amx,default keeps only the paths named.

use kiln_core::DType;
use kiln_core::qdot::{Q8Rows, QIsa};
use kiln_core::quant::QMatrix;
use std::time::Instant;

fn main() {
    kiln::threads::configure(None).unwrap();
    let mut rng = kiln_core::Rng::new(7);
    // Every path this processor runs past the portable one, taking turns within each shape (separate runs of
    // one machine moved by a third).
    let paths: Vec<QIsa> = QIsa::available().into_iter().skip(1).collect();
    let paths = if paths.is_empty() { vec![QIsa::Portable] } else { paths };
    // Then the default entry (`matmul_t_q8`), which takes a prompt with 16-bit activations dequantized onto
    // the f32 kernel.
    let paths: Vec<Option<QIsa>> = paths.into_iter().map(Some).chain([None]).collect();
    // QBENCH_PATHS=Amx,default (names as printed) keeps only those, to profile one.
    let keep = std::env::var("QBENCH_PATHS").ok();
    let name = |p: &Option<QIsa>| p.map_or("default".to_string(), |i| format!("{i:?}"));
    let paths: Vec<Option<QIsa>> =
        paths.into_iter().filter(|p| keep.as_ref().is_none_or(|k| k.split(',').any(|k| k == name(p)))).collect();
    println!("| type | weight | tokens | activations | path | ms | weight GB/s | G products/s |");
    println!("|---|---|---|---|---|---|---|---|");
    for dtype in [DType::Q4_1, DType::Q8_0, DType::Q4_0] {
        for (rows, cols) in [(1536, 576), (576, 1536)] {
            let w: Vec<f32> = (0..rows * cols).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
            let m = QMatrix::quantize(dtype, rows, cols, &w).unwrap();
            let bytes = m.to_bytes().len() as f64;
            for n in [1, 48, 128] {
                for wide in [false, true] {
                    let x: Vec<f32> = (0..n * cols).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
                    let mut out = vec![0.0f32; n * rows];
                    let mut scratch = Q8Rows { wide, ..Q8Rows::default() };
                    let reps = if n == 1 { 400 } else { 20 };
                    let mut t = vec![Vec::new(); paths.len()];
                    for rep in 0..reps + reps / 4 {
                        for (p, &isa) in paths.iter().enumerate() {
                            let s = Instant::now();
                            match isa {
                                Some(isa) => m.matmul_t_q8_on(isa, &x, n, &mut out, &mut scratch).unwrap(),
                                None => m.matmul_t_q8(&x, n, &mut out, &mut scratch).unwrap(),
                            }
                            if rep >= reps / 4 {
                                t[p].push(s.elapsed().as_secs_f64());
                            }
                        }
                    }
                    for (t, isa) in t.iter_mut().zip(&paths) {
                        t.sort_by(f64::total_cmp);
                        let s = t[t.len() / 2];
                        println!(
                            "| {dtype} | [{rows}, {cols}] | {n} | {} bits | {} | {:.3} | {:.1} | {:.1} |",
                            if wide { 16 } else { 8 },
                            name(isa),
                            s * 1e3,
                            bytes / s / 1e9,
                            (rows * cols * n) as f64 / s / 1e9
                        );
                    }
                }
            }
        }
    }
}
