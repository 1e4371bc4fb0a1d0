//! Embedding(mask_zero) -> LSTM and -> GRU, and Conv1D -> GlobalMaxPooling1D, against PyTorch (fixtures from tools/make_rnn_fixtures.py): the
//! last state of a full and of a padded sequence, and the gradients of every weight; padding does not change
//! results.

use kiln::prelude::*;
use serde_json::Value;

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap() as f32],
        _ => panic!("not numbers"),
    }
}

fn close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{name}[{i}]: kiln {g}, PyTorch {w}");
    }
}

fn model(steps: usize, gru: bool) -> Sequential {
    let mut m = Sequential::new(&[steps]);
    m.add(Embedding::new(7, 3).mask_zero(true)).unwrap();
    if gru {
        m.add(Gru::new(4)).unwrap();
    } else {
        m.add(Lstm::new(4)).unwrap();
    }
    m.compile(Sgd::new(1.0), Loss::MeanSquaredError, &[]).unwrap();
    m
}

#[test]
fn lstm_matches_pytorch_values_and_gradients() {
    check(include_str!("fixtures/lstm.json"), false);
}

#[test]
fn gru_matches_pytorch_values_and_gradients() {
    check(include_str!("fixtures/gru.json"), true);
}

fn check(fixture: &str, gru: bool) {
    let f: Value = serde_json::from_str(fixture).unwrap();
    let weights = vec![flat(&f["E"]), flat(&f["W"]), flat(&f["U"]), flat(&f["b"])];
    let ids = Tensor::new(&[2, 5], flat(&f["ids"])).unwrap();
    let mut m = model(5, gru);
    m.set_weights(&weights).unwrap();
    let h = m.predict(&ids, 2).unwrap();
    close("h", h.data(), &flat(&f["h"]), 1e-5);
    // MSE over 8 outputs against y = h − 4R has the gradient R; one SGD step at rate 1 subtracts it.
    let r = flat(&f["R"]);
    let y = Tensor::new(&[2, 4], h.data().iter().zip(&r).map(|(h, r)| h - 4.0 * r).collect()).unwrap();
    m.train_on_batch(&ids, &y).unwrap();
    let after = m.get_weights();
    for (k, name) in ["dE", "dW", "dU", "db"].iter().enumerate() {
        let grad: Vec<f32> = weights[k].iter().zip(&after[k]).map(|(b, a)| b - a).collect();
        close(name, &grad, &flat(&f[*name]), 1e-4);
    }

    // The padded sequence alone, without its padding, gives the same state.
    let mut short = model(2, gru);
    short.set_weights(&weights).unwrap();
    let h2 = short.predict(&Tensor::new(&[1, 2], vec![6.0, 2.0]).unwrap(), 1).unwrap();
    close("h without padding", h2.data(), &h.data()[4..8], 1e-6);
}

#[test]
fn conv1d_and_global_max_pooling_match_pytorch() {
    let f: Value = serde_json::from_str(include_str!("fixtures/conv1d.json")).unwrap();
    let mut m = Sequential::new(&[6, 3]);
    m.add(Conv1D::new(4, 3).activation(Activation::Relu)).unwrap();
    m.add(GlobalMaxPooling1D::new()).unwrap();
    m.compile(Sgd::new(1.0), Loss::MeanSquaredError, &[]).unwrap();
    let weights = vec![flat(&f["W"]), flat(&f["b"])];
    m.set_weights(&weights).unwrap();
    let x = Tensor::new(&[2, 6, 3], flat(&f["x"])).unwrap();
    let y = m.predict(&x, 2).unwrap();
    close("y", y.data(), &flat(&f["y"]), 1e-5);
    let r = flat(&f["R"]);
    let target = Tensor::new(&[2, 4], y.data().iter().zip(&r).map(|(y, r)| y - 4.0 * r).collect()).unwrap();
    m.train_on_batch(&x, &target).unwrap();
    let after = m.get_weights();
    for (k, name) in ["dW", "db"].iter().enumerate() {
        let grad: Vec<f32> = weights[k].iter().zip(&after[k]).map(|(b, a)| b - a).collect();
        close(name, &grad, &flat(&f[*name]), 1e-4);
    }
}
