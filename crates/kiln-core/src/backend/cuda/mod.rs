//! The CUDA backend (feature `cuda`, issue 17): the [`Backend`] methods as CUDA kernels, compiled at run
//! time by NVRTC from `prelude.cu` + `kernels.cu` (once for f32, once for f64), and products by cuBLAS.
//! cudarc loads the driver, NVRTC and cuBLAS when [`Cuda::new`] is called, so a build needs no CUDA toolkit
//! and a machine without a GPU gets an error naming what is missing, not a crash.
//!
//! What this is today: every method but the quantized product has its kernels, reached through the unchanged
//! op formulas. The tape keeps its values and gradients in this backend's memory (`Backend::alloc`, from the
//! caching allocator in memory.rs), so a method's views are mostly device memory, used as they are; a view
//! of host memory (a parameter the first time, what host code wrote) is copied up for the call and, when
//! written, back (`up`, `out`, `down` in operands.rs). `staged_bytes` counts every byte that crosses, which
//! is how tests/suite/cuda.rs checks that a training step moves only its batch, parameters, gradients and
//! loss.
//! Measured on an H200 (tools/gpu_check.sh, 2026-12-04): the seed's MNIST CNN at 1.55 s per epoch, from 6.1 s
//! when every call staged its views.
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
mod halves;
mod memory;
mod operands;
mod signatures;
#[cfg(feature = "cuda-sim")]
mod sim;
mod update;

pub use device::{CudaFloat, Elem, compile_kernels, kernel_source};

use super::{Backend, Buf, BufMut, Cpu, DevVec, MatView, Update, Workspace};
use crate::ops::{
    AttentionDims, BinaryOp, LossKind, ReduceOp, RnnDims, RnnStep, RnnStepGrad, RnnStepOut, UnaryOp, Window,
};
use crate::quant::QMatrix;
use crate::{MAX_RANK, Result, Shape};
use args::{Bcast, DMat, Perm, Win, act_code, binary_code, cell_code, loss_code, span, unary_code};
use device::{Engine, Gpu, launch};
use memory::DevicePool;
use operands::Arg;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// The CUDA backend on GPU 0 (or, with feature `cuda-sim`, on the host; see device.rs). See the module
/// header for what runs where.
pub struct Cuda {
    engine: Engine,
    /// The memory tapes keep on the device (memory.rs).
    mem: Arc<DevicePool>,
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
        let mem = Arc::new(DevicePool::new(engine.home()));
        Cuda { engine, mem, device, calls: Mutex::default(), fallbacks: Mutex::default() }
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

    /// Bytes copied between the host and the device so far, either way: parameters and batches going up,
    /// gradients and results read on the host coming down, and host views staged for a call. What a
    /// device-resident tape saves is the rest.
    pub fn staged_bytes(&self) -> usize {
        self.mem.moved.load(Ordering::Relaxed)
    }

    /// Bytes of device memory the caching allocator has taken from the driver (held by tapes or free).
    pub fn device_bytes(&self) -> usize {
        self.mem.held_bytes()
    }

    fn count(&self, name: &'static str) {
        *self.calls.lock().unwrap().entry(name).or_default() += 1;
    }

    fn fallback(&self, name: &'static str) -> Cpu {
        *self.fallbacks.lock().unwrap().entry(name).or_default() += 1;
        Cpu
    }
}

impl<T: CudaFloat> Backend<T> for Cuda {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn memory_id(&self) -> Option<usize> {
        Some(Arc::as_ptr(&self.mem) as usize)
    }

    fn alloc(&self, len: usize) -> Option<DevVec<T>> {
        let bytes = DevicePool::block(len * std::mem::size_of::<T>());
        Some(DevVec::new(self.mem.take(bytes), len, bytes, self.mem.clone()))
    }

    fn alloc_idx(&self, len: usize) -> Option<DevVec<u32>> {
        let bytes = DevicePool::block(len * std::mem::size_of::<u32>());
        Some(DevVec::new(self.mem.take(bytes), len, bytes, self.mem.clone()))
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
        let out = out.slice(out_offset..out_offset + m * n);
        let (sa, sb) = (span(m, k, a.rs, a.cs), span(k, n, b.rs, b.cs));
        let da = self.up(a.buf.slice(a.offset..a.offset + sa));
        let db = self.up(b.buf.slice(b.offset..b.offset + sb));
        let dout = if accumulate { self.inout(&out) } else { self.out(&out) };
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
        let n = y.len();
        let dy = self.inout(&y);
        let db = self.up_opt(bias);
        let dz = self.out_opt(&keep_z);
        let (op, p) = act_code(act);
        let (has_b, keep) = (bias.is_some() as i32, keep_z.is_some() as i32);
        launch!(self, T, "bias_act", n; self.ptr(&dy), n as i64, cols.max(1) as i64, self.ptr(&db), has_b, op, p, self.ptr(&dz), keep);
        if let (Some(z), Some(_)) = (keep_z, act) {
            self.down(&dz, z);
        }
        self.down(&dy, y);
    }

    fn unary(&self, op: UnaryOp, x: Buf<T>, y: BufMut<T>) {
        self.count("unary");
        let (dx, dy) = (self.up(x), self.out(&y));
        let (code, p) = unary_code(op);
        launch!(self, T, "unary", y.len(); code, p, self.ptr(&dx), self.ptr(&dy), y.len() as i64);
        self.down(&dy, y);
    }

    fn unary_backward(&self, op: UnaryOp, gy: Buf<T>, x: Buf<T>, y: Buf<T>, gx: BufMut<T>, accumulate: bool) {
        self.count("unary_backward");
        let (dgy, dx, dy) = (self.up(gy), self.up(x), self.up(y));
        let dgx = if accumulate { self.inout(&gx) } else { self.out(&gx) };
        let (code, p) = unary_code(op);
        launch!(self, T, "unary_backward", gx.len(); code, p, self.ptr(&dgy), self.ptr(&dx), self.ptr(&dy), self.ptr(&dgx), gx.len() as i64, accumulate as i32);
        self.down(&dgx, gx);
    }

    fn rnn_step(&self, d: RnnDims, a: RnnStep<T>, out: RnnStepOut<T>) {
        self.count("rnn_step");
        let RnnDims { cell, n, steps, units, t } = d;
        let (dxw, dzh, db) = (self.up(a.xw), self.up(a.zh), self.up_opt(a.b_rec));
        let (dm, dhp, dcp) = (self.up_opt(a.mask), self.up(a.h_prev), self.up_opt(a.c_prev));
        let dh = self.out(&out.h);
        let dc = self.out_opt(&out.c);
        // A masked row's saved values are left as they were, as on the CPU.
        let ds = self.inout(&out.saved);
        let dims = (n as i64, steps as i64, units as i64, t as i64);
        launch!(self, T, "rnn_step", n * units; cell_code(cell), dims.0, dims.1, dims.2, dims.3, self.ptr(&dxw), self.ptr(&dzh), self.ptr(&db), self.ptr(&dm), a.mask.is_some() as i32, self.ptr(&dhp), self.ptr(&dcp), self.ptr(&dh), self.ptr(&dc), self.ptr(&ds));
        if let Some(c) = out.c {
            self.down(&dc, c);
        }
        self.down(&ds, out.saved);
        self.down(&dh, out.h);
    }

    fn rnn_step_backward(&self, d: RnnDims, g: RnnStepGrad<T>) {
        self.count("rnn_step_backward");
        let RnnDims { cell, n, steps, units, t } = d;
        let (dsv, dm, dhp) = (self.up(g.saved), self.up_opt(g.mask), self.up(g.h_prev));
        let (dhn, dcp) = (self.up(g.h), self.up_opt(g.c_prev));
        let ddh = self.inout(&g.dh);
        let ddc = self.inout_opt(&g.dc);
        let (ddzx, ddzh) = (self.inout(&g.dzx), self.out(&g.dzh));
        let dims = (n as i64, steps as i64, units as i64, t as i64);
        launch!(self, T, "rnn_step_backward", n * units; cell_code(cell), dims.0, dims.1, dims.2, dims.3, self.ptr(&dsv), self.ptr(&dm), g.mask.is_some() as i32, self.ptr(&dhp), self.ptr(&dhn), self.ptr(&dcp), self.ptr(&ddh), self.ptr(&ddc), self.ptr(&ddzx), self.ptr(&ddzh));
        if let Some(dc) = g.dc {
            self.down(&ddc, dc);
        }
        self.down(&ddzx, g.dzx);
        self.down(&ddzh, g.dzh);
        self.down(&ddh, g.dh);
    }

    fn col_sum_add(&self, out: BufMut<T>, x: Buf<T>, cols: usize) {
        self.count("col_sum_add");
        let (dout, dx) = (self.inout(&out), self.up(x));
        let rows = x.len() / cols.max(1);
        self.dev_col_sum_add::<T>(self.ptr(&dout), self.ptr(&dx), rows, cols);
        self.down(&dout, out);
    }

    fn binary(&self, op: BinaryOp, out: Shape, a: Buf<T>, sa: Shape, b: Buf<T>, sb: Shape, y: BufMut<T>) {
        self.count("binary");
        let (da, db, dy) = (self.up(a), self.up(b), self.out(&y));
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
        let (dgy, da, db, dg) = (self.up(gy), self.up(a), self.up(b), self.inout(&g));
        let s = Bcast::new(out, sa, sb);
        launch!(self, T, "binary_backward", g.len(); binary_code(op), wrt_b as i32, s, self.ptr(&dgy), self.ptr(&da), self.ptr(&db), self.ptr(&dg), g.len() as i64);
        self.down(&dg, g);
    }

    fn softmax(&self, x: Buf<T>, y: BufMut<T>, (outer, n, inner): (usize, usize, usize), log: bool) {
        self.count("softmax");
        let (dx, dy) = (self.up(x), self.out(&y));
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
        let (dgy, dy, dgx) = (self.up(gy), self.up(y), self.inout(&gx));
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
        let src = src.slice(s0..s0 + (blocks - 1) * ss + len);
        let dst = dst.slice(d0..d0 + (blocks - 1) * ds + len);
        let (dsrc, ddst) = (self.up(src), self.inout(&dst));
        launch!(self, T, "copy_blocks", blocks * len; self.ptr(&dsrc), 0i64, ss as i64, self.ptr(&ddst), 0i64, ds as i64, blocks as i64, len as i64, accumulate as i32);
        self.down(&ddst, dst);
    }

    fn permute(&self, x: Buf<T>, s: Shape, perm: [u8; MAX_RANK], y: BufMut<T>) {
        self.count("permute");
        let (dx, dy) = (self.up(x), self.out(&y));
        launch!(self, T, "permute", y.len(); self.ptr(&dx), self.ptr(&dy), Perm::new(s, &perm), 0i32);
        self.down(&dy, y);
    }

    fn permute_backward(&self, gy: Buf<T>, s: Shape, perm: [u8; MAX_RANK], gx: BufMut<T>) {
        self.count("permute_backward");
        let (dgy, dgx) = (self.up(gy), self.inout(&gx));
        launch!(self, T, "permute", gx.len(); self.ptr(&dgy), self.ptr(&dgx), Perm::new(s, &perm), 1i32);
        self.down(&dgx, gx);
    }

    fn gather(&self, x: Buf<T>, idx: Buf<u32>, (outer, n, inner): (usize, usize, usize), y: BufMut<T>) {
        self.count("gather");
        let (dx, di, dy) = (self.up(x), self.up(idx), self.out(&y));
        launch!(self, T, "gather", y.len(); self.ptr(&dx), self.ptr(&di), idx.len() as i64, outer as i64, n as i64, inner as i64, self.ptr(&dy));
        self.down(&dy, y);
    }

    fn scatter_add(&self, gy: Buf<T>, idx: Buf<u32>, (outer, n, inner): (usize, usize, usize), gx: BufMut<T>) {
        self.count("scatter_add");
        let (dgy, di, dgx) = (self.up(gy), self.up(idx), self.inout(&gx));
        launch!(self, T, "scatter_add", outer * idx.len() * inner; self.ptr(&dgy), self.ptr(&di), idx.len() as i64, outer as i64, n as i64, inner as i64, self.ptr(&dgx));
        self.down(&dgx, gx);
    }

    fn embedding_bag(&self, table: Buf<T>, ids: Buf<u32>, w: Buf<T>, (n, len, d): (usize, usize, usize), y: BufMut<T>) {
        self.count("embedding_bag");
        let (dt, di, dw, dy) = (self.up(table), self.up(ids), self.up(w), self.out(&y));
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
        let (dgy, di, dw, dgt) = (self.up(gy), self.up(ids), self.up(w), self.inout(&gtable));
        launch!(self, T, "embedding_bag_backward", n * len * d; self.ptr(&dgy), self.ptr(&di), self.ptr(&dw), n as i64, len as i64, d as i64, self.ptr(&dgt));
        self.down(&dgt, gtable);
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
        let (dx, dy) = (self.up(x), self.out(&y));
        let darg = self.out_opt(&arg);
        let code = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Mean => 1,
            ReduceOp::Max => 2,
        };
        launch!(self, T, "reduce", outer * inner; code, self.ptr(&dx), self.ptr(&dy), self.ptr(&darg), arg.is_some() as i32, outer as i64, n as i64, inner as i64);
        if let Some(arg) = arg {
            self.down(&darg, arg);
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
        let (dgy, darg, dgx) = (self.up(gy), self.up(arg), self.inout(&gx));
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
        let (dx, dt, dl, dw) = (self.up(x), self.up_opt(t), self.up_opt(labels), self.up_opt(w));
        let dp = self.out_opt(&probs);
        let drow = self.zeros::<T>(n);
        launch!(self, T, "loss", n; loss_code(kind), self.ptr(&dx), self.ptr(&dt), self.ptr(&dl), self.ptr(&dw), w.is_some() as i32, n as i64, c as i64, self.ptr(&dp), self.ptr(&drow));
        if let Some(p) = probs {
            self.down(&dp, p);
        }
        // The loss is the one number a step reads on the host.
        let mut rows = vec![T::ZERO; n];
        self.down(&Arg::Staged(drow), BufMut::Host(&mut rows));
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
        let (dx, dt, dl, dw) = (self.up(x), self.up_opt(t), self.up_opt(labels), self.up_opt(w));
        let (dp, dgx) = (self.up(probs), self.inout(&gx));
        launch!(self, T, "loss_backward", n; loss_code(kind), dy, self.ptr(&dx), self.ptr(&dt), self.ptr(&dl), self.ptr(&dp), self.ptr(&dw), w.is_some() as i32, n as i64, c as i64, self.ptr(&dgx));
        self.down(&dgx, gx);
    }

    fn max_pool2d(&self, g: &Window, x: Buf<T>, y: BufMut<T>, arg: BufMut<u32>) {
        self.count("max_pool2d");
        let (dx, dy, da) = (self.up(x), self.out(&y), self.out(&arg));
        launch!(self, T, "max_pool", y.len(); Win::from(g), self.ptr(&dx), self.ptr(&dy), self.ptr(&da));
        self.down(&da, arg);
        self.down(&dy, y);
    }

    fn max_pool2d_backward(&self, _g: &Window, gy: Buf<T>, arg: Buf<u32>, gx: BufMut<T>, overwrite: bool) {
        self.count("max_pool2d_backward");
        let dgx = if overwrite {
            let d = self.out(&gx);
            self.zero(&d, gx.len());
            d
        } else {
            self.inout(&gx)
        };
        let (dgy, da) = (self.up(gy), self.up(arg));
        launch!(self, T, "max_pool_backward", gy.len(); self.ptr(&dgy), self.ptr(&da), gy.len() as i64, self.ptr(&dgx));
        self.down(&dgx, gx);
    }

    fn avg_pool2d(&self, g: &Window, x: Buf<T>, y: BufMut<T>) {
        self.count("avg_pool2d");
        let (dx, dy) = (self.up(x), self.out(&y));
        launch!(self, T, "avg_pool", y.len(); Win::from(g), self.ptr(&dx), self.ptr(&dy));
        self.down(&dy, y);
    }

    fn avg_pool2d_backward(&self, g: &Window, gy: Buf<T>, gx: BufMut<T>) {
        self.count("avg_pool2d_backward");
        let (dgy, dgx) = (self.up(gy), self.inout(&gx));
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
        let (dx, dg, db) = (self.up(x), self.up(gamma), self.up(beta));
        let (dmm, dmv) = (self.up_opt(stats.map(|s| s.0)), self.up_opt(stats.map(|s| s.1)));
        let (ds, dy) = (self.out(&saved), self.out(&y));
        let m = x.len() / c.max(1);
        launch!(self, T, "batch_norm_stats", c; self.ptr(&dx), m as i64, c as i64, self.ptr(&dmm), self.ptr(&dmv), stats.is_some() as i32, eps, self.ptr(&ds));
        launch!(self, T, "batch_norm", x.len(); self.ptr(&dx), self.ptr(&dg), self.ptr(&db), self.ptr(&ds), x.len() as i64, c as i64, self.ptr(&dy));
        self.down(&ds, saved);
        self.down(&dy, y);
    }

    fn batch_norm_sums(&self, x: Buf<T>, gy: Buf<T>, saved: Buf<T>, c: usize, sums: BufMut<T>) {
        self.count("batch_norm_sums");
        let (dx, dgy, ds, dsum) = (self.up(x), self.up(gy), self.up(saved), self.out(&sums));
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
        let (dx, dgy, dg) = (self.up(x), self.up(gy), self.up(gamma));
        let (ds, dsum, dgx) = (self.up(saved), self.up(sums), self.inout(&gx));
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
        let (dgm, ds, dsum, dg) = (self.up(gamma), self.up(saved), self.up(sums), self.inout(&g));
        launch!(self, T, "batch_norm_backward_stat", c; variance as i32, self.ptr(&dgm), self.ptr(&ds), self.ptr(&dsum), c as i64, self.ptr(&dg));
        self.down(&dg, g);
    }

    fn layer_norm(&self, x: Buf<T>, gamma: Buf<T>, beta: Buf<T>, eps: f64, d: usize, saved: BufMut<T>, y: BufMut<T>) {
        self.count("layer_norm");
        let rows = x.len() / d.max(1);
        let (dx, dg, db) = (self.up(x), self.up(gamma), self.up(beta));
        let (ds, dy) = (self.out(&saved), self.out(&y));
        launch!(self, T, "layer_norm", rows; self.ptr(&dx), self.ptr(&dg), self.ptr(&db), eps, rows as i64, d as i64, self.ptr(&ds), self.ptr(&dy));
        self.down(&ds, saved);
        self.down(&dy, y);
    }

    fn layer_norm_sums(&self, x: Buf<T>, gy: Buf<T>, saved: Buf<T>, d: usize, sums: BufMut<T>) {
        self.count("layer_norm_sums");
        let rows = x.len() / d.max(1);
        let (dx, dgy, ds, dsum) = (self.up(x), self.up(gy), self.up(saved), self.out(&sums));
        launch!(self, T, "layer_norm_sums", d; self.ptr(&dx), self.ptr(&dgy), self.ptr(&ds), rows as i64, d as i64, self.ptr(&dsum));
        self.down(&dsum, sums);
    }

    fn layer_norm_backward_x(&self, x: Buf<T>, gy: Buf<T>, gamma: Buf<T>, saved: Buf<T>, d: usize, gx: BufMut<T>) {
        self.count("layer_norm_backward_x");
        let rows = gx.len() / d.max(1);
        let (dx, dgy, dg) = (self.up(x), self.up(gy), self.up(gamma));
        let (ds, dgx) = (self.up(saved), self.inout(&gx));
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
        let (dq, dk, dv, db) = (self.up(q), self.up(k), self.up(v), self.up(bias));
        let (b, t, heads, dh) = (d.b as i64, d.t as i64, d.heads as i64, d.dh as i64);
        let dp = match &p {
            Some(p) => self.out(p),
            None => Arg::Staged(self.zeros::<T>(d.b * d.heads * d.t * d.t)),
        };
        let dy = self.out(&y);
        launch!(self, T, "attention_probs", d.b * d.heads * d.t; self.ptr(&dq), self.ptr(&dk), self.ptr(&db), b, t, heads, dh, d.causal as i32, self.ptr(&dp));
        launch!(self, T, "attention_out", y.len(); self.ptr(&dp), self.ptr(&dv), b, t, heads, dh, d.drop, d.seed, d.keep_scale(), self.ptr(&dy));
        if let Some(p) = p {
            self.down(&dp, p);
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
        let (dq, dk, dv) = (self.up(q), self.up(k), self.up(v));
        let (dp, dgy) = (self.up(p), self.up(gy));
        let (b, t, heads, dh) = (d.b as i64, d.t as i64, d.heads as i64, d.dh as i64);
        let (dds, dgr) = (self.zeros::<T>(d.b * d.heads * d.t * d.t), self.out(&grads));
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
        let f = w.len() / g.patch();
        let (dx, dw, db) = (self.up(x), self.up(w), self.up_opt(b));
        let cols = self.dev_im2col::<T>(g, self.ptr(&dx));
        let dy = self.out(&y);
        let bias = b.map(|_| self.ptr(&db));
        self.dev_conv_out::<T>(g, f, self.ptr(&cols), self.ptr(&dw), bias, act, self.ptr(&dy));
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
        let f = w.len() / g.patch();
        let (dx, dw, dy, dgy) = (self.up(x), self.up(w), self.up(y), self.up(gy));
        let need_z = act.is_some_and(|a| a.needs_input());
        let cols = (need_w_b.0 || need_z).then(|| self.dev_im2col::<T>(g, self.ptr(&dx)));
        // dz = dy ⊙ act'(z), z recomputed from the patches when the derivative needs it.
        let dz = match act {
            None => None,
            Some(a) => {
                let z = self.zeros::<T>(if need_z { y.len() } else { 1 });
                if let Some(cols) = cols.as_ref().filter(|_| need_z) {
                    let db = self.up_opt(b);
                    let bias = b.map(|_| self.ptr(&db));
                    self.dev_conv_out::<T>(g, f, self.ptr(cols), self.ptr(&dw), bias, None, self.ptr(&z));
                }
                let dz = self.zeros::<T>(y.len());
                let (code, p) = unary_code(a);
                let zp = if need_z { self.ptr(&z) } else { self.ptr(&dy) };
                launch!(self, T, "unary_backward", y.len(); code, p, self.ptr(&dgy), zp, self.ptr(&dy), self.ptr(&dz), y.len() as i64, 0i32);
                Some(dz)
            }
        };
        let pdz = dz.as_ref().map_or(self.ptr(&dgy), |d| self.ptr(d));
        self.conv_grads_into::<T>(g, f, pdz, cols.as_ref(), self.ptr(&dw), need_w_b, gx, dwb);
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
        let f = w.len() / g.patch();
        let (dx, dw, db) = (self.up(x), self.up(w), self.up_opt(b));
        let cols = self.dev_im2col::<T>(g, self.ptr(&dx));
        let rows = g.rows();
        // z = cols·w + b, and a = act(z) beside it when there is an activation: the pool reads a (else z) and,
        // for zs, z.
        let z = self.zeros::<T>(rows * f);
        let bias = b.map(|_| self.ptr(&db));
        self.dev_conv_out::<T>(g, f, self.ptr(&cols), self.ptr(&dw), bias, None, self.ptr(&z));
        let a = act.map(|op| {
            let a = self.zeros::<T>(rows * f);
            let (code, p) = unary_code(op);
            launch!(self, T, "unary", rows * f; code, p, self.ptr(&z), self.ptr(&a), (rows * f) as i64);
            a
        });
        let pa = a.as_ref().map_or(self.ptr(&z), |a| self.ptr(a));
        let (dy, darg) = (self.out(&y), self.out(&arg));
        let dzs = self.out_opt(&zs);
        launch!(self, T, "conv_max_pool", y.len(); Win::from(g), f as i64, ph as i64, pw as i64, pa, self.ptr(&z), self.ptr(&dy), self.ptr(&darg), self.ptr(&dzs), zs.is_some() as i32);
        if let Some(zs) = zs {
            self.down(&dzs, zs);
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
        let f = w.len() / g.patch();
        let needs_input = act.is_some_and(|a| a.needs_input());
        let (dx, dw, dy, dgy) = (self.up(x), self.up(w), self.up(y), self.up(gy));
        let dzs = self.up(if needs_input { zs } else { Buf::Host(&[]) });
        let darg = self.up(arg);
        let dz = self.zeros::<T>(g.rows() * f);
        let (op, p) = act_code(act);
        launch!(self, T, "conv_max_pool_dz", y.len(); op, p, self.ptr(&dgy), self.ptr(&dy), self.ptr(&dzs), self.ptr(&darg), y.len() as i64, needs_input as i32, self.ptr(&dz));
        let cols = need_w_b.0.then(|| self.dev_im2col::<T>(g, self.ptr(&dx)));
        self.conv_grads_into::<T>(g, f, self.ptr(&dz), cols.as_ref(), self.ptr(&dw), need_w_b, gx, dwb);
    }

    fn can_update(&self, _u: &Update) -> bool {
        true
    }

    fn update(&self, u: Update, w: BufMut<T>, g: Buf<T>, s1: BufMut<T>, s2: BufMut<T>) {
        self.optimizer_step(u, w, g, s1, s2)
    }

    fn matmul_q(&self, w: &QMatrix, x: Buf<T>, n: usize, y: BufMut<T>) -> Result<()> {
        // On the CPU, so device views go through host copies.
        let cpu = self.fallback("matmul_q");
        let xh;
        let x = match x {
            Buf::Host(h) => h,
            Buf::Dev(d) => {
                xh = {
                    let mut v = vec![T::ZERO; d.len];
                    self.engine.down_from(d.ptr, &mut v);
                    v
                };
                &xh[..]
            }
        };
        match y {
            BufMut::Host(h) => cpu.matmul_q(w, Buf::Host(x), n, BufMut::Host(h)),
            BufMut::Dev(d) => {
                let mut yh = vec![T::ZERO; d.len];
                cpu.matmul_q(w, Buf::Host(x), n, BufMut::Host(&mut yh))?;
                let staged = self.up(Buf::Host(&yh));
                self.down(&staged, BufMut::Dev(d));
                Ok(())
            }
        }
    }
}
