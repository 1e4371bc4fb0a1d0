//! Training and prediction on the CUDA backend (feature `cuda`) equal the CPU's. The first test runs on a GPU
//! when there is one, and with feature `cuda-sim` (CI) on the backend's kernels simulated on the host: the
//! whole fit loop (batches, dropout, Adam's updates, metrics) with the tape in the backend's memory. The MNIST
//! test needs a GPU and skips with a notice without one (tools/gpu_check.sh runs this binary on a GPU machine,
//! from the checkout's root).

use kiln::prelude::*;
use kiln_core::backend::cuda::Cuda;
use std::sync::Arc;

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");

/// MNIST where this binary was built, else under the working directory (a copied binary on a GPU machine).
fn mnist() -> &'static str {
    if std::path::Path::new(MNIST).exists() { MNIST } else { "data/mnist" }
}

fn cnn() -> Sequential {
    let mut m = Sequential::new(&[28, 28, 1]).seed(5);
    m.add(Conv2D::new(8, 3).activation(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Conv2D::new(8, 3).activation(Activation::Tanh).padding(PaddingConfig::Same)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(32).activation(Activation::Relu)).unwrap();
    m.add(Dropout::new(0.25)).unwrap();
    m.add(Dense::new(10).activation(Activation::Softmax)).unwrap();
    m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    m
}

fn backends() -> Vec<Arc<Cuda>> {
    let mut v = Vec::new();
    match Cuda::new() {
        Ok(c) => v.push(Arc::new(c)),
        Err(e) => eprintln!("the CUDA fit tests run without a GPU here ({e})"),
    }
    #[cfg(feature = "cuda-sim")]
    v.push(Arc::new(Cuda::simulated()));
    v
}

#[test]
fn fit_and_predict_on_the_cuda_backend_equal_the_cpu() {
    let (train, test) = kiln::data::mnist::load(mnist()).unwrap();
    let (x, y) = (train.x.slice_rows(0, 256), train.y.slice_rows(0, 256));
    let xt = test.x.slice_rows(0, 64);
    let fit = |m: &mut Sequential| {
        let opts = FitOptions { epochs: 2, batch_size: 32, seed: 1, verbose: false, ..Default::default() };
        let h = m.fit(&x, &y, opts).unwrap();
        (h.epochs.iter().map(|e| e.loss).collect::<Vec<_>>(), m.predict(&xt, 32).unwrap(), m.get_weights())
    };
    let on_cpu = fit(&mut cnn());
    for cuda in backends() {
        let on = cuda.device_name().to_string();
        let mut m = cnn();
        m.set_backend(cuda.clone());
        let (losses, probs, weights) = fit(&mut m);
        // Prediction runs on the model's inference tapes, which must take the backend too.
        let before = cuda.calls().get("conv2d_max_pool").copied().unwrap_or(0);
        m.predict(&xt, 32).unwrap();
        let after = cuda.calls().get("conv2d_max_pool").copied().unwrap_or(0);
        assert!(after > before, "predict on {on} did not run on the backend set by set_backend");
        for (a, b) in on_cpu.0.iter().zip(&losses) {
            assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "epoch loss on {on}: {b} vs the CPU's {a}");
        }
        let worst = on_cpu.1.data().iter().zip(probs.data()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-4, "predicted probabilities on {on} differ from the CPU's by {worst:e}");
        for (i, (a, b)) in on_cpu.2.iter().zip(&weights).enumerate() {
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
            assert!(worst <= 1e-3 * scale, "weight {i} after training on {on} differs by {worst:e} (scale {scale})");
        }
        assert!(cuda.calls().contains_key("conv2d_max_pool_backward"), "the fused conv + pool did not run on {on}");
        assert!(cuda.calls().contains_key("update"), "Adam did not step on {on}");
        let fell_back: Vec<_> = cuda.fallbacks().into_keys().collect();
        assert!(fell_back.is_empty(), "on {on}, these ran on the CPU instead: {fell_back:?}");
    }
}

/// Every optimizer (SGD plain and with Nesterov momentum, Adam, lazy Adam, AdamW, RMSprop plain and with
/// momentum, Adagrad) takes its steps in the backend's memory, with its slots there, and trains as on the
/// host: two epochs on the backend, checkpointed (the slots come back from the device for it), then a third
/// on the CPU from that checkpoint, end where three epochs on the CPU end. Lazy Adam trains an embedding
/// table whose rows each batch reaches only in part, where it differs from Adam.
#[test]
fn optimizers_step_on_the_backend_as_on_the_host() {
    use kiln::optim::OptimizerConfig;
    let mut rng = kiln_core::Rng::new(4);
    let n = 96;
    let xs: Vec<f32> = (0..n * 6).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
    // Class 0, 1 or 2 by the first two features.
    let class = |r: &[f32]| usize::from(r[0] > 0.0) + usize::from(r[1] > 0.5);
    let ys: Vec<f32> = xs.chunks(6).flat_map(|r| (0..3).map(move |c| f32::from(u8::from(c == class(r))))).collect();
    let (x, y) = (Tensor::new(&[n, 6], xs).unwrap(), Tensor::new(&[n, 3], ys).unwrap());
    // The same rows as ids of an embedding table of 40 rows: a batch's 96 ids leave about 3 rows out.
    let ids = Tensor::new(&[n, 6], x.data().iter().map(|v| ((v + 1.0) * 20.0).floor().min(39.0)).collect()).unwrap();
    let model = |opt: &OptimizerConfig, embed: bool| {
        let mut m = Sequential::new(&[6]).seed(3);
        if embed {
            m.add(Embedding::new(40, 4)).unwrap();
            m.add(GlobalAveragePooling1D::new()).unwrap();
        }
        m.add(Dense::new(8).activation(Activation::Tanh)).unwrap();
        m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
        m.compile(opt.clone(), Loss::CategoricalCrossentropy, &[]).unwrap();
        m
    };
    let opts = |epochs: usize, ckpt: &std::path::Path| FitOptions {
        epochs,
        batch_size: 16,
        seed: 1,
        verbose: false,
        checkpoint: Some(ckpt.to_path_buf()),
        ..Default::default()
    };
    let cases: [(&str, OptimizerConfig, bool); 9] = [
        ("sgd", Sgd::new(0.1).into(), false),
        ("sgd nesterov", Sgd::new(0.05).momentum(0.9).nesterov(true).into(), false),
        ("adam", Adam::new(0.01).into(), false),
        ("adam, embedding", Adam::new(0.01).into(), true),
        ("lazy adam", Adam::new(0.01).lazy(true).into(), true),
        ("adamw", AdamW::new(0.01, 0.1).into(), false),
        ("rmsprop", RmsProp::new(0.01).into(), false),
        ("rmsprop momentum", RmsProp { momentum: 0.9, ..RmsProp::new(0.01) }.into(), false),
        ("adagrad", Adagrad::new(0.1).into(), false),
    ];
    let dir = tempfile::tempdir().unwrap();
    for cuda in backends() {
        let on = cuda.device_name().to_string();
        for (name, opt, embed) in &cases {
            let x = if *embed { &ids } else { &x };
            let mut cpu = model(opt, *embed);
            cpu.fit(x, &y, opts(3, &dir.path().join("cpu.ckpt"))).unwrap();
            let mut m = model(opt, *embed);
            m.set_backend(cuda.clone());
            let before = cuda.calls().get("update").copied().unwrap_or(0);
            m.fit(x, &y, opts(2, &dir.path().join("dev.ckpt"))).unwrap();
            let steps = cuda.calls().get("update").copied().unwrap_or(0) - before;
            // Two parameters per dense layer and the table, six batches per epoch, two epochs.
            let params = if *embed { 5 } else { 4 };
            assert_eq!(steps, params * 6 * 2, "{name} on {on}: parameter updates on the backend");
            let (mut resumed, progress) = Sequential::load_checkpoint(dir.path().join("dev.ckpt")).unwrap();
            resumed.fit(x, &y, FitOptions { resume: Some(progress), ..opts(3, &dir.path().join("dev.ckpt")) }).unwrap();
            // The simulation runs the kernels as the host computes, all but exactly; a GPU sums its products in
            // another order and fuses multiply-adds (as for the CNN above).
            let tol = if on.contains("simulated") { 1e-5 } else { 1e-3 };
            for (i, (a, b)) in cpu.get_weights().iter().zip(&resumed.get_weights()).enumerate() {
                let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
                assert!(worst <= tol * scale, "{name} on {on}: weight {i} differs from the CPU's by {worst:e}");
            }
        }
    }
}

/// A model that moves between backends mid-training keeps its optimizer's state: Adam for an epoch on one
/// simulated GPU, then on the CPU (the moments come back to the host), then on another (whose memory gets them
/// from the host), ends where three epochs on the CPU end. (Two simulated GPUs share host memory, so this
/// cannot show a slot used in another GPU's memory; `Optimizer::step_on_backend` brings slots home first.)
#[cfg(feature = "cuda-sim")]
#[test]
fn the_optimizer_state_follows_a_model_between_backends() {
    let mut rng = kiln_core::Rng::new(8);
    let n = 64;
    let x = Tensor::new(&[n, 5], (0..n * 5).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect()).unwrap();
    let y = Tensor::new(&[n, 1], x.data().chunks(5).map(|r| r[0] - 0.5 * r[3]).collect()).unwrap();
    let model = || {
        let mut m = Sequential::new(&[5]).seed(2);
        m.add(Dense::new(6).activation(Activation::Tanh)).unwrap();
        m.add(Dense::new(1)).unwrap();
        m.compile(Adam::new(0.02), Loss::MeanSquaredError, &[]).unwrap();
        m
    };
    let epoch = |m: &mut Sequential| {
        let opts = FitOptions { epochs: 1, batch_size: 16, shuffle: false, verbose: false, ..Default::default() };
        m.fit(&x, &y, opts).unwrap();
    };
    let mut cpu = model();
    (0..3).for_each(|_| epoch(&mut cpu));
    let mut moved = model();
    let first = Arc::new(Cuda::simulated());
    moved.set_backend(first.clone());
    epoch(&mut moved);
    moved.set_backend(Arc::new(kiln_core::Cpu));
    epoch(&mut moved);
    let second = Arc::new(Cuda::simulated());
    moved.set_backend(second.clone());
    epoch(&mut moved);
    assert!(first.calls().contains_key("update") && second.calls().contains_key("update"));
    for (i, (a, b)) in cpu.get_weights().iter().zip(&moved.get_weights()).enumerate() {
        let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
        assert!(worst <= 1e-5, "weight {i} of the model moved between backends differs by {worst:e}");
    }
}

/// The accuracy check: the seed's MNIST CNN, one epoch at batch 64 on the GPU, then the test set.
#[test]
fn mnist_reaches_the_cpu_accuracy_on_the_gpu() {
    let cuda = match Cuda::new() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("skipping mnist_reaches_the_cpu_accuracy_on_the_gpu: no GPU here ({e})");
            return;
        }
    };
    let (train, test) = kiln::data::mnist::load(mnist()).unwrap();
    let mut m = Sequential::new(&[28, 28, 1]);
    m.add(Conv2D::new(32, 3).activation(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dense::new(128).activation(Activation::Relu)).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    m.add(Dense::new(10).activation(Activation::Softmax)).unwrap();
    m.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    m.set_backend(cuda);
    m.fit(&train.x, &train.y, FitOptions { epochs: 1, batch_size: 64, verbose: false, ..Default::default() }).unwrap();
    let probs = m.predict(&test.x, 1000).unwrap();
    let hits = probs.argmax_rows().iter().zip(&test.labels).filter(|(p, l)| **p == **l as usize).count();
    let acc = hits as f64 / test.labels.len() as f64;
    assert!(acc > 0.97, "MNIST test accuracy after one epoch on the GPU: {acc}");
}
