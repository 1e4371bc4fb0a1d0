//! Models with several outputs (Keras's `Model(inputs, [out_a, out_b])`): one loss per output, weighted and
//! summed; scores named per output; `predict_outputs`; save and load; and the errors a wrong setup gets.

use kiln::core::Rng;
use kiln::model::{CompileConfig, Model};
use kiln::prelude::*;

/// x: 4 numbers in [-1, 1); class: which of the first three is largest; value: x0 + x1 − x3.
fn data(n: usize, seed: u64) -> (Tensor, Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    let (mut x, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let r: Vec<f32> = (0..4).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
        c.push(kiln::core::argmax(&r[..3]) as f32);
        v.push(r[0] + r[1] - r[3]);
        x.extend(r);
    }
    (Tensor::new(&[n, 4], x).unwrap(), Tensor::new(&[n], c).unwrap(), Tensor::new(&[n, 1], v).unwrap())
}

/// A shared hidden layer and two heads: `class` (softmax over 3) and `value` (linear).
fn two_heads(seed: u64) -> Model {
    let mut m = Model::new(&[4]).seed(seed);
    let h = m.apply(Dense::new(32).activation(Activation::Relu).name("shared"), &[]).unwrap();
    m.apply(Dense::new(3).activation(Activation::Softmax).name("class"), &[&h]).unwrap();
    m.apply(Dense::new(1).name("value"), &[&h]).unwrap();
    m.set_outputs(&["class", "value"]).unwrap();
    m
}

fn compiled(seed: u64, weights: &[f32]) -> Model {
    let mut m = two_heads(seed);
    let c = CompileConfig::new(Adam::new(0.01), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])
        .losses(&[Loss::SparseCategoricalCrossentropy, Loss::MeanSquaredError])
        .loss_weights(weights);
    m.compile_with(c).unwrap();
    m
}

#[test]
fn two_heads_learn_both_tasks_and_name_their_scores() {
    let (x, c, v) = data(3000, 1);
    let mut m = compiled(2, &[2.0, 0.5]);
    assert_eq!(m.outputs(), ["class", "value"]);
    assert!(m.summary().contains("Outputs: class, value"), "{}", m.summary());
    let before = m.evaluate(&x, &[&c, &v], 500).unwrap();
    let opts = FitOptions { epochs: 25, batch_size: 64, validation_split: 0.2, ..Default::default() };
    let h = m.fit(&x, &[&c, &v], opts).unwrap();
    let last = h.last().unwrap();
    let names: Vec<&str> = last.metrics.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["class_loss", "value_loss", "class_accuracy", "value_accuracy"]);
    let val = |name: &str| last.val_metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap();
    assert!(val("class_accuracy") > 0.9, "{last:?}");
    let after = m.evaluate(&x, &[&c, &v], 500).unwrap();
    // The loss minimized is Σ weight · loss; each head's own loss fell.
    let (cl, vl) = (after.get("class_loss").unwrap(), after.get("value_loss").unwrap());
    assert!((after.loss - (2.0 * cl + 0.5 * vl)).abs() < 1e-4 * after.loss.max(1.0), "{after:?}");
    assert!(vl < before.get("value_loss").unwrap() / 10.0, "value loss {before:?} -> {after:?}");
    assert!(cl < before.get("class_loss").unwrap() / 3.0, "class loss {before:?} -> {after:?}");

    // predict answers with one array per output, probabilities for the softmax head.
    assert!(m.predict(&x, 100).unwrap_err().to_string().contains("predict_outputs"));
    let p = m.predict_outputs(&x, 100).unwrap();
    assert_eq!((p[0].shape(), p[1].shape()), (&[3000, 3][..], &[3000, 1][..]));
    for row in p[0].data().chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heads.safetensors");
    m.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.outputs(), ["class", "value"]);
    let q = loaded.predict_outputs(&x, 100).unwrap();
    assert_eq!((p[0].data(), p[1].data()), (q[0].data(), q[1].data()));
    assert_eq!(loaded.evaluate(&x, &[&c, &v], 500).unwrap().loss, after.loss);
}

#[test]
fn a_zero_loss_weight_leaves_its_head_untrained() {
    let (x, c, v) = data(500, 3);
    let mut m = compiled(4, &[1.0, 0.0]);
    let kernel = |m: &Model| m.graph().store().by_name("value.kernel").unwrap().value.clone();
    let shared = |m: &Model| m.graph().store().by_name("shared.kernel").unwrap().value.clone();
    let (k0, s0) = (kernel(&m), shared(&m));
    m.fit(&x, &[&c, &v], FitOptions { epochs: 2, batch_size: 50, ..Default::default() }).unwrap();
    assert_eq!(kernel(&m), k0, "the value head has weight 0: no gradient reaches it");
    assert_ne!(shared(&m), s0, "the class head still trains the shared layer");
}

#[test]
fn an_output_that_feeds_another_layer_keeps_its_activation() {
    // `class` is an output and also read by `score`: its softmax must stay in the graph (no fused logits).
    let (x, c, v) = data(1000, 5);
    let mut m = Model::new(&[4]).seed(6);
    let h = m.apply(Dense::new(16).activation(Activation::Relu), &[]).unwrap();
    let class = m.apply(Dense::new(3).activation(Activation::Softmax).name("class"), &[&h]).unwrap();
    m.apply(Dense::new(1).name("score"), &[&class]).unwrap();
    m.set_outputs(&["class", "score"]).unwrap();
    let cfg = CompileConfig::new(Adam::new(0.01), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])
        .losses(&[Loss::SparseCategoricalCrossentropy, Loss::MeanSquaredError])
        // `score` reads class probabilities, which cannot hold x0 + x1 − x3: its pull on them stays small.
        .loss_weights(&[1.0, 0.05]);
    m.compile_with(cfg).unwrap();
    let before = m.evaluate(&x, &[&c, &v], 250).unwrap();
    m.fit(&x, &[&c, &v], FitOptions { epochs: 20, batch_size: 32, ..Default::default() }).unwrap();
    let after = m.evaluate(&x, &[&c, &v], 250).unwrap();
    let loss = |e: &Evaluation, k: &str| e.get(k).unwrap();
    assert!(loss(&after, "class_loss") < loss(&before, "class_loss") * 0.7, "{before:?} -> {after:?}");
    assert!(loss(&after, "class_accuracy") > 0.85, "{after:?}");
    assert!(loss(&after, "score_loss") < loss(&before, "score_loss"), "{before:?} -> {after:?}");
    let p = m.predict_outputs(&x, 100).unwrap();
    for row in p[0].data().chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    // The loss evaluated is the MSE of what predict gives: `score` read probabilities while training too.
    let mse = p[1].data().iter().zip(v.data()).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / 1000.0;
    assert!((loss(&after, "score_loss") - mse).abs() < 1e-4 * mse.max(1.0), "{after:?} against {mse}");
}

#[test]
fn a_wrong_setup_is_reported_naming_the_outputs() {
    let (x, c, v) = data(50, 7);
    let mut m = two_heads(8);
    let e = m.set_outputs(&["class", "nope"]).unwrap_err().to_string();
    assert!(e.contains("`nope` is no layer") && e.contains("shared, class, value"), "{e}");
    let e = m.set_outputs(&["class", "class"]).unwrap_err().to_string();
    assert!(e.contains("named twice"), "{e}");
    let cfg = CompileConfig::new(Adam::new(0.01), Loss::MeanSquaredError, &[]).losses(&[Loss::MeanSquaredError]);
    let e = m.compile_with(cfg).unwrap_err().to_string();
    assert!(e.contains("1 losses given for 2 outputs (class, value)"), "{e}");
    let cfg = CompileConfig::new(Adam::new(0.01), Loss::MeanSquaredError, &[]).loss_weights(&[1.0, -1.0]);
    assert!(m.compile_with(cfg).unwrap_err().to_string().contains("loss weight -1"));

    let mut m = compiled(9, &[]);
    let e = m.fit(&x, &c, FitOptions::default()).unwrap_err().to_string();
    assert!(e.contains("1 arrays given for y, the model has 2 outputs (class, value)"), "{e}");
    let e = m.evaluate(&x, &[&v, &c], 10).unwrap_err().to_string();
    assert!(e.contains("y for output `class`"), "{e}");
    let cw = FitOptions {
        class_weight: Some(ClassWeight::Rule(kiln::class_weight::WeightRule::Balanced)),
        ..Default::default()
    };
    let e = m.fit(&x, &[&c, &v], cw).unwrap_err().to_string();
    assert!(e.contains("class_weight reads one output's classes"), "{e}");

    // A layer that is neither read nor an output still trains nothing, and is named.
    let mut m = two_heads(10);
    m.set_outputs(&["class"]).unwrap();
    let e = m.compile(Adam::new(0.01), Loss::SparseCategoricalCrossentropy, &[]).unwrap_err().to_string();
    assert!(e.contains("`value`") && !e.contains("make it an output") && e.contains("`class`"), "{e}");
}
