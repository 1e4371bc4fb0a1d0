//! Graph models (Keras's functional API): two inputs, merges, a residual block; trained, saved and loaded;
//! `predict(&self)` from several threads at once; and the errors a wrong graph gets.

use kiln::core::Rng;
use kiln::model::Model;
use kiln::nn::{Add, Concatenate, Dot};
use kiln::prelude::*;
use kiln::train::Inputs;

/// Users and items with a hidden liking: user u likes item i when (u + i) is even. One-number ids.
fn pairs(n: usize, seed: u64) -> (Tensor, Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    let (mut u, mut i, mut y) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (a, b) = ((rng.next_u64() % 12) as f32, (rng.next_u64() % 10) as f32);
        u.push(a);
        i.push(b);
        y.push((a as usize + b as usize).is_multiple_of(2) as u8 as f32);
    }
    (Tensor::new(&[n, 1], u).unwrap(), Tensor::new(&[n, 1], i).unwrap(), Tensor::new(&[n, 1], y).unwrap())
}

fn recommender(seed: u64) -> Model {
    let mut m = Model::with_inputs(&[("user", &[1]), ("item", &[1])]).seed(seed);
    let u = m.apply(Embedding::new(12, 8), &["user"]).unwrap();
    let u = m.apply(Flatten::new(), &[&u]).unwrap();
    let i = m.apply(Embedding::new(10, 8), &["item"]).unwrap();
    let i = m.apply(Flatten::new(), &[&i]).unwrap();
    let both = m.apply(Concatenate::new(), &[&u, &i]).unwrap();
    let h = m.apply(Dense::new(32).activation(Activation::Relu), &[&both]).unwrap();
    m.apply(Dense::new(1).activation(Activation::Sigmoid), &[&h]).unwrap();
    m
}

#[test]
fn a_two_input_model_learns_a_pairwise_rule_and_survives_save_and_load() {
    let (u, i, y) = pairs(2000, 1);
    let mut m = recommender(3);
    assert_eq!(m.inputs().len(), 2);
    m.compile(Adam::new(0.01), Loss::BinaryCrossentropy, &[Metric::Accuracy]).unwrap();
    let before = m.evaluate(&[&u, &i], &y, 256).unwrap();
    let opts = FitOptions { epochs: 30, batch_size: 64, validation_split: 0.2, ..Default::default() };
    let h = m.fit(&[&u, &i], &y, opts).unwrap();
    let last = h.last().unwrap();
    // The rule is a parity over 120 pairs: a model that ignores either input stays at chance (0.5).
    assert!(last.val_metrics[0].1 > 0.95, "validation accuracy {:?}", last);
    let after = m.evaluate(&[&u, &i], &y, 256).unwrap();
    assert!(after.loss < before.loss / 4.0, "loss {} -> {}", before.loss, after.loss);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.safetensors");
    m.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.summary(), m.summary());
    let (p0, p1) = (m.predict(&[&u, &i], 100).unwrap(), loaded.predict(&[&u, &i], 100).unwrap());
    assert_eq!(p0.data(), p1.data());
    // Swapping the inputs changes the answer: they are read by name, not by position in a flat row.
    let swapped = m.predict(&[&i, &u], 100);
    assert!(swapped.is_err() || swapped.unwrap().data() != p0.data());
}

/// x -> h = relu(x·W1) -> f = h·W2 -> add(h, f) -> out: the output equals the formula with the weights.
#[test]
fn a_residual_block_computes_h_plus_f_of_h_and_trains() {
    let mut m = Sequential::new(&[4]).seed(5);
    m.add(Dense::new(6).activation(Activation::Relu).name("h")).unwrap();
    m.add(Dense::new(6).name("f")).unwrap();
    m.apply(Add::new().name("skip"), &["h", "f"]).unwrap();
    m.add(Dense::new(1).name("out")).unwrap();
    let mut rng = Rng::new(9);
    let n = 256;
    let xs: Vec<f32> = (0..n * 4).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
    let ys: Vec<f32> = xs.chunks(4).map(|r| r[0] * r[1] - r[2] + 0.5 * r[3]).collect();
    let (x, y) = (Tensor::new(&[n, 4], xs).unwrap(), Tensor::new(&[n, 1], ys).unwrap());

    let weights = |m: &Model, name: &str| -> Vec<f32> {
        let g = m.graph();
        g.store().by_name(name).unwrap_or_else(|| panic!("no parameter {name}")).value.clone()
    };
    let check_forward = |m: &Model| {
        let (w1, b1, w2, b2, w3, b3) = (
            weights(m, "h.kernel"),
            weights(m, "h.bias"),
            weights(m, "f.kernel"),
            weights(m, "f.bias"),
            weights(m, "out.kernel"),
            weights(m, "out.bias"),
        );
        let p = m.predict(&x, 64).unwrap();
        for (r, row) in x.data().chunks(4).enumerate().take(20) {
            let h: Vec<f64> = (0..6)
                .map(|j| (b1[j] as f64 + (0..4).map(|k| row[k] as f64 * w1[k * 6 + j] as f64).sum::<f64>()).max(0.0))
                .collect();
            let f: Vec<f64> =
                (0..6).map(|j| b2[j] as f64 + (0..6).map(|k| h[k] * w2[k * 6 + j] as f64).sum::<f64>()).collect();
            let out = b3[0] as f64 + (0..6).map(|j| (h[j] + f[j]) * w3[j] as f64).sum::<f64>();
            assert!((p.data()[r] as f64 - out).abs() < 1e-4, "row {r}: {} vs {out}", p.data()[r]);
        }
    };
    check_forward(&m);
    m.compile(Adam::new(0.01), Loss::MeanSquaredError, &[]).unwrap();
    let before = m.evaluate(&x, &y, 64).unwrap().loss;
    m.fit(&x, &y, FitOptions { epochs: 60, batch_size: 32, ..Default::default() }).unwrap();
    let after = m.evaluate(&x, &y, 64).unwrap().loss;
    assert!(after < before / 5.0, "loss {before} -> {after}");
    check_forward(&m);
    assert!(m.summary().contains("skip (Add)"), "{}", m.summary());
}

#[test]
fn dot_of_two_embeddings_is_their_inner_product_and_cosine_when_normalized() {
    for normalize in [false, true] {
        let mut m = Model::with_inputs(&[("a", &[1]), ("b", &[1])]).seed(2);
        let ea = m.apply(Embedding::new(5, 3).name("ea"), &["a"]).unwrap();
        let fa = m.apply(Flatten::new(), &[&ea]).unwrap();
        let eb = m.apply(Embedding::new(5, 3).name("eb"), &["b"]).unwrap();
        let fb = m.apply(Flatten::new(), &[&eb]).unwrap();
        m.apply(Dot::new().normalize(normalize), &[&fa, &fb]).unwrap();
        assert_eq!(m.output_shape(), &[1]);
        let a = Tensor::new(&[5, 1], vec![0.0, 1.0, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::new(&[5, 1], vec![4.0, 0.0, 2.0, 1.0, 3.0]).unwrap();
        let p = m.predict(&[&a, &b], 8).unwrap();
        let g = m.graph();
        let (ta, tb) =
            (&g.store().by_name("ea.embeddings").unwrap().value, &g.store().by_name("eb.embeddings").unwrap().value);
        for r in 0..5 {
            let (va, vb) = (&ta[a.data()[r] as usize * 3..][..3], &tb[b.data()[r] as usize * 3..][..3]);
            let dot: f64 = va.iter().zip(vb).map(|(x, y)| *x as f64 * *y as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let want = if normalize { dot / (norm(va) * norm(vb)) } else { dot };
            assert!((p.data()[r] as f64 - want).abs() < 1e-5, "row {r}: {} vs {want}", p.data()[r]);
        }
    }
}

#[test]
fn one_model_predicts_from_four_threads_bit_identically() {
    let (u, i, _) = pairs(700, 4);
    let m = recommender(6);
    let one = m.predict(&[&u, &i], 64).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..5).map(|_| m.predict(&[&u, &i], 64).unwrap().data().to_vec()).collect::<Vec<_>>()))
            .collect();
        for h in handles {
            for got in h.join().unwrap() {
                assert_eq!(got, one.data(), "a thread's predictions differ from one thread's");
            }
        }
    });
}

#[test]
fn a_wrong_graph_is_reported_naming_the_layer() {
    let mut m = Model::with_inputs(&[("user", &[1]), ("item", &[3])]);
    let e = m.apply(Dense::new(2), &[]).unwrap_err().to_string();
    assert!(e.contains("2 inputs") && e.contains("name the ones it reads"), "{e}");
    let e = m.apply(Dense::new(2), &["usr"]).unwrap_err().to_string();
    assert!(e.contains("`usr`") && e.contains("user, item"), "{e}");
    let e = m.apply(Add::new().name("sum"), &["user", "item"]).unwrap_err().to_string();
    assert!(e.contains("`sum` (Add)") && e.contains("one shape") && e.contains("(3,)"), "{e}");
    let e = m.apply(Dense::new(2).name("d"), &["user", "item"]).unwrap_err().to_string();
    assert!(e.contains("`d` (Dense) takes one input, got 2"), "{e}");
    let e = m.apply(Concatenate::new().name("c"), &["user"]).unwrap_err().to_string();
    assert!(e.contains("two or more inputs"), "{e}");
    m.apply(Concatenate::new().name("c"), &["user", "item"]).unwrap();
    assert_eq!(m.output_shape(), &[4]);
    let e = m.apply(Dense::new(2).name("user"), &["c"]).unwrap_err().to_string();
    assert!(e.contains("named `user`"), "{e}");

    // A branch nothing reads would train nothing: compile says which.
    let mut dead = Model::with_inputs(&[("x", &[4])]);
    dead.apply(Dense::new(3).name("side"), &["x"]).unwrap();
    dead.apply(Dense::new(2).name("main"), &["x"]).unwrap();
    let e = dead.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]).unwrap_err().to_string();
    assert!(e.contains("layer `side` is read by no later layer") && e.contains("`main`"), "{e}");

    // Data that does not match the inputs: how many arrays, and each one's shape.
    m.add(Dense::new(1)).unwrap();
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]).unwrap();
    let (a, b) = (Tensor::zeros(&[4, 1]).unwrap(), Tensor::zeros(&[4, 3]).unwrap());
    let e = m.predict(&a, 4).unwrap_err().to_string();
    assert!(e.contains("1 arrays given") && e.contains("2 inputs (user, item)"), "{e}");
    let e = m.predict(&[&a, &a], 4).unwrap_err().to_string();
    assert!(e.contains("x for input `item` has shape (4, 1)"), "{e}");
    let short = Tensor::zeros(&[3, 3]).unwrap();
    let e = m.predict(Inputs::Many(&[&a, &short]), 4).unwrap_err().to_string();
    assert!(e.contains("3 samples but the first input has 4"), "{e}");
    assert_eq!(m.predict(&[&a, &b], 4).unwrap().shape(), &[4, 1]);
}
