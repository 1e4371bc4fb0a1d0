//! Layer normalization's loops on the CPU (formulas in ops/layer_norm.rs): rows of `d` values, split
//! across threads by rows when there are enough of them (a BERT batch: 32 texts x 40 tokens x 384).

use super::rows_per_piece;
use crate::Float;
use rayon::prelude::*;

/// y = γ·(x − μ)·r + β per row; saved = [μ, r] per row.
pub(super) fn forward<T: Float>(x: &[T], g: &[T], b: &[T], eps: f64, d: usize, saved: &mut [T], y: &mut [T]) {
    let rows = x.len() / d;
    let per = rows_per_piece(rows, d);
    let eps = T::from_f64(eps);
    let dn = T::from_usize(d);
    y.par_chunks_mut(per * d).zip(saved.par_chunks_mut(2 * per)).zip(x.par_chunks(per * d)).for_each(|((y, s), x)| {
        for ((yr, sr), xr) in y.chunks_exact_mut(d).zip(s.chunks_exact_mut(2)).zip(x.chunks_exact(d)) {
            let mu = xr.iter().fold(T::ZERO, |a, &v| a + v) / dn;
            let var = xr.iter().fold(T::ZERO, |a, &v| a + (v - mu) * (v - mu)) / dn;
            let r = T::ONE / (var + eps).sqrt();
            for (((o, &v), &gj), &bj) in yr.iter_mut().zip(xr).zip(g).zip(b) {
                *o = (v - mu) * r * gj + bj;
            }
            sr[0] = mu;
            sr[1] = r;
        }
    });
}

/// sums = [Σ dy·x̂ (d), Σ dy (d)] over rows; overwritten.
pub(super) fn sums<T: Float>(x: &[T], gy: &[T], saved: &[T], d: usize, sums: &mut [T]) {
    let (sg, sb) = sums.split_at_mut(d);
    sg.fill(T::ZERO);
    sb.fill(T::ZERO);
    for ((xr, dy), s) in x.chunks_exact(d).zip(gy.chunks_exact(d)).zip(saved.chunks_exact(2)) {
        let (mu, r) = (s[0], s[1]);
        for (((a, c), &v), &e) in sg.iter_mut().zip(sb.iter_mut()).zip(xr).zip(dy) {
            *a += e * (v - mu) * r;
            *c += e;
        }
    }
}

/// gx += r·(g − mean(g) − x̂·mean(g·x̂)), g = γ·dy, per row.
pub(super) fn backward_x<T: Float>(x: &[T], gy: &[T], gamma: &[T], saved: &[T], d: usize, gx: &mut [T]) {
    let rows = x.len() / d;
    let per = rows_per_piece(rows, d);
    let dn = T::from_usize(d);
    gx.par_chunks_mut(per * d)
        .zip(x.par_chunks(per * d))
        .zip(gy.par_chunks(per * d))
        .zip(saved.par_chunks(2 * per))
        .for_each(|(((gx, x), gy), s)| {
            for (((gr, xr), dy), sr) in
                gx.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(gy.chunks_exact(d)).zip(s.chunks_exact(2))
            {
                let (mu, r) = (sr[0], sr[1]);
                let (mut mg, mut mgx) = (T::ZERO, T::ZERO);
                for ((&v, &e), &gj) in xr.iter().zip(dy).zip(gamma) {
                    let g = gj * e;
                    mg += g;
                    mgx += g * (v - mu) * r;
                }
                let (mg, mgx) = (mg / dn, mgx / dn);
                for (((o, &v), &e), &gj) in gr.iter_mut().zip(xr).zip(dy).zip(gamma) {
                    *o += r * (gj * e - mg - (v - mu) * r * mgx);
                }
            }
        });
}
