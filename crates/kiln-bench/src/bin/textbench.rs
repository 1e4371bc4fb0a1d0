//! Text models' training speed: `cargo run --release -p kiln-bench --bin textbench [-- --epochs N]`.
//! Synthetic reviews of 100 term ids (vocabulary 20,000, about a third of each row padding), 20,000 of them,
//! batch 64, Adam, binary labels; trains an embedding bag (mean of 64-wide vectors → Dense 32 → 1) and an
//! LSTM (Embedding 64 with mask → LSTM 32 → 1) and prints seconds per epoch as one JSON line per model.
//! bench/text_side_by_side.py runs the same shapes in PyTorch next to it.

use kiln::config::ModelKind;
use kiln::prelude::*;

const N: usize = 20_000;
const LEN: usize = 100;
const VOCAB: usize = 20_000;

fn data() -> (Tensor, Tensor) {
    let mut rng = kiln::core::Rng::new(7);
    let (mut x, mut y) = (Vec::with_capacity(N * LEN), Vec::with_capacity(N));
    for _ in 0..N {
        let len = LEN / 3 + rng.below(2 * LEN / 3 + 1);
        let mut score = 0i32;
        for t in 0..LEN {
            if t < len {
                // Zipf-like ids: small ids are common; ids below 50 carry the label.
                let id = 2 + ((rng.uniform().powi(3)) * (VOCAB - 2) as f64) as usize;
                score += if id < 50 { if id.is_multiple_of(2) { 1 } else { -1 } } else { 0 };
                x.push(id as f32);
            } else {
                x.push(0.0);
            }
        }
        y.push((score >= 0) as u8 as f32);
    }
    (Tensor::new(&[N, LEN], x).unwrap(), Tensor::new(&[N, 1], y).unwrap())
}

fn model(kind: ModelKind) -> Sequential {
    let mut m = Sequential::new(&[LEN]).seed(1);
    match kind {
        ModelKind::Lstm => {
            m.add(Embedding::new(VOCAB, 64).mask_zero(true)).unwrap();
            m.add(Lstm::new(32)).unwrap();
        }
        _ => {
            m.add(CategoryEmbedding::new(0, &[(VOCAB, 64)]).lengths(&[LEN])).unwrap();
            m.add(Dense::new(32).activation(Activation::Relu)).unwrap();
        }
    }
    m.add(Dense::new(1).activation(Activation::Sigmoid)).unwrap();
    m.compile(Adam::default(), Loss::BinaryCrossentropy, &[Metric::Accuracy]).unwrap();
    m
}

fn main() {
    let epochs: usize =
        std::env::args().skip_while(|a| a != "--epochs").nth(1).map(|v| v.parse().expect("--epochs N")).unwrap_or(1);
    let (x, y) = data();
    for (name, kind) in [("embedding_bag", ModelKind::Mlp), ("lstm", ModelKind::Lstm)] {
        let mut m = model(kind);
        let mut secs = Vec::new();
        for e in 0..epochs {
            let h =
                m.fit(&x, &y, FitOptions { epochs: 1, batch_size: 64, seed: e as u64, ..Default::default() }).unwrap();
            secs.push(h.epochs[0].seconds);
        }
        secs.sort_by(f64::total_cmp);
        let s = secs[secs.len() / 2];
        println!("{}", serde_json::json!({"model": name, "epoch_s": s, "samples_per_s": N as f64 / s}));
    }
}
