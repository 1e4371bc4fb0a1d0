//! Embedding(mask_zero) -> LSTM, -> GRU, -> SimpleRNN and -> Bidirectional(LSTM), and Conv1D ->
//! GlobalMaxPooling1D, against PyTorch (fixtures from tools/make_rnn_fixtures.py): the last state of a full
//! and of a padded sequence, and the gradients of every weight; padding does not change results.

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
    check(include_str!("../fixtures/lstm.json"), false);
}

#[test]
fn gru_matches_pytorch_values_and_gradients() {
    check(include_str!("../fixtures/gru.json"), true);
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
    let f: Value = serde_json::from_str(include_str!("../fixtures/conv1d.json")).unwrap();
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

/// Trains one SGD step on MSE against y = h − (n·units/2)·R, whose gradient with respect to h is R, and
/// returns the weights' changes (= their gradients of sum(h·R)).
fn grads_of_sum_h_r(m: &mut Sequential, ids: &Tensor, r: &[f32]) -> (Vec<f32>, Vec<Vec<f32>>) {
    let before = m.get_weights();
    let h = m.predict(ids, ids.rows()).unwrap();
    let half = h.data().len() as f32 / 2.0;
    let y = Tensor::new(
        &[ids.rows(), h.data().len() / ids.rows()],
        h.data().iter().zip(r).map(|(h, r)| h - half * r).collect(),
    )
    .unwrap();
    m.train_on_batch(ids, &y).unwrap();
    let grads =
        before.iter().zip(m.get_weights()).map(|(b, a)| b.iter().zip(&a).map(|(b, a)| b - a).collect()).collect();
    (h.data().to_vec(), grads)
}

#[test]
fn simple_rnn_and_bidirectional_lstm_match_pytorch() {
    let f: Value = serde_json::from_str(include_str!("../fixtures/simple_rnn.json")).unwrap();
    let ids = Tensor::new(&[2, 5], flat(&f["ids"])).unwrap();
    let mut m = Sequential::new(&[5]);
    m.add(Embedding::new(7, 3).mask_zero(true)).unwrap();
    m.add(SimpleRnn::new(4)).unwrap();
    m.compile(Sgd::new(1.0), Loss::MeanSquaredError, &[]).unwrap();
    m.set_weights(&[flat(&f["E"]), flat(&f["W"]), flat(&f["U"]), flat(&f["b"])]).unwrap();
    let (h, g) = grads_of_sum_h_r(&mut m, &ids, &flat(&f["R"]));
    close("simple h", &h, &flat(&f["h"]), 1e-5);
    for (k, name) in ["dE", "dW", "dU", "db"].iter().enumerate() {
        close(name, &g[k], &flat(&f[*name]), 1e-4);
    }

    let f: Value = serde_json::from_str(include_str!("../fixtures/bilstm.json")).unwrap();
    let mut m = Sequential::new(&[5]);
    m.add(Embedding::new(7, 3).mask_zero(true)).unwrap();
    m.add(Bidirectional::new(RnnKind::Lstm, 4)).unwrap();
    m.compile(Sgd::new(1.0), Loss::MeanSquaredError, &[]).unwrap();
    let names = ["forward_W", "forward_U", "forward_b", "backward_W", "backward_U", "backward_b"];
    let mut w = vec![flat(&f["E"])];
    w.extend(names.iter().map(|n| flat(&f[*n])));
    m.set_weights(&w).unwrap();
    let (h, g) = grads_of_sum_h_r(&mut m, &ids, &flat(&f["R"]));
    close("bidirectional h", &h, &flat(&f["h"]), 1e-5);
    close("dE", &g[0], &flat(&f["dE"]), 1e-4);
    for (k, n) in names.iter().enumerate() {
        close(n, &g[k + 1], &flat(&f[&format!("d{n}")]), 1e-4);
    }
}

#[test]
fn global_average_pooling_averages_real_steps_only() {
    let mut m = Sequential::new(&[4]);
    m.add(Embedding::new(5, 2).mask_zero(true)).unwrap();
    m.add(GlobalAveragePooling1D::new()).unwrap();
    m.set_weights(&[vec![9.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]).unwrap();
    let ids = Tensor::new(&[2, 4], vec![1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 1.0, 0.0]).unwrap();
    // Row 1: the mean of E[1] and E[2]; row 2: of E[3], E[4] and E[1]; the padding (E[0] = 9, 9) not at all.
    let y = m.predict(&ids, 2).unwrap();
    close("mean", y.data(), &[2.0, 3.0, 13.0 / 3.0, 16.0 / 3.0], 1e-6);
}

#[test]
fn return_sequences_agree_with_the_last_state() {
    // [3 5 2 0 0]: masked after 3 real steps; [1 2 3 4 6]: full.
    let ids = Tensor::new(&[2, 5], vec![3., 5., 2., 0., 0., 1., 2., 3., 4., 6.]).unwrap();
    for rnn in [RnnKind::Lstm, RnnKind::Gru, RnnKind::SimpleRnn] {
        let build = |seq: bool| {
            let mut m = Sequential::new(&[5]).seed(4);
            m.add(Embedding::new(7, 3).mask_zero(true)).unwrap();
            m.add(Bidirectional::new(rnn, 4).return_sequences(seq)).unwrap();
            m
        };
        let (last, seq) = (build(false), build(true));
        assert_eq!(seq.output_shape(), [5, 8]);
        let (l, s) = (last.predict(&ids, 2).unwrap(), seq.predict(&ids, 2).unwrap());
        for (row, real) in [(0, 3), (1, 5)] {
            let at = |t: usize| &s.data()[(row * 5 + t) * 8..(row * 5 + t + 1) * 8];
            let want = &l.data()[row * 8..(row + 1) * 8];
            // Forward half: the state after the last real step, repeated over the padding.
            for t in real - 1..5 {
                close(&format!("{rnn:?} forward row {row} step {t}"), &at(t)[..4], &want[..4], 1e-6);
            }
            // Backward half: its last state is the one at step 0.
            close(&format!("{rnn:?} backward row {row}"), &at(0)[4..], &want[4..], 1e-6);
        }
    }
    // Pooling over the states: padding steps are left out of the masked average.
    let mut m = Sequential::new(&[5]).seed(2);
    m.add(Embedding::new(7, 3).mask_zero(true)).unwrap();
    m.add(Gru::new(4).return_sequences(true)).unwrap();
    m.add(GlobalAveragePooling1D::new()).unwrap();
    let short = Tensor::new(&[1, 5], vec![3., 5., 2., 0., 0.]).unwrap();
    let mut m3 = Sequential::new(&[3]).seed(2);
    m3.add(Embedding::new(7, 3).mask_zero(true)).unwrap();
    m3.add(Gru::new(4).return_sequences(true)).unwrap();
    m3.add(GlobalAveragePooling1D::new()).unwrap();
    let unpadded = Tensor::new(&[1, 3], vec![3., 5., 2.]).unwrap();
    close("pooled", m.predict(&short, 1).unwrap().data(), m3.predict(&unpadded, 1).unwrap().data(), 1e-6);
    // The same for the max over a bidirectional layer's states (the backward pass starts at the last real step).
    let pooled_max = |steps: usize| {
        let mut m = Sequential::new(&[steps]).seed(6);
        m.add(Embedding::new(7, 3).mask_zero(true)).unwrap();
        m.add(Bidirectional::new(RnnKind::Gru, 4).return_sequences(true)).unwrap();
        m.add(GlobalMaxPooling1D::new()).unwrap();
        m
    };
    let (padded, unpadded_out) =
        (pooled_max(5).predict(&short, 1).unwrap(), pooled_max(3).predict(&unpadded, 1).unwrap());
    close("max-pooled", padded.data(), unpadded_out.data(), 1e-6);
    // An empty text (all padding) pools to the zero start state, not to the padding's stand-in value.
    let empty = pooled_max(5).predict(&Tensor::new(&[1, 5], vec![0.0; 5]).unwrap(), 1).unwrap();
    assert!(empty.data().iter().all(|&v| v == 0.0), "{:?}", empty.data());
}
