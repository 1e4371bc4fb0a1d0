//! The Keras-style API: building, shape errors, training on small problems, save/load, reproducibility.

use kiln::prelude::*;
use kiln::{Error, Tensor};

fn mnist_model() -> Sequential {
    let mut m = Sequential::new(&[28, 28, 1]);
    m.add(Conv2D::new(32, (3, 3)).activation(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new((2, 2))).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(128).activation(Activation::Relu)).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    m.add(Dense::new(10).activation(Activation::Softmax)).unwrap();
    m
}

/// Three Gaussian blobs in 2-D, one per class.
fn blobs(n: usize, seed: u64) -> (Tensor, Tensor, Tensor) {
    let mut rng = kiln::core::Rng::new(seed);
    let centers = [(-2.0, 0.0), (2.0, 0.0), (0.0, 2.5)];
    let (mut x, mut y, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let c = i % 3;
        x.push((centers[c].0 + 0.6 * rng.normal()) as f32);
        x.push((centers[c].1 + 0.6 * rng.normal()) as f32);
        let mut row = [0.0f32; 3];
        row[c] = 1.0;
        y.extend_from_slice(&row);
        labels.push(c as f32);
    }
    (Tensor::new(&[n, 2], x).unwrap(), Tensor::new(&[n, 3], y).unwrap(), Tensor::new(&[n], labels).unwrap())
}

fn mlp(out: usize, act: Activation) -> Sequential {
    let mut m = Sequential::new(&[2]).seed(3);
    m.add(Dense::new(16).activation(Activation::Tanh)).unwrap();
    m.add(Dense::new(out).activation(act)).unwrap();
    m
}

#[test]
fn summary_matches_keras_for_the_mnist_model() {
    let m = mnist_model();
    assert_eq!(m.param_counts(), (693_962, 0));
    let s = m.summary();
    for line in ["conv2d (Conv2D)", "(None, 26, 26, 32)", "(None, 13, 13, 32)", "(None, 5408)", "692,352", "1,290"] {
        assert!(s.contains(line), "summary lacks {line}:\n{s}");
    }
    assert!(s.contains("Total params: 693,962"));
    let names: Vec<&str> = m.layers().iter().map(|l| l.name()).collect();
    assert_eq!(names, ["conv2d", "max_pooling2d", "flatten", "dense", "dropout", "dense_1"]);
}

#[test]
fn dense_after_conv_without_flatten_names_both_layers_and_shapes() {
    let mut m = Sequential::new(&[28, 28, 1]);
    m.add(Conv2D::new(32, 3)).unwrap();
    let err = m.add(Dense::new(10)).err().expect("must not fit").to_string();
    for part in ["`dense` (Dense)", "`conv2d` (Conv2D)", "(26, 26, 32)", "Flatten"] {
        assert!(err.contains(part), "{err}");
    }
    let err = Sequential::new(&[4, 4, 1]).add(Conv2D::new(2, 5)).err().unwrap().to_string();
    assert!(err.contains("conv2d") && err.contains("(4, 4, 1)"), "{err}");
}

#[test]
fn learns_three_classes_with_each_loss_form() {
    let (x, y, labels) = blobs(600, 1);
    let (xt, yt, lt) = blobs(300, 2);
    let opts = || FitOptions { epochs: 20, batch_size: 32, ..Default::default() };
    let mut m = mlp(3, Activation::Softmax);
    m.compile(Adam::new(0.01), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let h = m.fit(&x, &y, opts()).unwrap();
    assert!(h.epochs[19].loss < h.epochs[0].loss);
    let e = m.evaluate(&xt, &yt, 100).unwrap();
    assert!(e.get("accuracy").unwrap() > 0.95, "{e}");
    // Probabilities from predict agree with evaluate's accuracy.
    let p = m.predict(&xt, 64).unwrap();
    assert_eq!(p.shape(), [300, 3]);
    let hits = p.argmax_rows().iter().zip(lt.data()).filter(|(a, b)| **a == **b as usize).count();
    assert!((hits as f64 / 300.0 - e.get("accuracy").unwrap()).abs() < 1e-9);
    for row in p.data().chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    let mut s = mlp(3, Activation::Softmax);
    s.compile(RmsProp::new(0.01), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    s.fit(&x, &labels, opts()).unwrap();
    assert!(s.evaluate(&xt, &lt, 100).unwrap().get("accuracy").unwrap() > 0.95);

    // Binary: class 0 against the rest, sigmoid output.
    let bin =
        |l: &Tensor| Tensor::new(&[l.rows(), 1], l.data().iter().map(|&v| (v == 0.0) as u8 as f32).collect()).unwrap();
    let mut b = mlp(1, Activation::Sigmoid);
    b.compile(Sgd::new(0.1).momentum(0.9).nesterov(true), Loss::BinaryCrossentropy, &[Metric::Accuracy]).unwrap();
    b.fit(&x, &bin(&labels), opts()).unwrap();
    assert!(b.evaluate(&xt, &bin(&lt), 100).unwrap().get("accuracy").unwrap() > 0.95);
}

#[test]
fn regression_with_mse() {
    let mut rng = kiln::core::Rng::new(5);
    let xs: Vec<f32> = (0..400).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
    let ys: Vec<f32> = xs.chunks(2).map(|p| 3.0 * p[0] - 2.0 * p[1] + 0.5).collect();
    let (x, y) = (Tensor::new(&[200, 2], xs).unwrap(), Tensor::new(&[200, 1], ys).unwrap());
    let mut m = Sequential::new(&[2]);
    m.add(Dense::new(1)).unwrap();
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[Metric::MeanAbsoluteError]).unwrap();
    m.fit(&x, &y, FitOptions { epochs: 60, batch_size: 20, ..Default::default() }).unwrap();
    let e = m.evaluate(&x, &y, 50).unwrap();
    assert!(e.loss < 1e-4 && e.get("mae").unwrap() < 1e-2, "{e}");
}

#[test]
fn saved_model_predicts_exactly_the_same() {
    let mut m = Sequential::new(&[8, 8, 2]).seed(9);
    m.add(Conv2D::new(4, 3).padding(PaddingConfig::Same).activation(Activation::Relu)).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(AveragePooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dropout::new(0.3)).unwrap();
    m.add(Dense::new(5).activation(Activation::Softmax).kernel_regularizer(Regularizer::l2(0.01))).unwrap();
    m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let mut rng = kiln::core::Rng::new(1);
    let x = Tensor::new(&[20, 8, 8, 2], (0..2560).map(|_| rng.uniform() as f32).collect()).unwrap();
    let y = kiln::data::one_hot(&(0..20).map(|i| (i % 5) as u8).collect::<Vec<_>>(), 5).unwrap();
    m.fit(&x, &y, FitOptions { epochs: 2, batch_size: 8, ..Default::default() }).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("m.safetensors");
    m.save(&path).unwrap();
    let back = Sequential::load(&path).unwrap();
    assert_eq!(m.predict(&x, 7).unwrap(), back.predict(&x, 7).unwrap());
    assert_eq!(back.summary(), m.summary());
    assert_eq!(back.compile_config(), m.compile_config());
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn loading_something_else_fails_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"definitely not a model").unwrap();
    let e = Sequential::load(&junk).err().unwrap().to_string();
    assert!(e.contains("not a kiln model") && e.contains("junk.safetensors"), "{e}");
    // A valid safetensors file without kiln's metadata.
    let bare = dir.join("bare.safetensors");
    let data = [0u8; 8];
    let view = safetensors_view(&data);
    std::fs::write(&bare, view).unwrap();
    let e = Sequential::load(&bare).err().unwrap().to_string();
    assert!(e.contains("not a kiln model") && e.contains("metadata"), "{e}");
    let e = Sequential::load(dir.join("missing.safetensors")).err().unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

/// A minimal safetensors file holding one F32 tensor of two values, no metadata.
fn safetensors_view(data: &[u8; 8]) -> Vec<u8> {
    let header = br#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

#[test]
fn same_seed_same_training() {
    let (x, y, _) = blobs(90, 4);
    let run = || {
        let mut m = mlp(3, Activation::Softmax);
        m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[]).unwrap();
        m.fit(&x, &y, FitOptions { epochs: 2, batch_size: 16, seed: 11, ..Default::default() }).unwrap();
        m.predict(&x, 90).unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn optimizers_follow_keras_update_rules() {
    use kiln::core::{Param, Shape};
    use kiln::optim::{Optimizer, OptimizerConfig};
    let step = |c: OptimizerConfig| {
        let mut p = vec![Param {
            name: "w".into(),
            shape: Shape::new(&[1]).unwrap(),
            value: vec![1.0f32],
            trainable: true,
            quant: None,
        }];
        let mut g = vec![vec![0.5f32]];
        let mut o = Optimizer::new(c);
        o.step(&mut p, &mut g);
        p[0].value[0]
    };
    // Adam: m = 0.05, v = 0.00025, lr_t = 0.001·√0.001/0.1, w −= lr_t·m/(√v + 1e-7) ≈ 0.001
    let expect = 1.0 - 0.001 * 0.001f64.sqrt() / 0.1 * 0.05 / (0.00025f64.sqrt() + 1e-7);
    assert!((step(Adam::default().into()) as f64 - expect).abs() < 1e-6);
    // SGD with Nesterov momentum 0.9: v = −0.005; w += 0.9·v − 0.01·0.5
    assert!((step(Sgd::new(0.01).momentum(0.9).nesterov(true).into()) - (1.0 - 0.0045 - 0.005)).abs() < 1e-6);
    assert!((step(Sgd::new(0.01).into()) - 0.995).abs() < 1e-7);
    // RMSprop: v = 0.1·0.25; w −= 0.001·0.5/√(v + 1e-7)
    let expect = 1.0 - 0.001 * 0.5 / (0.025f64 + 1e-7).sqrt();
    assert!((step(RmsProp::default().into()) as f64 - expect).abs() < 1e-6);
}

#[test]
fn l2_regularizer_adds_its_penalty_to_the_loss() {
    let (x, y, _) = blobs(30, 6);
    let loss_with = |reg: Option<Regularizer>| {
        let mut m = Sequential::new(&[2]).seed(1);
        let mut d = Dense::new(3).activation(Activation::Softmax);
        if let Some(r) = reg {
            d = d.kernel_regularizer(r);
        }
        m.add(d).unwrap();
        m.compile(Sgd::new(0.0001), Loss::CategoricalCrossentropy, &[]).unwrap();
        let w2: f64 = m.graph().params()[0].value.iter().map(|&w| (w * w) as f64).sum();
        (m.train_on_batch(&x, &y).unwrap(), w2)
    };
    let (plain, w2) = loss_with(None);
    let (reg, _) = loss_with(Some(Regularizer::l2(0.1)));
    assert!((reg - plain - 0.1 * w2).abs() < 1e-5, "{reg} vs {plain} + {}", 0.1 * w2);
}

#[test]
fn batch_norm_tracks_moving_statistics() {
    let mut m = Sequential::new(&[3]);
    m.add(BatchNormalization::new().momentum(0.5)).unwrap();
    m.compile(Sgd::new(0.0), Loss::MeanSquaredError, &[]).unwrap();
    let x = Tensor::new(&[2, 3], vec![1.0, 2.0, 3.0, 3.0, 6.0, 9.0]).unwrap();
    m.train_on_batch(&x, &Tensor::zeros(&[2, 3]).unwrap()).unwrap();
    let p = m.graph().params();
    // Batch mean (2, 4, 6), biased variance (1, 4, 9); moving = 0.5·initial + 0.5·batch.
    assert_eq!(p[2].value, [1.0, 2.0, 3.0]);
    assert_eq!(p[3].value, [1.0, 2.5, 5.0]);
    // Inference normalizes with the moving statistics.
    let y = m.predict(&x, 2).unwrap();
    assert!((y.data()[0] - (1.0 - 1.0) / (1.0f32 + 1e-3).sqrt()).abs() < 1e-6);
}

#[test]
fn bad_training_input_is_reported_not_panicked() {
    let (x, y, labels) = blobs(30, 7);
    let mut m = mlp(3, Activation::Softmax);
    assert!(m.fit(&x, &y, FitOptions::default()).err().unwrap().to_string().contains("compile"));
    m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let wrong = Tensor::new(&[10, 3], vec![0.0; 30]).unwrap();
    let e = m.fit(&wrong, &y, FitOptions::default()).err().unwrap().to_string();
    assert!(e.contains("(10, 3)") && e.contains("(10, 2)"), "{e}");
    let e = m.fit(&x, &labels, FitOptions::default()).err().unwrap().to_string();
    assert!(e.contains("sparse_categorical_crossentropy"), "{e}");
    let mut bad = x.clone();
    bad.data_mut()[7] = f32::NAN;
    let e = m.fit(&bad, &y, FitOptions::default()).err().unwrap().to_string();
    assert!(e.contains("NaN") && e.contains("sample 3"), "{e}");
    let mut s = mlp(3, Activation::Softmax);
    s.compile(Adam::default(), Loss::SparseCategoricalCrossentropy, &[]).unwrap();
    let mut l = labels.clone();
    l.data_mut()[4] = 7.0;
    let e = s.fit(&x, &l, FitOptions::default()).err().unwrap().to_string();
    assert!(e.contains("y[4] = 7"), "{e}");
    assert!(m.fit(&x, &y, FitOptions { batch_size: 0, ..Default::default() }).is_err());
}

#[test]
fn fused_conv_pool_trains_like_the_separate_layers() {
    let mut rng = kiln::core::Rng::new(2);
    let x = Tensor::new(&[40, 12, 12, 1], (0..40 * 144).map(|_| rng.uniform() as f32).collect()).unwrap();
    let y = kiln::data::one_hot(&(0..40).map(|i| (i % 4) as u8).collect::<Vec<_>>(), 4).unwrap();
    let run = |fuse: bool| {
        let mut m = Sequential::new(&[12, 12, 1]).seed(5);
        m.add(Conv2D::new(6, 3).activation(Activation::Relu)).unwrap();
        m.add(MaxPooling2D::new(2)).unwrap();
        m.add(Flatten::new()).unwrap();
        m.add(Dense::new(4).activation(Activation::Softmax)).unwrap();
        m.set_fusion(fuse);
        m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[]).unwrap();
        m.fit(&x, &y, FitOptions { epochs: 3, batch_size: 8, ..Default::default() }).unwrap();
        m.predict(&x, 40).unwrap()
    };
    let (a, b) = (run(true), run(false));
    for (p, q) in a.data().iter().zip(b.data()) {
        assert!((p - q).abs() < 1e-4, "fused {p} vs separate {q}");
    }
}

#[test]
fn regression_losses_mae_and_huber_match_keras_formulas() {
    // One Dense(1) with weight 1 and bias 0: the output is the input, so the loss is a function of x − y.
    let x = Tensor::new(&[4, 1], vec![0.0, 0.5, 3.0, -2.0]).unwrap();
    let y = Tensor::new(&[4, 1], vec![0.0, 0.0, 0.0, 0.0]).unwrap();
    for (loss, want) in [
        (Loss::MeanAbsoluteError, (0.0 + 0.5 + 3.0 + 2.0) / 4.0),
        // Keras Huber(delta=1): ½d² for |d| ≤ 1, |d| − ½ above.
        (Loss::Huber, (0.0 + 0.125 + 2.5 + 1.5) / 4.0),
        (Loss::MeanSquaredError, (0.0 + 0.25 + 9.0 + 4.0) / 4.0),
    ] {
        let mut m = Sequential::new(&[1]);
        m.add(Dense::new(1)).unwrap();
        m.compile(Sgd::new(0.1), loss, &[]).unwrap();
        m.set_weights(&[vec![1.0], vec![0.0]]).unwrap();
        let e = m.evaluate(&x, &y, 4).unwrap();
        assert!((e.loss - want).abs() < 1e-6, "{loss:?}: {} vs {want}", e.loss);
        // And it trains: one step lowers the loss.
        m.train_on_batch(&x, &y).unwrap();
        assert!(m.evaluate(&x, &y, 4).unwrap().loss < want);
    }
}

/// Blobs where class 0 is rare (1 in 10) and overlaps class 1.
fn imbalanced(n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = kiln::core::Rng::new(seed);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = (i % 10 != 0) as usize;
        x.push((if c == 0 { -0.6 } else { 0.6 } + rng.normal()) as f32);
        x.push(rng.normal() as f32);
        y.push(c as f32);
    }
    (Tensor::new(&[n, 2], x).unwrap(), Tensor::new(&[n, 1], y).unwrap())
}

#[test]
fn precision_recall_f1_in_fit_and_evaluate_match_the_report() {
    let (x, y) = imbalanced(1000, 1);
    let (xt, yt) = imbalanced(500, 2);
    let metrics = [
        Metric::Accuracy,
        Metric::Precision(Average::Binary),
        Metric::Recall(Average::Binary),
        Metric::F1(Average::Binary),
        Metric::F1(Average::Macro),
        Metric::F1(Average::Micro),
        Metric::Precision(Average::Weighted),
    ];
    let mut m = mlp(1, Activation::Sigmoid);
    m.compile(Adam::new(0.01), Loss::BinaryCrossentropy, &metrics).unwrap();
    let h = m.fit(&x, &y, FitOptions { epochs: 5, validation_split: 0.2, ..Default::default() }).unwrap();
    let last = h.last().unwrap();
    for n in ["f1", "macro_f1", "val_weighted_precision", "val_recall"] {
        assert!(last.get(n).is_some_and(|v| (0.0..=1.0).contains(&v)), "{n} in {:?}", last.names());
    }
    let e = m.evaluate(&xt, &yt, 64).unwrap();
    let p = m.predict(&xt, 64).unwrap();
    let pred: Vec<usize> = p.data().iter().map(|&q| (q > 0.5) as usize).collect();
    let truth: Vec<usize> = yt.data().iter().map(|&t| t as usize).collect();
    let r = ClassificationReport::new(&pred, &truth, &["0".into(), "1".into()]);
    let close = |n: &str, want: f64| {
        let got = e.get(n).unwrap();
        assert!((got - want).abs() < 1e-9, "{n}: evaluate {got}, report {want}");
    };
    close("precision", r.per_class[1].0);
    close("recall", r.per_class[1].1);
    close("f1", r.per_class[1].2);
    close("macro_f1", r.macro_avg.2);
    close("micro_f1", r.accuracy);
    close("weighted_precision", r.weighted_avg.0);
}

#[test]
fn class_weights_raise_the_rare_class_recall() {
    let (x, y) = imbalanced(2000, 3);
    let (xt, yt) = imbalanced(1000, 4);
    let recall0 = |cw: Option<ClassWeight>| {
        let mut m = mlp(1, Activation::Sigmoid);
        m.compile(Adam::new(0.01), Loss::BinaryCrossentropy, &[Metric::Accuracy]).unwrap();
        m.fit(&x, &y, FitOptions { epochs: 8, class_weight: cw, ..Default::default() }).unwrap();
        let p = m.predict(&xt, 256).unwrap();
        let pred: Vec<usize> = p.data().iter().map(|&q| (q > 0.5) as usize).collect();
        let truth: Vec<usize> = yt.data().iter().map(|&t| t as usize).collect();
        ClassificationReport::new(&pred, &truth, &["0".into(), "1".into()]).per_class[0].1
    };
    let (plain, balanced) = (recall0(None), recall0(Some(ClassWeight::balanced())));
    assert!(balanced > plain + 0.2, "class-0 recall {plain} without weights, {balanced} balanced");
    // Keras's "balanced": n / (classes × count).
    assert_eq!(balanced_class_weights(&[0, 1, 1, 1], 2), vec![2.0, 4.0 / 6.0]);
    // A weight of zero for a class leaves its samples out of the gradient: class 0 is never predicted.
    assert!(recall0(Some(ClassWeight::per_class(&[(0, 0.0)]))) < 0.05);
    let mut m = mlp(1, Activation::Sigmoid);
    m.compile(Adam::new(0.01), Loss::BinaryCrossentropy, &[]).unwrap();
    let bad = FitOptions { class_weight: Some(ClassWeight::per_class(&[(2, 1.0)])), ..Default::default() };
    let err = m.fit(&x, &y, bad).unwrap_err().to_string();
    assert!(err.contains("`2` is not a class index in 0..2"), "{err}");
    let mut r = Sequential::new(&[2]);
    r.add(Dense::new(1)).unwrap();
    r.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]).unwrap();
    let err = r.fit(&x, &y, FitOptions { class_weight: Some(ClassWeight::balanced()), ..Default::default() });
    assert!(err.unwrap_err().to_string().contains("needs a classification loss"));
}
