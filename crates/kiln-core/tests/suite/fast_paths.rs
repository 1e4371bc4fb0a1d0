//! The f32 paths users run, against plain f64 recomputations written here from each op's formula (not from
//! kiln's code): the f32 matrix kernel (`backend/cpu/sgemm.rs`, AVX-512 or else AVX2) in every blocking case and
//! from weights packed once for inference, the direct conv+pool
//! kernels (`backend/cpu/conv_pool_direct.rs`) forward and weight gradient, the tiled convolution with fused
//! activations, max pooling's 2x2 fast path, and the AVX2 elementwise loops. Every check runs twice: with
//! the default threading, and with four threads forced and `par`'s work threshold at 1, so that each
//! threaded path (bands of rows or columns, split-k partial sums, per-thread partial dw/db and their merge)
//! is taken at shapes small enough to recompute.
//!
//! The gradient checks (gradcheck.rs) run in f64, which takes none of these paths. A processor without
//! AVX-512 or AVX2 still runs every check, on the portable code, and prints which fast path it could not
//! test.

use kiln_core::{Graph, Padding, ParamId, Rng, UnaryOp, Var};
use std::io::Write;
/// Runs `check` with the default threading, then with every op split into at least four parts.
fn both_threadings(check: impl Fn(&str)) {
    let _turn = crate::settings();
    check("default threading");
    kiln_core::ops::set_num_threads(4);
    kiln_core::par::set_min_parallel_work(1);
    let restore = Restore;
    check("4 threads forced");
    drop(restore);
}

struct Restore;
impl Drop for Restore {
    fn drop(&mut self) {
        kiln_core::ops::set_num_threads(0);
        kiln_core::par::set_min_parallel_work(kiln_core::par::MIN_PARALLEL_WORK);
    }
}

/// Says on the terminal (not captured by the test harness) that a fast path could not be tested here.
fn notice_unless(present: bool, what: &str) {
    if !present {
        let _ = writeln!(std::io::stderr(), "NOTICE: this processor lacks {what}; its fast path was not tested");
    }
}

fn has(feature: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match feature {
            "avx512f" => is_x86_feature_detected!("avx512f"),
            "avx2+fma" => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            _ => unreachable!(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = feature;
        false
    }
}

fn rand(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect()
}

/// An activation in f64, from its textbook formula: (value, derivative).
fn act64(act: Option<UnaryOp>, z: f64) -> (f64, f64) {
    match act {
        None => (z, 1.0),
        Some(UnaryOp::Relu) => (z.max(0.0), if z > 0.0 { 1.0 } else { 0.0 }),
        Some(UnaryOp::LeakyRelu(a)) => (if z > 0.0 { z } else { a * z }, if z > 0.0 { 1.0 } else { a }),
        Some(UnaryOp::Sigmoid) => {
            let s = 1.0 / (1.0 + (-z).exp());
            (s, s * (1.0 - s))
        }
        Some(UnaryOp::Tanh) => (z.tanh(), 1.0 - z.tanh().powi(2)),
        Some(UnaryOp::Gelu) => {
            let cdf = 0.5 * (1.0 + libm::erf(z / 2f64.sqrt()));
            (z * cdf, cdf + z * (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt())
        }
        Some(UnaryOp::Exp) => (z.exp(), z.exp()),
        Some(UnaryOp::Log) => (z.ln(), 1.0 / z),
        Some(UnaryOp::Sqrt) => (z.sqrt(), 0.5 / z.sqrt()),
        Some(UnaryOp::Pow(p)) => (z.powf(p), p * z.powf(p - 1.0)),
        Some(UnaryOp::Abs) => (z.abs(), z.signum()),
        Some(UnaryOp::Neg) => (-z, -1.0),
        Some(UnaryOp::Sin) => (z.sin(), z.cos()),
        Some(UnaryOp::Cos) => (z.cos(), -z.sin()),
    }
}

/// A reference value, the sum of the magnitudes of the terms that made it (f32 rounding grows with that sum,
/// not with the possibly cancelled value), and a slack for what f32 may legitimately decide otherwise: which
/// side of relu's kink a value within rounding of 0 falls on, which of two nearly equal values a pooling
/// window picks, and the rounding of a derivative computed from a saturated output (1 − y² at y ≈ 1).
#[derive(Clone, Copy, Default)]
struct Ref {
    v: f64,
    mag: f64,
    slack: f64,
}

impl Ref {
    fn add(&mut self, t: f64) {
        self.v += t;
        self.mag += t.abs();
    }
    fn of(v: f64) -> Ref {
        Ref { v, mag: v.abs(), slack: 0.0 }
    }
}

/// got ≈ want within `rel` of each element's term magnitude, plus its slack.
fn assert_close(what: &str, got: &[f32], want: &[Ref], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, w)) in got.iter().zip(want).enumerate() {
        let tol = rel * w.mag.max(w.v.abs()) + w.slack + 1e-30;
        assert!((g as f64 - w.v).abs() <= tol, "{what}[{i}]: kiln {g} vs f64 reference {} (tolerance {tol:e})", w.v);
    }
}

/// Relative tolerance for f32 sums: a wrong, missing or doubled term moves a value by far more.
const REL: f64 = 2e-6;

/// The gradient at an activation's input from the output gradient `r`, for pre-activation `z` (a reference
/// value): (dz, slack of dz).
fn act_grad(act: Option<UnaryOp>, z: Ref, r: f64) -> (f64, f64) {
    let d = act64(act, z.v).1;
    let mut slack = match act {
        // Derivatives computed from the f32 output: 1 − y² and y(1 − y) lose ~1e-7 absolute when y ≈ ±1.
        Some(UnaryOp::Sigmoid | UnaryOp::Tanh) => 2.5e-7 * r.abs(),
        _ => 0.0,
    };
    let near_kink = z.v.abs() <= 8.0 * REL * z.mag;
    if near_kink && let Some(UnaryOp::Relu | UnaryOp::LeakyRelu(_)) = act {
        slack += r.abs();
    }
    (r * d, slack)
}

/// Random weights r for L = Σ y ⊙ r, so every output's gradient differs.
fn weighted_sum(g: &mut Graph<f32>, y: Var, r: &[f32]) {
    let shape = g.shape(y);
    let rv = g.input(shape.dims(), r).unwrap();
    let p = g.mul(y, rv).unwrap();
    let l = g.sum(p, None, false).unwrap();
    g.backward(l).unwrap();
}

fn param(g: &mut Graph<f32>, name: &str, shape: &[usize], v: &[f32], grad: bool) -> (Var, ParamId) {
    let p = g.add_param(name, shape, v.to_vec(), grad).unwrap();
    (g.use_param(p), p)
}

// ---------------------------------------------------------------------------------------------------------
// Dense: y = act(x·W + b), the matrix kernel in every blocking case, and its three gradients.

/// (y, dx, dW, db) in f64 for L = Σ act(x·W + b) ⊙ r. x [m, k], W [k, n].
fn dense_ref(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    r: &[f32],
    (m, k, n): (usize, usize, usize),
    act: Option<UnaryOp>,
) -> [Vec<Ref>; 4] {
    let mut y = vec![Ref::default(); m * n];
    let mut dz = vec![(0.0, 0.0); m * n];
    for i in 0..m {
        for j in 0..n {
            let mut z = Ref::default();
            for p in 0..k {
                z.add(x[i * k + p] as f64 * w[p * n + j] as f64);
            }
            z.add(b[j] as f64);
            let (a, d) = act64(act, z.v);
            y[i * n + j] = Ref { v: a, mag: z.mag * d.abs().max(1.0), slack: 0.0 };
            dz[i * n + j] = act_grad(act, z, r[i * n + j] as f64);
        }
    }
    let mut dx = vec![Ref::default(); m * k];
    let mut dw = vec![Ref::default(); k * n];
    let mut db = vec![Ref::default(); n];
    for i in 0..m {
        for j in 0..n {
            let (d, ds) = dz[i * n + j];
            db[j].add(d);
            db[j].slack += ds;
            for p in 0..k {
                let (xv, wv) = (x[i * k + p] as f64, w[p * n + j] as f64);
                dx[i * k + p].add(d * wv);
                dx[i * k + p].slack += ds * wv.abs();
                dw[p * n + j].add(xv * d);
                dw[p * n + j].slack += ds * xv.abs();
            }
        }
    }
    [y, dx, dw, db]
}

fn check_dense(rng: &mut Rng, (m, k, n): (usize, usize, usize), act: Option<UnaryOp>, mode: &str) {
    let (x, w, b, r) = (rand(m * k, rng), rand(k * n, rng), rand(n, rng), rand(m * n, rng));
    let mut g = Graph::<f32>::new();
    let (xv, px) = param(&mut g, "x", &[m, k], &x, true);
    let (wv, pw) = param(&mut g, "w", &[k, n], &w, true);
    let (bv, pb) = param(&mut g, "b", &[n], &b, true);
    let y = g.linear(xv, wv, Some(bv), act).unwrap();
    let yv = g.value(y).to_vec();
    weighted_sum(&mut g, y, &r);
    let [ry, rdx, rdw, rdb] = dense_ref(&x, &w, &b, &r, (m, k, n), act);
    let what = |t: &str| format!("dense {m}x{k}x{n} {act:?} ({mode}) {t}");
    assert_close(&what("y"), &yv, &ry, REL);
    assert_close(&what("dx"), g.param_grad(px), &rdx, REL);
    assert_close(&what("dW"), g.param_grad(pw), &rdw, REL);
    assert_close(&what("db"), g.param_grad(pb), &rdb, REL);
}

#[test]
fn dense_products_and_gradients_match_f64_in_every_blocking_case() {
    notice_unless(has("avx512f"), "AVX-512F (kiln's own f32 matrix kernel, backend/cpu/sgemm/avx512.rs)");
    notice_unless(has("avx2+fma"), "AVX2 and FMA (kiln's own f32 matrix kernel, backend/cpu/sgemm/avx2.rs)");
    both_threadings(|mode| {
        let mut rng = Rng::new(11);
        // (m, k, n): register tiles of every row count 1..8 and ragged column tiles; k past one packed
        // block (KC = 256) and n past one (NC = 2048); few rows (B read in place, m <= 16); outputs split in
        // row bands (m >= n) and column bands (m < n); a long k with a small output (split-k partial sums,
        // which the weight gradient of a tall x takes).
        for (shape, act) in [
            ((1, 7, 5), None),
            ((3, 300, 70), Some(UnaryOp::Relu)),
            ((13, 40, 2100), Some(UnaryOp::Sigmoid)),
            ((16, 513, 33), Some(UnaryOp::LeakyRelu(0.2))),
            ((257, 96, 130), Some(UnaryOp::Tanh)),
            ((130, 64, 600), Some(UnaryOp::Gelu)),
            ((6001, 40, 12), Some(UnaryOp::LeakyRelu(0.3))),
        ] {
            check_dense(&mut rng, shape, act, mode);
        }
    });
}

/// y = act(x·W + b) on a tape that does not record (inference), where the product takes W as the kernel
/// packed it once (`ParamStore::prepacked`): against f64, then again after W changes in place and after it
/// changes under a tape that shared the store, so a layout kept past its values fails.
fn check_prepacked(rng: &mut Rng, (m, k, n): (usize, usize, usize), mode: &str) {
    let (x, w, b) = (rand(m * k, rng), rand(k * n, rng), rand(n, rng));
    let act = Some(UnaryOp::Relu);
    let r = vec![1.0; m * n];
    let mut g = Graph::<f32>::new();
    let pw = g.add_param("w", &[k, n], w.clone(), true).unwrap();
    let pb = g.add_param("b", &[n], b.clone(), true).unwrap();
    g.set_recording(false);
    let run = |g: &mut Graph<f32>| {
        g.reset();
        let xv = g.input(&[m, k], &x).unwrap();
        let (wv, bv) = (g.use_param(pw), g.use_param(pb));
        let y = g.linear(xv, wv, Some(bv), act).unwrap();
        g.value(y).to_vec()
    };
    let what = |t: &str| format!("prepacked dense {m}x{k}x{n} ({mode}) {t}");
    for pass in ["first", "second"] {
        let [want, ..] = dense_ref(&x, &w, &b, &r, (m, k, n), act);
        assert_close(&what(pass), &run(&mut g), &want, REL);
    }
    // Changed in place: the next product must see the new values.
    let w2: Vec<f32> = w.iter().map(|v| 0.5 - v).collect();
    g.param_mut(pw).value.copy_from_slice(&w2);
    let [want, ..] = dense_ref(&x, &w2, &b, &r, (m, k, n), act);
    assert_close(&what("after param_mut"), &run(&mut g), &want, REL);
    // Changed while another tape shares the store (copy-on-write), then read through that tape again.
    let mut h = Graph::<f32>::new();
    h.attach(g.shared_params());
    h.set_recording(false);
    assert_close(&what("shared"), &run(&mut h), &want, REL);
    let w3: Vec<f32> = w.iter().map(|v| v * 2.0).collect();
    g.param_mut(pw).value.copy_from_slice(&w3);
    h.attach(g.shared_params());
    let [want, ..] = dense_ref(&x, &w3, &b, &r, (m, k, n), act);
    assert_close(&what("shared, after param_mut"), &run(&mut h), &want, REL);
}

#[test]
fn dense_inference_on_prepacked_weights_matches_f64_and_follows_changed_weights() {
    both_threadings(|mode| {
        let mut rng = Rng::new(12);
        // Few rows (one text through an encoder), k past one block, columns that end inside a panel and bands
        // of columns split between threads on a panel (18 x 600, 64 x 1000); rows that outnumber the columns
        // (bands of rows, 64 x 40); rows that AVX2 takes from packed weights up to 256 (200) and does not (300).
        for shape in
            [(1, 5, 3), (18, 384, 600), (7, 600, 45), (64, 2000, 40), (300, 70, 40), (200, 70, 300), (64, 130, 1000)]
        {
            check_prepacked(&mut rng, shape, mode);
        }
    });
}

#[test]
fn batched_matmul_matches_f64() {
    both_threadings(|mode| {
        let mut rng = Rng::new(12);
        let (bt, m, k, n) = (3, 70, 300, 150);
        let (a, b, r) = (rand(bt * m * k, &mut rng), rand(bt * k * n, &mut rng), rand(bt * m * n, &mut rng));
        let mut g = Graph::<f32>::new();
        let (av, pa) = param(&mut g, "a", &[bt, m, k], &a, true);
        let (bv, pb) = param(&mut g, "b", &[bt, k, n], &b, true);
        let y = g.matmul(av, bv).unwrap();
        let yv = g.value(y).to_vec();
        weighted_sum(&mut g, y, &r);
        let (mut ry, mut da, mut db) =
            (vec![Ref::default(); bt * m * n], vec![Ref::default(); bt * m * k], vec![Ref::default(); bt * k * n]);
        for s in 0..bt {
            let (ao, bo, yo) = (s * m * k, s * k * n, s * m * n);
            for i in 0..m {
                for j in 0..n {
                    let rr = r[yo + i * n + j] as f64;
                    for p in 0..k {
                        ry[yo + i * n + j].add(a[ao + i * k + p] as f64 * b[bo + p * n + j] as f64);
                        da[ao + i * k + p].add(rr * b[bo + p * n + j] as f64);
                        db[bo + p * n + j].add(a[ao + i * k + p] as f64 * rr);
                    }
                }
            }
        }
        assert_close(&format!("batched matmul ({mode}) y"), &yv, &ry, REL);
        assert_close(&format!("batched matmul ({mode}) da"), g.param_grad(pa), &da, REL);
        assert_close(&format!("batched matmul ({mode}) db"), g.param_grad(pb), &db, REL);
    });
}

// ---------------------------------------------------------------------------------------------------------
// Convolution (NHWC, kernel [kh, kw, c, f]), optionally followed by non-overlapping max pooling.

#[derive(Clone, Copy)]
struct Conv {
    x: [usize; 4],
    k: (usize, usize),
    f: usize,
    stride: (usize, usize),
    same: bool,
}

impl Conv {
    /// Output size and leading pad along one axis, TensorFlow's rule for "same" (extra on bottom/right).
    fn axis(size: usize, k: usize, s: usize, same: bool) -> (usize, usize) {
        if same {
            let out = size.div_ceil(s);
            (out, ((out - 1) * s + k).saturating_sub(size) / 2)
        } else {
            ((size - k) / s + 1, 0)
        }
    }
    fn out(&self) -> (usize, usize, usize, usize) {
        let (oh, pt) = Conv::axis(self.x[1], self.k.0, self.stride.0, self.same);
        let (ow, pl) = Conv::axis(self.x[2], self.k.1, self.stride.1, self.same);
        (oh, ow, pt, pl)
    }
    /// Calls f(out index, x index, w index) for every product term of the convolution.
    fn terms(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [n, h, w, c] = self.x;
        let (oh, ow, pt, pl) = self.out();
        for b in 0..n {
            for i in 0..oh {
                for j in 0..ow {
                    for di in 0..self.k.0 {
                        for dj in 0..self.k.1 {
                            let (ih, iw) = (
                                (i * self.stride.0 + di) as isize - pt as isize,
                                (j * self.stride.1 + dj) as isize - pl as isize,
                            );
                            if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                continue;
                            }
                            for ch in 0..c {
                                let xi = ((b * h + ih as usize) * w + iw as usize) * c + ch;
                                for o in 0..self.f {
                                    f(
                                        ((b * oh + i) * ow + j) * self.f + o,
                                        xi,
                                        ((di * self.k.1 + dj) * c + ch) * self.f + o,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs the op under test and returns (y, dx, dw, db); dx is empty when x needs no gradient.
#[allow(clippy::too_many_arguments)]
fn run_conv(
    cv: Conv,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    r: &[f32],
    act: Option<UnaryOp>,
    pool: Option<(usize, usize)>,
    x_grad: bool,
) -> [Vec<f32>; 4] {
    let mut g = Graph::<f32>::new();
    let (xv, px) = param(&mut g, "x", &cv.x, x, x_grad);
    let (wv, pw) = param(&mut g, "w", &[cv.k.0, cv.k.1, cv.x[3], cv.f], w, true);
    let (bv, pb) = param(&mut g, "b", &[cv.f], b, true);
    let pad = if cv.same { Padding::Same } else { Padding::Valid };
    let y = match pool {
        None => g.conv2d(xv, wv, Some(bv), cv.stride, pad, act).unwrap(),
        Some(p) => g.conv2d_max_pool(xv, wv, Some(bv), cv.stride, pad, act, p).unwrap(),
    };
    let yv = g.value(y).to_vec();
    weighted_sum(&mut g, y, r);
    let dx = if x_grad { g.param_grad(px).to_vec() } else { Vec::new() };
    [yv, dx, g.param_grad(pw).to_vec(), g.param_grad(pb).to_vec()]
}

/// The same in f64: conv → act → (max pool, first maximum wins) → L = Σ y ⊙ r.
fn conv_ref(
    cv: Conv,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    r: &[f32],
    act: Option<UnaryOp>,
    pool: Option<(usize, usize)>,
) -> [Vec<Ref>; 4] {
    let (oh, ow, _, _) = cv.out();
    let (n, f) = (cv.x[0], cv.f);
    let mut z = vec![Ref::default(); n * oh * ow * f];
    cv.terms(|o, xi, wi| z[o].add(x[xi] as f64 * w[wi] as f64));
    for (o, zo) in z.iter_mut().enumerate() {
        zo.add(b[o % f] as f64);
    }
    let a: Vec<(f64, f64)> = z.iter().map(|zo| act64(act, zo.v)).collect();
    let out = |o: usize| Ref { v: a[o].0, mag: z[o].mag * a[o].1.abs().max(1.0), slack: 0.0 };
    // (dz, slack) at each conv output.
    let mut dz = vec![(0.0, 0.0); z.len()];
    let mut y = Vec::new();
    match pool {
        None => {
            for o in 0..z.len() {
                y.push(out(o));
                dz[o] = act_grad(act, z[o], r[o] as f64);
            }
        }
        Some((ph, pw)) => {
            let (poh, pow) = (oh / ph, ow / pw);
            for bi in 0..n {
                for i in 0..poh {
                    for j in 0..pow {
                        for c in 0..f {
                            let window: Vec<usize> = (0..ph * pw)
                                .map(|t| ((bi * oh + i * ph + t / pw) * ow + j * pw + t % pw) * f + c)
                                .collect();
                            let mut best = window[0];
                            for &o in &window[1..] {
                                if a[o].0 > a[best].0 {
                                    best = o;
                                }
                            }
                            y.push(out(best));
                            let rr = r[((bi * poh + i) * pow + j) * f + c] as f64;
                            let (d, ds) = act_grad(act, z[best], rr);
                            dz[best].0 += d;
                            dz[best].1 += ds;
                            // A rival within rounding of the maximum may win in f32 instead.
                            for &o in &window {
                                if o != best && a[best].0 - a[o].0 <= 8.0 * REL * z[o].mag.max(z[best].mag) {
                                    let swing = rr.abs() * (a[o].1.abs() + a[best].1.abs());
                                    dz[o].1 += swing;
                                    dz[best].1 += swing;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let mut dx = vec![Ref::default(); x.len()];
    let mut dw = vec![Ref::default(); w.len()];
    let mut db = vec![Ref::default(); f];
    for (o, &(d, ds)) in dz.iter().enumerate() {
        db[o % f].add(d);
        db[o % f].slack += ds;
    }
    cv.terms(|o, xi, wi| {
        let (d, ds) = dz[o];
        let (xv, wv) = (x[xi] as f64, w[wi] as f64);
        dx[xi].add(d * wv);
        dx[xi].slack += ds * wv.abs();
        dw[wi].add(xv * d);
        dw[wi].slack += ds * xv.abs();
    });
    [y, dx, dw, db]
}

fn check_conv(rng: &mut Rng, cv: Conv, act: Option<UnaryOp>, pool: Option<(usize, usize)>, x_grad: bool, mode: &str) {
    let [n, _, _, c] = cv.x;
    let x = rand(cv.x.iter().product(), rng);
    let (w, b) = (rand(cv.k.0 * cv.k.1 * c * cv.f, rng), rand(cv.f, rng));
    let (oh, ow, _, _) = cv.out();
    let outs = match pool {
        None => n * oh * ow * cv.f,
        Some((ph, pw)) => n * (oh / ph) * (ow / pw) * cv.f,
    };
    let r = rand(outs, rng);
    let got = run_conv(cv, &x, &w, &b, &r, act, pool, x_grad);
    let want = conv_ref(cv, &x, &w, &b, &r, act, pool);
    let what = |t: &str| {
        format!(
            "conv {:?} k{:?} f{} s{:?} same={} {act:?} pool {pool:?} ({mode}) {t}",
            cv.x, cv.k, cv.f, cv.stride, cv.same
        )
    };
    assert_close(&what("y"), &got[0], &want[0], REL);
    if x_grad {
        assert_close(&what("dx"), &got[1], &want[1], REL);
    }
    assert_close(&what("dw"), &got[2], &want[2], REL);
    assert_close(&what("db"), &got[3], &want[3], REL);
}

#[test]
fn conv2d_with_fused_activations_matches_f64() {
    both_threadings(|mode| {
        let mut rng = Rng::new(13);
        let cv = |x, k, f, stride, same| Conv { x, k, f, stride, same };
        // Images split across threads; several output-row tiles per image (tile_rows = 65536 / (k + f));
        // per-thread partial dw/db merged.
        check_conv(&mut rng, cv([6, 20, 20, 16], (3, 3), 32, (1, 1), true), Some(UnaryOp::Relu), None, true, mode);
        check_conv(&mut rng, cv([5, 17, 15, 3], (3, 3), 24, (2, 2), true), Some(UnaryOp::Sigmoid), None, true, mode);
        check_conv(
            &mut rng,
            cv([4, 12, 13, 5], (2, 3), 8, (1, 2), false),
            Some(UnaryOp::LeakyRelu(0.1)),
            None,
            true,
            mode,
        );
        check_conv(&mut rng, cv([3, 9, 9, 2], (3, 3), 7, (1, 1), false), Some(UnaryOp::Gelu), None, false, mode);
        check_conv(&mut rng, cv([3, 9, 9, 2], (1, 1), 4, (1, 1), true), None, None, true, mode);
    });
}

#[test]
fn conv2d_max_pool_direct_and_tiled_paths_match_f64() {
    notice_unless(has("avx2+fma"), "AVX2+FMA (the direct conv+pool kernels, backend/cpu/conv_pool_direct.rs)");
    both_threadings(|mode| {
        let mut rng = Rng::new(14);
        let cv = |x, k, f| Conv { x, k, f, stride: (1, 1), same: false };
        // The direct kernels: no padding, a patch of at most 12 values, filters in blocks of 16, pool windows
        // of at most 4 pixels, and (for the weight gradient) an input that needs no gradient. Every patch size
        // the weight-gradient kernel is specialized for that a square or 1xN kernel makes, every window size.
        for (x, k, f, act, pool) in [
            ([6, 28, 28, 1], (3, 3), 32, Some(UnaryOp::Relu), (2, 2)),
            ([4, 11, 12, 1], (3, 3), 16, Some(UnaryOp::Sigmoid), (1, 2)),
            ([3, 12, 9, 1], (3, 3), 16, Some(UnaryOp::LeakyRelu(0.2)), (3, 1)),
            ([3, 10, 10, 1], (3, 3), 48, None, (1, 1)),
            ([3, 10, 10, 3], (2, 2), 16, Some(UnaryOp::Tanh), (2, 2)),
            ([3, 9, 9, 1], (1, 1), 16, Some(UnaryOp::Relu), (2, 2)),
            ([3, 9, 9, 1], (2, 2), 16, Some(UnaryOp::Gelu), (2, 2)),
            ([3, 9, 9, 2], (1, 3), 16, Some(UnaryOp::Relu), (2, 2)),
            ([3, 9, 9, 1], (2, 5), 16, Some(UnaryOp::Relu), (2, 2)),
            ([3, 9, 9, 1], (1, 2), 16, Some(UnaryOp::Relu), (2, 2)),
            ([3, 9, 11, 1], (1, 7), 16, Some(UnaryOp::Relu), (2, 2)),
            ([3, 9, 11, 1], (1, 11), 16, Some(UnaryOp::Relu), (2, 1)),
            ([3, 9, 9, 1], (1, 5), 16, Some(UnaryOp::Relu), (2, 2)),
        ] {
            check_conv(&mut rng, cv(x, k, f), act, Some(pool), false, mode);
        }
        // Strides on the direct path; and same padding that adds a bottom/right row only (pt = pl = 0 but the
        // last window hangs over the edge), which must go to the tiled path rather than read past the image.
        for (x, k, stride, same) in [
            ([3, 13, 12, 1], (3, 3), (2, 2), false),
            ([3, 12, 13, 1], (3, 2), (1, 3), false),
            ([3, 9, 9, 1], (2, 2), (2, 2), true),
            ([3, 9, 8, 1], (2, 3), (1, 1), true),
            ([3, 9, 8, 1], (2, 1), (1, 1), true),
            ([3, 8, 9, 1], (1, 2), (1, 1), true),
            ([3, 9, 8, 1], (2, 1), (2, 1), true),
            ([3, 8, 9, 1], (1, 2), (1, 2), true),
        ] {
            let conv = Conv { x, k, f: 16, stride, same };
            check_conv(&mut rng, conv, Some(UnaryOp::Relu), Some((2, 2)), false, mode);
        }
        // The tiled path: an input that needs its gradient, padding, or filters not in blocks of 16.
        let same = Conv { x: [4, 13, 11, 3], k: (3, 3), f: 5, stride: (1, 1), same: true };
        check_conv(&mut rng, same, Some(UnaryOp::Relu), Some((2, 2)), true, mode);
        check_conv(&mut rng, cv([5, 28, 28, 1], (3, 3), 32), Some(UnaryOp::LeakyRelu(0.1)), Some((2, 2)), true, mode);
        check_conv(&mut rng, cv([3, 12, 12, 2], (3, 3), 10), Some(UnaryOp::Sigmoid), Some((2, 2)), false, mode);
    });
}

// ---------------------------------------------------------------------------------------------------------
// Max pooling (the 2x2 fast path and the general one) and the elementwise loops.

#[test]
fn max_pool_fast_and_general_paths_match_f64() {
    both_threadings(|mode| {
        let mut rng = Rng::new(15);
        // Values on a coarse grid make ties, where the first maximum in the window must win (as in PyTorch
        // and TensorFlow), so the gradient goes to one position only.
        for (xs, win, stride, same, ties) in [
            ([16, 32, 32, 16], (2, 2), (2, 2), false, false),
            ([16, 32, 32, 16], (2, 2), (2, 2), false, true),
            ([3, 11, 10, 5], (3, 3), (2, 2), true, false),
            ([4, 9, 9, 3], (2, 3), (1, 2), false, true),
        ] {
            let mut x = rand(xs.iter().product(), &mut rng);
            if ties {
                x.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
            }
            let mut g = Graph::<f32>::new();
            let (xv, px) = param(&mut g, "x", &xs, &x, true);
            let pad = if same { Padding::Same } else { Padding::Valid };
            let y = g.max_pool2d(xv, win, stride, pad).unwrap();
            let yv = g.value(y).to_vec();
            let r = rand(yv.len(), &mut rng);
            weighted_sum(&mut g, y, &r);
            let [n, h, w, c] = xs;
            let (oh, pt) = Conv::axis(h, win.0, stride.0, same);
            let (ow, pl) = Conv::axis(w, win.1, stride.1, same);
            let mut want = Vec::new();
            let mut dx = vec![Ref::default(); x.len()];
            for b in 0..n {
                for i in 0..oh {
                    for j in 0..ow {
                        for ch in 0..c {
                            let mut best: Option<usize> = None;
                            for di in 0..win.0 {
                                for dj in 0..win.1 {
                                    let (ih, iw) = (
                                        (i * stride.0 + di) as isize - pt as isize,
                                        (j * stride.1 + dj) as isize - pl as isize,
                                    );
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                        continue;
                                    }
                                    let xi = ((b * h + ih as usize) * w + iw as usize) * c + ch;
                                    if best.is_none_or(|bi| x[xi] > x[bi]) {
                                        best = Some(xi);
                                    }
                                }
                            }
                            let bi = best.unwrap();
                            want.push(Ref::of(x[bi] as f64));
                            dx[bi].add(r[((b * oh + i) * ow + j) * c + ch] as f64);
                        }
                    }
                }
            }
            assert_close(&format!("max_pool2d {xs:?} {win:?} ({mode}) y"), &yv, &want, REL);
            assert_close(&format!("max_pool2d {xs:?} {win:?} ({mode}) dx"), g.param_grad(px), &dx, REL);
        }
    });
}

#[test]
fn elementwise_loops_match_f64() {
    notice_unless(has("avx2+fma"), "AVX2+FMA (the vectorized elementwise loops)");
    both_threadings(|mode| {
        let mut rng = Rng::new(16);
        // Long enough for whole vectors and a ragged tail.
        let n = 4099;
        let ops = [
            UnaryOp::Neg,
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Sqrt,
            UnaryOp::Pow(2.5),
            UnaryOp::Abs,
            UnaryOp::Relu,
            UnaryOp::LeakyRelu(0.15),
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::Gelu,
            UnaryOp::Sin,
            UnaryOp::Cos,
        ];
        for op in ops {
            let positive = matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Pow(_));
            let x: Vec<f32> = (0..n)
                .map(|_| if positive { rng.uniform_range(0.05, 4.0) } else { rng.uniform_range(-6.0, 6.0) } as f32)
                .collect();
            let r = rand(n, &mut rng);
            let mut g = Graph::<f32>::new();
            let (xv, px) = param(&mut g, "x", &[n], &x, true);
            let y = g.unary(xv, op).unwrap();
            let yv = g.value(y).to_vec();
            weighted_sum(&mut g, y, &r);
            let (mut want_y, mut want_dx) = (Vec::new(), Vec::new());
            for (&xi, &ri) in x.iter().zip(&r) {
                let (v, d) = act64(Some(op), xi as f64);
                // f32 library functions are within a few ulps (1e-5 relative is ~80); 1 − y² or y(1 − y) lose
                // ~1e-7 absolute near saturation (GELU's Φ keeps its relative precision: float.rs).
                want_y.push(Ref { slack: 1e-7 * (1.0 + xi.abs() as f64), ..Ref::of(v) });
                want_dx.push(Ref { slack: 3e-7 * ri.abs() as f64, ..Ref::of(ri as f64 * d) });
            }
            assert_close(&format!("{op:?} ({mode}) y"), &yv, &want_y, 1e-5);
            assert_close(&format!("{op:?} ({mode}) dx"), g.param_grad(px), &want_dx, 1e-5);
        }
    });
}
