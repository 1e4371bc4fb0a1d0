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
        let fell_back: Vec<_> = cuda.fallbacks().into_keys().collect();
        assert!(fell_back.is_empty(), "on {on}, these ran on the CPU instead: {fell_back:?}");
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
