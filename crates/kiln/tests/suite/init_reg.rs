//! Initializers and the L1 regularizer against their formulas. The initializers' statistics come from large
//! kernels built by real layers (so the fans are the layer's: dense [in, out], conv [kh, kw, in, out]), with
//! tolerances several standard errors wide that still fail for a wrong formula (fans swapped, a missing
//! factor 2, a truncated normal not rescaled). The L1 penalty is checked on a tiny Dense model by hand: the
//! loss fit reports, the loss evaluate reports, and one SGD step's weight change.

use kiln::nn::fans;
use kiln::prelude::*;

/// (mean, standard deviation, largest |w|) of a sample.
fn stats(w: &[f32]) -> (f64, f64, f64) {
    let n = w.len() as f64;
    let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt(), w.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs())))
}

/// The kernel of a lone Dense(out) on `inp` inputs.
fn dense_kernel(inp: usize, out: usize, init: Initializer, seed: u64) -> Vec<f32> {
    let mut m = Sequential::new(&[inp]).seed(seed);
    m.add(Dense::new(out).kernel_initializer(init)).unwrap();
    let w = m.get_weights();
    assert_eq!(w[0].len(), inp * out);
    assert!(w[1].iter().all(|&b| b == 0.0), "biases start at zero");
    w[0].clone()
}

/// The kernel of a lone Conv2D(filters, k×k) on a [8, 8, cin] input.
fn conv_kernel(cin: usize, filters: usize, k: usize, init: Initializer) -> Vec<f32> {
    let mut m = Sequential::new(&[8, 8, cin]).seed(3);
    m.add(Conv2D::new(filters, k).kernel_initializer(init)).unwrap();
    m.get_weights()[0].clone()
}

/// Mean within 5 standard errors of 0, standard deviation within 2% of `std` (the standard error of a
/// sample standard deviation of n ≥ 60000 draws is under 0.3%, so 2% is about 7 of them, while every
/// plausible wrong formula is off by 8% or more).
fn assert_spread(what: &str, w: &[f32], std: f64) {
    let (mean, sd, _) = stats(w);
    let se_mean = std / (w.len() as f64).sqrt();
    assert!(mean.abs() < 5.0 * se_mean, "{what}: mean {mean} (standard error {se_mean})");
    assert!((sd / std - 1.0).abs() < 0.02, "{what}: standard deviation {sd}, expected {std}");
}

/// Keras's truncated normals: draws beyond 2σ are redrawn, and σ is divided by 0.8796 (the standard
/// deviation of a unit normal truncated at ±2), so the values' standard deviation is the formula's and no
/// value exceeds 2σ/0.8796.
fn assert_truncated(what: &str, w: &[f32], std: f64) {
    assert_spread(what, w, std);
    let bound = 2.0 * std / 0.879_625_661_034_239_8;
    let (_, _, max) = stats(w);
    assert!(max <= bound * (1.0 + 1e-6), "{what}: |w| reaches {max}, beyond the truncation at {bound}");
    assert!(max > 0.97 * bound, "{what}: |w| only reaches {max}, the truncation is at {bound}");
}

#[test]
fn fans_of_dense_and_conv_kernels() {
    assert_eq!(fans(&[200, 300]), (200, 300));
    assert_eq!(fans(&[3, 3, 64, 128]), (3 * 3 * 64, 3 * 3 * 128));
    assert_eq!(fans(&[5, 16, 32]), (5 * 16, 5 * 32));
}

#[test]
fn glorot_normal_is_a_truncated_normal_of_std_sqrt_2_over_fan_in_plus_fan_out() {
    let w = dense_kernel(200, 300, Initializer::GlorotNormal, 1);
    assert_truncated("glorot_normal dense 200x300", &w, (2.0f64 / 500.0).sqrt());
    let w = conv_kernel(64, 128, 3, Initializer::GlorotNormal);
    assert_truncated("glorot_normal conv 3x3x64x128", &w, (2.0f64 / (576.0 + 1152.0)).sqrt());
}

#[test]
fn he_normal_is_a_truncated_normal_of_std_sqrt_2_over_fan_in() {
    // fan_in 200 vs fan_out 300: swapping them gives σ 18% smaller; dropping the 2 gives 29% smaller.
    let w = dense_kernel(200, 300, Initializer::HeNormal, 2);
    assert_truncated("he_normal dense 200x300", &w, (2.0f64 / 200.0).sqrt());
    // Conv: fan_in = 3·3·64 = 576 (not 64, and not fan_out 1152).
    let w = conv_kernel(64, 128, 3, Initializer::HeNormal);
    assert_truncated("he_normal conv 3x3x64x128", &w, (2.0f64 / 576.0).sqrt());
}

#[test]
fn he_uniform_stays_within_sqrt_6_over_fan_in_with_variance_limit_squared_over_3() {
    for (what, w, fan_in) in [
        ("he_uniform dense 200x300", dense_kernel(200, 300, Initializer::HeUniform, 4), 200.0f64),
        ("he_uniform conv 3x3x64x128", conv_kernel(64, 128, 3, Initializer::HeUniform), 576.0),
    ] {
        let limit = (6.0 / fan_in).sqrt();
        let (_, _, max) = stats(&w);
        assert!(max <= limit * (1.0 + 1e-6), "{what}: |w| reaches {max}, beyond the limit {limit}");
        assert!(max > 0.999 * limit, "{what}: |w| only reaches {max}, the limit is {limit}");
        assert_spread(what, &w, limit / 3f64.sqrt());
        // Uniform, not bell-shaped: half the values lie beyond limit/2 (a normal of that σ has 38% there).
        let outer = w.iter().filter(|&&v| (v as f64).abs() > limit / 2.0).count() as f64 / w.len() as f64;
        assert!((outer - 0.5).abs() < 0.01, "{what}: {outer} of the values beyond limit/2, expected 0.5");
    }
}

#[test]
fn glorot_uniform_stays_within_sqrt_6_over_fan_in_plus_fan_out() {
    let w = dense_kernel(200, 300, Initializer::GlorotUniform, 5);
    let limit = (6.0f64 / 500.0).sqrt();
    let (_, _, max) = stats(&w);
    assert!(max <= limit * (1.0 + 1e-6) && max > 0.999 * limit, "|w| reaches {max}, limit {limit}");
    assert_spread("glorot_uniform dense 200x300", &w, limit / 3f64.sqrt());
}

#[test]
fn random_normal_has_keras_defaults_mean_0_std_0_05_untruncated() {
    let w = dense_kernel(200, 300, Initializer::RandomNormal, 6);
    assert_spread("random_normal dense 200x300", &w, 0.05);
    // Not truncated: of 60000 normal draws about 0.27% lie beyond 3σ (a truncated normal has none).
    let beyond = w.iter().filter(|&&v| (v as f64).abs() > 3.0 * 0.05).count();
    assert!((80..250).contains(&beyond), "{beyond} values beyond 3σ, expected about 162");
    // The fans play no part: the same spread on a kernel of other shape.
    assert_spread("random_normal conv 3x3x64x128", &conv_kernel(64, 128, 3, Initializer::RandomNormal), 0.05);
}

#[test]
fn seeds_change_the_draws_and_the_same_seed_repeats_them() {
    let a = dense_kernel(20, 30, Initializer::HeNormal, 7);
    assert_eq!(a, dense_kernel(20, 30, Initializer::HeNormal, 7));
    assert_ne!(a, dense_kernel(20, 30, Initializer::HeNormal, 8));
}

/// A Dense(1) on 3 inputs with kernel [0.5, -0.25, 0], bias 0.1, an L1 penalty of `l1` on the kernel,
/// mean squared error and plain SGD at 0.1; and two samples.
fn l1_model(l1: f32) -> (Sequential, Tensor, Tensor) {
    let mut m = Sequential::new(&[3]);
    m.add(Dense::new(1).kernel_regularizer(Regularizer::l1(l1))).unwrap();
    m.compile(Sgd::new(0.1), Loss::MeanSquaredError, &[]).unwrap();
    m.set_weights(&[vec![0.5, -0.25, 0.0], vec![0.1]]).unwrap();
    let x = Tensor::new(&[2, 3], vec![1.0, 2.0, -1.0, 3.0, -1.0, 2.0]).unwrap();
    let y = Tensor::new(&[2, 1], vec![1.0, 0.0]).unwrap();
    (m, x, y)
}

/// By hand for `l1_model`: the data loss, its gradient for the kernel and for the bias.
fn by_hand() -> (f64, [f64; 3], f64) {
    let (w, b) = ([0.5, -0.25, 0.0], 0.1);
    let xs = [[1.0, 2.0, -1.0], [3.0, -1.0, 2.0]];
    let ys = [1.0, 0.0];
    let (mut loss, mut gw, mut gb) = (0.0, [0.0; 3], 0.0);
    for (x, y) in xs.iter().zip(ys) {
        // p = 0.1 + 0.5·x0 − 0.25·x1: sample 1 gives 0.1, sample 2 gives 1.85.
        let p: f64 = b + w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>();
        loss += (p - y) * (p - y) / 2.0;
        for k in 0..3 {
            gw[k] += (p - y) * x[k]; // 2(p − y)x / n with n = 2
        }
        gb += p - y;
    }
    (loss, gw, gb)
}

#[test]
fn l1_adds_l1_times_sum_abs_w_to_the_training_loss_and_l1_sign_w_to_the_gradient() {
    let l1 = 0.01f32;
    let (data_loss, gw, gb) = by_hand();
    assert!((data_loss - (0.81 + 3.4225) / 2.0).abs() < 1e-12);
    let penalty = 0.01 * (0.5 + 0.25 + 0.0);

    // The loss fit reports for one step on both samples is the data loss plus the penalty at the weights
    // the step started from.
    let (mut m, x, y) = l1_model(l1);
    let opts = FitOptions { epochs: 1, batch_size: 2, shuffle: false, ..Default::default() };
    let h = m.fit(&x, &y, opts).unwrap();
    let reported = h.epochs[0].loss;
    assert!((reported - (data_loss + penalty)).abs() < 1e-5, "fit's loss {reported}, by hand {}", data_loss + penalty);

    // The step: w −= 0.1·(∂loss/∂w + l1·sign(w)), sign(0) = 0 as in Keras (d|w|/dw at 0 taken as 0); the
    // bias has no penalty.
    let w = m.get_weights();
    let w0 = [0.5, -0.25, 0.0];
    let sign = [1.0, -1.0, 0.0];
    for k in 0..3 {
        let want = w0[k] - 0.1 * (gw[k] + l1 as f64 * sign[k]);
        assert!((w[0][k] as f64 - want).abs() < 1e-6, "kernel[{k}] {} after the step, by hand {want}", w[0][k]);
    }
    let want_b = 0.1 - 0.1 * gb;
    assert!((w[1][0] as f64 - want_b).abs() < 1e-6, "bias {} after the step, by hand {want_b}", w[1][0]);

    // The penalty's share alone: the same step without the regularizer differs by exactly 0.1·l1·sign(w).
    let (mut plain, x, y) = l1_model(0.0);
    plain.fit(&x, &y, FitOptions { epochs: 1, batch_size: 2, shuffle: false, ..Default::default() }).unwrap();
    let p = plain.get_weights();
    for k in 0..3 {
        let diff = (p[0][k] - w[0][k]) as f64;
        assert!((diff - 0.1 * 0.01 * sign[k]).abs() < 1e-7, "kernel[{k}]: the penalty moved it by {diff}");
    }
    assert_eq!(p[1], w[1], "the bias is not penalized");

    // train_on_batch reports the same loss for the same step.
    let (mut m, x, y) = l1_model(l1);
    let l = m.train_on_batch(&x, &y).unwrap();
    assert!((l - (data_loss + penalty)).abs() < 1e-5, "train_on_batch's loss {l}");
}

/// Keras adds a model's regularization losses to the loss in `evaluate` (and so to `val_loss`) as in
/// training: `Trainer.compute_loss` adds `self.losses`, which holds every weight regularizer's penalty, in
/// `test_step` too; so does kiln (it once added it only when training, so `val_loss` left it out).
#[test]
fn evaluate_and_val_loss_include_the_penalty_as_in_keras() {
    let (data_loss, _, _) = by_hand();
    let penalty = 0.01 * 0.75;
    let (m, x, y) = l1_model(0.01);
    let e = m.evaluate(&x, &y, 2).unwrap();
    assert!(
        (e.loss - (data_loss + penalty)).abs() < 1e-5,
        "evaluate's loss {}, Keras's {}",
        e.loss,
        data_loss + penalty
    );
}
