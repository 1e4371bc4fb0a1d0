//! Attention's loops on the CPU (formulas in ops/attention.rs): one task per (text, head) pair, in
//! parallel; each reads its head's columns of q, k and v in place (strided operands of the matrix kernel)
//! and works in a [t, t] scratch of its own.

use super::gemm::{Mat, gemm_serial};
use crate::Float;
use crate::ops::AttentionDims;
use crate::par::Disjoint;
use rayon::prelude::*;

/// Lanes of the running maximum and sum: a reduction into one scalar does not vectorize (float addition is
/// not associative to the compiler), one into 16 independent lanes does.
const LANES: usize = 16;

/// Row-wise softmax of s [rows, t] in place, in passes that vectorize (measured: the one-pass loop with its
/// scalar sum was 14% of a MiniLM forward).
pub fn softmax_rows<T: Float>(s: &mut [T], t: usize) {
    crate::simd::vectorized(
        #[inline(always)]
        || {
            for row in s.chunks_exact_mut(t) {
                let mut lanes = [T::NEG_INFINITY; LANES];
                let mut chunks = row.chunks_exact(LANES);
                for c in &mut chunks {
                    for (l, &x) in lanes.iter_mut().zip(c) {
                        *l = if x > *l { x } else { *l };
                    }
                }
                let m = chunks.remainder().iter().chain(&lanes).fold(T::NEG_INFINITY, |a, &x| a.max(x));
                row.iter_mut().for_each(|x| *x = (*x - m).exp_fast());
                let mut sums = [T::ZERO; LANES];
                let mut chunks = row.chunks_exact(LANES);
                for c in &mut chunks {
                    for (l, &x) in sums.iter_mut().zip(c) {
                        *l += x;
                    }
                }
                let sum = chunks.remainder().iter().chain(&sums).fold(T::ZERO, |a, &x| a + x);
                let inv = T::ONE / sum;
                row.iter_mut().for_each(|x| *x *= inv);
            }
        },
    )
}

/// x ⊙= M over one pair's [t, t] block, whose first element is element `start` of [b, heads, t, t].
fn apply_mask<T: Float>(x: &mut [T], d: AttentionDims, start: usize) {
    let scale = T::from_f64(d.keep_scale());
    for (i, x) in x.iter_mut().enumerate() {
        *x = if d.kept(start + i) { *x * scale } else { T::ZERO };
    }
}

/// The scores of one (text, head) into s [t, t]: Q·Kᵀ·scale + bias, later steps masked when causal.
fn scores<T: Float>(q: &[T], k: &[T], bias: &[T], d: AttentionDims, bi: usize, h: usize, s: &mut [T]) {
    let (t, w) = (d.t, d.width());
    let off = bi * t * w + h * d.dh;
    gemm_serial(t, t, d.dh, s, Mat { data: &q[off..], rs: w, cs: 1 }, Mat { data: &k[off..], rs: 1, cs: w }, false);
    let scale = T::ONE / T::from_usize(d.dh).sqrt();
    let masked = T::from_f64(crate::ops::attention::MASKED);
    for (i, row) in s.chunks_exact_mut(t).enumerate() {
        for (x, &b) in row.iter_mut().zip(&bias[bi * t..(bi + 1) * t]) {
            *x = *x * scale + b;
        }
        if d.causal {
            row[i + 1..].fill(masked);
        }
    }
}

/// y = P·V per (text, head), the heads side by side; P kept in `p` when given.
pub(super) fn forward<T: Float>(
    q: &[T],
    k: &[T],
    v: &[T],
    bias: &[T],
    d: AttentionDims,
    p: Option<&mut [T]>,
    y: &mut [T],
) {
    let (t, w, dh) = (d.t, d.width(), d.dh);
    let keep = p.is_some();
    let (ps, ys) = (Disjoint::new(p.unwrap_or(&mut [])), Disjoint::new(y));
    (0..d.b * d.heads).into_par_iter().for_each_init(
        || (vec![T::ZERO; t * t], vec![T::ZERO; t * dh]),
        |(s, o), pair| {
            let (bi, h) = (pair / d.heads, pair % d.heads);
            scores(q, k, bias, d, bi, h, s);
            softmax_rows(s, t);
            if keep {
                // SAFETY: pair (bi, h) writes only its own t·t block of p (and, below, its own dh columns of
                // rows bi·t..(bi+1)·t of y); no two pairs share either.
                unsafe { ps.part(pair * t * t..(pair + 1) * t * t) }.copy_from_slice(s);
            }
            if d.drop > 0 {
                apply_mask(s, d, pair * t * t);
            }
            let off = bi * t * w + h * dh;
            gemm_serial(t, dh, t, o, Mat::rows(s, t), Mat { data: &v[off..], rs: w, cs: 1 }, false);
            for (i, row) in o.chunks_exact(dh).enumerate() {
                let at = off + i * w;
                // SAFETY: see above.
                unsafe { ys.part(at..at + dh) }.copy_from_slice(row);
            }
        },
    );
}

/// grads = [dQ, dK, dV] (each [b·t, width], overwritten) from dO = gy and the kept P.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Float>(q: &[T], k: &[T], v: &[T], p: &[T], gy: &[T], d: AttentionDims, grads: &mut [T]) {
    let (t, w, dh) = (d.t, d.width(), d.dh);
    let n = d.b * t * w;
    let gs = Disjoint::new(grads);
    let scale = T::ONE / T::from_usize(dh).sqrt();
    (0..d.b * d.heads).into_par_iter().for_each_init(
        || (vec![T::ZERO; t * t], vec![T::ZERO; t * dh]),
        |(ds, o), pair| {
            let (bi, h) = (pair / d.heads, pair % d.heads);
            let off = bi * t * w + h * dh;
            let pp = &p[pair * t * t..(pair + 1) * t * t];
            let dout = Mat { data: &gy[off..], rs: w, cs: 1 };
            // Writes o [t, dh] into grad `which` (0 dQ, 1 dK, 2 dV) at this pair's columns.
            let put = |which: usize, o: &[T]| {
                for (i, row) in o.chunks_exact(dh).enumerate() {
                    let at = which * n + off + i * w;
                    // SAFETY: as in forward: this pair's own columns of its own rows, in each gradient.
                    unsafe { gs.part(at..at + dh) }.copy_from_slice(row);
                }
            };
            // dV = (P ⊙ M)ᵀ·dO
            if d.drop > 0 {
                ds.copy_from_slice(pp);
                apply_mask(ds, d, pair * t * t);
                gemm_serial(t, dh, t, o, Mat::rows_t(ds, t), dout, false);
            } else {
                gemm_serial(t, dh, t, o, Mat::rows_t(pp, t), dout, false);
            }
            put(2, o);
            // dP = (dO·Vᵀ) ⊙ M, then dS = P ⊙ (dP − rowsum(dP ⊙ P)), scaled by s for both products below.
            gemm_serial(t, t, dh, ds, dout, Mat { data: &v[off..], rs: 1, cs: w }, false);
            if d.drop > 0 {
                apply_mask(ds, d, pair * t * t);
            }
            for (drow, prow) in ds.chunks_exact_mut(t).zip(pp.chunks_exact(t)) {
                let dot = drow.iter().zip(prow).fold(T::ZERO, |a, (&x, &y)| a + x * y);
                for (x, &y) in drow.iter_mut().zip(prow) {
                    *x = y * (*x - dot) * scale;
                }
            }
            // dQ = dS·K; dK = dSᵀ·Q
            gemm_serial(t, dh, t, o, Mat::rows(ds, t), Mat { data: &k[off..], rs: w, cs: 1 }, false);
            put(0, o);
            gemm_serial(t, dh, t, o, Mat::rows_t(ds, t), Mat { data: &q[off..], rs: w, cs: 1 }, false);
            put(1, o);
        },
    );
}
