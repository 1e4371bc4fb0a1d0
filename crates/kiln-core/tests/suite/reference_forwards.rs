//! Definitions against the frameworks kiln follows (fixtures from tools/make_reference_fixtures.py): average
//! pooling with "same" padding, batch normalization, dropout's scaling and every loss against Keras; gelu,
//! softmax, log-softmax, batched matmul and reductions against PyTorch. A gradient check passes for a wrong
//! definition as long as it is differentiated consistently; these catch the wrong definition.
//!
//! kiln computes in f32 on the very f32 inputs the reference saw; values agree to 1e-5 relative, with an
//! absolute floor of 1e-7 for values near 0 (a gradient summed from terms that cancel, where f32's rounding
//! of the terms is all that is left).

use kiln_core::{Graph, LossKind, Padding, ParamId, Var};
use serde_json::Value;

struct Fixture(Value);

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = format!("{}/tests/fixtures/reference/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Fixture(serde_json::from_str(&text).expect("fixture is JSON"))
    }
    fn get(&self, k: &str) -> &Value {
        let v = &self.0[k];
        assert!(!v.is_null(), "fixture has no `{k}`");
        v
    }
    fn shape(&self, k: &str) -> Vec<usize> {
        self.get(k)["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
    }
    fn data(&self, k: &str) -> Vec<f32> {
        self.get(k)["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
    }
    fn data64(&self, k: &str) -> Vec<f64> {
        self.get(k)["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    }
    fn scalar(&self, k: &str) -> f64 {
        self.data64(k)[0]
    }
    /// Which framework (and version) made the fixture, for failure messages.
    fn source(&self) -> String {
        let m = &self.0["meta"];
        format!("{} {}", m["framework"].as_str().unwrap_or("?"), m["version"].as_str().unwrap_or("?"))
    }
    /// The tensor as a trainable parameter, so its gradient can be read back.
    fn param(&self, g: &mut Graph<f32>, k: &str) -> (Var, ParamId) {
        let p = g.add_param(k, &self.shape(k), self.data(k), true).unwrap();
        (g.use_param(p), p)
    }
    fn input(&self, g: &mut Graph<f32>, k: &str) -> Var {
        g.input(&self.shape(k), &self.data(k)).unwrap()
    }
}

const RTOL: f32 = 1e-5;
const ATOL: f32 = 1e-7;

fn assert_close(what: &str, got: &[f32], want: &[f32], source: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let tol = RTOL * a.abs().max(b.abs()) + ATOL;
        assert!((a - b).abs() <= tol, "{what}[{i}]: kiln {a} vs {source} {b}");
    }
}

/// Checks y (shape and values) and, after backpropagating L = Σ y ⊙ r, each parameter's gradient.
fn check(g: &mut Graph<f32>, f: &Fixture, y: Var, y_key: &str, r_key: &str, grads: &[(ParamId, &str)]) {
    let src = f.source();
    assert_eq!(g.shape(y).dims(), f.shape(y_key), "{y_key}: shape");
    assert_close(y_key, g.value(y), &f.data(y_key), &src);
    let r = f.input(g, r_key);
    let p = g.mul(y, r).unwrap();
    let l = g.sum(p, None, false).unwrap();
    g.backward(l).unwrap();
    for &(pid, key) in grads {
        assert_close(key, g.param_grad(pid), &f.data(key), &src);
    }
}

#[test]
fn avg_pool_same_padding_counts_only_the_input_like_keras() {
    for (name, k) in [("avg_pool_3x3_same_stride2", 3), ("avg_pool_2x2_same_stride2", 2)] {
        let f = Fixture::load(name);
        let mut g = Graph::<f32>::new();
        let (x, px) = f.param(&mut g, "x");
        let y = g.avg_pool2d(x, (k, k), (2, 2), Padding::Same).unwrap();
        check(&mut g, &f, y, "y", "r", &[(px, "dx")]);
    }
}

#[test]
fn batch_norm_training_uses_batch_statistics_like_keras() {
    let f = Fixture::load("batch_norm_training");
    let mut g = Graph::<f32>::new();
    let ((x, px), (gamma, pg), (beta, pb)) = (f.param(&mut g, "x"), f.param(&mut g, "gamma"), f.param(&mut g, "beta"));
    let y = g.batch_norm(x, gamma, beta, None, 1e-3).unwrap();
    // The batch mean and the biased batch variance, which the layer folds into its moving averages
    // (moving = 0.99·moving + 0.01·batch). Keras's moving averages after one call give them back.
    let c = f.shape("gamma")[0];
    let saved = g.saved(y).to_vec();
    for (k, stat) in [(0, "moving_mean"), (1, "moving_variance")] {
        let (before, after) = (f.data64(stat), f.data64(&format!("{stat}_after")));
        let batch: Vec<f32> = before.iter().zip(&after).map(|(b, a)| ((a - 0.99 * b) / 0.01) as f32).collect();
        assert_close(&format!("batch statistic behind {stat}"), &saved[k * c..(k + 1) * c], &batch, &f.source());
    }
    check(&mut g, &f, y, "y", "r", &[(px, "dx"), (pg, "dgamma"), (pb, "dbeta")]);
}

#[test]
fn batch_norm_inference_uses_moving_statistics_like_keras() {
    let f = Fixture::load("batch_norm_inference");
    let mut g = Graph::<f32>::new();
    let ((x, px), (gamma, pg), (beta, pb)) = (f.param(&mut g, "x"), f.param(&mut g, "gamma"), f.param(&mut g, "beta"));
    let (mm, mv) = (f.input(&mut g, "moving_mean"), f.input(&mut g, "moving_variance"));
    let y = g.batch_norm(x, gamma, beta, Some((mm, mv)), 1e-3).unwrap();
    check(&mut g, &f, y, "y", "r", &[(px, "dx"), (pg, "dgamma"), (pb, "dbeta")]);
}

/// The mask is random in both frameworks, so what is compared is the scaling of what is kept.
#[test]
fn dropout_scales_kept_values_like_keras() {
    let f = Fixture::load("dropout");
    let (rate, scale) = (f.scalar("rate"), f.data("keep_scale")[0]);
    let n = 200 * 50;
    // The fraction Keras dropped is within 4 standard deviations of the rate; so must kiln's be.
    let bound = 4.0 * (rate * (1.0 - rate) / n as f64).sqrt();
    let keras_dropped = f.scalar("dropped_fraction");
    assert!((keras_dropped - rate).abs() < bound, "the fixture's own dropped fraction {keras_dropped}");
    let mut g = Graph::<f32>::new();
    g.seed(7);
    let xs: Vec<f32> = (0..n).map(|_| g.rng().uniform_range(0.5, 2.0) as f32).collect();
    let p = g.add_param("x", &[200, 50], xs.clone(), true).unwrap();
    let x = g.use_param(p);
    let y = g.dropout(x, rate).unwrap();
    let ys = g.value(y).to_vec();
    let dropped = ys.iter().filter(|&&v| v == 0.0).count();
    let frac = dropped as f64 / n as f64;
    assert!((frac - rate).abs() < bound, "kiln dropped {frac} of the values at rate {rate}");
    for (i, (&yv, &xv)) in ys.iter().zip(&xs).enumerate() {
        if yv != 0.0 {
            let want = xv * scale;
            assert!((yv - want).abs() <= 1e-6 * want, "kept [{i}]: kiln {yv} vs x·{scale} = {want} ({})", f.source());
        }
    }
    // The gradient of Σy is the mask itself: the same scale where kept, 0 where dropped.
    let l = g.sum(y, None, false).unwrap();
    g.backward(l).unwrap();
    for (i, (&d, &yv)) in g.param_grad(p).iter().zip(&ys).enumerate() {
        let want = if yv == 0.0 { 0.0 } else { scale };
        assert!((d - want).abs() <= 1e-6 * scale, "dx[{i}]: kiln {d} vs {want}");
    }
}

#[test]
fn gelu_is_the_exact_erf_form_like_torch() {
    let f = Fixture::load("gelu");
    let mut g = Graph::<f32>::new();
    let (x, px) = f.param(&mut g, "x");
    let y = g.gelu(x).unwrap();
    check(&mut g, &f, y, "y", "r", &[(px, "dx")]);
}

#[test]
fn softmax_and_log_softmax_along_each_axis_match_torch() {
    let f = Fixture::load("softmax");
    for axis in 0..3 {
        for name in ["softmax", "log_softmax"] {
            let mut g = Graph::<f32>::new();
            let (x, px) = f.param(&mut g, "x");
            let y = if name == "softmax" { g.softmax(x, axis) } else { g.log_softmax(x, axis) }.unwrap();
            let key = format!("{name}_axis{axis}");
            check(&mut g, &f, y, &key, &format!("r_{key}"), &[(px, &format!("dx_{key}"))]);
        }
    }
}

#[test]
fn batched_matmul_matches_torch() {
    let f = Fixture::load("matmul");
    for case in ["batched", "batched4d", "shared"] {
        let mut g = Graph::<f32>::new();
        let (a, pa) = f.param(&mut g, &format!("{case}_a"));
        let (b, pb) = f.param(&mut g, &format!("{case}_b"));
        let y = g.matmul(a, b).unwrap();
        let (da, db) = (format!("{case}_da"), format!("{case}_db"));
        check(&mut g, &f, y, &format!("{case}_y"), &format!("{case}_r"), &[(pa, &da), (pb, &db)]);
    }
}

#[test]
fn reductions_along_each_axis_and_all_match_torch() {
    let f = Fixture::load("reductions");
    for op in ["sum", "mean", "max"] {
        for axis in [Some(0), Some(1), Some(2), None] {
            for keepdim in [false, true] {
                let key = format!(
                    "{op}_{}_{}",
                    axis.map_or("all".to_string(), |a| format!("axis{a}")),
                    if keepdim { "keep" } else { "drop" }
                );
                let mut g = Graph::<f32>::new();
                let (x, px) = f.param(&mut g, "x");
                let y = match op {
                    "sum" => g.sum(x, axis, keepdim),
                    "mean" => g.mean(x, axis, keepdim),
                    _ => g.max(x, axis, keepdim),
                }
                .unwrap();
                check(&mut g, &f, y, &key, &format!("r_{key}"), &[(px, &format!("dx_{key}"))]);
            }
        }
    }
}

/// Each loss's value and its gradient with respect to the predictions, plain and with sample weights.
#[test]
fn each_loss_matches_keras_including_its_clipping() {
    let f = Fixture::load("losses");
    let src = f.source();
    let weights = f.data("weights");
    let cases = [
        ("softmax_ce", LossKind::SoftmaxCrossEntropy),
        ("sigmoid_bce", LossKind::SigmoidBinaryCrossEntropy),
        ("bce", LossKind::BinaryCrossEntropy),
        ("cce", LossKind::CategoricalCrossEntropy),
        ("mse", LossKind::MeanSquaredError),
    ];
    for (key, kind) in cases {
        for (suffix, w) in [("", &[][..]), ("_weighted", &weights[..])] {
            let mut g = Graph::<f32>::new();
            let (p, pp) = f.param(&mut g, &format!("{key}_pred"));
            let t = f.input(&mut g, &format!("{key}_target"));
            let loss = g.weighted_loss(kind, p, t, w).unwrap();
            assert_close(&format!("{key}{suffix} loss"), g.value(loss), &f.data(&format!("{key}{suffix}_loss")), &src);
            g.backward(loss).unwrap();
            let want = f.data(&format!("{key}{suffix}_grad"));
            assert_close(&format!("{key}{suffix} grad"), g.param_grad(pp), &want, &src);
        }
    }
    let labels: Vec<u32> = f.data("sparse_ce_labels").iter().map(|&l| l as u32).collect();
    for (suffix, w) in [("", &[][..]), ("_weighted", &weights[..])] {
        let key = format!("sparse_ce{suffix}");
        let mut g = Graph::<f32>::new();
        let (z, pz) = f.param(&mut g, "sparse_ce_logits");
        let loss = g.weighted_sparse_softmax_cross_entropy(z, &labels, w).unwrap();
        assert_close(&format!("{key} loss"), g.value(loss), &f.data(&format!("{key}_loss")), &src);
        g.backward(loss).unwrap();
        assert_close(&format!("{key} grad"), g.param_grad(pz), &f.data(&format!("{key}_grad")), &src);
    }
}
