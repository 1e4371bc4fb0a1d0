//! Embedding(mask_zero) -> PositionEmbedding -> MultiHeadAttention and -> TransformerEncoder against PyTorch's
//! nn.MultiheadAttention and nn.TransformerEncoderLayer (fixtures from tools/make_transformer_fixtures.py): the
//! output at every step and the gradient of every weight, with one sequence padded (its padding masked as
//! keys); padding does not change the real steps' outputs; bad layer settings are one clear error. ColumnTokens
//! (the FT-Transformer's tokens of a table row, one number periodic) against the papers' formulas in PyTorch.

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

/// The fixture's model with `steps` steps: Embedding(7, 8, mask_zero) -> positions -> [LayerNormalization]
/// -> `layer`.
fn model(f: &Value, steps: usize, layer: impl Into<kiln::nn::LayerConfig>) -> Sequential {
    let mut m = Sequential::new(&[steps]);
    m.add(Embedding::new(7, 8).mask_zero(true)).unwrap();
    m.add(if f["positions"] == "learned" { PositionEmbedding::new() } else { PositionEmbedding::sinusoidal() })
        .unwrap();
    if f["layer_norm"] == true {
        m.add(LayerNormalization::new()).unwrap();
    }
    m.add(layer).unwrap();
    m.compile(Sgd::new(1.0), Loss::MeanSquaredError, &[]).unwrap();
    m
}

fn check(file: &str, layer: impl Into<kiln::nn::LayerConfig> + Clone) {
    let path = format!("{}/tests/fixtures/transformer/{file}", env!("CARGO_MANIFEST_DIR"));
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let entries = f["weights"].as_array().unwrap();
    let weights: Vec<Vec<f32>> = entries.iter().map(|w| flat(&w["value"])).collect();
    let ids = Tensor::new(&[2, 5], flat(&f["ids"])).unwrap();
    let mut m = model(&f, 5, layer.clone());
    m.set_weights(&weights).unwrap();
    let y = m.predict(&ids, 2).unwrap();
    close(&format!("{file}: y"), y.data(), &flat(&f["y"]), 1e-5);

    // MSE against y − (n/2)·R has the gradient R; one SGD step at rate 1 subtracts it from each weight.
    let r = flat(&f["R"]);
    let half = r.len() as f32 / 2.0;
    let target = Tensor::new(&[2, 5, 8], y.data().iter().zip(&r).map(|(y, r)| y - half * r).collect()).unwrap();
    m.train_on_batch(&ids, &target).unwrap();
    for ((entry, before), after) in entries.iter().zip(&weights).zip(m.get_weights()) {
        let grad: Vec<f32> = before.iter().zip(&after).map(|(b, a)| b - a).collect();
        close(&format!("{file}: d{}", entry["name"].as_str().unwrap()), &grad, &flat(&entry["grad"]), 1e-4);
    }

    // The padded sequence alone (3 steps), without its padding, gives the same outputs at its steps.
    if f["positions"] == "sinusoidal" {
        let mut short = model(&f, 3, layer);
        short.set_weights(&weights).unwrap();
        let alone = short.predict(&Tensor::new(&[1, 3], vec![6.0, 2.0, 3.0]).unwrap(), 1).unwrap();
        close(&format!("{file}: without padding"), alone.data(), &y.data()[40..64], 1e-5);
    }
}

#[test]
fn multi_head_attention_matches_pytorch_with_padding() {
    check("mha.json", MultiHeadAttention::new(2));
}

#[test]
fn causal_multi_head_attention_matches_pytorch() {
    check("mha_causal.json", MultiHeadAttention::new(2).causal(true));
}

#[test]
fn post_norm_relu_encoder_matches_pytorch() {
    check("encoder_post_relu.json", TransformerEncoder::new(2, 16).dropout(0.0));
}

#[test]
fn pre_norm_gelu_encoder_after_layer_normalization_matches_pytorch() {
    let layer = TransformerEncoder::new(2, 16).dropout(0.0).norm_first(true).activation(Activation::Gelu);
    check("encoder_pre_gelu.json", layer);
}

#[test]
fn sinusoidal_positions_follow_vaswani() {
    let t = kiln::nn::sinusoidal_table(3, 4);
    // Position 2: sin(2), cos(2), sin(2/100), cos(2/100).
    let want = [2f32.sin(), 2f32.cos(), 0.02f32.sin(), 0.02f32.cos()];
    close("PE[2]", &t[8..12], &want, 1e-6);
}

/// Training with dropout (on the attention weights inside the fused op, and where PyTorch drops) learns a task
/// that needs attention: whether the sequence holds the id 3 anywhere.
#[test]
fn encoder_with_dropout_learns_a_task_that_needs_attention() {
    let mut rng = kiln_core::Rng::new(5);
    let (n, steps) = (256, 6);
    let mut ids = Vec::with_capacity(n * steps);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let len = 2 + (rng.uniform() * 5.0) as usize;
        let row: Vec<f32> =
            (0..steps).map(|j| if j < len { 1.0 + (rng.uniform() * 5.0).floor() as f32 } else { 0.0 }).collect();
        y.push(row.contains(&3.0) as u8 as f32);
        ids.extend(row);
    }
    let ids = Tensor::new(&[n, steps], ids).unwrap();
    let y = Tensor::new(&[n, 1], y).unwrap();
    let mut m = Sequential::new(&[steps]);
    m.add(Embedding::new(7, 16).mask_zero(true)).unwrap();
    m.add(PositionEmbedding::new()).unwrap();
    m.add(TransformerEncoder::new(2, 32).dropout(0.1)).unwrap();
    m.add(GlobalMaxPooling1D::new()).unwrap();
    m.add(Dense::new(1).activation(Activation::Sigmoid)).unwrap();
    m.compile(Adam::new(0.01), Loss::BinaryCrossentropy, &[Metric::Accuracy]).unwrap();
    m.fit(&ids, &y, FitOptions { epochs: 30, batch_size: 32, ..Default::default() }).unwrap();
    let acc = m.evaluate(&ids, &y, 256).unwrap();
    assert!(acc.get("accuracy").unwrap() >= 0.95, "{acc}");
}

#[test]
fn bad_settings_are_one_clear_error() {
    let err = |layer: kiln::nn::LayerConfig, input: &[usize]| {
        let mut m = Sequential::new(input);
        if input.len() == 1 {
            m.add(Embedding::new(7, 6)).unwrap();
        }
        match m.add(layer) {
            Ok(_) => panic!("built"),
            Err(e) => e.to_string(),
        }
    };
    let e = err(TransformerEncoder::new(4, 8).into(), &[5]);
    assert!(e.contains("6 features do not split into 4 heads"), "{e}");
    let e = err(MultiHeadAttention::new(4).into(), &[5]);
    assert!(e.contains("set key_dim"), "{e}");
    let e = err(TransformerEncoder::new(2, 8).into(), &[3, 4, 5]);
    assert!(e.contains("expects a sequence (steps, features)"), "{e}");
    let e = err(TransformerEncoder::new(2, 8).dropout(1.5).into(), &[5]);
    assert!(e.contains("dropout 1.5 must be in [0, 1)"), "{e}");
}

#[test]
fn column_tokens_match_pytorch_with_a_periodic_number() {
    let path = format!("{}/tests/fixtures/transformer/column_tokens.json", env!("CARGO_MANIFEST_DIR"));
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let entries = f["weights"].as_array().unwrap();
    let weights: Vec<Vec<f32>> = entries.iter().map(|w| flat(&w["value"])).collect();
    let widths: Vec<usize> = f["widths"].as_array().unwrap().iter().map(|w| w.as_u64().unwrap() as usize).collect();
    let periodic: Vec<bool> = f["periodic"].as_array().unwrap().iter().map(|p| p.as_bool().unwrap()).collect();
    let layer = ColumnTokens::new(4, &widths).periodic(&periodic).frequencies(3, 0.5);
    let x = Tensor::new(&[3, 8], flat(&f["x"])).unwrap();
    let mut m = Sequential::new(&[8]);
    m.add(layer.clone()).unwrap();
    m.compile(Sgd::new(1.0), Loss::MeanSquaredError, &[]).unwrap();
    m.set_weights(&weights).unwrap();
    let y = m.predict(&x, 3).unwrap();
    assert_eq!(y.shape(), &[3, 5, 4]);
    close("column tokens: y", y.data(), &flat(&f["y"]), 1e-5);

    let r = flat(&f["R"]);
    let half = r.len() as f32 / 2.0;
    let target = Tensor::new(&[3, 5, 4], y.data().iter().zip(&r).map(|(y, r)| y - half * r).collect()).unwrap();
    m.train_on_batch(&x, &target).unwrap();
    for ((entry, before), after) in entries.iter().zip(&weights).zip(m.get_weights()) {
        let grad: Vec<f32> = before.iter().zip(&after).map(|(b, a)| b - a).collect();
        close(&format!("column tokens: d{}", entry["name"].as_str().unwrap()), &grad, &flat(&entry["grad"]), 1e-4);
    }

    // SelectToken(2) reads the second column's token back out.
    let mut pick = Sequential::new(&[8]);
    pick.add(layer).unwrap();
    pick.add(SelectToken::new(2)).unwrap();
    pick.compile(Sgd::new(1.0), Loss::MeanSquaredError, &[]).unwrap();
    pick.set_weights(&weights).unwrap();
    let t = pick.predict(&x, 3).unwrap();
    let want: Vec<f32> = (0..3).flat_map(|i| y.data()[i * 20 + 8..i * 20 + 12].to_vec()).collect();
    close("select_token(2)", t.data(), &want, 0.0);
}

#[test]
fn column_tokens_bad_settings_are_one_clear_error() {
    let err = |layer: kiln::nn::LayerConfig| {
        let mut m = Sequential::new(&[5]);
        match m.add(layer) {
            Ok(_) => panic!("built"),
            Err(e) => e.to_string(),
        }
    };
    let e = err(ColumnTokens::new(4, &[2, 2]).into());
    assert!(e.contains("expects 4 features in 2 non-empty columns"), "{e}");
    let e = err(ColumnTokens::new(4, &[2, 3]).periodic(&[true]).into());
    assert!(e.contains("periodic has 1 flags for 2 columns"), "{e}");
    let e = err(ColumnTokens::new(4, &[2, 3]).periodic(&[true, false]).frequencies(4, 0.0).into());
    assert!(e.contains("sigma 0 must be positive"), "{e}");
    let mut m = Sequential::new(&[5]);
    m.add(ColumnTokens::new(4, &[2, 3])).unwrap();
    let e = m.add(SelectToken::new(3)).err().unwrap().to_string();
    assert!(e.contains("index 3 is past the sequence's 3 steps"), "{e}");
}
