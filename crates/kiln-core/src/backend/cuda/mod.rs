//! The CUDA backend (feature `cuda`, issue 17): the [`Backend`] methods as CUDA kernels, compiled at run
//! time by NVRTC from `prelude.cu` + `kernels.cu` (once for f32, once for f64), and products by cuBLAS.
//! cudarc loads the driver, NVRTC and cuBLAS when [`Cuda::new`] is called, so a build needs no CUDA toolkit
//! and a machine without a GPU gets an error naming what is missing, not a crash.
//!
//! What this is today: every method but the quantized product has its kernels, reached through the unchanged op formulas. The
//! tape's buffers are still host memory (ARCHITECTURE.md, "The device seam", steps 1-2), so every call here
//! *stages*: it copies its inputs to the device, runs its kernels there, and copies its outputs back. That is
//! correct and slow (each call pays transfers and a synchronization); each method's device half (the
//! `dev_*` helpers and the kernels) takes device pointers only, for a device-resident tape to reuse.
//!
//! Tested (tests/suite/cuda.rs, and kiln's tests/suite/cuda.rs for whole training runs): every op behind the
//! seam gradient-checked in f64 and equal to the CPU backend, and an f32 network and a fit equal to the CPU's.
//! On a machine without a GPU (CI), the kernels run simulated on the host (`Cuda::simulated`, feature
//! `cuda-sim`: kernels.cu compiled as C++, see device.rs), and NVRTC compiles them for the GPU. On a GPU the
//! same tests run on it (tools/gpu_check.sh).
//!
//! Not on the GPU yet, counted in [`Cuda::fallbacks`] and run by [`Cpu`] on the staged host memory: the
//! quantized product (`matmul_q`, GGUF weights at inference). Attention's kernels are one thread per output
//! element (no tiles, no tensor cores): correct, and the first to replace when this is measured on a GPU.

mod args;
mod device;
#[cfg(feature = "cuda-sim")]
mod sim;

pub use device::{CudaFloat, Elem, compile_kernels, kernel_source};

use super::{Backend, Buf, BufMut, Cpu, MatView, Workspace};
use crate::ops::{
    AttentionDims, BinaryOp, LossKind, ReduceOp, RnnDims, RnnStep, RnnStepGrad, RnnStepOut, UnaryOp, Window,
};
use crate::quant::QMatrix;
use crate::{MAX_RANK, Result, Shape};
use args::{Bcast, DMat, Perm, Win, act_code, binary_code, blas_layout, cell_code, loss_code, span, unary_code};
use device::{DBuf, Engine, Gpu, launch};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The CUDA backend on GPU 0 (or, with feature `cuda-sim`, on the host; see device.rs). See the module
/// header for what runs where.
pub struct Cuda {
    engine: Engine,
    device: String,
    calls: Mutex<BTreeMap<&'static str, usize>>,
    fallbacks: Mutex<BTreeMap<&'static str, usize>>,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cuda({})", self.device)
    }
}

impl Cuda {
    /// GPU 0, its kernels compiled and loaded. Fails with one line naming what is missing (the driver, a
    /// device, NVRTC, cuBLAS) when this machine cannot run CUDA.
    pub fn new() -> Result<Cuda> {
        let gpu = Gpu::open()?;
        Ok(Cuda::on(gpu.name.clone(), Engine::Gpu(gpu)))
    }

    /// The same backend with its kernels run on the host (compiled as C++ by build.rs): for testing them
    /// where there is no GPU. Slow; not for training.
    #[cfg(feature = "cuda-sim")]
    pub fn simulated() -> Cuda {
        Cuda::on("simulated on the host".into(), Engine::Sim)
    }

    fn on(device: String, engine: Engine) -> Cuda {
        Cuda { engine, device, calls: Mutex::default(), fallbacks: Mutex::default() }
    }

    /// The GPU's name ("NVIDIA H200").
    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// How many times each method ran its kernels.
    pub fn calls(&self) -> BTreeMap<&'static str, usize> {
        self.calls.lock().unwrap().clone()
    }

    /// How many times each method that has no CUDA kernel yet ran on the CPU instead.
    pub fn fallbacks(&self) -> BTreeMap<&'static str, usize> {
        self.fallbacks.lock().unwrap().clone()
    }

    fn count(&self, name: &'static str) {
        *self.calls.lock().unwrap().entry(name).or_default() += 1;
    }

    fn fallback(&self, name: &'static str) -> Cpu {
        *self.fallbacks.lock().unwrap().entry(name).or_default() += 1;
        Cpu
    }

    // ---- staging: host buffers to and from the device ----

    fn up<E: Elem>(&self, h: &[E]) -> DBuf<E> {
        self.engine.up(h)
    }

    fn up_opt<E: Elem>(&self, h: Option<&[E]>) -> DBuf<E> {
        self.engine.up(h.unwrap_or(&[]))
    }

    fn down<E: Elem>(&self, d: &DBuf<E>, h: &mut [E]) {
        self.engine.down(d, h)
    }

    fn zeros<E: Elem>(&self, len: usize) -> DBuf<E> {
        self.engine.zeros(len)
    }

    fn ptr<E: Elem>(&self, d: &DBuf<E>) -> u64 {
        self.engine.ptr(d)
    }
}

// ---- the device halves: device pointers in, kernels and cuBLAS queued on the stream ----

impl Cuda {
    /// out[m, n] (row-major, contiguous at `out`) = a · b, plus out when `accumulate`.
    fn dev_gemm<T: CudaFloat>(&self, (m, n, k): (usize, usize, usize), out: u64, a: DMat, b: DMat, accumulate: bool) {
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
        let mut keep: Vec<DBuf<T>> = Vec::new();
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

    /// cols [rows, k] = the patches of x.
    fn dev_im2col<T: CudaFloat>(&self, g: &Window, x: u64) -> DBuf<T> {
        let cols = self.zeros::<T>(g.rows() * g.patch());
        launch!(self, T, "im2col", g.rows() * g.patch(); Win::from(g), x, self.ptr(&cols));
        cols
    }

    /// The gradients of a convolution from dz [rows, f] and, when dw is needed, the patches: dwb [k·f + f] +=
    /// [colsᵀ·dz, Σ dz], and dx += col2im(dz·wᵀ) when `gx` is given.
    #[allow(clippy::too_many_arguments)]
    fn dev_conv_grads<T: CudaFloat>(
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
            launch!(self, T, "col_sum_add", f; db, dz, rows as i64, f as i64);
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

fn host<'a, E>(b: Option<Buf<'a, E>>) -> Option<&'a [E]> {
    b.map(Buf::host)
}

impl<T: CudaFloat> Backend<T> for Cuda {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        out: BufMut<T>,
        out_offset: usize,
        a: MatView<T>,
        b: MatView<T>,
        accumulate: bool,
    ) {
        self.count("gemm");
        let out = &mut out.host()[out_offset..out_offset + m * n];
        let (sa, sb) = (span(m, k, a.rs, a.cs), span(k, n, b.rs, b.cs));
        let da = self.up(&a.buf.host()[a.offset..a.offset + sa]);
        let db = self.up(&b.buf.host()[b.offset..b.offset + sb]);
        let dout = if accumulate { self.up(out) } else { self.zeros(m * n) };
        let (pa, pb) =
            (DMat { ptr: self.ptr(&da), rs: a.rs, cs: a.cs }, DMat { ptr: self.ptr(&db), rs: b.rs, cs: b.cs });
        self.dev_gemm::<T>((m, n, k), self.ptr(&dout), pa, pb, accumulate);
        self.down(&dout, out);
    }

    fn bias_act(
        &self,
        y: BufMut<T>,
        cols: usize,
        bias: Option<Buf<T>>,
        act: Option<UnaryOp>,
        keep_z: Option<BufMut<T>>,
    ) {
        self.count("bias_act");
        if bias.is_none() && act.is_none() {
            return; // nothing to add or apply
        }
        let y = y.host();
        let dy = self.up(y);
        let db = self.up_opt(host(bias));
        let dz = self.zeros::<T>(if keep_z.is_some() { y.len() } else { 1 });
        let (op, p) = act_code(act);
        let (has_b, keep) = (bias.is_some() as i32, keep_z.is_some() as i32);
        launch!(self, T, "bias_act", y.len(); self.ptr(&dy), y.len() as i64, cols.max(1) as i64, self.ptr(&db), has_b, op, p, self.ptr(&dz), keep);
        if let (Some(z), Some(_)) = (keep_z, act) {
            self.down(&dz, z.host());
        }
        self.down(&dy, y);
    }

    fn unary(&self, op: UnaryOp, x: Buf<T>, y: BufMut<T>) {
        self.count("unary");
        let (x, y) = (x.host(), y.host());
        let (dx, dy) = (self.up(x), self.zeros::<T>(y.len()));
        let (code, p) = unary_code(op);
        launch!(self, T, "unary", y.len(); code, p, self.ptr(&dx), self.ptr(&dy), y.len() as i64);
        self.down(&dy, y);
    }

    fn unary_backward(&self, op: UnaryOp, gy: Buf<T>, x: Buf<T>, y: Buf<T>, gx: BufMut<T>, accumulate: bool) {
        self.count("unary_backward");
        let gx = gx.host();
        let (dgy, dx, dy, dgx) = (self.up(gy.host()), self.up(x.host()), self.up(y.host()), self.up(gx));
        let (code, p) = unary_code(op);
        launch!(self, T, "unary_backward", gx.len(); code, p, self.ptr(&dgy), self.ptr(&dx), self.ptr(&dy), self.ptr(&dgx), gx.len() as i64, accumulate as i32);
        self.down(&dgx, gx);
    }

    fn rnn_step(&self, d: RnnDims, a: RnnStep<T>, out: RnnStepOut<T>) {
        self.count("rnn_step");
        let RnnDims { cell, n, steps, units, t } = d;
        let (h, saved) = (out.h.host(), out.saved.host());
        let c = out.c.map(BufMut::host);
        let (dxw, dzh, db) = (self.up(a.xw.host()), self.up(a.zh.host()), self.up_opt(host(a.b_rec)));
        let (dm, dhp, dcp) = (self.up_opt(host(a.mask)), self.up(a.h_prev.host()), self.up_opt(host(a.c_prev)));
        let (dh, dc) = (self.zeros::<T>(h.len()), self.zeros::<T>(c.as_ref().map_or(1, |c| c.len())));
        // A masked row's saved values are left as they were, as on the CPU.
        let ds = self.up(&*saved);
        let dims = (n as i64, steps as i64, units as i64, t as i64);
        launch!(self, T, "rnn_step", n * units; cell_code(cell), dims.0, dims.1, dims.2, dims.3, self.ptr(&dxw), self.ptr(&dzh), self.ptr(&db), self.ptr(&dm), a.mask.is_some() as i32, self.ptr(&dhp), self.ptr(&dcp), self.ptr(&dh), self.ptr(&dc), self.ptr(&ds));
        if let Some(c) = c {
            self.down(&dc, c);
        }
        self.down(&ds, saved);
        self.down(&dh, h);
    }

    fn rnn_step_backward(&self, d: RnnDims, g: RnnStepGrad<T>) {
        self.count("rnn_step_backward");
        let RnnDims { cell, n, steps, units, t } = d;
        let (dh, dzx, dzh) = (g.dh.host(), g.dzx.host(), g.dzh.host());
        let dc = g.dc.map(BufMut::host);
        let (dsv, dm, dhp) = (self.up(g.saved.host()), self.up_opt(host(g.mask)), self.up(g.h_prev.host()));
        let (dhn, dcp) = (self.up(g.h.host()), self.up_opt(host(g.c_prev)));
        let (ddh, ddc) = (self.up(&*dh), self.up(dc.as_deref().unwrap_or(&[])));
        let (ddzx, ddzh) = (self.up(&*dzx), self.zeros::<T>(dzh.len()));
        let dims = (n as i64, steps as i64, units as i64, t as i64);
        launch!(self, T, "rnn_step_backward", n * units; cell_code(cell), dims.0, dims.1, dims.2, dims.3, self.ptr(&dsv), self.ptr(&dm), g.mask.is_some() as i32, self.ptr(&dhp), self.ptr(&dhn), self.ptr(&dcp), self.ptr(&ddh), self.ptr(&ddc), self.ptr(&ddzx), self.ptr(&ddzh));
        if let Some(dc) = dc {
            self.down(&ddc, dc);
        }
        self.down(&ddzx, dzx);
        self.down(&ddzh, dzh);
        self.down(&ddh, dh);
    }

    fn col_sum_add(&self, out: BufMut<T>, x: Buf<T>, cols: usize) {
        self.count("col_sum_add");
        let (out, x) = (out.host(), x.host());
        let (dout, dx) = (self.up(out), self.up(x));
        let rows = x.len() / cols.max(1);
        launch!(self, T, "col_sum_add", cols; self.ptr(&dout), self.ptr(&dx), rows as i64, cols as i64);
        self.down(&dout, out);
    }

    fn binary(&self, op: BinaryOp, out: Shape, a: Buf<T>, sa: Shape, b: Buf<T>, sb: Shape, y: BufMut<T>) {
        self.count("binary");
        let y = y.host();
        let (da, db, dy) = (self.up(a.host()), self.up(b.host()), self.zeros::<T>(y.len()));
        launch!(self, T, "binary", y.len(); binary_code(op), Bcast::new(out, sa, sb), self.ptr(&da), self.ptr(&db), self.ptr(&dy));
        self.down(&dy, y);
    }

    fn binary_backward(
        &self,
        op: BinaryOp,
        wrt_b: bool,
        out: Shape,
        gy: Buf<T>,
        a: Buf<T>,
        sa: Shape,
        b: Buf<T>,
        sb: Shape,
        g: BufMut<T>,
    ) {
        self.count("binary_backward");
        let g = g.host();
        let (dgy, da, db, dg) = (self.up(gy.host()), self.up(a.host()), self.up(b.host()), self.up(g));
        let s = Bcast::new(out, sa, sb);
        launch!(self, T, "binary_backward", g.len(); binary_code(op), wrt_b as i32, s, self.ptr(&dgy), self.ptr(&da), self.ptr(&db), self.ptr(&dg), g.len() as i64);
        self.down(&dg, g);
    }

    fn softmax(&self, x: Buf<T>, y: BufMut<T>, (outer, n, inner): (usize, usize, usize), log: bool) {
        self.count("softmax");
        let y = y.host();
        let (dx, dy) = (self.up(x.host()), self.zeros::<T>(y.len()));
        launch!(self, T, "softmax", outer * inner; self.ptr(&dx), self.ptr(&dy), outer as i64, n as i64, inner as i64, log as i32);
        self.down(&dy, y);
    }

    fn softmax_backward(
        &self,
        gy: Buf<T>,
        y: Buf<T>,
        gx: BufMut<T>,
        (outer, n, inner): (usize, usize, usize),
        log: bool,
    ) {
        self.count("softmax_backward");
        let gx = gx.host();
        let (dgy, dy, dgx) = (self.up(gy.host()), self.up(y.host()), self.up(gx));
        launch!(self, T, "softmax_backward", outer * inner; self.ptr(&dgy), self.ptr(&dy), self.ptr(&dgx), outer as i64, n as i64, inner as i64, log as i32);
        self.down(&dgx, gx);
    }

    fn copy_blocks(
        &self,
        src: Buf<T>,
        (s0, ss): (usize, usize),
        dst: BufMut<T>,
        (d0, ds): (usize, usize),
        blocks: usize,
        len: usize,
        accumulate: bool,
    ) {
        if blocks == 0 || len == 0 {
            return;
        }
        self.count("copy_blocks");
        // Only the spans the blocks touch travel.
        let src = &src.host()[s0..s0 + (blocks - 1) * ss + len];
        let dst = &mut dst.host()[d0..d0 + (blocks - 1) * ds + len];
        let (dsrc, ddst) = (self.up(src), self.up(dst));
        launch!(self, T, "copy_blocks", blocks * len; self.ptr(&dsrc), 0i64, ss as i64, self.ptr(&ddst), 0i64, ds as i64, blocks as i64, len as i64, accumulate as i32);
        self.down(&ddst, dst);
    }

    fn permute(&self, x: Buf<T>, s: Shape, perm: [u8; MAX_RANK], y: BufMut<T>) {
        self.count("permute");
        let y = y.host();
        let (dx, dy) = (self.up(x.host()), self.zeros::<T>(y.len()));
        launch!(self, T, "permute", y.len(); self.ptr(&dx), self.ptr(&dy), Perm::new(s, &perm), 0i32);
        self.down(&dy, y);
    }

    fn permute_backward(&self, gy: Buf<T>, s: Shape, perm: [u8; MAX_RANK], gx: BufMut<T>) {
        self.count("permute_backward");
        let gx = gx.host();
        let (dgy, dgx) = (self.up(gy.host()), self.up(gx));
        launch!(self, T, "permute", gx.len(); self.ptr(&dgy), self.ptr(&dgx), Perm::new(s, &perm), 1i32);
        self.down(&dgx, gx);
    }

    fn gather(&self, x: Buf<T>, idx: Buf<u32>, (outer, n, inner): (usize, usize, usize), y: BufMut<T>) {
        self.count("gather");
        let (y, idx) = (y.host(), idx.host());
        let (dx, di, dy) = (self.up(x.host()), self.up(idx), self.zeros::<T>(y.len()));
        launch!(self, T, "gather", y.len(); self.ptr(&dx), self.ptr(&di), idx.len() as i64, outer as i64, n as i64, inner as i64, self.ptr(&dy));
        self.down(&dy, y);
    }

    fn scatter_add(&self, gy: Buf<T>, idx: Buf<u32>, (outer, n, inner): (usize, usize, usize), gx: BufMut<T>) {
        self.count("scatter_add");
        let (gx, idx) = (gx.host(), idx.host());
        let (dgy, di, dgx) = (self.up(gy.host()), self.up(idx), self.up(gx));
        launch!(self, T, "scatter_add", outer * idx.len() * inner; self.ptr(&dgy), self.ptr(&di), idx.len() as i64, outer as i64, n as i64, inner as i64, self.ptr(&dgx));
        self.down(&dgx, gx);
    }

    fn embedding_bag(&self, table: Buf<T>, ids: Buf<u32>, w: Buf<T>, (n, len, d): (usize, usize, usize), y: BufMut<T>) {
        self.count("embedding_bag");
        let y = y.host();
        let (dt, di, dw, dy) =
            (self.up(table.host()), self.up(ids.host()), self.up(w.host()), self.zeros::<T>(y.len()));
        launch!(self, T, "embedding_bag", n * d; self.ptr(&dt), self.ptr(&di), self.ptr(&dw), n as i64, len as i64, d as i64, self.ptr(&dy));
        self.down(&dy, y);
    }

    fn embedding_bag_backward(
        &self,
        gy: Buf<T>,
        ids: Buf<u32>,
        w: Buf<T>,
        (n, len, d): (usize, usize, usize),
        gtable: BufMut<T>,
    ) {
        self.count("embedding_bag_backward");
        let gt = gtable.host();
        let (dgy, di, dw, dgt) = (self.up(gy.host()), self.up(ids.host()), self.up(w.host()), self.up(gt));
        launch!(self, T, "embedding_bag_backward", n * len * d; self.ptr(&dgy), self.ptr(&di), self.ptr(&dw), n as i64, len as i64, d as i64, self.ptr(&dgt));
        self.down(&dgt, gt);
    }

    fn reduce(
        &self,
        op: ReduceOp,
        x: Buf<T>,
        y: BufMut<T>,
        arg: Option<BufMut<u32>>,
        (outer, n, inner): (usize, usize, usize),
    ) {
        self.count("reduce");
        let y = y.host();
        let (dx, dy) = (self.up(x.host()), self.zeros::<T>(y.len()));
        let darg = self.zeros::<u32>(y.len());
        let code = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Mean => 1,
            ReduceOp::Max => 2,
        };
        launch!(self, T, "reduce", outer * inner; code, self.ptr(&dx), self.ptr(&dy), self.ptr(&darg), arg.is_some() as i32, outer as i64, n as i64, inner as i64);
        if let Some(arg) = arg {
            self.down(&darg, arg.host());
        }
        self.down(&dy, y);
    }

    fn reduce_backward(
        &self,
        op: ReduceOp,
        gy: Buf<T>,
        arg: Buf<u32>,
        gx: BufMut<T>,
        (outer, n, inner): (usize, usize, usize),
    ) {
        self.count("reduce_backward");
        let gx = gx.host();
        let (dgy, darg, dgx) = (self.up(gy.host()), self.up(arg.host()), self.up(gx));
        let code = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Mean => 1,
            ReduceOp::Max => 2,
        };
        launch!(self, T, "reduce_backward", gx.len(); code, self.ptr(&dgy), self.ptr(&darg), self.ptr(&dgx), outer as i64, n as i64, inner as i64);
        self.down(&dgx, gx);
    }

    fn loss(
        &self,
        kind: LossKind,
        x: Buf<T>,
        t: Option<Buf<T>>,
        labels: Option<Buf<u32>>,
        w: Option<Buf<T>>,
        (n, c): (usize, usize),
        probs: Option<BufMut<T>>,
    ) -> T {
        self.count("loss");
        let x = x.host();
        let (dx, dt, dl, dw) = (self.up(x), self.up_opt(host(t)), self.up_opt(host(labels)), self.up_opt(host(w)));
        let dp = self.zeros::<T>(if probs.is_some() { x.len() } else { 1 });
        let drow = self.zeros::<T>(n);
        launch!(self, T, "loss", n; loss_code(kind), self.ptr(&dx), self.ptr(&dt), self.ptr(&dl), self.ptr(&dw), w.is_some() as i32, n as i64, c as i64, self.ptr(&dp), self.ptr(&drow));
        if let Some(p) = probs {
            self.down(&dp, p.host());
        }
        let mut rows = vec![T::ZERO; n];
        self.down(&drow, &mut rows);
        let total = rows.iter().fold(T::ZERO, |a, &v| a + v);
        let per_row = matches!(
            kind,
            LossKind::SoftmaxCrossEntropy | LossKind::CategoricalCrossEntropy | LossKind::SparseSoftmaxCrossEntropy
        );
        total / T::from_usize(if per_row { n } else { x.len() })
    }

    fn loss_backward(
        &self,
        kind: LossKind,
        dy: T,
        x: Buf<T>,
        t: Option<Buf<T>>,
        labels: Option<Buf<u32>>,
        probs: Buf<T>,
        w: Option<Buf<T>>,
        (n, c): (usize, usize),
        gx: BufMut<T>,
    ) {
        self.count("loss_backward");
        let gx = gx.host();
        let (dx, dt, dl, dw) =
            (self.up(x.host()), self.up_opt(host(t)), self.up_opt(host(labels)), self.up_opt(host(w)));
        let (dp, dgx) = (self.up(probs.host()), self.up(gx));
        launch!(self, T, "loss_backward", n; loss_code(kind), dy, self.ptr(&dx), self.ptr(&dt), self.ptr(&dl), self.ptr(&dp), self.ptr(&dw), w.is_some() as i32, n as i64, c as i64, self.ptr(&dgx));
        self.down(&dgx, gx);
    }

    fn max_pool2d(&self, g: &Window, x: Buf<T>, y: BufMut<T>, arg: BufMut<u32>) {
        self.count("max_pool2d");
        let (y, arg) = (y.host(), arg.host());
        let (dx, dy, da) = (self.up(x.host()), self.zeros::<T>(y.len()), self.zeros::<u32>(y.len()));
        launch!(self, T, "max_pool", y.len(); Win::from(g), self.ptr(&dx), self.ptr(&dy), self.ptr(&da));
        self.down(&da, arg);
        self.down(&dy, y);
    }

    fn max_pool2d_backward(&self, _g: &Window, gy: Buf<T>, arg: Buf<u32>, gx: BufMut<T>, overwrite: bool) {
        self.count("max_pool2d_backward");
        let (gy, gx) = (gy.host(), gx.host());
        let dgx = if overwrite { self.zeros::<T>(gx.len()) } else { self.up(gx) };
        let (dgy, da) = (self.up(gy), self.up(arg.host()));
        launch!(self, T, "max_pool_backward", gy.len(); self.ptr(&dgy), self.ptr(&da), gy.len() as i64, self.ptr(&dgx));
        self.down(&dgx, gx);
    }

    fn avg_pool2d(&self, g: &Window, x: Buf<T>, y: BufMut<T>) {
        self.count("avg_pool2d");
        let y = y.host();
        let (dx, dy) = (self.up(x.host()), self.zeros::<T>(y.len()));
        launch!(self, T, "avg_pool", y.len(); Win::from(g), self.ptr(&dx), self.ptr(&dy));
        self.down(&dy, y);
    }

    fn avg_pool2d_backward(&self, g: &Window, gy: Buf<T>, gx: BufMut<T>) {
        self.count("avg_pool2d_backward");
        let gx = gx.host();
        let (dgy, dgx) = (self.up(gy.host()), self.up(gx));
        launch!(self, T, "avg_pool_backward", gy.len(); Win::from(g), self.ptr(&dgy), self.ptr(&dgx));
        self.down(&dgx, gx);
    }

    fn batch_norm(
        &self,
        x: Buf<T>,
        gamma: Buf<T>,
        beta: Buf<T>,
        stats: Option<(Buf<T>, Buf<T>)>,
        eps: f64,
        c: usize,
        saved: BufMut<T>,
        y: BufMut<T>,
    ) {
        self.count("batch_norm");
        let (x, saved, y) = (x.host(), saved.host(), y.host());
        let (dx, dg, db) = (self.up(x), self.up(gamma.host()), self.up(beta.host()));
        let (dmm, dmv) = (self.up_opt(stats.map(|s| s.0.host())), self.up_opt(stats.map(|s| s.1.host())));
        let (ds, dy) = (self.zeros::<T>(3 * c), self.zeros::<T>(x.len()));
        let m = x.len() / c.max(1);
        launch!(self, T, "batch_norm_stats", c; self.ptr(&dx), m as i64, c as i64, self.ptr(&dmm), self.ptr(&dmv), stats.is_some() as i32, eps, self.ptr(&ds));
        launch!(self, T, "batch_norm", x.len(); self.ptr(&dx), self.ptr(&dg), self.ptr(&db), self.ptr(&ds), x.len() as i64, c as i64, self.ptr(&dy));
        self.down(&ds, saved);
        self.down(&dy, y);
    }

    fn batch_norm_sums(&self, x: Buf<T>, gy: Buf<T>, saved: Buf<T>, c: usize, sums: BufMut<T>) {
        self.count("batch_norm_sums");
        let (x, sums) = (x.host(), sums.host());
        let (dx, dgy, ds, dsum) = (self.up(x), self.up(gy.host()), self.up(saved.host()), self.zeros::<T>(2 * c));
        launch!(self, T, "batch_norm_sums", c; self.ptr(&dx), self.ptr(&dgy), self.ptr(&ds), (x.len() / c.max(1)) as i64, c as i64, self.ptr(&dsum));
        self.down(&dsum, sums);
    }

    fn batch_norm_backward_x(
        &self,
        x: Buf<T>,
        gy: Buf<T>,
        gamma: Buf<T>,
        saved: Buf<T>,
        sums: Buf<T>,
        c: usize,
        given_stats: bool,
        gx: BufMut<T>,
    ) {
        self.count("batch_norm_backward_x");
        let gx = gx.host();
        let (dx, dgy, dg) = (self.up(x.host()), self.up(gy.host()), self.up(gamma.host()));
        let (ds, dsum, dgx) = (self.up(saved.host()), self.up(sums.host()), self.up(gx));
        launch!(self, T, "batch_norm_backward_x", gx.len(); self.ptr(&dx), self.ptr(&dgy), self.ptr(&dg), self.ptr(&ds), self.ptr(&dsum), gx.len() as i64, c as i64, given_stats as i32, self.ptr(&dgx));
        self.down(&dgx, gx);
    }

    fn batch_norm_backward_stat(
        &self,
        variance: bool,
        gamma: Buf<T>,
        saved: Buf<T>,
        sums: Buf<T>,
        c: usize,
        g: BufMut<T>,
    ) {
        self.count("batch_norm_backward_stat");
        let g = g.host();
        let (dgm, ds, dsum, dg) = (self.up(gamma.host()), self.up(saved.host()), self.up(sums.host()), self.up(g));
        launch!(self, T, "batch_norm_backward_stat", c; variance as i32, self.ptr(&dgm), self.ptr(&ds), self.ptr(&dsum), c as i64, self.ptr(&dg));
        self.down(&dg, g);
    }

    fn layer_norm(&self, x: Buf<T>, gamma: Buf<T>, beta: Buf<T>, eps: f64, d: usize, saved: BufMut<T>, y: BufMut<T>) {
        self.count("layer_norm");
        let (x, saved, y) = (x.host(), saved.host(), y.host());
        let rows = x.len() / d.max(1);
        let (dx, dg, db) = (self.up(x), self.up(gamma.host()), self.up(beta.host()));
        let (ds, dy) = (self.zeros::<T>(2 * rows), self.zeros::<T>(x.len()));
        launch!(self, T, "layer_norm", rows; self.ptr(&dx), self.ptr(&dg), self.ptr(&db), eps, rows as i64, d as i64, self.ptr(&ds), self.ptr(&dy));
        self.down(&ds, saved);
        self.down(&dy, y);
    }

    fn layer_norm_sums(&self, x: Buf<T>, gy: Buf<T>, saved: Buf<T>, d: usize, sums: BufMut<T>) {
        self.count("layer_norm_sums");
        let (x, sums) = (x.host(), sums.host());
        let rows = x.len() / d.max(1);
        let (dx, dgy, ds, dsum) = (self.up(x), self.up(gy.host()), self.up(saved.host()), self.zeros::<T>(2 * d));
        launch!(self, T, "layer_norm_sums", d; self.ptr(&dx), self.ptr(&dgy), self.ptr(&ds), rows as i64, d as i64, self.ptr(&dsum));
        self.down(&dsum, sums);
    }

    fn layer_norm_backward_x(&self, x: Buf<T>, gy: Buf<T>, gamma: Buf<T>, saved: Buf<T>, d: usize, gx: BufMut<T>) {
        self.count("layer_norm_backward_x");
        let gx = gx.host();
        let rows = gx.len() / d.max(1);
        let (dx, dgy, dg) = (self.up(x.host()), self.up(gy.host()), self.up(gamma.host()));
        let (ds, dgx) = (self.up(saved.host()), self.up(gx));
        launch!(self, T, "layer_norm_backward_x", rows; self.ptr(&dx), self.ptr(&dgy), self.ptr(&dg), self.ptr(&ds), rows as i64, d as i64, self.ptr(&dgx));
        self.down(&dgx, gx);
    }

    fn attention(
        &self,
        q: Buf<T>,
        k: Buf<T>,
        v: Buf<T>,
        bias: Buf<T>,
        d: AttentionDims,
        p: Option<BufMut<T>>,
        y: BufMut<T>,
    ) {
        self.count("attention");
        let y = y.host();
        let (dq, dk, dv, db) = (self.up(q.host()), self.up(k.host()), self.up(v.host()), self.up(bias.host()));
        let (b, t, heads, dh) = (d.b as i64, d.t as i64, d.heads as i64, d.dh as i64);
        let (dp, dy) = (self.zeros::<T>(d.b * d.heads * d.t * d.t), self.zeros::<T>(y.len()));
        launch!(self, T, "attention_probs", d.b * d.heads * d.t; self.ptr(&dq), self.ptr(&dk), self.ptr(&db), b, t, heads, dh, d.causal as i32, self.ptr(&dp));
        launch!(self, T, "attention_out", y.len(); self.ptr(&dp), self.ptr(&dv), b, t, heads, dh, d.drop, d.seed, d.keep_scale(), self.ptr(&dy));
        if let Some(p) = p {
            self.down(&dp, p.host());
        }
        self.down(&dy, y);
    }

    fn attention_backward(
        &self,
        q: Buf<T>,
        k: Buf<T>,
        v: Buf<T>,
        p: Buf<T>,
        gy: Buf<T>,
        d: AttentionDims,
        grads: BufMut<T>,
    ) {
        self.count("attention_backward");
        let grads = grads.host();
        let (dq, dk, dv) = (self.up(q.host()), self.up(k.host()), self.up(v.host()));
        let (dp, dgy) = (self.up(p.host()), self.up(gy.host()));
        let (b, t, heads, dh) = (d.b as i64, d.t as i64, d.heads as i64, d.dh as i64);
        let (dds, dgr) = (self.zeros::<T>(d.b * d.heads * d.t * d.t), self.zeros::<T>(grads.len()));
        launch!(self, T, "attention_ds", d.b * d.heads * d.t; self.ptr(&dp), self.ptr(&dv), self.ptr(&dgy), b, t, heads, dh, d.drop, d.seed, d.keep_scale(), self.ptr(&dds));
        launch!(self, T, "attention_grads", grads.len(); self.ptr(&dq), self.ptr(&dk), self.ptr(&dp), self.ptr(&dds), self.ptr(&dgy), b, t, heads, dh, d.drop, d.seed, d.keep_scale(), self.ptr(&dgr));
        self.down(&dgr, grads);
    }

    fn conv2d(
        &self,
        g: &Window,
        x: Buf<T>,
        w: Buf<T>,
        b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: BufMut<T>,
        _ws: &mut Workspace<T>,
    ) {
        self.count("conv2d");
        let (w, y) = (w.host(), y.host());
        let (k, f) = (g.patch(), w.len() / g.patch());
        let (dx, dw, db) = (self.up(x.host()), self.up(w), self.up_opt(host(b)));
        let cols = self.dev_im2col::<T>(g, self.ptr(&dx));
        let dy = self.zeros::<T>(y.len());
        let pc = DMat { ptr: self.ptr(&cols), rs: k, cs: 1 };
        self.dev_gemm::<T>((g.rows(), f, k), self.ptr(&dy), pc, DMat { ptr: self.ptr(&dw), rs: f, cs: 1 }, false);
        let (op, p) = act_code(act);
        launch!(self, T, "bias_act", y.len(); self.ptr(&dy), y.len() as i64, f as i64, self.ptr(&db), b.is_some() as i32, op, p, 0u64, 0i32);
        self.down(&dy, y);
    }

    fn conv2d_backward(
        &self,
        g: &Window,
        x: Buf<T>,
        w: Buf<T>,
        b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: Buf<T>,
        gy: Buf<T>,
        gx: Option<BufMut<T>>,
        dwb: BufMut<T>,
        need_w_b: (bool, bool),
        _ws: &mut Workspace<T>,
    ) {
        self.count("conv2d_backward");
        let (w, y, gy, dwb) = (w.host(), y.host(), gy.host(), dwb.host());
        let (k, f) = (g.patch(), w.len() / g.patch());
        let (dx, dw, dy, dgy, ddwb) = (self.up(x.host()), self.up(w), self.up(y), self.up(gy), self.up(dwb));
        let need_z = act.is_some_and(|a| a.needs_input());
        let cols = (need_w_b.0 || need_z).then(|| self.dev_im2col::<T>(g, self.ptr(&dx)));
        // dz = dy ⊙ act'(z), z recomputed from the patches when the derivative needs it.
        let dz = match act {
            None => None,
            Some(a) => {
                let z = self.zeros::<T>(if need_z { y.len() } else { 1 });
                if let Some(cols) = cols.as_ref().filter(|_| need_z) {
                    let db = self.up_opt(host(b));
                    let pc = DMat { ptr: self.ptr(cols), rs: k, cs: 1 };
                    self.dev_gemm::<T>(
                        (g.rows(), f, k),
                        self.ptr(&z),
                        pc,
                        DMat { ptr: self.ptr(&dw), rs: f, cs: 1 },
                        false,
                    );
                    launch!(self, T, "bias_act", y.len(); self.ptr(&z), y.len() as i64, f as i64, self.ptr(&db), b.is_some() as i32, -1i32, 0.0f64, 0u64, 0i32);
                }
                let dz = self.zeros::<T>(y.len());
                let (code, p) = unary_code(a);
                let zp = if need_z { self.ptr(&z) } else { self.ptr(&dy) };
                launch!(self, T, "unary_backward", y.len(); code, p, self.ptr(&dgy), zp, self.ptr(&dy), self.ptr(&dz), y.len() as i64, 0i32);
                Some(dz)
            }
        };
        let pdz = dz.as_ref().map_or(self.ptr(&dgy), |d| self.ptr(d));
        let dgx = gx.as_ref().map(|h| self.up(g_host(h)));
        let pcols = cols.as_ref().map(|c| self.ptr(c));
        self.dev_conv_grads::<T>(
            g,
            f,
            pdz,
            pcols,
            self.ptr(&dw),
            self.ptr(&ddwb),
            need_w_b,
            dgx.as_ref().map(|d| self.ptr(d)),
        );
        if let (Some(gx), Some(dgx)) = (gx, dgx) {
            self.down(&dgx, gx.host());
        }
        self.down(&ddwb, dwb);
    }

    fn conv2d_max_pool(
        &self,
        g: &Window,
        (ph, pw): (usize, usize),
        x: Buf<T>,
        w: Buf<T>,
        b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: BufMut<T>,
        arg: BufMut<u32>,
        zs: Option<BufMut<T>>,
        _ws: &mut Workspace<T>,
    ) {
        self.count("conv2d_max_pool");
        let (w, y, arg) = (w.host(), y.host(), arg.host());
        let (k, f) = (g.patch(), w.len() / g.patch());
        let (dx, dw, db) = (self.up(x.host()), self.up(w), self.up_opt(host(b)));
        let cols = self.dev_im2col::<T>(g, self.ptr(&dx));
        let rows = g.rows();
        // z = cols·w + b, then a = act(z) beside it: the pool reads a and, for zs, z.
        let (z, a) = (self.zeros::<T>(rows * f), self.zeros::<T>(rows * f));
        let pc = DMat { ptr: self.ptr(&cols), rs: k, cs: 1 };
        self.dev_gemm::<T>((rows, f, k), self.ptr(&z), pc, DMat { ptr: self.ptr(&dw), rs: f, cs: 1 }, false);
        let (op, p) = act_code(act);
        launch!(self, T, "bias_act", rows * f; self.ptr(&z), (rows * f) as i64, f as i64, self.ptr(&db), b.is_some() as i32, -1i32, 0.0f64, 0u64, 0i32);
        match act {
            Some(_) => launch!(self, T, "unary", rows * f; op, p, self.ptr(&z), self.ptr(&a), (rows * f) as i64),
            None => {
                launch!(self, T, "copy_blocks", rows * f; self.ptr(&z), 0i64, 0i64, self.ptr(&a), 0i64, 0i64, 1i64, (rows * f) as i64, 0i32)
            }
        }
        let (dy, darg) = (self.zeros::<T>(y.len()), self.zeros::<u32>(y.len()));
        let dzs = self.zeros::<T>(if zs.is_some() { y.len() } else { 1 });
        launch!(self, T, "conv_max_pool", y.len(); Win::from(g), f as i64, ph as i64, pw as i64, self.ptr(&a), self.ptr(&z), self.ptr(&dy), self.ptr(&darg), self.ptr(&dzs), zs.is_some() as i32);
        if let Some(zs) = zs {
            self.down(&dzs, zs.host());
        }
        self.down(&darg, arg);
        self.down(&dy, y);
    }

    fn conv2d_max_pool_backward(
        &self,
        g: &Window,
        _pool: (usize, usize),
        x: Buf<T>,
        w: Buf<T>,
        _b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: Buf<T>,
        arg: Buf<u32>,
        zs: Buf<T>,
        gy: Buf<T>,
        gx: Option<BufMut<T>>,
        dwb: BufMut<T>,
        need_w_b: (bool, bool),
        _ws: &mut Workspace<T>,
    ) {
        self.count("conv2d_max_pool_backward");
        let (w, y, gy, dwb) = (w.host(), y.host(), gy.host(), dwb.host());
        let f = w.len() / g.patch();
        let needs_input = act.is_some_and(|a| a.needs_input());
        let (dx, dw, dy, dgy) = (self.up(x.host()), self.up(w), self.up(y), self.up(gy));
        let (darg, dzs, ddwb) = (self.up(arg.host()), self.up(if needs_input { zs.host() } else { &[] }), self.up(dwb));
        let dz = self.zeros::<T>(g.rows() * f);
        let (op, p) = act_code(act);
        launch!(self, T, "conv_max_pool_dz", y.len(); op, p, self.ptr(&dgy), self.ptr(&dy), self.ptr(&dzs), self.ptr(&darg), y.len() as i64, needs_input as i32, self.ptr(&dz));
        let cols = need_w_b.0.then(|| self.dev_im2col::<T>(g, self.ptr(&dx)));
        let dgx = gx.as_ref().map(|h| self.up(g_host(h)));
        let pcols = cols.as_ref().map(|c| self.ptr(c));
        self.dev_conv_grads::<T>(
            g,
            f,
            self.ptr(&dz),
            pcols,
            self.ptr(&dw),
            self.ptr(&ddwb),
            need_w_b,
            dgx.as_ref().map(|d| self.ptr(d)),
        );
        if let (Some(gx), Some(dgx)) = (gx, dgx) {
            self.down(&dgx, gx.host());
        }
        self.down(&ddwb, dwb);
    }

    fn matmul_q(&self, w: &QMatrix, x: Buf<T>, n: usize, y: BufMut<T>) -> Result<()> {
        self.fallback("matmul_q").matmul_q(w, x, n, y)
    }
}

/// The host slice behind a writable view, read-only (to upload it).
fn g_host<'b, E>(b: &'b BufMut<'_, E>) -> &'b [E] {
    match b {
        BufMut::Host(s) => s,
    }
}
