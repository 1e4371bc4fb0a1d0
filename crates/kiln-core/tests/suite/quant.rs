//! GGML block quantization against ggml's own Python package, and the quantized matmul against exact products.
//!
//! tools/make_quant_fixtures.py wrote tests/fixtures/quant/quant.json with gguf-py (`gguf.quants`, bit-exact
//! with ggml's reference quantizers): kiln must give the same bytes and the same dequantized values exactly.
//! The matmul checks bound |x · Wᵀ - exact| by what the format allows: per weight, half a quantization step
//! (a whole step where Q4_0 clamps at +7), plus the f16 rounding of the stored scale (and minimum).

use kiln_core::qdot::QIsa;
use kiln_core::quant::{self, BlockQ4_0, BlockQ4_1, BlockQ8_0, QBlocks, QK, QMatrix};
use kiln_core::{DType, Error, Rng};
use serde_json::Value;

const TYPES: [DType; 3] = [DType::Q8_0, DType::Q4_0, DType::Q4_1];

fn fixture() -> Value {
    let path = format!("{}/tests/fixtures/quant/quant.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// One fixture case quantized to one type, as gguf computed it.
struct Case {
    name: String,
    dtype: DType,
    input: Vec<f32>,
    bytes: Vec<u8>,
    dequantized: Vec<f32>,
}

fn fixture_cases() -> Vec<Case> {
    let f = fixture();
    let mut out = Vec::new();
    for case in f["cases"].as_array().unwrap() {
        for dtype in TYPES {
            let t = &case[dtype.name()];
            out.push(Case {
                name: case["name"].as_str().unwrap().to_string(),
                dtype,
                input: floats(&case["input"]),
                bytes: unhex(t["bytes"].as_str().unwrap()),
                dequantized: floats(&t["dequantized"]),
            });
        }
    }
    assert_eq!(out.len(), 27, "9 cases x 3 types in the fixture");
    out
}

#[test]
fn quantized_bytes_equal_gguf_exactly() {
    for Case { name, dtype, input, bytes: want, .. } in fixture_cases() {
        let got = QMatrix::quantize(dtype, 1, input.len(), &input).unwrap().to_bytes();
        let bb = dtype.block_bytes();
        assert_eq!(got.len(), want.len(), "{name} {dtype}: byte count");
        for (k, (g, w)) in got.chunks(bb).zip(want.chunks(bb)).enumerate() {
            assert_eq!(hex(g), hex(w), "{name} {dtype}: block {k} differs from gguf's");
        }
        // The row functions give the same blocks as the matrix.
        let row = match dtype {
            DType::Q8_0 => quant::blocks_to_bytes(&quant::quantize_row::<BlockQ8_0>(&input).unwrap()),
            DType::Q4_0 => quant::blocks_to_bytes(&quant::quantize_row::<BlockQ4_0>(&input).unwrap()),
            _ => quant::blocks_to_bytes(&quant::quantize_row::<BlockQ4_1>(&input).unwrap()),
        };
        assert_eq!(row, want, "{name} {dtype}: quantize_row");
    }
}

#[test]
fn dequantized_values_equal_gguf_exactly() {
    for Case { name, dtype, input, bytes, dequantized: want } in fixture_cases() {
        // Two rows where the blocks split evenly, to read a matrix and not only a row.
        let rows = if input.len() % (2 * QK) == 0 { 2 } else { 1 };
        let cols = input.len() / rows;
        let m = QMatrix::from_bytes(dtype, rows, cols, &bytes).unwrap();
        assert_eq!(m.to_bytes(), bytes, "{name} {dtype}: bytes survive reading and writing");
        let got = m.dequantize();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{name} {dtype}: element {i}: {g} vs gguf {w}");
        }
        // matmul_t with one-hot vectors reads single weights through the blocked path.
        for c in [0, 15, 16, 31, 33, cols - 1].into_iter().filter(|&c| c < cols) {
            let mut x = vec![0.0f32; cols];
            x[c] = 1.0;
            let mut out = vec![0.0f32; rows];
            m.matmul_t(&x, 1, &mut out).unwrap();
            let column: Vec<f32> = (0..rows).map(|r| want[r * cols + c]).collect();
            assert_eq!(out, column, "{name} {dtype}: column {c}");
        }
    }
}

/// Per-weight error bound of `w` (one block of 32) quantized to `dtype` and stored with f16 scales.
fn block_error_bounds(dtype: DType, w: &[f32]) -> Vec<f64> {
    let w: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    // |f16(s) - s|: half an f16 ulp (2^-11 relative), or half the smallest subnormal.
    let f16_err = |s: f64| (s.abs() * 2f64.powi(-11)).max(2f64.powi(-25));
    let amax = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let slack = 8.0 * f32::EPSILON as f64 * amax;
    match dtype {
        // Halves: half an ulp of each weight (f16 keeps 11 significant bits, bf16 8).
        DType::F16 => w.iter().map(|v| f16_err(*v) + slack).collect(),
        DType::BF16 => w.iter().map(|v| (v.abs() * 2f64.powi(-8)).max(2f64.powi(-134)) + slack).collect(),
        DType::Q8_0 => {
            let d = amax / 127.0;
            w.iter().map(|_| d / 2.0 + 127.0 * f16_err(d) + slack).collect()
        }
        DType::Q4_0 => {
            // The grid is -8..=7 steps of d = max / -8: values past 7.5 steps clamp to 7.
            let max = w.iter().copied().fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
            let d = max / -8.0;
            let e = |v: f64| if d != 0.0 && v / d > 7.5 { (v / d - 7.0) * d.abs() } else { d.abs() / 2.0 };
            w.iter().map(|&v| e(v) + 8.0 * f16_err(d) + slack).collect()
        }
        _ => {
            let (min, max) = w.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let d = (max - min) / 15.0;
            w.iter().map(|_| d / 2.0 + 15.0 * f16_err(d) + f16_err(min) + slack).collect()
        }
    }
}

fn random(rng: &mut Rng, len: usize, scale: f64) -> Vec<f32> {
    (0..len).map(|_| (rng.normal() * scale) as f32).collect()
}

fn check_matmul_within_format_error(dtype: DType) {
    let (rows, cols) = (64, 256);
    let mut rng = Rng::new(7);
    let mut w = random(&mut rng, rows * cols, 0.05);
    w[5 * cols + 77] = 3.0; // one outlier makes its block's step large
    let m = QMatrix::quantize(dtype, rows, cols, &w).unwrap();
    let deq = m.dequantize();
    let bounds: Vec<f64> = w.chunks(QK).flat_map(|b| block_error_bounds(dtype, b)).collect();
    let mut tightest = 0.0f64;
    for (i, ((&a, &q), &e)) in w.iter().zip(&deq).zip(&bounds).enumerate() {
        assert!((a as f64 - q as f64).abs() <= e, "{dtype} weight {i}: {a} became {q}, bound {e}");
        tightest = tightest.max((a as f64 - q as f64).abs() / e);
    }
    // The bound is not vacuous: some weight is nearly half a step away from its grid point.
    assert!(tightest > 0.75, "{dtype}: largest weight error only {tightest} of its bound");

    let n = 4;
    let mut x = random(&mut rng, n * cols, 1.0);
    x[3 * cols..].fill(1.0); // all ones: every weight's error adds up with its sign
    for (c, v) in x[2 * cols..3 * cols].iter_mut().enumerate() {
        *v = if c % 3 == 0 { -10.0 } else { 0.01 };
    }
    let mut out = vec![0.0f32; n * rows];
    m.matmul_t(&x, n, &mut out).unwrap();
    for b in 0..n {
        // One row of x on its own gives the same values as in the batch.
        let mut one = vec![0.0f32; rows];
        m.matmul_t(&x[b * cols..(b + 1) * cols], 1, &mut one).unwrap();
        assert_eq!(one, out[b * rows..(b + 1) * rows], "{dtype}: batch row {b} alone");
        for r in 0..rows {
            let (xs, ws, qs) = (&x[b * cols..][..cols], &w[r * cols..][..cols], &deq[r * cols..][..cols]);
            let exact: f64 = xs.iter().zip(ws).map(|(&a, &c)| a as f64 * c as f64).sum();
            let of_deq: f64 = xs.iter().zip(qs).map(|(&a, &c)| a as f64 * c as f64).sum();
            let scale: f64 = xs.iter().zip(qs).map(|(&a, &c)| (a as f64 * c as f64).abs()).sum();
            let fmt_bound: f64 = xs.iter().zip(&bounds[r * cols..][..cols]).map(|(&a, &e)| a.abs() as f64 * e).sum();
            let got = out[b * rows + r] as f64;
            assert!(
                (got - of_deq).abs() <= 1e-5 * scale,
                "{dtype} out[{b}, {r}] = {got}, product of the dequantized weights {of_deq} (scale {scale})"
            );
            let bound = fmt_bound + 1e-5 * scale;
            assert!((got - exact).abs() <= bound, "{dtype} out[{b}, {r}] = {got}, exact {exact}, bound {bound}");
        }
    }
}

#[test]
fn q8_0_matmul_equals_the_f32_product_within_the_format_error() {
    check_matmul_within_format_error(DType::Q8_0);
}

#[test]
fn q4_0_matmul_equals_the_f32_product_within_the_format_error() {
    check_matmul_within_format_error(DType::Q4_0);
}

#[test]
fn q4_1_matmul_equals_the_f32_product_within_the_format_error() {
    check_matmul_within_format_error(DType::Q4_1);
}

#[test]
fn f16_matmul_equals_the_f32_product_within_the_format_error() {
    check_matmul_within_format_error(DType::F16);
}

#[test]
fn bf16_matmul_equals_the_f32_product_within_the_format_error() {
    check_matmul_within_format_error(DType::BF16);
}

/// f16 and bf16 weights are stored as the bytes of a GGUF F16 / BF16 tensor: each weight rounded to the
/// nearest half (ties to even), little-endian, row after row.
#[test]
fn half_weights_are_the_bytes_of_a_gguf_half_tensor() {
    let w: Vec<f32> = (0..2 * QK).map(|i| (i as f32 - 20.0) * 0.3127 + 1e-3).collect();
    let want_f16: Vec<u8> = w.iter().flat_map(|&v| quant::f16::from_f32(v).to_le_bytes()).collect();
    let want_bf16: Vec<u8> = w.iter().flat_map(|&v| quant::bf16::from_f32(v).to_le_bytes()).collect();
    for (dtype, want) in [(DType::F16, want_f16), (DType::BF16, want_bf16)] {
        let m = QMatrix::quantize(dtype, 2, QK, &w).unwrap();
        assert_eq!((m.dtype(), m.to_bytes()), (dtype, want.clone()), "{dtype}");
        let back = QMatrix::from_bytes(dtype, 2, QK, &want).unwrap();
        assert_eq!(back, m, "{dtype}: read back from its bytes");
        assert_eq!(want.len(), dtype.bytes_for(w.len()).unwrap());
    }
    // Rounding to nearest, ties to even, written out: 1 + 2^-11 is halfway between two f16s (and 1 + 2^-8
    // between two bf16s), and goes down to 1.0; a little more goes up.
    let mut tie = vec![0.0f32; QK];
    tie[..3].copy_from_slice(&[1.0 + 2f32.powi(-11), 1.0 + 2f32.powi(-11) + 2f32.powi(-20), -2.0]);
    let b = QMatrix::quantize(DType::F16, 1, QK, &tie).unwrap().to_bytes();
    assert_eq!(b[..6], [0x00, 0x3c, 0x01, 0x3c, 0x00, 0xc0]);
    tie[..2].copy_from_slice(&[1.0 + 2f32.powi(-8), 1.0 + 2f32.powi(-8) + 2f32.powi(-20)]);
    let b = QMatrix::quantize(DType::BF16, 1, QK, &tie).unwrap().to_bytes();
    assert_eq!(b[..6], [0x80, 0x3f, 0x81, 0x3f, 0x00, 0xc0]);
    let e = QMatrix::quantize(DType::F32, 2, QK, &w).unwrap_err().to_string();
    assert!(e.contains("q8_0, q4_0, q4_1, f16 or bf16 weights, not f32"), "{e}");
}

/// Splitting output rows across threads gives the same bits as one thread (each output has one owner).
#[test]
fn threaded_matmul_equals_single_threaded() {
    let _turn = crate::settings();
    let (rows, cols, n) = (37, 96, 3);
    let mut rng = Rng::new(11);
    let w = random(&mut rng, rows * cols, 1.0);
    let x = random(&mut rng, n * cols, 1.0);
    for dtype in TYPES {
        let m = QMatrix::quantize(dtype, rows, cols, &w).unwrap();
        let (mut serial, mut threaded) = (vec![0.0f32; n * rows], vec![0.0f32; n * rows]);
        kiln_core::par::set_min_parallel_work(usize::MAX);
        m.matmul_t(&x, n, &mut serial).unwrap();
        kiln_core::ops::set_num_threads(4);
        kiln_core::par::set_min_parallel_work(1);
        m.matmul_t(&x, n, &mut threaded).unwrap();
        kiln_core::ops::set_num_threads(0);
        kiln_core::par::set_min_parallel_work(kiln_core::par::MIN_PARALLEL_WORK);
        assert_eq!(serial, threaded, "{dtype}");
        assert!(serial.iter().any(|&v| v != 0.0));
    }
}

fn message(r: Result<impl std::fmt::Debug, Error>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn errors_name_the_sizes() {
    let w = vec![0.5f32; 2 * 64];
    let m = QMatrix::quantize(DType::Q4_0, 2, 64, &w).unwrap();
    let e = message(m.matmul_t(&[0.0; 63], 1, &mut [0.0; 2]));
    assert!(e.contains("[2, 64]") && e.contains("x [1, 64]") && e.contains("63"), "{e}");
    let e = message(m.matmul_t(&[0.0; 128], 2, &mut [0.0; 2]));
    assert!(e.contains("out [2, 2]") && e.contains("out of 2"), "{e}");

    let e = message(QMatrix::quantize(DType::Q8_0, 3, 33, &[0.0; 99]));
    assert!(e.contains("q8_0") && e.contains("[3, 33]") && e.contains("33") && e.contains("32"), "{e}");
    let e = message(QMatrix::quantize(DType::Q4_1, 2, 64, &[0.0; 100]));
    assert!(e.contains("[2, 64]") && e.contains("128") && e.contains("100"), "{e}");
    let e = message(QMatrix::quantize(DType::F64, 1, 32, &[0.0; 32]));
    assert!(e.contains("not f64"), "{e}");
    let e = message(QMatrix::quantize(DType::F16, 1, 40, &[0.0; 40]));
    assert!(e.contains("f16") && e.contains("40") && e.contains("32"), "{e}");
    let e = message(QMatrix::from_bytes(DType::Q4_1, 2, 64, &[0u8; 79]));
    assert!(e.contains("[2, 64]") && e.contains("80") && e.contains("79"), "{e}");

    let e = message(quant::quantize_row::<BlockQ8_0>(&[0.0; 40]));
    assert!(e.contains("40") && e.contains("32"), "{e}");
    let e = message(quant::blocks_from_bytes::<BlockQ4_0>(&[0u8; 35]));
    assert!(e.contains("35") && e.contains("18"), "{e}");
    let e = message(DType::Q4_0.bytes_for(48));
    assert!(e.contains("48") && e.contains("32"), "{e}");
}

#[test]
fn matrix_keeps_its_shape_and_type() {
    let w: Vec<f32> = (0..3 * 64).map(|i| i as f32 / 7.0).collect();
    let m = QMatrix::quantize(DType::Q4_1, 3, 64, &w).unwrap();
    assert_eq!((m.dtype(), m.rows(), m.cols()), (DType::Q4_1, 3, 64));
    assert!(matches!(m.blocks(), QBlocks::Q4_1(b) if b.len() == 6));
    assert_eq!(m.to_bytes().len(), DType::Q4_1.bytes_for(3 * 64).unwrap());
    let mut empty: [f32; 0] = [];
    m.matmul_t(&[], 0, &mut empty).unwrap();
    // No columns: every product is 0, on the integer path too (one token and several).
    let m = QMatrix::quantize(DType::Q4_1, 3, 0, &[]).unwrap();
    for n in [1, 5] {
        let mut out = vec![1.0; n * 3];
        m.matmul_t_q8(&[], n, &mut out, &mut kiln_core::qdot::Q8Rows::default()).unwrap();
        assert_eq!(out, vec![0.0; n * 3]);
    }
}

/// Several matrices with one input in one parallel pass (`matmul_t_q8_many`, as q, k and v of a layer) give
/// what each gives alone: rows of 37, 5 and 1 so that tiles of two meet every matrix's end, one token and
/// several (tiles of four activation rows and the rest), and a prompt of 50 on 16 bits, whose dequantized
/// chunks cross from one matrix to the next.
#[test]
fn several_matrices_in_one_pass_equal_each_alone() {
    let mut rng = Rng::new(43);
    // [37, 203] at 512 columns and 40 rows of x is split between two threads at global row 128, row 91 of
    // the second matrix: on AMX that part starts mid-group (rows one at a time up to 96, then groups), where
    // alone rows 91..96 are in a group, so those take other kernels and differ by the order of their float sums
    // (values about 10: 1e-5 of them, as between any two paths in the test below).
    let shapes = [
        (&[37, 5, 1][..], 160, &[(1, false), (5, false), (9, false), (1, true), (50, true)][..], 1e-5),
        (&[37, 203][..], 512, &[(40, false), (40, true)][..], 1e-4),
    ];
    for (dtype, (rows, cols, runs, tol)) in
        [DType::Q4_1, DType::Q4_0, DType::Q8_0].into_iter().flat_map(|d| shapes.iter().map(move |s| (d, *s)))
    {
        let mats: Vec<QMatrix> = rows
            .iter()
            .map(|&rows| QMatrix::quantize(dtype, rows, cols, &random(&mut rng, rows * cols, 1.0)).unwrap())
            .collect();
        for &(n, wide) in runs {
            let x = random(&mut rng, n * cols, 2.0);
            let mut scratch = kiln_core::qdot::Q8Rows { wide, ..Default::default() };
            let mut together: Vec<Vec<f32>> = mats.iter().map(|m| vec![0.0; n * m.rows()]).collect();
            let mut outs: Vec<&mut [f32]> = together.iter_mut().map(|o| o.as_mut_slice()).collect();
            QMatrix::matmul_t_q8_many(&mats.iter().collect::<Vec<_>>(), &x, n, &mut outs, &mut scratch).unwrap();
            for (m, t) in mats.iter().zip(&together) {
                let mut alone = vec![0.0; n * m.rows()];
                m.matmul_t_q8(&x, n, &mut alone, &mut scratch).unwrap();
                for (i, (a, b)) in alone.iter().zip(t).enumerate() {
                    assert!((a - b).abs() <= tol * (1.0 + a.abs()), "{dtype} n {n} [{i}]: alone {a}, together {b}");
                }
            }
        }
    }
}

/// A prompt's product on the default path (16-bit activations, `DENSE_ROWS` rows or more) goes dequantized
/// onto the f32 kernel, so it is the exact product (`matmul_t`) up to the order of the f32 sums: within 1e-5 of
/// Σ|x·w| per value, where 16-bit activations with an outlier in each block are further off (the integer
/// tiles fail this test: checked by sending prompts to them). Every dtype, weight rows
/// that leave a part of a 64-row chunk and of a 16-column panel (37, 203), columns of 2 to 16 blocks, 48 to 130
/// activation rows (tiles of the f32 kernel and their rest); one token keeps the integer path.
#[test]
fn a_prompts_default_product_is_the_exact_one() {
    use kiln_core::qdot::{DENSE_ROWS, Q8Rows, dense_prompts};
    if !dense_prompts() {
        println!("skipped: this processor (or KILN_INT_PROMPTS / KILN_GEMM_CRATE) keeps prompts on the integer tiles");
        return;
    }
    let mut rng = Rng::new(47);
    for dtype in [DType::Q4_1, DType::Q4_0, DType::Q8_0] {
        for (rows, cols) in [(37, 160), (203, 64), (70, 512)] {
            let m = QMatrix::quantize(dtype, rows, cols, &random(&mut rng, rows * cols, 1.0)).unwrap();
            let wd = m.dequantize();
            for n in [DENSE_ROWS, DENSE_ROWS + 5, 130] {
                // One value of each block 250 times the others, so that 16-bit activations (d = max|x|/32767)
                // would round the rest by up to 8e-3: far outside this test's bound.
                let mut x = random(&mut rng, n * cols, 2.0);
                for (i, block) in x.chunks_exact_mut(QK).enumerate() {
                    block[i * 7 % QK] = if i % 2 == 0 { 500.0 } else { -500.0 };
                }
                let (mut exact, mut out) = (vec![0.0; n * rows], vec![f32::NAN; n * rows]);
                m.matmul_t(&x, n, &mut exact).unwrap();
                m.matmul_t_q8(&x, n, &mut out, &mut Q8Rows { wide: true, ..Default::default() }).unwrap();
                for b in 0..n {
                    for r in 0..rows {
                        let mass: f64 = (0..cols).map(|k| (x[b * cols + k] * wd[r * cols + k]).abs() as f64).sum();
                        let (e, o) = (exact[b * rows + r] as f64, out[b * rows + r] as f64);
                        assert!(
                            (o - e).abs() <= 1e-5 * mass + 1e-6,
                            "{dtype} [{rows}, {cols}] n {n} ({b}, {r}): {o}, exact {e} (Σ|x·w| {mass})"
                        );
                    }
                }
            }
        }
    }
}

/// A Q8_0 weight byte of −128 (which llama.cpp's quantizer never writes, but a file may hold): the x86 paths
/// (AVX2, VNNI) on 8-bit activations take it as −127, so they may differ from the portable loop by
/// d_w·d_x·|x_q| for each such weight and no more; on 16-bit activations they are exact. Rows of −128 bytes
/// here and there, 1 to 9 and 40 activation rows (tiles, single rows and leftovers; on AMX two whole tiles of 16
/// and the last of 8, exact like the portable loop).
#[test]
fn q8_0_weights_of_minus_128_stay_within_one_unit_on_avx2() {
    // 37 rows: two groups of 16 for one row on Vnni512 (rows16.rs, exact for -128) and the rest.
    let (rows, cols) = (37, 128);
    let mut rng = Rng::new(5);
    let m = QMatrix::quantize(DType::Q8_0, rows, cols, &random(&mut rng, rows * cols, 1.0)).unwrap();
    let mut bytes = m.to_bytes();
    let block = 2 + QK;
    for (b, chunk) in bytes.chunks_mut(block).enumerate() {
        for j in (b % 5..QK).step_by(3 + b % 4) {
            chunk[2 + j] = 0x80;
        }
    }
    let m = QMatrix::from_bytes(DType::Q8_0, rows, cols, &bytes).unwrap();
    let (kb, scale) = (cols / QK, |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32() as f64);
    for (wide, isa) in
        [false, true].into_iter().flat_map(|w| QIsa::available().into_iter().skip(1).map(move |i| (w, i)))
    {
        for n in (1..=9).chain([40]) {
            let x = random(&mut rng, n * cols, 2.0);
            let (mut fast, mut portable) = (vec![0.0; n * rows], vec![0.0; n * rows]);
            let mut scratch = kiln_core::qdot::Q8Rows { wide, ..Default::default() };
            m.matmul_t_q8_on(isa, &x, n, &mut fast, &mut scratch).unwrap();
            m.matmul_t_q8_on(QIsa::Portable, &x, n, &mut portable, &mut scratch).unwrap();
            for b in 0..n {
                for r in 0..rows {
                    let mut bound = 0.0;
                    for k in 0..kb {
                        let wb = &bytes[(r * kb + k) * block..][..block];
                        let dx = scratch.d[b * kb + k] as f64;
                        for j in 0..QK {
                            if wb[2 + j] == 0x80 && !wide {
                                bound += scale(wb) * dx * (scratch.qs[(b * kb + k) * QK + j] as f64).abs();
                            }
                        }
                    }
                    let (f, p) = (fast[b * rows + r] as f64, portable[b * rows + r] as f64);
                    assert!(
                        (f - p).abs() <= bound * 1.001 + 1e-4 * (1.0 + p.abs()),
                        "{isa:?} wide {wide} n {n} ({b}, {r}): {f}, portable {p}, allowed {bound}"
                    );
                }
            }
        }
    }
}

/// The integer product (`matmul_t_q8`: activations quantized to 8 bits per block, llama.cpp's arithmetic)
/// against the exact one (`matmul_t`, blocks dequantized to f32): within the rounding of the activations,
/// |x_q − x| ≤ d_x/2 per value, so |Δ| ≤ Σ_blocks (d_x/2)·Σ|w|; and every x86 path this processor runs (AVX2,
/// AVX-512 VNNI: the same floats as each other, but for Q8_0 on 8 bits, and one row on Vnni512, whose 37 and
/// 203 weight rows are 2 and 12 groups of 16 and the rest, and on Amx (AMX tiles, amx.rs) every prompt, the
/// same groups against tiles of 16 activation rows (17, 33 and 40 rows crossing tiles and passes of 32, the
/// last tile's rows beside zeros; [48, 32] three groups, the last alone, and one block); [203, 512] is long
/// enough to be split between
/// threads, so that a part after the first starts with rows before its first whole group, then groups not
/// numbered from 0, then rows after them) against the portable one,
/// for 1 to 9, 17, 33 and 40 rows of x (tiles of three activation rows against four weight rows, four against two, or on 16
/// bits four against four folded into one sum per weight row, as `tile_shape` chooses, 37 weight rows
/// leaving one over, and the rest one by one; 203 rows for a prompt's chunks of 64 taken by whichever thread
/// is free, the last of 11), every dtype the kernels take, with 8-bit and with 16-bit
/// activations (`wide`, whose rounding is 258 times finer); the quantized activations of the paths are
/// the same, rows of 512 making x long enough to be quantized in parts, and a block of zeros and one of 1e-37
/// (whose 1/d would be infinite) quantized to zeros on both.
#[test]
fn integer_products_stay_within_the_activation_rounding_of_the_exact_one() {
    if !QIsa::available().contains(&QIsa::Amx) {
        println!("notice: no AMX on this processor (or KILN_NO_AMX is set): its path is not tested here");
    }
    let mut rng = Rng::new(41);
    let kinds = [DType::Q4_1, DType::Q4_0, DType::Q8_0].into_iter().flat_map(|d| [(d, false), (d, true)]);
    for ((dtype, wide), (rows, cols)) in
        kinds.flat_map(|k| [(k, (37, 160)), (k, (37, 512)), (k, (203, 64)), (k, (203, 512)), (k, (48, 32))])
    {
        let w = random(&mut rng, rows * cols, 1.0);
        let m = QMatrix::quantize(dtype, rows, cols, &w).unwrap();
        let wd = m.dequantize();
        for n in (1..=9).chain([17, 33, 40]) {
            let mut x = random(&mut rng, n * cols, 2.0);
            if n == 3 {
                x[..QK].fill(0.0);
                x[QK..2 * QK].fill(1e-37);
            }
            let mut exact = vec![0.0; n * rows];
            m.matmul_t(&x, n, &mut exact).unwrap();
            let mut portable = vec![0.0; n * rows];
            let mut scratch = kiln_core::qdot::Q8Rows { wide, ..Default::default() };
            m.matmul_t_q8_on(QIsa::Portable, &x, n, &mut portable, &mut scratch).unwrap();
            let quantized = scratch.clone();
            let same = |a: &kiln_core::qdot::Q8Rows, b: &kiln_core::qdot::Q8Rows| {
                (&a.d, &a.sum, &a.s, &a.qs, &a.qw) == (&b.d, &b.sum, &b.s, &b.qs, &b.qw)
            };
            let mut fast = Vec::new();
            for isa in QIsa::available().into_iter().skip(1) {
                let mut out = vec![0.0; n * rows];
                m.matmul_t_q8_on(isa, &x, n, &mut out, &mut scratch).unwrap();
                assert!(same(&quantized, &scratch), "{dtype} wide {wide} n {n}: {isa:?} quantized x differently");
                fast.push((isa, out));
            }
            // AVX2 and VNNI sum the same integers, so their floats are the same; but for Q8_0 on 8 bits, which
            // VNNI takes in a tile of its own (weights offset to unsigned bytes), summed in another order, and
            // for one row on Vnni512 (16 weight rows a vector, rows16.rs), which adds its floats by block, and
            // for Amx (the same for one row, and AMX tiles for more: amx.rs).
            let same_floats = |pair: &&[(QIsa, Vec<f32>)]| {
                let by_block = |p: &(QIsa, Vec<f32>)| p.0 == QIsa::Amx || n == 1 && p.0 == QIsa::Vnni512;
                (wide || dtype != DType::Q8_0) && !pair.iter().any(by_block)
            };
            for pair in fast.windows(2).filter(same_floats) {
                assert!(
                    pair[0].1 == pair[1].1,
                    "{dtype} wide {wide} n {n}: {:?} and {:?} differ",
                    pair[0].0,
                    pair[1].0
                );
            }
            if n == 3 {
                assert!(
                    scratch.d[..2] == [0.0, 0.0] && scratch.sum[..2] == [0, 0],
                    "zero and tiny blocks: {scratch:?}"
                );
            }
            for b in 0..n {
                for r in 0..rows {
                    let mut bound = 1e-4;
                    for k in 0..cols / QK {
                        let xs = &x[b * cols + k * QK..][..QK];
                        let top = if wide { 32767.0 } else { 127.0 };
                        let dx = xs.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / top;
                        let ws: f64 = wd[r * cols + k * QK..][..QK].iter().map(|v| v.abs() as f64).sum();
                        bound += dx / 2.0 * ws * 1.001;
                    }
                    let (e, p) = (exact[b * rows + r] as f64, portable[b * rows + r] as f64);
                    assert!(
                        (p - e).abs() <= bound,
                        "{dtype} wide {wide} n {n} ({b}, {r}): {p}, exact {e}, bound {bound}"
                    );
                    for (isa, fast) in &fast {
                        let f = fast[b * rows + r] as f64;
                        assert!(
                            (f - p).abs() <= 1e-4 * (1.0 + p.abs()),
                            "{dtype} wide {wide} n {n} ({b}, {r}): {isa:?} {f}, portable {p}"
                        );
                    }
                }
            }
        }
    }
}
