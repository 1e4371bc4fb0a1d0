//! A prompt's products by quantized weights in f32: each chunk of weight rows is dequantized into a buffer
//! of this thread's and multiplied by the activations as they are, on kiln's f32 kernel (`sgemm_own`).
//!
//! The integer tiles (qdot/x86.rs) multiply 16-bit activations at about 50-57 G products/s at SmolLM2's
//! feed-forward shapes on an AVX2 EPYC (`qbench`), where the f32 kernel runs a large product at 75-87 G
//! multiply-adds/s: with 128 tokens each dequantized weight serves 128 rows, so turning the weights into f32
//! costs little, and the activations keep all their bits (the exact path's arithmetic, in another order).

use super::Blocks;
use crate::backend::cpu::gemm::Mat;
use crate::backend::cpu::sgemm;
use crate::quant::{QK, dequantize_row};
use std::cell::Cell;

thread_local! {
    /// This thread's dequantized weight rows (one chunk of a matrix), reused from call to call.
    static ROWS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Whether this processor runs the f32 kernel the dequantized products need.
pub(super) fn runs() -> bool {
    sgemm::own_kernel()
}

/// out[t·ldo + i] = x[t] · W[rows.start + i] for t < n and i < rows.len(): those weight rows (kb blocks each)
/// dequantized, times the n rows of x [n, kb·32].
///
/// # Safety
/// `runs()` is true; out holds n rows of ldo values, of which the first rows.len() are this caller's alone.
pub(super) unsafe fn rows_f32(
    blocks: Blocks<'_>,
    rows: std::ops::Range<usize>,
    kb: usize,
    x: &[f32],
    n: usize,
    out: *mut f32,
    ldo: usize,
) {
    let (r0, r1) = (rows.start, rows.end);
    let cols = kb * QK;
    assert!(x.len() >= n * cols && r1 >= r0, "x [{n}, {cols}] for weight rows {r0}..{r1}");
    let mut w = ROWS.take();
    w.resize((r1 - r0) * cols, 0.0);
    // The rows' blocks lie one after another, so they dequantize as one run.
    let span = r0 * kb..r1 * kb;
    match blocks {
        Blocks::Q4_1(b) => dequantize_row(&b[span], &mut w),
        Blocks::Q4_0(b) => dequantize_row(&b[span], &mut w),
        Blocks::Q8_0(b) => dequantize_row(&b[span], &mut w),
    }
    .expect("rows of kb blocks into kb·32 values each");
    // SAFETY: the caller's contract (the kernel runs: `runs()`); x holds n x cols and w (cols x (r1 − r0),
    // transposed) its extent.
    unsafe { sgemm::sgemm_own(n, r1 - r0, cols, out, ldo, Mat::rows(x, cols), Mat::rows_t(&w, cols)) };
    ROWS.set(w);
}
