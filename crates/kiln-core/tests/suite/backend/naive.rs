//! `Naive`, the second backend of backend.rs's tests: products, elementwise ops, softmax, movement and
//! reductions as its own plain loops, the kernels whose formulas are the kernels (losses, pooling, batch norm)
//! handed to `Cpu`, and a count of every call by kernel name.

use kiln_core::backend::Window;
use kiln_core::backend::{Backend, Buf, BufMut, MatView, Workspace};
use kiln_core::ops::{AttentionDims, RnnDims, RnnStep, RnnStepGrad, RnnStepOut};
use kiln_core::quant::QMatrix;
use kiln_core::{BinaryOp, Cpu, LossKind, MAX_RANK, ReduceOp, Result, Shape, UnaryOp};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Kernel calls by name, so a test can tell that an op went through the backend.
#[derive(Debug)]
pub(super) struct Naive {
    pub(super) calls: [AtomicUsize; NAMES.len()],
}

// By hand: the standard library derives Default for arrays of at most 32.
impl Default for Naive {
    fn default() -> Self {
        Naive { calls: std::array::from_fn(|_| AtomicUsize::new(0)) }
    }
}

const NAMES: [&str; 40] = [
    "gemm",
    "bias_act",
    "unary",
    "unary_backward",
    "col_sum_add",
    "binary",
    "binary_backward",
    "softmax",
    "softmax_backward",
    "copy_blocks",
    "permute",
    "permute_backward",
    "gather",
    "scatter_add",
    "reduce",
    "reduce_backward",
    "loss",
    "loss_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "batch_norm",
    "batch_norm_sums",
    "batch_norm_backward_x",
    "batch_norm_backward_stat",
    "matmul_q",
    "conv2d",
    "conv2d_backward",
    "conv2d_max_pool",
    "conv2d_max_pool_backward",
    "rnn_step",
    "rnn_step_backward",
    "embedding_bag",
    "embedding_bag_backward",
    "layer_norm",
    "layer_norm_sums",
    "layer_norm_backward_x",
    "attention",
    "attention_backward",
];

/// The CPU backend, for the kernels `Naive` hands on (losses, pooling, batch norm, convolution: their
/// formulas are the kernels themselves, so what matters here is that the ops call them through the backend).
const CPU: Cpu = Cpu;

/// The multi-index of flat index `i` in shape `s`.
fn coords(s: Shape, mut i: usize) -> Vec<usize> {
    let mut c = vec![0; s.rank()];
    for d in (0..s.rank()).rev() {
        c[d] = i % s.dim(d);
        i /= s.dim(d);
    }
    c
}

fn flat(s: Shape, c: &[usize]) -> usize {
    c.iter().enumerate().fold(0, |acc, (d, &x)| acc * s.dim(d) + x)
}

/// The input index read by output element `o` of x (shape `s`) permuted by `perm`.
fn permuted_source(s: Shape, perm: [u8; MAX_RANK], o: usize) -> usize {
    let dims: Vec<usize> = (0..s.rank()).map(|i| s.dim(perm[i] as usize)).collect();
    let out = Shape::new(&dims).unwrap();
    let oc = coords(out, o);
    let mut ic = vec![0; s.rank()];
    for (i, &c) in oc.iter().enumerate() {
        ic[perm[i] as usize] = c;
    }
    flat(s, &ic)
}

impl Naive {
    fn hit(&self, name: &str) {
        let i = NAMES.iter().position(|n| *n == name).expect("known kernel");
        self.calls[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count(&self, name: &str) -> usize {
        self.calls[NAMES.iter().position(|n| *n == name).unwrap()].load(Ordering::Relaxed)
    }
}

/// Element of `out`'s flat index `i` read from an input of shape `s` broadcast to `out`.
fn broadcast_index(out: Shape, s: Shape, mut i: usize) -> usize {
    let (r, rs) = (out.rank(), s.rank());
    let mut idx = 0;
    let mut stride = 1;
    for d in (0..r).rev() {
        let coord = i % out.dim(d);
        i /= out.dim(d);
        if d + rs >= r {
            let sd = s.dim(d + rs - r);
            if sd != 1 {
                idx += coord * stride;
            }
            stride *= sd;
        }
    }
    idx
}

impl Backend<f64> for Naive {
    fn name(&self) -> &'static str {
        "naive"
    }

    fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        out: BufMut<f64>,
        out_offset: usize,
        a: MatView<f64>,
        b: MatView<f64>,
        accumulate: bool,
    ) {
        self.hit("gemm");
        let (out, va, vb) = (out.host(), a.buf.host(), b.buf.host());
        for r in 0..m {
            for c in 0..n {
                let s: f64 =
                    (0..k).map(|j| va[a.offset + r * a.rs + j * a.cs] * vb[b.offset + j * b.rs + c * b.cs]).sum();
                let o = &mut out[out_offset + r * n + c];
                *o = if accumulate { *o + s } else { s };
            }
        }
    }

    fn bias_act(
        &self,
        y: BufMut<f64>,
        cols: usize,
        bias: Option<Buf<f64>>,
        act: Option<UnaryOp>,
        keep_z: Option<BufMut<f64>>,
    ) {
        self.hit("bias_act");
        let y = y.host();
        if let Some(b) = bias {
            let b = b.host();
            for (i, v) in y.iter_mut().enumerate() {
                *v += b[i % cols];
            }
        }
        if let Some(z) = keep_z {
            z.host().copy_from_slice(y);
        }
        if let Some(op) = act {
            y.iter_mut().for_each(|v| *v = op.apply(*v));
        }
    }

    fn unary(&self, op: UnaryOp, x: Buf<f64>, y: BufMut<f64>) {
        self.hit("unary");
        for (y, &x) in y.host().iter_mut().zip(x.host()) {
            *y = op.apply(x);
        }
    }

    fn unary_backward(&self, op: UnaryOp, gy: Buf<f64>, x: Buf<f64>, y: Buf<f64>, gx: BufMut<f64>, accumulate: bool) {
        self.hit("unary_backward");
        let (gy, x, y) = (gy.host(), x.host(), y.host());
        for (i, g) in gx.host().iter_mut().enumerate() {
            let d = gy[i] * op.deriv(x[i], y[i]);
            *g = if accumulate { *g + d } else { d };
        }
    }

    fn col_sum_add(&self, out: BufMut<f64>, x: Buf<f64>, cols: usize) {
        self.hit("col_sum_add");
        let out = out.host();
        for (i, &v) in x.host().iter().enumerate() {
            out[i % cols] += v;
        }
    }

    fn binary(&self, op: BinaryOp, out: Shape, a: Buf<f64>, sa: Shape, b: Buf<f64>, sb: Shape, y: BufMut<f64>) {
        self.hit("binary");
        let (a, b) = (a.host(), b.host());
        for (i, y) in y.host().iter_mut().enumerate() {
            *y = op.apply(a[broadcast_index(out, sa, i)], b[broadcast_index(out, sb, i)]);
        }
    }

    fn binary_backward(
        &self,
        op: BinaryOp,
        wrt_b: bool,
        out: Shape,
        gy: Buf<f64>,
        a: Buf<f64>,
        sa: Shape,
        b: Buf<f64>,
        sb: Shape,
        g: BufMut<f64>,
    ) {
        self.hit("binary_backward");
        let (gy, a, b, g) = (gy.host(), a.host(), b.host(), g.host());
        for (i, &dy) in gy.iter().enumerate() {
            let (ia, ib) = (broadcast_index(out, sa, i), broadcast_index(out, sb, i));
            let (pa, pb) = op.partials(a[ia], b[ib]);
            if wrt_b {
                g[ib] += dy * pb;
            } else {
                g[ia] += dy * pa;
            }
        }
    }

    fn softmax(&self, x: Buf<f64>, y: BufMut<f64>, (outer, n, inner): (usize, usize, usize), log: bool) {
        self.hit("softmax");
        let (x, y) = (x.host(), y.host());
        for o in 0..outer {
            for j in 0..inner {
                let at = |k: usize| (o * n + k) * inner + j;
                let m = (0..n).map(|k| x[at(k)]).fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = (0..n).map(|k| (x[at(k)] - m).exp()).sum();
                for k in 0..n {
                    y[at(k)] = if log { x[at(k)] - m - s.ln() } else { (x[at(k)] - m).exp() / s };
                }
            }
        }
    }

    fn softmax_backward(
        &self,
        gy: Buf<f64>,
        y: Buf<f64>,
        gx: BufMut<f64>,
        (outer, n, inner): (usize, usize, usize),
        log: bool,
    ) {
        self.hit("softmax_backward");
        let (gy, y, gx) = (gy.host(), y.host(), gx.host());
        for o in 0..outer {
            for j in 0..inner {
                let at = |k: usize| (o * n + k) * inner + j;
                // The Jacobian written out: ∂y_k/∂x_l = p_k (δ_kl − p_l) for softmax, δ_kl − p_l for log_softmax.
                let p: Vec<f64> = (0..n).map(|k| if log { y[at(k)].exp() } else { y[at(k)] }).collect();
                for l in 0..n {
                    let mut s = 0.0;
                    for k in 0..n {
                        let delta = if k == l { 1.0 } else { 0.0 };
                        let jac = if log { delta - p[l] } else { p[k] * (delta - p[l]) };
                        s += gy[at(k)] * jac;
                    }
                    gx[at(l)] += s;
                }
            }
        }
    }

    fn copy_blocks(
        &self,
        src: Buf<f64>,
        (s0, ss): (usize, usize),
        dst: BufMut<f64>,
        (d0, ds): (usize, usize),
        blocks: usize,
        len: usize,
        accumulate: bool,
    ) {
        self.hit("copy_blocks");
        let (src, dst) = (src.host(), dst.host());
        for i in 0..blocks {
            for j in 0..len {
                let v = src[s0 + i * ss + j];
                let d = &mut dst[d0 + i * ds + j];
                *d = if accumulate { *d + v } else { v };
            }
        }
    }

    fn permute(&self, x: Buf<f64>, s: Shape, perm: [u8; MAX_RANK], y: BufMut<f64>) {
        self.hit("permute");
        let x = x.host();
        for (o, y) in y.host().iter_mut().enumerate() {
            *y = x[permuted_source(s, perm, o)];
        }
    }

    fn permute_backward(&self, gy: Buf<f64>, s: Shape, perm: [u8; MAX_RANK], gx: BufMut<f64>) {
        self.hit("permute_backward");
        let gx = gx.host();
        for (o, &g) in gy.host().iter().enumerate() {
            gx[permuted_source(s, perm, o)] += g;
        }
    }

    fn gather(&self, x: Buf<f64>, idx: Buf<u32>, (outer, n, inner): (usize, usize, usize), y: BufMut<f64>) {
        self.hit("gather");
        let (x, idx, y) = (x.host(), idx.host(), y.host());
        for o in 0..outer {
            for (k, &ix) in idx.iter().enumerate() {
                for j in 0..inner {
                    y[(o * idx.len() + k) * inner + j] = x[(o * n + ix as usize) * inner + j];
                }
            }
        }
    }

    fn scatter_add(&self, gy: Buf<f64>, idx: Buf<u32>, (outer, n, inner): (usize, usize, usize), gx: BufMut<f64>) {
        self.hit("scatter_add");
        let (gy, idx, gx) = (gy.host(), idx.host(), gx.host());
        for o in 0..outer {
            for (k, &ix) in idx.iter().enumerate() {
                for j in 0..inner {
                    gx[(o * n + ix as usize) * inner + j] += gy[(o * idx.len() + k) * inner + j];
                }
            }
        }
    }

    fn reduce(
        &self,
        op: ReduceOp,
        x: Buf<f64>,
        y: BufMut<f64>,
        arg: Option<BufMut<u32>>,
        (outer, n, inner): (usize, usize, usize),
    ) {
        self.hit("reduce");
        let (x, y, mut arg) = (x.host(), y.host(), arg.map(BufMut::host));
        for o in 0..outer {
            for j in 0..inner {
                let lane: Vec<f64> = (0..n).map(|k| x[(o * n + k) * inner + j]).collect();
                let r = o * inner + j;
                y[r] = match op {
                    ReduceOp::Sum => lane.iter().sum(),
                    ReduceOp::Mean => lane.iter().sum::<f64>() / n as f64,
                    ReduceOp::Max => {
                        let k = (0..n).fold(0, |b, k| if lane[k] > lane[b] { k } else { b });
                        if let Some(a) = arg.as_deref_mut() {
                            a[r] = k as u32;
                        }
                        lane[k]
                    }
                };
            }
        }
    }

    fn reduce_backward(
        &self,
        op: ReduceOp,
        gy: Buf<f64>,
        arg: Buf<u32>,
        gx: BufMut<f64>,
        (outer, n, inner): (usize, usize, usize),
    ) {
        self.hit("reduce_backward");
        let (gy, arg, gx) = (gy.host(), arg.host(), gx.host());
        for o in 0..outer {
            for j in 0..inner {
                let r = o * inner + j;
                for k in 0..n {
                    gx[(o * n + k) * inner + j] += match op {
                        ReduceOp::Sum => gy[r],
                        ReduceOp::Mean => gy[r] / n as f64,
                        ReduceOp::Max => {
                            if arg[r] as usize == k {
                                gy[r]
                            } else {
                                0.0
                            }
                        }
                    };
                }
            }
        }
    }

    fn embedding_bag(&self, table: Buf<f64>, ids: Buf<u32>, w: Buf<f64>, dims: (usize, usize, usize), y: BufMut<f64>) {
        self.hit("embedding_bag");
        let (n, len, d) = dims;
        let (table, ids, w, y) = (table.host(), ids.host(), w.host(), y.host());
        for b in 0..n {
            for j in 0..d {
                y[b * d + j] = (0..len).map(|l| w[b * len + l] * table[ids[b * len + l] as usize * d + j]).sum();
            }
        }
    }

    fn embedding_bag_backward(
        &self,
        gy: Buf<f64>,
        ids: Buf<u32>,
        w: Buf<f64>,
        dims: (usize, usize, usize),
        gtable: BufMut<f64>,
    ) {
        self.hit("embedding_bag_backward");
        let (n, len, d) = dims;
        let (gy, ids, w, gt) = (gy.host(), ids.host(), w.host(), gtable.host());
        for k in 0..n * len {
            for j in 0..d {
                gt[ids[k] as usize * d + j] += w[k] * gy[(k / len) * d + j];
            }
        }
    }

    fn rnn_step(&self, d: RnnDims, step: RnnStep<f64>, out: RnnStepOut<f64>) {
        self.hit("rnn_step");
        CPU.rnn_step(d, step, out)
    }

    fn rnn_step_backward(&self, d: RnnDims, grad: RnnStepGrad<f64>) {
        self.hit("rnn_step_backward");
        CPU.rnn_step_backward(d, grad)
    }

    fn loss(
        &self,
        kind: LossKind,
        x: Buf<f64>,
        t: Option<Buf<f64>>,
        labels: Option<Buf<u32>>,
        w: Option<Buf<f64>>,
        rows_cols: (usize, usize),
        probs: Option<BufMut<f64>>,
    ) -> f64 {
        self.hit("loss");
        CPU.loss(kind, x, t, labels, w, rows_cols, probs)
    }

    fn loss_backward(
        &self,
        kind: LossKind,
        dy: f64,
        x: Buf<f64>,
        t: Option<Buf<f64>>,
        labels: Option<Buf<u32>>,
        probs: Buf<f64>,
        w: Option<Buf<f64>>,
        rows_cols: (usize, usize),
        gx: BufMut<f64>,
    ) {
        self.hit("loss_backward");
        CPU.loss_backward(kind, dy, x, t, labels, probs, w, rows_cols, gx)
    }

    fn max_pool2d(&self, g: &Window, x: Buf<f64>, y: BufMut<f64>, arg: BufMut<u32>) {
        self.hit("max_pool2d");
        CPU.max_pool2d(g, x, y, arg)
    }

    fn max_pool2d_backward(&self, g: &Window, gy: Buf<f64>, arg: Buf<u32>, gx: BufMut<f64>, overwrite: bool) {
        self.hit("max_pool2d_backward");
        CPU.max_pool2d_backward(g, gy, arg, gx, overwrite)
    }

    fn avg_pool2d(&self, g: &Window, x: Buf<f64>, y: BufMut<f64>) {
        self.hit("avg_pool2d");
        CPU.avg_pool2d(g, x, y)
    }

    fn avg_pool2d_backward(&self, g: &Window, gy: Buf<f64>, gx: BufMut<f64>) {
        self.hit("avg_pool2d_backward");
        CPU.avg_pool2d_backward(g, gy, gx)
    }

    fn batch_norm(
        &self,
        x: Buf<f64>,
        gamma: Buf<f64>,
        beta: Buf<f64>,
        stats: Option<(Buf<f64>, Buf<f64>)>,
        eps: f64,
        c: usize,
        saved: BufMut<f64>,
        y: BufMut<f64>,
    ) {
        self.hit("batch_norm");
        CPU.batch_norm(x, gamma, beta, stats, eps, c, saved, y)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: Buf<f64>,
        k: Buf<f64>,
        v: Buf<f64>,
        bias: Buf<f64>,
        dims: AttentionDims,
        p: Option<BufMut<f64>>,
        y: BufMut<f64>,
    ) {
        self.hit("attention");
        CPU.attention(q, k, v, bias, dims, p, y)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        q: Buf<f64>,
        k: Buf<f64>,
        v: Buf<f64>,
        p: Buf<f64>,
        gy: Buf<f64>,
        dims: AttentionDims,
        grads: BufMut<f64>,
    ) {
        self.hit("attention_backward");
        CPU.attention_backward(q, k, v, p, gy, dims, grads)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_norm(&self, x: Buf<f64>, g: Buf<f64>, b: Buf<f64>, eps: f64, d: usize, s: BufMut<f64>, y: BufMut<f64>) {
        self.hit("layer_norm");
        CPU.layer_norm(x, g, b, eps, d, s, y)
    }

    fn layer_norm_sums(&self, x: Buf<f64>, gy: Buf<f64>, saved: Buf<f64>, d: usize, sums: BufMut<f64>) {
        self.hit("layer_norm_sums");
        CPU.layer_norm_sums(x, gy, saved, d, sums)
    }

    fn layer_norm_backward_x(&self, x: Buf<f64>, gy: Buf<f64>, g: Buf<f64>, s: Buf<f64>, d: usize, gx: BufMut<f64>) {
        self.hit("layer_norm_backward_x");
        CPU.layer_norm_backward_x(x, gy, g, s, d, gx)
    }

    fn batch_norm_sums(&self, x: Buf<f64>, gy: Buf<f64>, saved: Buf<f64>, c: usize, sums: BufMut<f64>) {
        self.hit("batch_norm_sums");
        CPU.batch_norm_sums(x, gy, saved, c, sums)
    }

    fn batch_norm_backward_x(
        &self,
        x: Buf<f64>,
        gy: Buf<f64>,
        gamma: Buf<f64>,
        saved: Buf<f64>,
        sums: Buf<f64>,
        c: usize,
        given_stats: bool,
        gx: BufMut<f64>,
    ) {
        self.hit("batch_norm_backward_x");
        CPU.batch_norm_backward_x(x, gy, gamma, saved, sums, c, given_stats, gx)
    }

    fn batch_norm_backward_stat(
        &self,
        variance: bool,
        gamma: Buf<f64>,
        saved: Buf<f64>,
        sums: Buf<f64>,
        c: usize,
        g: BufMut<f64>,
    ) {
        self.hit("batch_norm_backward_stat");
        CPU.batch_norm_backward_stat(variance, gamma, saved, sums, c, g)
    }

    fn conv2d(
        &self,
        g: &Window,
        x: Buf<f64>,
        w: Buf<f64>,
        b: Option<Buf<f64>>,
        act: Option<UnaryOp>,
        y: BufMut<f64>,
        ws: &mut Workspace<f64>,
    ) {
        self.hit("conv2d");
        CPU.conv2d(g, x, w, b, act, y, ws)
    }

    fn conv2d_backward(
        &self,
        g: &Window,
        x: Buf<f64>,
        w: Buf<f64>,
        b: Option<Buf<f64>>,
        act: Option<UnaryOp>,
        y: Buf<f64>,
        gy: Buf<f64>,
        gx: Option<BufMut<f64>>,
        dwb: BufMut<f64>,
        need_w_b: (bool, bool),
        ws: &mut Workspace<f64>,
    ) {
        self.hit("conv2d_backward");
        CPU.conv2d_backward(g, x, w, b, act, y, gy, gx, dwb, need_w_b, ws)
    }

    fn conv2d_max_pool(
        &self,
        g: &Window,
        pool: (usize, usize),
        x: Buf<f64>,
        w: Buf<f64>,
        b: Option<Buf<f64>>,
        act: Option<UnaryOp>,
        y: BufMut<f64>,
        arg: BufMut<u32>,
        zs: Option<BufMut<f64>>,
        ws: &mut Workspace<f64>,
    ) {
        self.hit("conv2d_max_pool");
        CPU.conv2d_max_pool(g, pool, x, w, b, act, y, arg, zs, ws)
    }

    fn conv2d_max_pool_backward(
        &self,
        g: &Window,
        pool: (usize, usize),
        x: Buf<f64>,
        w: Buf<f64>,
        b: Option<Buf<f64>>,
        act: Option<UnaryOp>,
        y: Buf<f64>,
        arg: Buf<u32>,
        zs: Buf<f64>,
        gy: Buf<f64>,
        gx: Option<BufMut<f64>>,
        dwb: BufMut<f64>,
        need_w_b: (bool, bool),
        ws: &mut Workspace<f64>,
    ) {
        self.hit("conv2d_max_pool_backward");
        CPU.conv2d_max_pool_backward(g, pool, x, w, b, act, y, arg, zs, gy, gx, dwb, need_w_b, ws)
    }

    fn matmul_q(&self, w: &QMatrix, x: Buf<f64>, n: usize, y: BufMut<f64>) -> Result<()> {
        self.hit("matmul_q");
        CPU.matmul_q(w, x, n, y)
    }
}
