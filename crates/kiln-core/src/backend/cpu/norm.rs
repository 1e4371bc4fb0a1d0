//! Batch normalization's loops on the CPU (formulas in ops/batchnorm.rs), channels last: rows of `c`.

use crate::Float;

/// y = γ·(x − μ)·inv + β; saved = [μ, σ², inv], μ and σ² given or the batch's (biased).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward<T: Float>(
    xv: &[T],
    g: &[T],
    b: &[T],
    stats: Option<(&[T], &[T])>,
    eps: f64,
    c: usize,
    saved: &mut [T],
    y: &mut [T],
) {
    let m = xv.len() / c;
    let (mean, rest) = saved.split_at_mut(c);
    let (var, inv) = rest.split_at_mut(c);
    match stats {
        Some((mm, mv)) => {
            mean.copy_from_slice(mm);
            var.copy_from_slice(mv);
        }
        None => {
            mean.fill(T::ZERO);
            var.fill(T::ZERO);
            for row in xv.chunks(c) {
                for (a, &v) in mean.iter_mut().zip(row) {
                    *a += v;
                }
            }
            mean.iter_mut().for_each(|a| *a /= T::from_usize(m));
            for row in xv.chunks(c) {
                for ((a, &v), &mu) in var.iter_mut().zip(row).zip(mean.iter()) {
                    *a += (v - mu) * (v - mu);
                }
            }
            var.iter_mut().for_each(|a| *a /= T::from_usize(m));
        }
    }
    for (i, v) in inv.iter_mut().zip(var.iter()) {
        *i = T::ONE / (*v + T::from_f64(eps)).sqrt();
    }
    for (yr, xr) in y.chunks_mut(c).zip(xv.chunks(c)) {
        for j in 0..c {
            yr[j] = g[j] * (xr[j] - mean[j]) * inv[j] + b[j];
        }
    }
}

/// sums = [Σ dy, Σ dy·x̂] per channel.
pub(super) fn sums<T: Float>(xv: &[T], gy: &[T], saved: &[T], c: usize, sums: &mut [T]) {
    let (mean, inv) = (&saved[..c], &saved[2 * c..]);
    sums.fill(T::ZERO);
    let (sdy, sdyx) = sums.split_at_mut(c);
    for (xr, dr) in xv.chunks(c).zip(gy.chunks(c)) {
        for j in 0..c {
            sdy[j] += dr[j];
            sdyx[j] += dr[j] * (xr[j] - mean[j]) * inv[j];
        }
    }
}

/// gx += γ·inv/m · (m·dy − Σ dy − x̂·Σ dy·x̂), or γ·inv·dy with given statistics.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_x<T: Float>(
    xv: &[T],
    gy: &[T],
    g: &[T],
    saved: &[T],
    sums: &[T],
    c: usize,
    given: bool,
    gx: &mut [T],
) {
    let (mean, inv) = (&saved[..c], &saved[2 * c..]);
    let (sdy, sdyx) = sums.split_at(c);
    let mf = T::from_usize(xv.len() / c);
    for ((gr, xr), dr) in gx.chunks_mut(c).zip(xv.chunks(c)).zip(gy.chunks(c)) {
        for j in 0..c {
            gr[j] += if given {
                g[j] * inv[j] * dr[j]
            } else {
                let xhat = (xr[j] - mean[j]) * inv[j];
                g[j] * inv[j] / mf * (mf * dr[j] - sdy[j] - xhat * sdyx[j])
            };
        }
    }
}

/// dμ −= γ·inv·Σ dy; or dσ² −= ½·γ·inv²·Σ dy·x̂ (= ½·γ·inv³·Σ dy·(x − μ)).
pub(super) fn backward_stat<T: Float>(variance: bool, g: &[T], saved: &[T], sums: &[T], c: usize, out: &mut [T]) {
    let inv = &saved[2 * c..];
    let (sdy, sdyx) = sums.split_at(c);
    for (j, a) in out.iter_mut().enumerate() {
        *a -= if variance { T::from_f64(0.5) * g[j] * inv[j] * inv[j] * sdyx[j] } else { g[j] * inv[j] * sdy[j] };
    }
}
