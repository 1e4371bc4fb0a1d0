//! Text models' training speed: `cargo run --release -p kiln-bench --bin textbench [-- --epochs N --models
//! lstm,gru --profile]` (`--profile`: seconds per kind of op on stderr).
//! Synthetic reviews of 100 term ids (vocabulary 20,000, about a third of each row padding), 20,000 of them,
//! batch 64, Adam, binary labels; trains an embedding bag (mean of 64-wide vectors → Dense 32 → 1), the same
//! with lazy Adam (`embedding_bag_sparse`: only the table rows a batch uses are updated), an LSTM and a GRU
//! (Embedding 64 with mask → LSTM or GRU 32 → 1), and a transformer (Embedding 64 with mask → learned
//! positions → 2 pre-norm GELU encoder blocks of 4 heads, feed-forward 128, dropout 0.1 → LayerNorm → masked
//! average → 1), and prints seconds per epoch as one JSON line per model.
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

fn model(kind: ModelKind, lazy: bool) -> Sequential {
    let mut m = Sequential::new(&[LEN]).seed(1);
    match kind {
        ModelKind::Lstm => {
            m.add(Embedding::new(VOCAB, 64).mask_zero(true)).unwrap();
            m.add(Lstm::new(32)).unwrap();
        }
        ModelKind::Gru => {
            m.add(Embedding::new(VOCAB, 64).mask_zero(true)).unwrap();
            m.add(Gru::new(32)).unwrap();
        }
        ModelKind::Transformer => {
            m.add(Embedding::new(VOCAB, 64).mask_zero(true)).unwrap();
            m.add(PositionEmbedding::new()).unwrap();
            for _ in 0..2 {
                m.add(TransformerEncoder::new(4, 128).norm_first(true).activation(Activation::Gelu)).unwrap();
            }
            m.add(LayerNormalization::new().epsilon(1e-5)).unwrap();
            m.add(GlobalAveragePooling1D::new()).unwrap();
        }
        _ => {
            m.add(CategoryEmbedding::new(0, &[(VOCAB, 64)]).lengths(&[LEN])).unwrap();
            m.add(Dense::new(32).activation(Activation::Relu)).unwrap();
        }
    }
    m.add(Dense::new(1).activation(Activation::Sigmoid)).unwrap();
    m.compile(Adam::default().lazy(lazy), Loss::BinaryCrossentropy, &[Metric::Accuracy]).unwrap();
    m
}

fn main() {
    let epochs: usize =
        std::env::args().skip_while(|a| a != "--epochs").nth(1).map(|v| v.parse().expect("--epochs N")).unwrap_or(1);
    let profile = std::env::args().any(|a| a == "--profile");
    let only: Option<String> = std::env::args().skip_while(|a| a != "--models").nth(1);
    let (x, y) = data();
    let models = [
        ("embedding_bag", ModelKind::Mlp, false),
        ("embedding_bag_sparse", ModelKind::Mlp, true),
        ("lstm", ModelKind::Lstm, false),
        ("gru", ModelKind::Gru, false),
        ("transformer", ModelKind::Transformer, false),
    ];
    for (name, kind, lazy) in models {
        if only.as_ref().is_some_and(|o| !o.split(',').any(|m| m == name)) {
            continue;
        }
        let mut m = model(kind, lazy);
        m.graph_mut().set_profiling(profile);
        let mut secs = Vec::new();
        for e in 0..epochs {
            let h =
                m.fit(&x, &y, FitOptions { epochs: 1, batch_size: 64, seed: e as u64, ..Default::default() }).unwrap();
            secs.push(h.epochs[0].seconds);
        }
        secs.sort_by(f64::total_cmp);
        let s = secs[secs.len() / 2];
        println!("{}", serde_json::json!({"model": name, "epoch_s": s, "samples_per_s": N as f64 / s}));
        // Where the time went, per kind of op (forward, backward seconds over every epoch), on stderr.
        for (op, fwd, bwd, calls) in m.graph().profile().map(|p| p.rows()).unwrap_or_default() {
            eprintln!("{name} {op:>16}: forward {fwd:7.3} s, backward {bwd:7.3} s, {calls} calls");
        }
    }
}
