//! `gpubench [--epochs N] [--data DIR]` (feature `cuda`): the seed's MNIST CNN trained at batch 64 on the
//! CUDA backend, then on the CPU backend in the same process, for one JSON line each: seconds per epoch,
//! training and test accuracy, inference images/s at batch 1000, and for the GPU run which backend methods ran on the GPU and which fell back
//! to the CPU. tools/gpu_check.sh runs it beside the PyTorch peer (bench/gpu_peer.py).
//!
//! The batches come from host memory, as `fit` and `predict` take them (the PyTorch peer keeps its data on the
//! GPU); the tape's values and gradients stay on the device, parameters go up once per step and their
//! gradients come down for the optimizer, which runs on the host (graph.rs, backend/cuda/mod.rs). For the
//! GPU it also times `predict` over the test set at batches of 100 and 10,000 and for one image, which tells
//! per-call costs from per-image ones.

use kiln::prelude::*;
use kiln_bench::{median, mnist_model};
use std::sync::Arc;

fn main() {
    let mut epochs = 1;
    let mut data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist").to_string();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next();
        match (a.as_str(), v) {
            ("--epochs", Some(v)) => epochs = v.parse().unwrap_or_else(|e| fail(&format!("--epochs: {e}"))),
            ("--data", Some(v)) => data = v,
            (other, _) => fail(&format!("unknown argument `{other}` (valid: --epochs N, --data DIR)")),
        }
    }
    let cuda = match kiln_core::backend::cuda::Cuda::new() {
        Ok(c) => Arc::new(c),
        Err(e) => fail(&e.to_string()),
    };
    let (train, test) = kiln::data::mnist::load(&data).unwrap_or_else(|e| fail(&e.to_string()));
    for device in ["cuda", "cpu"] {
        let mut model = mnist_model("cnn").unwrap_or_else(|e| fail(&e.to_string()));
        if device == "cuda" {
            // Model::set_backend: the training graph and the inference tapes (predict) both.
            model.set_backend(cuda.clone());
        }
        model.graph_mut().set_profiling(true);
        let mut secs = Vec::new();
        let mut acc = 0.0;
        for e in 0..epochs {
            let opts = FitOptions { epochs: 1, batch_size: 64, seed: e as u64, verbose: false, ..Default::default() };
            let h = model.fit(&train.x, &train.y, opts).unwrap_or_else(|e| fail(&e.to_string()));
            let log = h.last().expect("one epoch");
            secs.push(log.seconds);
            acc = log.metrics[0].1;
        }
        // Inference at batch 1000: the median of three passes over the test set.
        let mut rates = Vec::new();
        let mut probs = None;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            probs = Some(model.predict(&test.x, 1000).unwrap_or_else(|e| fail(&e.to_string())));
            rates.push(test.x.rows() as f64 / t.elapsed().as_secs_f64());
        }
        let probs = probs.expect("three passes");
        let hits = probs.argmax_rows().iter().zip(&test.labels).filter(|(p, l)| **p == **l as usize).count();
        let profile = model.graph().profile().map(|p| p.rows()).unwrap_or_default();
        let mut line = serde_json::json!({
            "device": device, "gpu": cuda.device_name(), "epoch_s": median(&mut secs), "train_acc": acc,
            "test_acc": hits as f64 / test.labels.len() as f64, "batch1000_img_s": median(&mut rates),
            "profile": profile.iter().map(|(n, f, b, c)| serde_json::json!([n, f, b, c])).collect::<Vec<_>>(),
        });
        if device == "cuda" {
            let rate = |batch: usize| {
                let mut r: Vec<f64> = (0..3)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        model.predict(&test.x, batch).unwrap_or_else(|e| fail(&e.to_string()));
                        test.x.rows() as f64 / t.elapsed().as_secs_f64()
                    })
                    .collect();
                median(&mut r)
            };
            line["batch100_img_s"] = serde_json::json!(rate(100));
            line["batch10000_img_s"] = serde_json::json!(rate(10_000));
            let one = test.x.slice_rows(0, 1);
            let mut ms: Vec<f64> = (0..20)
                .map(|_| {
                    let t = std::time::Instant::now();
                    model.predict(&one, 1).unwrap_or_else(|e| fail(&e.to_string()));
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            line["one_image_ms"] = serde_json::json!(median(&mut ms));
            line["gpu_calls"] = serde_json::json!(cuda.calls());
            line["cpu_fallbacks"] = serde_json::json!(cuda.fallbacks());
        }
        println!("{line}");
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}
