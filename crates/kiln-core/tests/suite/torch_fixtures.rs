//! Forward values and gradients of key ops against PyTorch (tools/make_torch_fixtures.py wrote the
//! fixtures). kiln computes in f32, its training precision; agreement is required to 1e-4 relative.

use kiln_core::{Graph, LossKind, Padding, UnaryOp, Var};
use serde_json::Value;

struct Fixture(Value);

impl Fixture {
    fn load(name: &str) -> Fixture {
        let path = format!("{}/tests/fixtures/torch/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Fixture(serde_json::from_str(&text).expect("fixture is JSON"))
    }
    fn shape(&self, k: &str) -> Vec<usize> {
        self.0[k]["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
    }
    fn data(&self, k: &str) -> Vec<f32> {
        self.0[k]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
    }
    /// The tensor as a trainable parameter, so its gradient can be read back.
    fn param(&self, g: &mut Graph<f32>, k: &str) -> (Var, kiln_core::ParamId) {
        let p = g.add_param(k, &self.shape(k), self.data(k), true).unwrap();
        (g.use_param(p), p)
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let tol = 1e-4 * a.abs().max(b.abs()) + 1e-6;
        assert!((a - b).abs() <= tol, "{what}[{i}]: kiln {a} vs torch {b}");
    }
}

/// Backpropagates L = Σ y ⊙ r from the fixture's r.
fn backward_weighted(g: &mut Graph<f32>, y: Var, f: &Fixture) {
    let r = g.input(&f.shape("r"), &f.data("r")).unwrap();
    let p = g.mul(y, r).unwrap();
    let l = g.sum(p, None, false).unwrap();
    g.backward(l).unwrap();
}

#[test]
fn dense_with_relu_matches_torch() {
    let f = Fixture::load("dense_relu");
    let mut g = Graph::<f32>::new();
    let ((x, px), (w, pw), (b, pb)) = (f.param(&mut g, "x"), f.param(&mut g, "w"), f.param(&mut g, "b"));
    let y = g.linear(x, w, Some(b), Some(UnaryOp::Relu)).unwrap();
    assert_close("y", g.value(y), &f.data("y"));
    backward_weighted(&mut g, y, &f);
    assert_close("dx", g.param_grad(px), &f.data("dx"));
    assert_close("dw", g.param_grad(pw), &f.data("dw"));
    assert_close("db", g.param_grad(pb), &f.data("db"));
}

fn check_conv(name: &str, stride: usize, padding: Padding) {
    let f = Fixture::load(name);
    let mut g = Graph::<f32>::new();
    let ((x, px), (w, pw), (b, pb)) = (f.param(&mut g, "x"), f.param(&mut g, "w"), f.param(&mut g, "b"));
    let y = g.conv2d(x, w, Some(b), (stride, stride), padding, None).unwrap();
    assert_eq!(g.shape(y).dims(), f.shape("y"), "{name}: output shape");
    assert_close(&format!("{name} y"), g.value(y), &f.data("y"));
    backward_weighted(&mut g, y, &f);
    assert_close(&format!("{name} dx"), g.param_grad(px), &f.data("dx"));
    assert_close(&format!("{name} dw"), g.param_grad(pw), &f.data("dw"));
    assert_close(&format!("{name} db"), g.param_grad(pb), &f.data("db"));
}

#[test]
fn conv2d_valid_matches_torch() {
    check_conv("conv2d_valid", 1, Padding::Valid);
}

#[test]
fn conv2d_same_strided_matches_torch() {
    check_conv("conv2d_same_stride2", 2, Padding::Same);
}

fn check_max_pool(name: &str, k: usize, stride: usize, padding: Padding) {
    let f = Fixture::load(name);
    let mut g = Graph::<f32>::new();
    let (x, px) = f.param(&mut g, "x");
    let y = g.max_pool2d(x, (k, k), (stride, stride), padding).unwrap();
    assert_eq!(g.shape(y).dims(), f.shape("y"), "{name}: output shape");
    assert_close(&format!("{name} y"), g.value(y), &f.data("y"));
    backward_weighted(&mut g, y, &f);
    assert_close(&format!("{name} dx"), g.param_grad(px), &f.data("dx"));
}

#[test]
fn max_pool_matches_torch() {
    check_max_pool("max_pool_2x2", 2, 2, Padding::Valid);
    check_max_pool("max_pool_3x3_same_stride2", 3, 2, Padding::Same);
}

#[test]
fn softmax_cross_entropy_matches_torch() {
    let f = Fixture::load("softmax_cross_entropy");
    let mut g = Graph::<f32>::new();
    let (z, pz) = f.param(&mut g, "logits");
    let t = g.input(&f.shape("target"), &f.data("target")).unwrap();
    let loss = g.loss(LossKind::SoftmaxCrossEntropy, z, t).unwrap();
    assert_close("loss", g.value(loss), &f.data("loss"));
    g.backward(loss).unwrap();
    assert_close("dlogits", g.param_grad(pz), &f.data("dlogits"));
    // The sparse form, from class indices, agrees with the one-hot form.
    let labels: Vec<u32> = f.data("target").chunks(5).map(|r| kiln_core::argmax(r) as u32).collect();
    let mut g2 = Graph::<f32>::new();
    let (z2, pz2) = f.param(&mut g2, "logits");
    let l2 = g2.sparse_softmax_cross_entropy(z2, &labels).unwrap();
    assert_close("sparse loss", g2.value(l2), &f.data("loss"));
    g2.backward(l2).unwrap();
    assert_close("sparse dlogits", g2.param_grad(pz2), &f.data("dlogits"));
}
