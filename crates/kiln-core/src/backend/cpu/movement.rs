//! Movement and reductions on the CPU: block copies (concat, slice), permutes, gathers and scatters, and
//! sum/mean/max along one axis.

use crate::ops::ReduceOp;
use crate::{Float, MAX_RANK, Shape};

/// dst[d0 + i·ds ..][..len] (+)= src[s0 + i·ss ..][..len] for i < blocks.
#[allow(clippy::too_many_arguments)]
pub(super) fn copy_blocks<T: Float>(
    src: &[T],
    (s0, ss): (usize, usize),
    dst: &mut [T],
    (d0, ds): (usize, usize),
    blocks: usize,
    len: usize,
    accumulate: bool,
) {
    for i in 0..blocks {
        let (s, d) = (&src[s0 + i * ss..][..len], &mut dst[d0 + i * ds..][..len]);
        if accumulate {
            crate::simd::vectorized(
                #[inline(always)]
                || d.iter_mut().zip(s).for_each(|(d, &s)| *d += s),
            );
        } else {
            d.copy_from_slice(s);
        }
    }
}

/// Calls f(out_index, in_index) over every element of the permuted output.
pub(super) fn permute_walk(s: Shape, perm: &[u8; MAX_RANK], mut f: impl FnMut(usize, usize)) {
    let r = s.rank();
    let st = s.strides();
    let mut dims = [0usize; MAX_RANK];
    let mut strides = [0usize; MAX_RANK];
    for i in 0..r {
        dims[i] = s.dim(perm[i] as usize);
        strides[i] = st[perm[i] as usize];
    }
    let mut idx = [0usize; MAX_RANK];
    let mut src = 0;
    for o in 0..s.numel() {
        f(o, src);
        for d in (0..r).rev() {
            idx[d] += 1;
            src += strides[d];
            if idx[d] < dims[d] {
                break;
            }
            src -= strides[d] * idx[d];
            idx[d] = 0;
        }
    }
}

/// y[o, k, j] = x[o, idx[k], j]
pub(super) fn gather<T: Float>(x: &[T], idx: &[u32], (outer, n, inner): (usize, usize, usize), y: &mut [T]) {
    let len = idx.len();
    for o in 0..outer {
        for (k, &ix) in idx.iter().enumerate() {
            let src = (o * n + ix as usize) * inner;
            let dst = (o * len + k) * inner;
            y[dst..dst + inner].copy_from_slice(&x[src..src + inner]);
        }
    }
}

/// gx[o, idx[k], j] += gy[o, k, j]
pub(super) fn scatter_add<T: Float>(gy: &[T], idx: &[u32], (outer, n, inner): (usize, usize, usize), gx: &mut [T]) {
    let len = idx.len();
    for o in 0..outer {
        for (k, &ix) in idx.iter().enumerate() {
            let dst = (o * n + ix as usize) * inner;
            let src = (o * len + k) * inner;
            for j in 0..inner {
                gx[dst + j] += gy[src + j];
            }
        }
    }
}

/// y[b] = Σ_l w[b, l] · table[ids[b, l]]: each row's vectors added in place, weight-0 ids skipped.
pub(super) fn embedding_bag<T: Float>(
    table: &[T],
    ids: &[u32],
    w: &[T],
    (n, len, d): (usize, usize, usize),
    y: &mut [T],
) {
    crate::simd::vectorized(
        #[inline(always)]
        || {
            for b in 0..n {
                let out = &mut y[b * d..][..d];
                out.fill(T::ZERO);
                for (&id, &wt) in ids[b * len..][..len].iter().zip(&w[b * len..][..len]) {
                    if wt != T::ZERO {
                        let row = &table[id as usize * d..][..d];
                        out.iter_mut().zip(row).for_each(|(o, &v)| *o += wt * v);
                    }
                }
            }
        },
    )
}

/// gtable[ids[b, l]] += w[b, l] · gy[b]
pub(super) fn embedding_bag_backward<T: Float>(
    gy: &[T],
    ids: &[u32],
    w: &[T],
    (n, len, d): (usize, usize, usize),
    gtable: &mut [T],
) {
    crate::simd::vectorized(
        #[inline(always)]
        || {
            for b in 0..n {
                let g = &gy[b * d..][..d];
                for (&id, &wt) in ids[b * len..][..len].iter().zip(&w[b * len..][..len]) {
                    if wt != T::ZERO {
                        let row = &mut gtable[id as usize * d..][..d];
                        row.iter_mut().zip(g).for_each(|(o, &v)| *o += wt * v);
                    }
                }
            }
        },
    )
}

/// y[o, j] = sum, mean or max over k of x[o, k, j]; max also writes where.
pub(super) fn reduce<T: Float>(
    op: ReduceOp,
    x: &[T],
    y: &mut [T],
    mut arg: Option<&mut [u32]>,
    (outer, n, inner): (usize, usize, usize),
) {
    for o in 0..outer {
        for j in 0..inner {
            let at = |k: usize| x[(o * n + k) * inner + j];
            let r = o * inner + j;
            match op {
                ReduceOp::Sum | ReduceOp::Mean => {
                    let mut acc = T::ZERO;
                    for k in 0..n {
                        acc += at(k);
                    }
                    y[r] = if op == ReduceOp::Mean { acc / T::from_usize(n) } else { acc };
                }
                ReduceOp::Max => {
                    let mut best = 0;
                    for k in 1..n {
                        if at(k) > at(best) {
                            best = k;
                        }
                    }
                    y[r] = at(best);
                    if let Some(arg) = arg.as_deref_mut() {
                        arg[r] = best as u32;
                    }
                }
            }
        }
    }
}

/// gx += dy broadcast (sum), dy / n (mean), dy at the maximum (max).
pub(super) fn reduce_backward<T: Float>(
    op: ReduceOp,
    gy: &[T],
    arg: &[u32],
    gx: &mut [T],
    (outer, n, inner): (usize, usize, usize),
) {
    let scale = if op == ReduceOp::Mean { T::ONE / T::from_usize(n) } else { T::ONE };
    for o in 0..outer {
        for j in 0..inner {
            let r = o * inner + j;
            match op {
                ReduceOp::Max => gx[(o * n + arg[r] as usize) * inner + j] += gy[r],
                _ => {
                    for k in 0..n {
                        gx[(o * n + k) * inner + j] += gy[r] * scale;
                    }
                }
            }
        }
    }
}
