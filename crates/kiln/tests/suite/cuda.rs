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

/// SGD (plain, and with Nesterov momentum), Adam and AdamW take their steps in the backend's memory, with
/// their moments there, and train as on the host: two epochs on the backend, checkpointed (the moments come
/// back from the device for it), then a third on the CPU from that checkpoint, end where three epochs on the
/// CPU end. RMSprop has no kernel and steps on the host, with the same result.
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
    let model = |opt: &OptimizerConfig| {
        let mut m = Sequential::new(&[6]).seed(3);
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
    let cases: [(&str, OptimizerConfig, bool); 5] = [
        ("sgd", Sgd::new(0.1).into(), true),
        ("sgd nesterov", Sgd::new(0.05).momentum(0.9).nesterov(true).into(), true),
        ("adam", Adam::new(0.01).into(), true),
        ("adamw", AdamW::new(0.01, 0.1).into(), true),
        ("rmsprop", RmsProp::new(0.01).into(), false),
    ];
    let dir = tempfile::tempdir().unwrap();
    for cuda in backends() {
        let on = cuda.device_name().to_string();
        for (name, opt, kernel) in &cases {
            let mut cpu = model(opt);
            cpu.fit(&x, &y, opts(3, &dir.path().join("cpu.ckpt"))).unwrap();
            let mut m = model(opt);
            m.set_backend(cuda.clone());
            let before = cuda.calls().get("update").copied().unwrap_or(0);
            m.fit(&x, &y, opts(2, &dir.path().join("dev.ckpt"))).unwrap();
            let steps = cuda.calls().get("update").copied().unwrap_or(0) - before;
            // Two parameters per layer, six batches per epoch, two epochs.
            assert_eq!(steps, if *kernel { 4 * 6 * 2 } else { 0 }, "{name} on {on}: parameter updates on the backend");
            let (mut resumed, progress) = Sequential::load_checkpoint(dir.path().join("dev.ckpt")).unwrap();
            resumed
                .fit(&x, &y, FitOptions { resume: Some(progress), ..opts(3, &dir.path().join("dev.ckpt")) })
                .unwrap();
            for (i, (a, b)) in cpu.get_weights().iter().zip(&resumed.get_weights()).enumerate() {
                let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
                assert!(worst <= 1e-5 * scale, "{name} on {on}: weight {i} differs from the CPU's by {worst:e}");
            }
        }
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
