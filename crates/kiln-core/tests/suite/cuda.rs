//! The CUDA backend (feature `cuda`) against the CPU backend. On a machine with no GPU, CUDA driver or NVRTC
//! the tests that need one print why they skip and pass; `kernels_compile_with_nvrtc` needs only the NVRTC
//! library (CI installs it from PyPI's nvidia-cuda-nvrtc-cu12), so a kernel that does not compile fails CI.
//!
//! With feature `cuda-sim` (CI) the same tests run the kernels simulated on the host (backend/cuda/device.rs).
//!
//! On a GPU: every op behind the seam (the cases of backend.rs) is gradient-checked in f64 on the GPU, its
//! values and gradients agree with the CPU backend's, and it runs its kernels on the GPU (only the methods
//! that have no CUDA kernel yet may fall back to the CPU, and only those); an f32 convolutional network's loss
//! and every gradient agree with the CPU's.

use super::backend::{cases, inputs, run};
use kiln_core::backend::Update;
use kiln_core::backend::cuda::{Cuda, compile_kernels};
use kiln_core::testing::check_gradients_on;
use kiln_core::{Graph, Padding, Rng, UnaryOp};
use std::sync::{Arc, OnceLock};

/// The methods with no CUDA kernel yet (backend/cuda/mod.rs says so too).
const ON_THE_CPU: &[&str] = &["matmul_q"];

/// The backends to test: the GPU when this machine has one (else a printed notice of why not), and with
/// feature `cuda-sim` the same kernels simulated on the host.
fn engines(test: &str) -> Vec<Arc<Cuda>> {
    static GPU: OnceLock<std::result::Result<Arc<Cuda>, String>> = OnceLock::new();
    let mut v = Vec::new();
    match GPU.get_or_init(|| Cuda::new().map(Arc::new).map_err(|e| e.to_string())) {
        Ok(c) => v.push(c.clone()),
        Err(e) => eprintln!("{test}: no GPU here, so not on a GPU ({e})"),
    }
    #[cfg(feature = "cuda-sim")]
    v.push(Arc::new(Cuda::simulated()));
    v
}

#[test]
fn kernels_compile_with_nvrtc() {
    match compile_kernels() {
        Ok(ptx) => assert!(ptx.to_src().contains(".entry conv_max_pool_f64"), "the PTX lacks a kernel"),
        Err(e) if e.to_string().contains("was not found") => {
            eprintln!("skipping kernels_compile_with_nvrtc: {e}")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_op_on_the_gpu_is_gradient_checked_and_matches_the_cpu() {
    for cuda in engines("every_op_on_the_gpu_is_gradient_checked_and_matches_the_cpu") {
        every_op_on(&cuda);
    }
}

fn every_op_on(cuda: &Arc<Cuda>) {
    let on = cuda.device_name();
    for (i, (name, shapes, kernels, f)) in cases().into_iter().enumerate() {
        let before = (cuda.calls(), cuda.fallbacks());
        let result = check_gradients_on(cuda.clone(), &inputs(&shapes, i as u64), f);
        assert!(result.is_ok(), "{name} on {on}: {result:?}");
        let (calls, fallbacks) = (cuda.calls(), cuda.fallbacks());
        let grew = |m: &std::collections::BTreeMap<&str, usize>,
                    b: &std::collections::BTreeMap<&str, usize>,
                    k: &str| { m.get(k).copied().unwrap_or(0) > b.get(k).copied().unwrap_or(0) };
        for k in kernels.iter() {
            let expected_on_cpu = ON_THE_CPU.contains(k);
            let ran = if expected_on_cpu { grew(&fallbacks, &before.1, k) } else { grew(&calls, &before.0, k) };
            assert!(ran, "{name}: `{k}` did not run {}", if expected_on_cpu { "(on the CPU)" } else { on });
        }
        for k in fallbacks.keys() {
            assert!(ON_THE_CPU.contains(k), "{name}: `{k}` fell back to the CPU");
        }
        let on_cpu = run(Arc::new(kiln_core::Cpu), &shapes, i as u64, f);
        let on_gpu = run(cuda.clone(), &shapes, i as u64, f);
        for (j, (c, g)) in on_cpu.iter().zip(&on_gpu).enumerate() {
            let worst = c.iter().zip(g).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0.0, f64::max);
            let what = if j == 0 { "output".to_string() } else { format!("gradient {}", j - 1) };
            assert!(worst < 1e-10, "{name}: {what} on {on} differs from the CPU's by {worst:e}");
        }
    }
    eprintln!("{on}: kernels ran for {:?}", cuda.calls());
    eprintln!("{on}: on the CPU instead: {:?}", cuda.fallbacks());
}

/// Attention's causal mask and its dropout on the weights (a hash of each weight's index, which the kernels
/// recompute), which the seam's cases leave out: values and gradients equal the CPU's, and gradient-checked.
#[test]
fn causal_attention_with_dropout_matches_the_cpu() {
    fn f(g: &mut kiln_core::Graph<f64>, v: &[kiln_core::Var]) -> kiln_core::Result<kiln_core::Var> {
        let drop = Some(kiln_core::ops::AttentionDropout { rate: 0.3, seed: 11 });
        g.attention_dropout(v[0], v[1], v[2], 2, 4, 2, Some(&[1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]), true, drop)
    }
    let shapes = vec![vec![8, 6], vec![8, 6], vec![8, 6]];
    for cuda in engines("causal_attention_with_dropout_matches_the_cpu") {
        let on = cuda.device_name();
        let result = check_gradients_on(cuda.clone(), &inputs(&shapes, 3), f);
        assert!(result.is_ok(), "causal attention with dropout on {on}: {result:?}");
        let (c, g) = (run(Arc::new(kiln_core::Cpu), &shapes, 3, f), run(cuda.clone(), &shapes, 3, f));
        for (j, (c, g)) in c.iter().zip(&g).enumerate() {
            let worst = c.iter().zip(g).map(|(a, b)| (a - b).abs() / a.abs().max(1.0)).fold(0.0, f64::max);
            assert!(worst < 1e-10, "causal attention with dropout: output/gradient {j} on {on} differs by {worst:e}");
        }
        assert!(cuda.fallbacks().is_empty(), "attention fell back to the CPU on {on}");
    }
}

/// A convolutional network in f32 (conv + relu + max pool, conv + gelu, dense, cross-entropy) at a size where
/// the products are real cuBLAS work: the loss and every gradient agree with the CPU's to f32 rounding.
#[test]
fn a_training_step_keeps_its_tape_on_the_device() {
    for cuda in engines("a_training_step_keeps_its_tape_on_the_device") {
        let on_host = tape_on_the_device(&cuda, false);
        let on_device = tape_on_the_device(&cuda, true);
        for (i, (a, b)) in on_host.iter().zip(&on_device).enumerate() {
            let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-6, "parameter {i} after SGD on the device differs from the host's by {worst:e}");
        }
    }
}

/// Steps of a small CNN with plain SGD, on the host through `params_and_grads_mut` (as kiln's other optimizers
/// are) or, `on_device`, by `update_on_backend`: in a steady step, only the batch, the parameters (once each,
/// after the update: up from a host step, down from a device step), their gradients (down for a host step)
/// and the loss cross between host and device; the activations and their gradients, several times larger
/// here, stay on the device; and the caching allocator takes no new device memory. Returns the parameters.
fn tape_on_the_device(cuda: &Arc<Cuda>, on_device: bool) -> Vec<Vec<f32>> {
    let on = cuda.device_name();
    let mut rng = Rng::new(3);
    let mut g = Graph::<f32>::new();
    g.set_backend(cuda.clone());
    let mut param = |g: &mut Graph<f32>, name: &str, shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.uniform() as f32 * 2.0 - 1.0) * scale).collect();
        g.add_param(name, shape, v, true).unwrap()
    };
    let ps = [
        param(&mut g, "w1", &[3, 3, 1, 32], 0.3),
        param(&mut g, "b1", &[32], 0.1),
        param(&mut g, "w2", &[13 * 13 * 32, 16], 0.02),
        param(&mut g, "b2", &[16], 0.1),
        param(&mut g, "w3", &[16, 10], 0.2),
        param(&mut g, "b3", &[10], 0.1),
    ];
    let param_bytes: usize = ps.iter().map(|&p| g.param(p).value.len() * 4).sum();
    let (n, x): (usize, Vec<f32>) = (32, (0..32 * 28 * 28).map(|i| ((i * 37 % 101) as f32) / 101.0).collect());
    let labels: Vec<u32> = (0..n as u32).map(|i| i * 3 % 10).collect();
    let mut slots = Vec::new();
    let mut step = |g: &mut Graph<f32>| -> f32 {
        g.reset();
        let xv = g.input(&[n, 28, 28, 1], &x).unwrap();
        let v: Vec<_> = ps.iter().map(|&p| g.use_param(p)).collect();
        let relu = Some(UnaryOp::Relu);
        let h = g.conv2d_max_pool(xv, v[0], Some(v[1]), (1, 1), Padding::Valid, relu, (2, 2)).unwrap();
        let h = g.reshape(h, &[n, 13 * 13 * 32]).unwrap();
        let h = g.linear(h, v[2], Some(v[3]), relu).unwrap();
        let h = g.dropout(h, 0.25).unwrap();
        let logits = g.linear(h, v[4], Some(v[5]), None).unwrap();
        let loss = g.sparse_softmax_cross_entropy(logits, &labels).unwrap();
        g.zero_grads();
        g.backward(loss).unwrap();
        let value = g.scalar(loss);
        if on_device {
            let sgd = Update::Sgd { lr: 0.05, momentum: 0.0, nesterov: false };
            assert!(g.update_on_backend(&|_| sgd, &mut slots, (&[], &[])), "on {on}: no step on the backend");
            return value;
        }
        let (params, grads) = g.params_and_grads_mut();
        for (p, gr) in params.iter_mut().zip(grads.iter()) {
            p.value.iter_mut().zip(gr).for_each(|(w, d)| *w -= 0.05 * d);
        }
        value
    };
    let first = step(&mut g);
    step(&mut g);
    let (staged, held) = (cuda.staged_bytes(), cuda.device_bytes());
    let last = step(&mut g);
    let steady = cuda.staged_bytes() - staged;
    // The batch, each parameter up once and its gradient down (a bias's gradient is added to, so it goes up
    // and down), the dropout mask, labels and per-row losses: a little over 2x the parameters plus the batch;
    // with the step on the device, each parameter down and no gradient.
    let bound = if on_device { 1 } else { 2 } * param_bytes + x.len() * 4 + 64 * 1024;
    // What staging every call moved before: the pooled output and its argmax down, then up again for the
    // backward, and the output gradient (each [32, 13, 13, 32], 4 bytes an element).
    let activations = 5 * n * 13 * 13 * 32 * 4;
    assert!(
        steady <= bound && bound < activations,
        "on {on}: a steady step moved {steady} bytes between host and device, more than the {bound} of its \
         batch, parameters and gradients: activations are being staged"
    );
    assert_eq!(cuda.device_bytes(), held, "on {on}: a steady step took new device memory");
    assert!(last < first, "on {on}: the loss did not fall ({first} -> {last})");
    eprintln!(
        "{on}, step on the {}: a steady step moved {steady} bytes (parameters {param_bytes}); device memory {held} \
         bytes",
        if on_device { "device" } else { "host" }
    );
    ps.iter().map(|&p| g.param(p).value.clone()).collect()
}

#[test]
fn gradients_and_parameters_follow_a_change_of_backend_or_of_value() {
    for cuda in engines("gradients_and_parameters_follow_a_change_of_backend_or_of_value") {
        change_of_backend_or_value(&cuda);
    }
}

/// Two backwards without `zero_grads` add up, also when the backend changes between them (the first one's
/// gradient, still in the GPU's memory, comes to the host for the CPU to add to); and a parameter changed
/// after `use_param` is read with its new values, as on the CPU.
fn change_of_backend_or_value(cuda: &Arc<Cuda>) {
    let on = cuda.device_name();
    let x: Vec<f64> = (0..6).map(|i| i as f64 - 2.5).collect();
    let w0: Vec<f64> = (0..6).map(|i| 0.1 * i as f64).collect();
    let step = |g: &mut Graph<f64>, w| {
        g.reset();
        let (xv, wv) = (g.input(&[2, 3], &x).unwrap(), g.use_param(w));
        let y = g.linear(xv, wv, None, Some(UnaryOp::Tanh)).unwrap();
        let loss = g.sum(y, None, false).unwrap();
        g.backward(loss).unwrap();
    };
    let twice = |first: Arc<dyn kiln_core::Backend<f64>>, second: Arc<dyn kiln_core::Backend<f64>>| {
        let mut g = Graph::<f64>::new();
        let w = g.add_param("w", &[3, 2], w0.clone(), true).unwrap();
        g.set_backend(first);
        g.zero_grads();
        step(&mut g, w);
        g.set_backend(second);
        step(&mut g, w);
        g.param_grad(w).to_vec()
    };
    let cpu: Arc<dyn kiln_core::Backend<f64>> = Arc::new(kiln_core::Cpu);
    let (want, got) = (twice(cpu.clone(), cpu.clone()), twice(cuda.clone(), cpu));
    for (a, b) in want.iter().zip(&got) {
        assert!((a - b).abs() < 1e-12, "on {on}: two backwards across a change of backend: {got:?}, want {want:?}");
    }
    let mut g = Graph::<f64>::new();
    g.set_backend(cuda.clone());
    let w = g.add_param("w", &[3, 2], w0.clone(), false).unwrap();
    let xv = g.input(&[2, 3], &x).unwrap();
    let wv = g.use_param(w);
    g.param_mut(w).value.fill(0.0);
    let y = g.linear(xv, wv, None, None).unwrap();
    assert!(g.value(y).iter().all(|&v| v == 0.0), "on {on}: an op read a parameter's old values: {:?}", g.value(y));
}

#[test]
fn an_f32_network_on_the_gpu_matches_the_cpu() {
    for cuda in engines("an_f32_network_on_the_gpu_matches_the_cpu") {
        f32_network_on(&cuda);
    }
}

fn f32_network_on(cuda: &Arc<Cuda>) {
    let on = cuda.device_name();
    let run = |backend: Arc<dyn kiln_core::Backend<f32>>| {
        let mut rng = Rng::new(7);
        let mut g = Graph::<f32>::new();
        g.set_backend(backend);
        let mut param = |g: &mut Graph<f32>, name: &str, shape: &[usize], scale: f32| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| (rng.uniform() as f32 * 2.0 - 1.0) * scale).collect();
            g.add_param(name, shape, v, true).unwrap()
        };
        let x = param(&mut g, "x", &[16, 14, 14, 3], 1.0);
        let w1 = param(&mut g, "w1", &[3, 3, 3, 16], 0.3);
        let b1 = param(&mut g, "b1", &[16], 0.1);
        let w2 = param(&mut g, "w2", &[3, 3, 16, 24], 0.1);
        let b2 = param(&mut g, "b2", &[24], 0.1);
        let w3 = param(&mut g, "w3", &[6 * 6 * 24, 10], 0.05);
        let b3 = param(&mut g, "b3", &[10], 0.1);
        let ps = [x, w1, b1, w2, b2, w3, b3];
        let v: Vec<_> = ps.iter().map(|&p| g.use_param(p)).collect();
        let h = g.conv2d_max_pool(v[0], v[1], Some(v[2]), (1, 1), Padding::Valid, Some(UnaryOp::Relu), (2, 2)).unwrap();
        let h = g.conv2d(h, v[3], Some(v[4]), (1, 1), Padding::Same, Some(UnaryOp::Gelu)).unwrap();
        let h = g.reshape(h, &[16, 6 * 6 * 24]).unwrap();
        let logits = g.linear(h, v[5], Some(v[6]), None).unwrap();
        let labels: Vec<u32> = (0..16).map(|i| (i * 7 % 10) as u32).collect();
        let loss = g.sparse_softmax_cross_entropy(logits, &labels).unwrap();
        g.zero_grads();
        g.backward(loss).unwrap();
        let mut out = vec![g.value(loss).to_vec()];
        out.extend(ps.iter().map(|&p| g.param_grad(p).to_vec()));
        out
    };
    let (on_cpu, on_gpu) = (run(Arc::new(kiln_core::Cpu)), run(cuda.clone()));
    for (j, (c, g)) in on_cpu.iter().zip(&on_gpu).enumerate() {
        let scale = c.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let worst = c.iter().zip(g).map(|(a, b)| (a - b).abs() / scale).fold(0.0, f32::max);
        let what = if j == 0 { "loss".to_string() } else { format!("gradient {}", j - 1) };
        assert!(worst < 1e-4, "f32 network: {what} on {on} differs from the CPU's by {worst:e} of its largest");
    }
}
