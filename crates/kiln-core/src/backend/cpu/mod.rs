//! The CPU backend: the kernels on host slices (this file dispatches; the longer loops are in the files
//! beside it). Products go to `gemm.rs` (kiln's AVX-512 kernel for
//! f32, the `gemm` crate otherwise); the elementwise loops run under `simd::vectorized`, so they are
//! compiled for AVX-512 where the processor has it.

pub(crate) mod attention;
mod conv;
mod conv_pool;
mod conv_pool_direct;
pub(crate) mod gemm;
mod layer_norm;
mod loss;
mod movement;
mod norm;
mod pool;
mod recurrent;
pub(crate) mod sgemm;

use super::{Backend, Buf, BufMut, MatView, Workspace};
use crate::ops::{BinaryOp, LossKind, ReduceOp, RnnDims, RnnStep, RnnStepGrad, RnnStepOut, UnaryOp, Window};
use crate::quant::QMatrix;
use crate::{Error, Float, MAX_RANK, Result, Shape};
use gemm::{Mat, gemm};
use rayon::prelude::*;

/// Rows of `d` values per parallel piece of a row or elementwise loop (layer norm, bias + activation, unary
/// ops and their backward; a MiniLM batch's GELU is 32 texts x 40 tokens x 1536 values): one piece per
/// thread once there are `par::MIN_PARALLEL_WORK` values, else all rows in one, decided by `par::parts_for`
/// so that `ops::set_num_threads` and `par::set_min_parallel_work` govern these loops as they do the rest.
fn rows_per_piece(rows: usize, d: usize) -> usize {
    rows.div_ceil(crate::par::parts_for(rows, d)).max(1)
}

/// The host processor, with rayon's threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

/// The host slice of an optional view, empty when there is none (the loss kernels' "not given").
fn host_or_empty<T>(b: Option<Buf<'_, T>>) -> &[T] {
    b.map_or(&[][..], Buf::host)
}

fn mat<'a, T>(v: MatView<'a, T>) -> Mat<'a, T> {
    Mat { data: &v.buf.host()[v.offset..], rs: v.rs, cs: v.cs }
}

impl<T: Float> Backend<T> for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
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
        gemm(m, n, k, &mut out.host()[out_offset..], mat(a), mat(b), accumulate);
    }

    fn prepacks_for(&self, rows: usize) -> bool {
        sgemm::packs_for(rows)
    }

    fn prepack(&self, w: &[T], k: usize, n: usize) -> Option<super::Prepacked> {
        let w = crate::simd::as_f32(w)?;
        (w.len() == k * n).then(|| sgemm::pack(Mat::rows(w, n), k, n)).flatten().map(super::Prepacked)
    }

    fn gemm_prepacked(
        &self,
        m: usize,
        n: usize,
        k: usize,
        out: BufMut<T>,
        out_offset: usize,
        a: MatView<T>,
        w: MatView<T>,
        packed: &super::Prepacked,
        accumulate: bool,
    ) {
        let p = &packed.0;
        let am = mat(a);
        match crate::simd::as_f32(am.data) {
            Some(ad) if (p.k(), p.n()) == (k, n) => {
                let out = crate::simd::as_f32_mut(&mut out.host()[out_offset..]).expect("T is f32, as a's view showed");
                gemm::gemm_packed(m, out, Mat { data: ad, rs: am.rs, cs: am.cs }, p, accumulate)
            }
            _ => self.gemm(m, n, k, out, out_offset, a, w, accumulate),
        }
    }

    fn bias_act(
        &self,
        y: BufMut<T>,
        cols: usize,
        bias: Option<Buf<T>>,
        act: Option<UnaryOp>,
        keep_z: Option<BufMut<T>>,
    ) {
        if bias.is_none() && act.is_none() {
            return; // nothing to add or apply (a product without bias or activation)
        }
        let (y, bias, keep_z) = (y.host(), bias.map(Buf::host), keep_z.map(BufMut::host));
        let cols = cols.max(1);
        let per = rows_per_piece(y.len() / cols, cols) * cols;
        match keep_z {
            _ if y.len() <= per => bias_act(y, cols, bias, act, keep_z),
            Some(z) => y
                .par_chunks_mut(per)
                .zip(z.par_chunks_mut(per))
                .for_each(|(y, z)| bias_act(y, cols, bias, act, Some(z))),
            None => y.par_chunks_mut(per).for_each(|y| bias_act(y, cols, bias, act, None)),
        }
    }

    fn unary(&self, op: UnaryOp, x: Buf<T>, y: BufMut<T>) {
        let (x, y) = (x.host(), y.host());
        assert_eq!(x.len(), y.len(), "unary: input and output lengths");
        let per = rows_per_piece(y.len(), 1);
        if y.len() <= per {
            op.apply_slice(x, y);
        } else {
            y.par_chunks_mut(per).zip(x.par_chunks(per)).for_each(|(y, x)| op.apply_slice(x, y));
        }
    }

    fn unary_backward(&self, op: UnaryOp, gy: Buf<T>, x: Buf<T>, y: Buf<T>, gx: BufMut<T>, accumulate: bool) {
        let (gy, x, y, gx) = (gy.host(), x.host(), y.host(), gx.host());
        assert!(gy.len() == gx.len() && x.len() == gx.len() && y.len() == gx.len(), "unary_backward lengths");
        let s = rows_per_piece(gx.len(), 1);
        if gx.len() <= s {
            op.deriv_slice(gy, x, y, gx, accumulate);
        } else {
            gx.par_chunks_mut(s)
                .zip(gy.par_chunks(s))
                .zip(x.par_chunks(s).zip(y.par_chunks(s)))
                .for_each(|((gx, gy), (x, y))| op.deriv_slice(gy, x, y, gx, accumulate));
        }
    }

    fn rnn_step(&self, d: RnnDims, step: RnnStep<T>, out: RnnStepOut<T>) {
        recurrent::step(d, step, out);
    }

    fn rnn_step_backward(&self, d: RnnDims, grad: RnnStepGrad<T>) {
        recurrent::step_backward(d, grad);
    }

    fn col_sum_add(&self, out: BufMut<T>, x: Buf<T>, cols: usize) {
        add_column_sums(out.host(), x.host(), cols);
    }

    fn binary(&self, op: BinaryOp, out: Shape, a: Buf<T>, sa: Shape, b: Buf<T>, sb: Shape, y: BufMut<T>) {
        let (va, vb, y) = (a.host(), b.host(), y.host());
        for_each_broadcast(out, sa, sb, |i, ia, ib| y[i] = op.apply(va[ia], vb[ib]));
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
        let (gy, va, vb, g) = (gy.host(), a.host(), b.host(), g.host());
        if wrt_b {
            for_each_broadcast(out, sa, sb, |i, ia, ib| g[ib] += gy[i] * op.partials(va[ia], vb[ib]).1);
        } else {
            for_each_broadcast(out, sa, sb, |i, ia, ib| g[ia] += gy[i] * op.partials(va[ia], vb[ib]).0);
        }
    }

    fn softmax(&self, x: Buf<T>, y: BufMut<T>, (outer, n, inner): (usize, usize, usize), log: bool) {
        softmax_lanes(x.host(), y.host(), outer, n, inner, log);
    }

    fn softmax_backward(
        &self,
        gy: Buf<T>,
        y: Buf<T>,
        gx: BufMut<T>,
        (outer, n, inner): (usize, usize, usize),
        log: bool,
    ) {
        let (gy, y, gx) = (gy.host(), y.host(), gx.host());
        for o in 0..outer {
            for j in 0..inner {
                let at = |k: usize| (o * n + k) * inner + j;
                if log {
                    let s: T = (0..n).map(|k| gy[at(k)]).sum();
                    for k in 0..n {
                        gx[at(k)] += gy[at(k)] - y[at(k)].exp() * s;
                    }
                } else {
                    let dot: T = (0..n).map(|k| gy[at(k)] * y[at(k)]).sum();
                    for k in 0..n {
                        gx[at(k)] += y[at(k)] * (gy[at(k)] - dot);
                    }
                }
            }
        }
    }

    fn copy_blocks(
        &self,
        src: Buf<T>,
        src_at: (usize, usize),
        dst: BufMut<T>,
        dst_at: (usize, usize),
        blocks: usize,
        len: usize,
        accumulate: bool,
    ) {
        movement::copy_blocks(src.host(), src_at, dst.host(), dst_at, blocks, len, accumulate);
    }

    fn permute(&self, x: Buf<T>, s: Shape, perm: [u8; MAX_RANK], y: BufMut<T>) {
        let (x, y) = (x.host(), y.host());
        movement::permute_walk(s, &perm, |o, i| y[o] = x[i]);
    }

    fn permute_backward(&self, gy: Buf<T>, s: Shape, perm: [u8; MAX_RANK], gx: BufMut<T>) {
        let (gy, gx) = (gy.host(), gx.host());
        movement::permute_walk(s, &perm, |o, i| gx[i] += gy[o]);
    }

    fn gather(&self, x: Buf<T>, idx: Buf<u32>, dims: (usize, usize, usize), y: BufMut<T>) {
        movement::gather(x.host(), idx.host(), dims, y.host());
    }

    fn scatter_add(&self, gy: Buf<T>, idx: Buf<u32>, dims: (usize, usize, usize), gx: BufMut<T>) {
        movement::scatter_add(gy.host(), idx.host(), dims, gx.host());
    }

    fn embedding_bag(&self, table: Buf<T>, ids: Buf<u32>, w: Buf<T>, dims: (usize, usize, usize), y: BufMut<T>) {
        movement::embedding_bag(table.host(), ids.host(), w.host(), dims, y.host());
    }

    fn embedding_bag_backward(
        &self,
        gy: Buf<T>,
        ids: Buf<u32>,
        w: Buf<T>,
        dims: (usize, usize, usize),
        gtable: BufMut<T>,
    ) {
        movement::embedding_bag_backward(gy.host(), ids.host(), w.host(), dims, gtable.host());
    }

    fn reduce(&self, op: ReduceOp, x: Buf<T>, y: BufMut<T>, arg: Option<BufMut<u32>>, dims: (usize, usize, usize)) {
        movement::reduce(op, x.host(), y.host(), arg.map(BufMut::host), dims);
    }

    fn reduce_backward(&self, op: ReduceOp, gy: Buf<T>, arg: Buf<u32>, gx: BufMut<T>, dims: (usize, usize, usize)) {
        movement::reduce_backward(op, gy.host(), arg.host(), gx.host(), dims);
    }

    fn loss(
        &self,
        kind: LossKind,
        x: Buf<T>,
        t: Option<Buf<T>>,
        labels: Option<Buf<u32>>,
        w: Option<Buf<T>>,
        rows_cols: (usize, usize),
        probs: Option<BufMut<T>>,
    ) -> T {
        let (t, labels, w) = (host_or_empty(t), host_or_empty(labels), host_or_empty(w));
        loss::forward(kind, x.host(), t, labels, w, rows_cols, probs.map(BufMut::host))
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
        rows_cols: (usize, usize),
        gx: BufMut<T>,
    ) {
        let (t, labels, w) = (host_or_empty(t), host_or_empty(labels), host_or_empty(w));
        loss::backward(kind, dy, x.host(), t, labels, probs.host(), w, rows_cols, gx.host());
    }

    fn max_pool2d(&self, g: &Window, x: Buf<T>, y: BufMut<T>, arg: BufMut<u32>) {
        pool::max_forward(g, x.host(), y.host(), arg.host());
    }

    fn max_pool2d_backward(&self, g: &Window, gy: Buf<T>, arg: Buf<u32>, gx: BufMut<T>, overwrite: bool) {
        pool::max_backward(g, gy.host(), arg.host(), gx.host(), overwrite);
    }

    fn avg_pool2d(&self, g: &Window, x: Buf<T>, y: BufMut<T>) {
        pool::avg_forward(g, x.host(), y.host());
    }

    fn avg_pool2d_backward(&self, g: &Window, gy: Buf<T>, gx: BufMut<T>) {
        pool::avg_backward(g, gy.host(), gx.host());
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
        let stats = stats.map(|(m, v)| (m.host(), v.host()));
        norm::forward(x.host(), gamma.host(), beta.host(), stats, eps, c, saved.host(), y.host());
    }

    fn attention(
        &self,
        q: Buf<T>,
        k: Buf<T>,
        v: Buf<T>,
        bias: Buf<T>,
        dims: crate::ops::AttentionDims,
        p: Option<BufMut<T>>,
        y: BufMut<T>,
    ) {
        attention::forward(q.host(), k.host(), v.host(), bias.host(), dims, p.map(|p| p.host()), y.host());
    }

    fn attention_backward(
        &self,
        q: Buf<T>,
        k: Buf<T>,
        v: Buf<T>,
        p: Buf<T>,
        gy: Buf<T>,
        dims: crate::ops::AttentionDims,
        grads: BufMut<T>,
    ) {
        attention::backward(q.host(), k.host(), v.host(), p.host(), gy.host(), dims, grads.host());
    }

    fn layer_norm(&self, x: Buf<T>, gamma: Buf<T>, beta: Buf<T>, eps: f64, d: usize, saved: BufMut<T>, y: BufMut<T>) {
        layer_norm::forward(x.host(), gamma.host(), beta.host(), eps, d, saved.host(), y.host());
    }

    fn layer_norm_sums(&self, x: Buf<T>, gy: Buf<T>, saved: Buf<T>, d: usize, sums: BufMut<T>) {
        layer_norm::sums(x.host(), gy.host(), saved.host(), d, sums.host());
    }

    fn layer_norm_backward_x(&self, x: Buf<T>, gy: Buf<T>, gamma: Buf<T>, saved: Buf<T>, d: usize, gx: BufMut<T>) {
        layer_norm::backward_x(x.host(), gy.host(), gamma.host(), saved.host(), d, gx.host());
    }

    fn batch_norm_sums(&self, x: Buf<T>, gy: Buf<T>, saved: Buf<T>, c: usize, sums: BufMut<T>) {
        norm::sums(x.host(), gy.host(), saved.host(), c, sums.host());
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
        norm::backward_x(x.host(), gy.host(), gamma.host(), saved.host(), sums.host(), c, given_stats, gx.host());
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
        norm::backward_stat(variance, gamma.host(), saved.host(), sums.host(), c, g.host());
    }

    fn conv2d(
        &self,
        g: &Window,
        x: Buf<T>,
        w: Buf<T>,
        b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: BufMut<T>,
        ws: &mut Workspace<T>,
    ) {
        conv::forward(g, x.host(), w.host(), b.map(Buf::host), act, y.host(), ws);
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
        ws: &mut Workspace<T>,
    ) {
        let (b, gx) = (b.map(Buf::host), gx.map(BufMut::host));
        conv::backward(g, x.host(), w.host(), b, act, y.host(), gy.host(), gx, dwb.host(), need_w_b, ws);
    }

    fn conv2d_max_pool(
        &self,
        g: &Window,
        pool: (usize, usize),
        x: Buf<T>,
        w: Buf<T>,
        b: Option<Buf<T>>,
        act: Option<UnaryOp>,
        y: BufMut<T>,
        arg: BufMut<u32>,
        zs: Option<BufMut<T>>,
        ws: &mut Workspace<T>,
    ) {
        let (b, zs) = (b.map(Buf::host), zs.map(BufMut::host));
        conv_pool::forward(g, pool, x.host(), w.host(), b, act, y.host(), arg.host(), zs, ws);
    }

    fn conv2d_max_pool_backward(
        &self,
        g: &Window,
        pool: (usize, usize),
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
        ws: &mut Workspace<T>,
    ) {
        let (x, w, y, arg, zs, gy, gx) =
            (x.host(), w.host(), y.host(), arg.host(), zs.host(), gy.host(), gx.map(BufMut::host));
        conv_pool::backward(g, pool, x, w, act, y, arg, zs, gy, gx, dwb.host(), need_w_b, ws);
    }

    fn matmul_q(&self, w: &QMatrix, x: Buf<T>, n: usize, y: BufMut<T>) -> Result<()> {
        match (crate::simd::as_f32(x.host()), crate::simd::as_f32_mut(y.host())) {
            (Some(x), Some(y)) => w.matmul_t(x, n, y),
            _ => Err(Error::Invalid(format!("{} weights multiply f32 values only", w.dtype()))),
        }
    }
}

/// y = z + b (per column), then y = act(y) in place; z is copied into `keep_z` (as long as y) first.
pub(crate) fn bias_act<T: Float>(
    y: &mut [T],
    cols: usize,
    bias: Option<&[T]>,
    act: Option<UnaryOp>,
    keep_z: Option<&mut [T]>,
) {
    if let Some(b) = bias {
        crate::simd::vectorized(
            #[inline(always)]
            || {
                for row in y.chunks_exact_mut(cols) {
                    for (v, &bb) in row.iter_mut().zip(b) {
                        *v += bb;
                    }
                }
            },
        );
    }
    if let Some(op) = act {
        if let Some(z) = keep_z {
            z.copy_from_slice(y);
        }
        op.apply_in_place(y);
    }
}

/// dz = dy ⊙ act'(z), written into `dz`; z is `saved_z` when kept, else y stands in for it.
pub(crate) fn act_backward<T: Float>(dz: &mut [T], gy: &[T], y: &[T], saved_z: &[T], act: UnaryOp) {
    let x = if act.needs_input() { saved_z } else { y };
    act.deriv_slice(gy, x, y, dz, false);
}

/// gb[j] += Σ_rows dz[row, j]
pub(crate) fn add_column_sums<T: Float>(gb: &mut [T], dz: &[T], cols: usize) {
    crate::simd::vectorized(
        #[inline(always)]
        || {
            for row in dz.chunks_exact(cols) {
                for (g, &d) in gb.iter_mut().zip(row) {
                    *g += d;
                }
            }
        },
    )
}

/// Writes softmax (or log_softmax) of each lane of `x` viewed as [outer, n, inner] into `y`.
pub(crate) fn softmax_lanes<T: Float>(x: &[T], y: &mut [T], outer: usize, n: usize, inner: usize, log: bool) {
    for o in 0..outer {
        for j in 0..inner {
            let at = |k: usize| (o * n + k) * inner + j;
            let mut m = T::NEG_INFINITY;
            for k in 0..n {
                m = m.max(x[at(k)]);
            }
            let mut s = T::ZERO;
            for k in 0..n {
                let e = (x[at(k)] - m).exp();
                y[at(k)] = e;
                s += e;
            }
            if log {
                let ls = s.ln();
                for k in 0..n {
                    y[at(k)] = x[at(k)] - m - ls;
                }
            } else {
                let inv = T::ONE / s;
                for k in 0..n {
                    y[at(k)] *= inv;
                }
            }
        }
    }
}

/// Calls `f(i, ia, ib)` for every output element `i` and the elements of `a` and `b` it reads.
fn for_each_broadcast(out: Shape, a: Shape, b: Shape, mut f: impl FnMut(usize, usize, usize)) {
    let n = out.numel();
    if a == b {
        (0..n).for_each(|i| f(i, i, i));
        return;
    }
    let (na, nb) = (a.numel(), b.numel());
    if na == n && out.dims().ends_with(b.dims()) {
        (0..n).for_each(|i| f(i, i, i % nb));
        return;
    }
    if nb == n && out.dims().ends_with(a.dims()) {
        (0..n).for_each(|i| f(i, i % na, i));
        return;
    }
    let r = out.rank();
    let strides = |s: Shape| {
        let st = s.strides();
        let mut res = [0usize; MAX_RANK];
        for i in 0..s.rank() {
            if s.dim(i) != 1 {
                res[i + r - s.rank()] = st[i];
            }
        }
        res
    };
    let (sa, sb) = (strides(a), strides(b));
    let mut idx = [0usize; MAX_RANK];
    let (mut ia, mut ib) = (0usize, 0usize);
    for i in 0..n {
        f(i, ia, ib);
        for d in (0..r).rev() {
            idx[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if idx[d] < out.dim(d) {
                break;
            }
            ia -= sa[d] * idx[d];
            ib -= sb[d] * idx[d];
            idx[d] = 0;
        }
    }
}
