//! ONNX export of every layer kind: small models with random weights (batch-norm statistics included), each
//! exported and run by an ONNX runtime on the same inputs, outputs within 1e-5 of kiln's `predict`.
//!
//! Each case is also left in `target/tmp/onnx-cases/` (the .onnx file and a JSON of its inputs and kiln's
//! outputs), where tools/check_onnx.py runs them in onnxruntime; CI runs both.

use kiln::core::Rng;
use kiln::model::Model;
use kiln::nn::{
    Add, BertEncoder, Concatenate, Dot, LayerNormalization, Multiply, PositionEmbedding, RnnKind, TokenPooling,
};
use kiln::prelude::*;
use std::path::PathBuf;

/// Every parameter set to random values (variances positive), so no weight is left at an initializer's
/// zeros or ones that would hide a wrong layout.
fn randomize(m: &mut Model, seed: u64) {
    let mut rng = Rng::new(seed);
    let names: Vec<String> = m.graph().params().iter().map(|p| p.name.clone()).collect();
    let w: Vec<Vec<f32>> = m
        .get_weights()
        .into_iter()
        .zip(&names)
        .map(|(v, name)| {
            v.iter()
                .map(|_| {
                    let u = rng.uniform_range(-0.5, 0.5) as f32;
                    if name.ends_with("moving_variance") { 0.5 + u.abs() } else { u }
                })
                .collect()
        })
        .collect();
    m.set_weights(&w).unwrap();
}

/// `n` rows of `steps` ids below `vocab`, with padding (0) wherever a user's ids may have it: row 0 full,
/// row 1 a single id at the end (padded in front), row 2 with zeros between its words, row 3 no word at all,
/// the others padded at the end after a random length (as kiln pads texts).
fn ids(n: usize, steps: usize, vocab: usize, rng: &mut Rng) -> Tensor {
    let mut v = vec![0f32; n * steps];
    for r in 0..n {
        let row = &mut v[r * steps..(r + 1) * steps];
        let words: Vec<usize> = match r {
            0 => (0..steps).collect(),
            1 => vec![steps - 1],
            2 => (0..steps).filter(|s| s % 3 != 1).collect(),
            3 => vec![],
            _ => (0..1 + rng.next_u64() as usize % steps).collect(),
        };
        for s in words {
            row[s] = (1 + rng.next_u64() as usize % (vocab - 1)) as f32;
        }
    }
    Tensor::new(&[n, steps], v).unwrap()
}

fn uniform(shape: &[usize], rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(shape, (0..n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect()).unwrap()
}

/// The cases' folder: target/tmp/onnx-cases.
fn cases_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx-cases");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tensor_json(name: &str, t: &Tensor) -> serde_json::Value {
    serde_json::json!({ "name": name, "shape": t.shape(), "data": t.data() })
}

/// Exports `m` and writes the case for tools/check_onnx.py: the file's bytes and kiln's outputs.
fn write_case(case: &str, m: &Model, inputs: &[Tensor]) -> (Vec<u8>, Vec<Tensor>) {
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let want = m.predict_outputs(&refs, 64).unwrap();
    let bytes = m.to_onnx().unwrap();
    let dir = cases_dir();
    std::fs::write(dir.join(format!("{case}.onnx")), &bytes).unwrap();
    let names: Vec<String> = m.inputs().iter().map(|i| i.name.clone()).collect();
    let json = serde_json::json!({
        "inputs": names.iter().zip(inputs).map(|(n, t)| tensor_json(n, t)).collect::<Vec<_>>(),
        "outputs": m.outputs().iter().zip(&want).map(|(n, t)| tensor_json(n, t)).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join(format!("{case}.json")), json.to_string()).unwrap();
    (bytes, want)
}

/// Exports `m`, writes its case, and checks it in the Rust runtime.
fn check(case: &str, m: &Model, inputs: &[Tensor]) {
    let (bytes, want) = write_case(case, m, inputs);
    runtime::check(case, &bytes, inputs, &want);
}

/// The exported graph run by tract (a Rust ONNX runtime), inputs at their concrete shapes.
mod runtime {
    use kiln::prelude::Tensor;
    use tract_onnx::prelude::*;

    pub fn check(case: &str, bytes: &[u8], inputs: &[Tensor], want: &[Tensor]) {
        let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).unwrap();
        for (i, t) in inputs.iter().enumerate() {
            model = model.with_input_fact(i, f32::fact(t.shape()).into()).unwrap();
        }
        let plan = model.into_optimized().and_then(|m| m.into_runnable());
        let plan = plan.unwrap_or_else(|e| panic!("{case}: tract cannot run the export: {e:?}"));
        let ins: TVec<TValue> = inputs
            .iter()
            .map(|t| tract_ndarray::ArrayD::from_shape_vec(t.shape(), t.data().to_vec()).unwrap().into_tvalue())
            .collect();
        let outs = plan.run(ins).unwrap();
        assert_eq!(outs.len(), want.len(), "{case}: outputs");
        for (k, (got, want)) in outs.iter().zip(want).enumerate() {
            let got = got.to_plain_array_view::<f32>().unwrap();
            assert_eq!(got.shape(), want.shape(), "{case}: output {k}'s shape");
            let worst = got.iter().zip(want.data()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{case}: output {k} is {worst:e} from kiln's");
        }
    }
}

#[test]
fn a_cnn_with_every_image_layer_exports() {
    let mut rng = Rng::new(1);
    let mut m = Sequential::new(&[12, 10, 2]);
    m.add(Conv2D::new(4, 3).activation(Activation::Relu)).unwrap();
    m.add(MaxPooling2D::new(2)).unwrap();
    m.add(Conv2D::new(5, (2, 3)).strides(2).padding(PaddingConfig::Same).activation(Activation::Tanh)).unwrap();
    m.add(AveragePooling2D::new(2).strides(1).padding(PaddingConfig::Same)).unwrap();
    m.add(MaxPooling2D::new(3).strides(2).padding(PaddingConfig::Same)).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(Flatten::new()).unwrap();
    m.add(Dropout::new(0.5)).unwrap();
    m.add(Dense::new(16).activation(Activation::Gelu)).unwrap();
    m.add(ActivationLayer::new(Activation::LeakyRelu)).unwrap();
    m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    randomize(&mut m, 2);
    check("cnn", &m, &[uniform(&[5, 12, 10, 2], &mut rng)]);
}

#[test]
fn text_convolutions_and_masked_pooling_export() {
    let mut rng = Rng::new(3);
    let mut m = Model::with_inputs(&[("text", &[9])]);
    let e = m.apply(Embedding::new(20, 6).mask_zero(true), &["text"]).unwrap();
    let c = m.apply(Conv1D::new(4, 3).activation(Activation::Relu), &[&e]).unwrap();
    let cmax = m.apply(GlobalMaxPooling1D::new(), &[&c]).unwrap();
    let max = m.apply(GlobalMaxPooling1D::new(), &[&e]).unwrap();
    let avg = m.apply(GlobalAveragePooling1D::new(), &[&e]).unwrap();
    let all = m.apply(Concatenate::new(), &[&cmax, &max, &avg]).unwrap();
    m.apply(Dense::new(1).activation(Activation::Sigmoid), &[&all]).unwrap();
    randomize(&mut m, 4);
    check("text_conv", &m, &[ids(6, 9, 20, &mut rng)]);
}

/// `check`, but a masked recurrent layer (its `sequence_lens` an input computed at run time, which tract
/// does not take) is left to onnxruntime (tools/check_onnx.py, in CI).
fn check_rnn(case: &str, m: &Model, inputs: &[Tensor], masked: bool) {
    let (bytes, want) = write_case(case, m, inputs);
    if !masked {
        runtime::check(case, &bytes, inputs, &want);
    }
}

#[test]
fn recurrent_layers_export_with_and_without_a_padding_mask() {
    let kinds = [(RnnKind::Lstm, "lstm"), (RnnKind::Gru, "gru"), (RnnKind::SimpleRnn, "simple_rnn")];
    for (k, (kind, name)) in kinds.into_iter().enumerate() {
        for mask in [false, true] {
            let mut rng = Rng::new(10 + k as u64);
            let mut m = Sequential::new(&[7]);
            m.add(Embedding::new(15, 5).mask_zero(mask)).unwrap();
            match kind {
                RnnKind::Lstm => m.add(Lstm::new(4).return_sequences(true)).unwrap(),
                RnnKind::Gru => m.add(Gru::new(4).return_sequences(true)).unwrap(),
                RnnKind::SimpleRnn => m.add(SimpleRnn::new(4).return_sequences(true)).unwrap(),
            };
            // A Flatten reads every step's output, the padded ones' included.
            m.add(Flatten::new()).unwrap();
            m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
            randomize(&mut m, 20 + k as u64);
            check_rnn(&format!("{name}_seq_mask{}", mask as u8), &m, &[ids(6, 7, 15, &mut rng)], mask);

            let mut m = Sequential::new(&[7]);
            m.add(Embedding::new(15, 5).mask_zero(mask)).unwrap();
            m.add(Bidirectional::new(kind, 3).return_sequences(k == 0)).unwrap();
            if k == 0 {
                m.add(Flatten::new()).unwrap();
            }
            m.add(Dense::new(2).activation(Activation::Softmax)).unwrap();
            randomize(&mut m, 30 + k as u64);
            check_rnn(&format!("{name}_bidirectional_mask{}", mask as u8), &m, &[ids(6, 7, 15, &mut rng)], mask);
        }
    }
}

#[test]
fn attention_and_transformer_blocks_export() {
    let mut rng = Rng::new(5);
    for (case, norm_first, causal, activation) in
        [("transformer_post", false, false, Activation::Relu), ("transformer_pre", true, true, Activation::Gelu)]
    {
        let mut m = Sequential::new(&[8]);
        m.add(Embedding::new(30, 8).mask_zero(true)).unwrap();
        m.add(if causal { PositionEmbedding::sinusoidal() } else { PositionEmbedding::new() }).unwrap();
        m.add(MultiHeadAttention::new(2).key_dim(3).causal(causal)).unwrap();
        m.add(LayerNormalization::new()).unwrap();
        m.add(TransformerEncoder::new(2, 12).norm_first(norm_first).causal(causal).activation(activation)).unwrap();
        m.add(GlobalAveragePooling1D::new()).unwrap();
        m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
        randomize(&mut m, 6);
        check(case, &m, &[ids(5, 8, 30, &mut rng)]);
    }
}

#[test]
fn table_embeddings_and_column_tokens_export() {
    let mut rng = Rng::new(7);
    // Two numbers, one id, a bag of three ids (mean of the non-padding ones), a weighted bag of two.
    let mut m = Sequential::new(&[2 + 1 + 3 + 4]);
    m.add(CategoryEmbedding::new(2, &[(5, 3), (6, 2), (4, 2)]).lengths(&[1, 3, 2]).weighted(&[false, false, true]))
        .unwrap();
    m.add(Dense::new(6).activation(Activation::LeakyRelu)).unwrap();
    m.add(ActivationLayer::new(Activation::Tanh)).unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax)).unwrap();
    randomize(&mut m, 8);
    let rows: Vec<f32> = (0..6)
        .flat_map(|r| {
            let bag = if r == 1 { [0.0, 0.0, 0.0] } else { [(r % 6) as f32, 0.0, ((r + 2) % 6) as f32] };
            let mut row = vec![rng.uniform_range(-1.0, 1.0) as f32, r as f32 * 0.3, (r % 5) as f32];
            row.extend(bag);
            row.extend([(r % 4) as f32, 3.0, 0.25, 0.75]);
            row
        })
        .collect();
    check("category_embedding", &m, &[Tensor::new(&[6, 10], rows).unwrap()]);

    let mut m = Sequential::new(&[6]);
    m.add(ColumnTokens::new(4, &[1, 3, 2]).periodic(&[true, false, true]).frequencies(3, 0.5)).unwrap();
    m.add(TransformerEncoder::new(2, 8)).unwrap();
    m.add(SelectToken::new(0)).unwrap();
    m.add(Dense::new(1).activation(Activation::Sigmoid)).unwrap();
    randomize(&mut m, 9);
    check("column_tokens", &m, &[uniform(&[5, 6], &mut rng)]);
}

#[test]
fn merges_and_several_outputs_export() {
    let mut rng = Rng::new(11);
    let mut m = Model::with_inputs(&[("a", &[4]), ("b", &[4])]);
    let x = m.apply(Dense::new(4).activation(Activation::Relu), &["a"]).unwrap();
    let y = m.apply(Dense::new(4), &["b"]).unwrap();
    let s = m.apply(Add::new(), &[&x, &y, &x]).unwrap();
    let p = m.apply(Multiply::new(), &[&x, &y]).unwrap();
    let d = m.apply(Dot::new().normalize(true), &[&s, &p]).unwrap();
    let d2 = m.apply(Dot::new(), &[&s, &p]).unwrap();
    let c = m.apply(Concatenate::new(), &[&s, &p, &d, &d2]).unwrap();
    let out1 = m.apply(Dense::new(3).activation(Activation::Softmax).name("kind"), &[&c]).unwrap();
    let out2 = m.apply(Dense::new(1).name("amount"), &[&c]).unwrap();
    m.set_outputs(&[&out1, &out2]).unwrap();
    randomize(&mut m, 12);
    check("merges", &m, &[uniform(&[4, 4], &mut rng), uniform(&[4, 4], &mut rng)]);
}

#[test]
fn a_bert_encoder_exports_with_mean_and_cls_pooling() {
    let mut rng = Rng::new(13);
    for (case, pooling, normalize) in [("bert_mean", TokenPooling::Mean, true), ("bert_cls", TokenPooling::Cls, false)]
    {
        let mut bert = BertEncoder::new(40, 8, 2, 2, 16);
        bert.max_position_embeddings = 12;
        bert.pooling = pooling;
        bert.normalize = normalize;
        let mut m = Sequential::new(&[9]);
        m.add(bert).unwrap();
        m.add(Dense::new(2).activation(Activation::Softmax)).unwrap();
        randomize(&mut m, 14);
        check(case, &m, &[ids(4, 9, 40, &mut rng)]);
    }
}

#[test]
fn a_quantized_model_is_refused_with_a_clear_message() {
    let mut m = Sequential::new(&[64]);
    m.add(Dense::new(32)).unwrap();
    m.quantize(kiln::core::DType::Q8_0).unwrap();
    let e = m.to_onnx().unwrap_err().to_string();
    assert!(e.contains("quantized") && e.contains("dense"), "{e}");
}
