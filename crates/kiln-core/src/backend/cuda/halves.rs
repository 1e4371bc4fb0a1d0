//! The CUDA backend's device halves: products and convolution steps on device pointers only, queued on the
//! engine's stream, called by the methods in mod.rs on the tape's device memory (or on staged copies of host
//! views).

use super::Cuda;
use super::args::{DMat, Win, act_code, blas_layout};
use super::device::{CudaFloat, launch};
use crate::backend::DevVec;
use crate::ops::{UnaryOp, Window};

impl Cuda {
    /// out[m, n] (row-major, contiguous at `out`) = a · b, plus out when `accumulate`.
    pub(super) fn dev_gemm<T: CudaFloat>(
        &self,
        (m, n, k): (usize, usize, usize),
        out: u64,
        a: DMat,
        b: DMat,
        accumulate: bool,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            // An empty sum: zeros, or out unchanged.
            if !accumulate {
                launch!(self, T, "fill_zero", m * n; out, (m * n) as i64);
            }
            return;
        }
        // Operands cuBLAS cannot read in place are copied contiguous; they live until the product is queued.
        let mut keep: Vec<DevVec<T>> = Vec::new();
        let mut layout = |x: DMat, rows: usize, cols: usize| -> (bool, usize, u64) {
            if let Some((t, ld)) = blas_layout(rows, cols, x.rs, x.cs) {
                return (t, ld, x.ptr);
            }
            let c = self.zeros::<T>(rows * cols);
            let p = self.ptr(&c);
            launch!(self, T, "gather_matrix", rows * cols; x.ptr, rows as i64, cols as i64, x.rs as i64, x.cs as i64, p);
            keep.push(c);
            (false, cols, p)
        };
        // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: cuBLAS's first operand is b, its second a.
        let (tb, ldb, pb) = layout(b, k, n);
        let (ta, lda, pa) = layout(a, m, k);
        let beta = if accumulate { T::ONE } else { T::ZERO };
        self.engine.gemm::<T>((tb, ta), (n, m, k), (pb, ldb), (pa, lda), beta, (out, n));
        drop(keep);
    }

    /// out[j] += Σᵣ x[r, j] over `rows` rows of `cols` columns. One thread per column is enough for a few
    /// rows; for many (a convolution's bias: batch × positions) each column's rows are split into chunks
    /// summed in parallel first (one thread per column summing 43,264 rows took 2 ms of an MNIST step).
    pub(super) fn dev_col_sum_add<T: CudaFloat>(&self, out: u64, x: u64, rows: usize, cols: usize) {
        const CHUNK: usize = 256;
        if rows <= 4 * CHUNK {
            launch!(self, T, "col_sum_add", cols; out, x, rows as i64, cols as i64);
            return;
        }
        let chunks = rows.div_ceil(CHUNK);
        let partial = self.scratch::<T>(chunks * cols);
        let p = self.ptr(&partial);
        launch!(self, T, "col_partial_sums", chunks * cols; p, x, rows as i64, cols as i64, CHUNK as i64);
        launch!(self, T, "col_sum_add", cols; out, p, chunks as i64, cols as i64);
    }

    /// cols [rows, k] = the patches of x.
    pub(super) fn dev_im2col<T: CudaFloat>(&self, g: &Window, x: u64) -> DevVec<T> {
        let cols = self.zeros::<T>(g.rows() * g.patch());
        launch!(self, T, "im2col", g.rows() * g.patch(); Win::from(g), x, self.ptr(&cols));
        cols
    }

    /// out [rows, f] = act(cols·w + b), the convolution's output from its patches (no activation: z itself).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dev_conv_out<T: CudaFloat>(
        &self,
        g: &Window,
        f: usize,
        cols: u64,
        w: u64,
        bias: Option<u64>,
        act: Option<UnaryOp>,
        out: u64,
    ) {
        let (rows, k) = (g.rows(), g.patch());
        self.dev_gemm::<T>((rows, f, k), out, DMat { ptr: cols, rs: k, cs: 1 }, DMat { ptr: w, rs: f, cs: 1 }, false);
        if bias.is_none() && act.is_none() {
            return;
        }
        let (op, p) = act_code(act);
        let n = rows * f;
        launch!(self, T, "bias_act", n; out, n as i64, f as i64, bias.unwrap_or(0), bias.is_some() as i32, op, p, 0u64, 0i32);
    }

    /// The gradients of a convolution from dz [rows, f] and, when dw is needed, the patches: dwb [k·f + f] +=
    /// [colsᵀ·dz, Σ dz], and dx += col2im(dz·wᵀ) when `gx` is given.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dev_conv_grads<T: CudaFloat>(
        &self,
        g: &Window,
        f: usize,
        dz: u64,
        cols: Option<u64>,
        w: u64,
        dwb: u64,
        (need_w, need_b): (bool, bool),
        gx: Option<u64>,
    ) {
        let (rows, k) = (g.rows(), g.patch());
        if need_b {
            let db = dwb + (k * f * std::mem::size_of::<T>()) as u64;
            self.dev_col_sum_add::<T>(db, dz, rows, f);
        }
        if let (true, Some(cols)) = (need_w, cols) {
            let ct = DMat { ptr: cols, rs: 1, cs: k };
            self.dev_gemm::<T>((k, f, rows), dwb, ct, DMat { ptr: dz, rs: f, cs: 1 }, true);
        }
        if let Some(gx) = gx {
            let dcols = self.zeros::<T>(rows * k);
            let pd = self.ptr(&dcols);
            let wt = DMat { ptr: w, rs: 1, cs: f };
            self.dev_gemm::<T>((rows, k, f), pd, DMat { ptr: dz, rs: f, cs: 1 }, wt, false);
            launch!(self, T, "col2im", g.n * g.h * g.w * g.c; Win::from(g), pd, gx);
        }
    }
}
