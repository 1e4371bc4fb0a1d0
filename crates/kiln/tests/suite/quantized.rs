//! A trained model's Dense kernels quantized for inference (`Model::quantize`): predictions stay close to
//! the f32 model's (f16 closest, then Q8_0, then Q4_0), the summary says what is stored, and training or saving a
//! quantized model is one clear error.

use kiln::core::{DType, Rng};
use kiln::prelude::*;

fn data(n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    let xs: Vec<f32> = (0..n * 64).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
    let labels: Vec<u8> =
        xs.chunks(64).map(|r| (r[..8].iter().sum::<f32>() > 0.0) as u8 + 2 * (r[8] > 0.0) as u8).collect();
    (Tensor::new(&[n, 64], xs).unwrap(), kiln::data::one_hot(&labels, 4).unwrap())
}

fn trained() -> Sequential {
    let mut m = Sequential::new(&[64]).seed(1);
    m.add(Dense::new(64).activation(Activation::Relu)).unwrap();
    m.add(Dense::new(32).activation(Activation::Relu)).unwrap();
    m.add(Dense::new(4).activation(Activation::Softmax)).unwrap();
    m.compile(Adam::new(0.01), Loss::CategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let (x, y) = data(2000, 2);
    m.fit(&x, &y, FitOptions { epochs: 10, batch_size: 64, ..Default::default() }).unwrap();
    m
}

#[test]
fn quantized_kernels_predict_close_to_f32_and_q8_closer_than_q4() {
    let (x, y) = data(500, 3);
    let f32_model = trained();
    let want = f32_model.predict(&x, 100).unwrap();
    let acc32 = f32_model.evaluate(&x, &y, 100).unwrap().get("accuracy").unwrap();
    assert!(acc32 > 0.85, "the f32 model learned the rule: {acc32}");
    let mut worst = Vec::new();
    let dtypes = [DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0];
    for dtype in dtypes {
        let mut m = trained();
        let report = m.quantize(dtype).unwrap();
        assert_eq!(report.quantized, ["dense.kernel", "dense_1.kernel", "dense_2.kernel"]);
        let got = m.predict(&x, 100).unwrap();
        let diff = got.data().iter().zip(want.data()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let agree = got.argmax_rows().iter().zip(want.argmax_rows()).filter(|(a, b)| **a == *b).count();
        println!("{dtype}: largest probability change {diff:.5}, same class for {agree} of 500");
        assert!(diff > 0.0, "{dtype}: the quantized product is used");
        let least = match dtype {
            DType::F16 => 499,
            DType::BF16 | DType::Q8_0 => 495,
            _ => 450,
        };
        assert!(agree >= least, "{dtype}: {agree} of 500 agree");
        let acc = m.evaluate(&x, &y, 100).unwrap().get("accuracy").unwrap();
        assert!(acc > acc32 - 0.05, "{dtype}: accuracy {acc} against {acc32} in f32");
        worst.push(diff);
        // The same count of weights, stored smaller.
        let s = m.summary();
        assert!(s.contains("Total params: 6,372") && s.contains(&format!("stored as {dtype}")), "{s}");
    }
    // Closer to f32 with more bits: f16 (11 significant bits) than Q8_0 than Q4_0; bf16 (8) than Q4_0.
    let w = |d: DType| worst[dtypes.iter().position(|&x| x == d).unwrap()];
    assert!(w(DType::F16) < w(DType::Q8_0) && w(DType::Q8_0) < w(DType::Q4_0), "{worst:?}");
    assert!(w(DType::BF16) < w(DType::Q4_0) && w(DType::F16) < w(DType::BF16), "{worst:?}");
    assert!(w(DType::Q8_0) < 0.05, "Q8_0 changes no probability by more than 0.05: {worst:?}");
}

#[test]
fn a_quantized_model_refuses_to_train_or_save_and_odd_widths_stay_f32() {
    let mut m = Sequential::new(&[50]);
    m.add(Dense::new(64).activation(Activation::Relu)).unwrap();
    m.add(Dense::new(3).activation(Activation::Softmax)).unwrap();
    m.compile(Sgd::new(0.1), Loss::CategoricalCrossentropy, &[]).unwrap();
    let report = m.quantize(DType::Q8_0).unwrap();
    assert_eq!(report.quantized, ["dense_1.kernel"]);
    assert_eq!(report.kept, [("dense.kernel".to_string(), "its 50 inputs are not a multiple of 32".to_string())]);
    let x = Tensor::zeros(&[2, 50]).unwrap();
    let y = kiln::data::one_hot(&[0, 1], 3).unwrap();
    let e = m.fit(&x, &y, FitOptions::default()).unwrap_err().to_string();
    assert!(e.contains("`dense_1.kernel` is quantized (q8_0)") && e.contains("inference only"), "{e}");
    let e = m.train_on_batch(&x, &y).unwrap_err().to_string();
    assert!(e.contains("quantized"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = m.save(dir.path().join("q.safetensors")).unwrap_err().to_string();
    assert!(e.contains("save: `dense_1.kernel` is quantized"), "{e}");
    assert!(!dir.path().join("q.safetensors").exists());
    assert_eq!(m.predict(&x, 2).unwrap().shape(), &[2, 3]);
    let e = m.quantize(DType::F64).unwrap_err().to_string();
    assert!(e.contains("stored as q8_0, q4_0, q4_1, f16 or bf16, not f64"), "{e}");
    let e = m.quantize(DType::Q8_0).unwrap_err().to_string();
    assert!(e.contains("no Dense kernel could be quantized") && e.contains("quantized already"), "{e}");
}
