//! Direct kernels for conv2d → activation → max pooling when the patch is a handful of values (3x3 on one
//! channel: 9) and no padding is needed: the first layer of most image models. Lowering it to a matrix
//! product over im2col patches spends more time copying patches, writing the full convolution output and
//! pooling it than multiplying (measured: 1.0 ms per batch of 64 MNIST images, 24 GFLOP/s on two cores).
//! Here each pooling window's pixels are computed together in registers straight from the input, then
//! activated and reduced to their maximum; backward rebuilds each window's gradient from the saved argmax
//! the same way. The tiled path in `conv_pool` handles every other case and is the reference these are
//! tested against (tests/suite/fused.rs).

#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

use crate::Float;
use crate::ops::{UnaryOp, Window};
use crate::simd::{as_f32, as_f32_mut, has_avx2};

/// Output channels per forward block: two AVX2 vectors of f32.
const NC: usize = 16;
/// Output channels per weight-gradient block: one vector, so a patch's accumulators fit in registers.
const WC: usize = 8;
/// Largest patch handled here (values per output pixel).
const MAX_K: usize = 12;

/// Whether the direct kernels handle this convolution and pooling: a patch of at most MAX_K values, every
/// window inside the input (no padding), channels in whole vector blocks, at most 4 pixels per pool window.
/// The kernels are written for f32 with AVX2 + FMA; f64 (used by the gradient checks) takes the tiled path.
pub(crate) fn applies<T: Float>(g: &Window, f: usize, (ph, pw): (usize, usize)) -> bool {
    let inside = (g.oh - 1) * g.sh + g.kh <= g.h && (g.ow - 1) * g.sw + g.kw <= g.w;
    let shape_ok = g.pt == 0 && g.pl == 0 && inside && g.patch() <= MAX_K && f.is_multiple_of(NC) && ph * pw <= 4;
    shape_ok && T::DTYPE == "F32" && cfg!(target_arch = "x86_64") && has_avx2()
}

/// Offset in an image (NHWC) of each patch value (kh, kw, c) from the patch's top-left corner.
fn patch_offsets(g: &Window) -> [usize; MAX_K] {
    let mut off = [0; MAX_K];
    for (j, o) in off.iter_mut().enumerate().take(g.patch()) {
        let (kh, kw, c) = (j / (g.kw * g.c), j / g.c % g.kw, j % g.c);
        *o = (kh * g.w + kw) * g.c + c;
    }
    off
}

/// One pooling window: its pixels' top-left input offsets within the image, and their conv-output row
/// indices (as saved in the argmax), in the order the reference pooling visits them.
struct WindowPixels<const M: usize> {
    base: [usize; M],
    row: [usize; M],
}

impl<const M: usize> WindowPixels<M> {
    #[inline(always)]
    fn new(g: &Window, (ph, pw): (usize, usize), n: usize, pr: usize, pc: usize) -> Self {
        let pos = |i: usize| (pr * ph + i / pw, pc * pw + i % pw);
        WindowPixels {
            base: std::array::from_fn(|i| (pos(i).0 * g.sh * g.w + pos(i).1 * g.sw) * g.c),
            row: std::array::from_fn(|i| (n * g.oh + pos(i).0) * g.ow + pos(i).1),
        }
    }
}

/// Pooled outputs of images `n0..n1` (`x` starts at image n0; `y`, `arg` and `zs` at its first output):
/// y = max over each window of act(conv + b), arg = the conv-output index (row·f + channel) of the maximum,
/// zs = conv + b at the maximum (only when `zs` is not empty). Only called when `applies` holds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<T: Float>(
    g: &Window,
    pool: (usize, usize),
    n0: usize,
    n1: usize,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    act: Option<UnaryOp>,
    y: &mut [T],
    arg: &mut [u32],
    zs: &mut [T],
) {
    let (x, w, y, zs) = (as_f32(x).unwrap(), as_f32(w).unwrap(), as_f32_mut(y).unwrap(), as_f32_mut(zs).unwrap());
    let b = b.map(|b| as_f32(b).unwrap());
    let (k, f) = (g.patch(), w.len() / g.patch());
    let (poh, pow) = (g.oh / pool.0, g.ow / pool.1);
    assert!(x.len() >= (n1 - n0) * g.h * g.w * g.c && w.len() == k * f && b.is_none_or(|b| b.len() == f));
    let outs = (n1 - n0) * poh * pow * f;
    assert!(y.len() >= outs && arg.len() >= outs && (zs.is_empty() || zs.len() >= outs));
    #[cfg(target_arch = "x86_64")]
    if wide(f) {
        // SAFETY: as below, with AVX-512F checked by `wide`.
        unsafe {
            match pool.0 * pool.1 {
                1 => avx512::forward::<1>(g, pool, n0, n1, x, w, b, act, y, arg, zs),
                2 => avx512::forward::<2>(g, pool, n0, n1, x, w, b, act, y, arg, zs),
                3 => avx512::forward::<3>(g, pool, n0, n1, x, w, b, act, y, arg, zs),
                _ => avx512::forward::<4>(g, pool, n0, n1, x, w, b, act, y, arg, zs),
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `applies` checked the processor's features; the asserts above bound every access, as every
    // window lies inside its image (checked by `applies`).
    unsafe {
        match pool.0 * pool.1 {
            1 => avx2::forward::<1>(g, pool, n0, n1, x, w, b, act, y, arg, zs),
            2 => avx2::forward::<2>(g, pool, n0, n1, x, w, b, act, y, arg, zs),
            3 => avx2::forward::<3>(g, pool, n0, n1, x, w, b, act, y, arg, zs),
            _ => avx2::forward::<4>(g, pool, n0, n1, x, w, b, act, y, arg, zs),
        }
    }
}

/// Adds the weight gradient of images `n0..n1` to `dw`: each pooled gradient `d` (already multiplied by
/// the activation's derivative; starts at image n0's first output) flows to its window's maximum only.
/// `q` is scratch of `q_len(g)` values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad<T: Float>(
    g: &Window,
    pool: (usize, usize),
    n0: usize,
    n1: usize,
    x: &[T],
    d: &[T],
    arg: &[u32],
    dw: &mut [T],
    q: &mut [T],
) {
    let (x, d, dw, q) = (as_f32(x).unwrap(), as_f32(d).unwrap(), as_f32_mut(dw).unwrap(), as_f32_mut(q).unwrap());
    let f = dw.len() / g.patch();
    let outs = (n1 - n0) * (g.oh / pool.0) * (g.ow / pool.1) * f;
    assert!(x.len() >= (n1 - n0) * g.h * g.w * g.c && d.len() >= outs && arg.len() >= outs && q.len() >= q_len(g));
    macro_rules! by_k_m {
        ($isa:ident; $($k:literal)*) => {
            match (g.patch(), pool.0 * pool.1) {
                $(($k, 1) => $isa::weight_grad::<$k, 1>(g, pool, n0, n1, x, d, arg, dw, q),
                  ($k, 2) => $isa::weight_grad::<$k, 2>(g, pool, n0, n1, x, d, arg, dw, q),
                  ($k, 3) => $isa::weight_grad::<$k, 3>(g, pool, n0, n1, x, d, arg, dw, q),
                  ($k, _) => $isa::weight_grad::<$k, 4>(g, pool, n0, n1, x, d, arg, dw, q),)*
                _ => unreachable!("applies() admits patches of at most {MAX_K} values"),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if wide(f) {
        // SAFETY: as in `forward`.
        unsafe { by_k_m!(avx512; 1 2 3 4 5 6 7 8 9 10 11 12) }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `forward`.
    unsafe {
        by_k_m!(avx2; 1 2 3 4 5 6 7 8 9 10 11 12)
    }
}

/// Scratch values `weight_grad` needs: four per input value of one image.
pub(crate) fn q_len(g: &Window) -> usize {
    4 * g.h * g.w * g.c
}

/// Whether `f` output channels take the AVX-512 kernels: in blocks of 32 (two vectors), on a processor
/// that has them. They do the same work in half the instructions of the AVX2 ones (measured on the reference
/// CNN's first layer: forward 0.54 -> 0.25 ms, weight gradient 0.5 -> 0.2 ms per batch of 64, opbench);
/// other channel counts keep the AVX2 kernels, so the tests (32 and 16 or 48 channels) run both.
#[cfg(target_arch = "x86_64")]
fn wide(f: usize) -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    f.is_multiple_of(avx512::NC) && *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

/// The kernels of `avx2` with 32 channels per block in two AVX-512 vectors, masks in mask registers.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Window, WindowPixels, patch_offsets};
    use crate::ops::unary::UnaryOp;
    use std::arch::x86_64::*;

    /// Output channels per block, in both kernels: two vectors of 16.
    pub(super) const NC: usize = 32;

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn forward<const M: usize>(
        g: &Window,
        pool: (usize, usize),
        n0: usize,
        n1: usize,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        act: Option<UnaryOp>,
        y: &mut [f32],
        arg: &mut [u32],
        zs: &mut [f32],
    ) {
        let (k, f) = (g.patch(), w.len() / g.patch());
        let (poh, pow) = (g.oh / pool.0, g.ow / pool.1);
        let img = g.h * g.w * g.c;
        let off = patch_offsets(g);
        let keep_z = !zs.is_empty();
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let lanes_hi = _mm512_add_epi32(lanes, _mm512_set1_epi32(16));
        let relu = act == Some(UnaryOp::Relu);
        for n in n0..n1 {
            let xs = unsafe { x.as_ptr().add((n - n0) * img) };
            for pr in 0..poh {
                for pc in 0..pow {
                    let px = WindowPixels::<M>::new(g, pool, n, pr, pc);
                    for c0 in (0..f).step_by(NC) {
                        let (mut lo, mut hi) = match b {
                            Some(b) => unsafe {
                                ([_mm512_loadu_ps(&b[c0]); M], [_mm512_loadu_ps(b.as_ptr().add(c0 + 16)); M])
                            },
                            None => ([_mm512_setzero_ps(); M], [_mm512_setzero_ps(); M]),
                        };
                        for (j, &o) in off.iter().enumerate().take(k) {
                            let wj = unsafe { w.as_ptr().add(j * f + c0) };
                            let (w0, w1) = unsafe { (_mm512_loadu_ps(wj), _mm512_loadu_ps(wj.add(16))) };
                            for i in 0..M {
                                let v = _mm512_set1_ps(unsafe { *xs.add(px.base[i] + o) });
                                lo[i] = _mm512_fmadd_ps(v, w0, lo[i]);
                                hi[i] = _mm512_fmadd_ps(v, w1, hi[i]);
                            }
                        }
                        let (zlo, zhi) = (lo, hi);
                        if relu {
                            for i in 0..M {
                                lo[i] = _mm512_max_ps(lo[i], _mm512_setzero_ps());
                                hi[i] = _mm512_max_ps(hi[i], _mm512_setzero_ps());
                            }
                        } else if let Some(op) = act {
                            let mut buf = [[0f32; NC]; M];
                            for i in 0..M {
                                unsafe {
                                    _mm512_storeu_ps(buf[i].as_mut_ptr(), lo[i]);
                                    _mm512_storeu_ps(buf[i].as_mut_ptr().add(16), hi[i]);
                                }
                            }
                            op.apply_in_place(buf.as_flattened_mut());
                            for i in 0..M {
                                unsafe {
                                    lo[i] = _mm512_loadu_ps(buf[i].as_ptr());
                                    hi[i] = _mm512_loadu_ps(buf[i].as_ptr().add(16));
                                }
                            }
                        }
                        // Strictly greater replaces, so the first maximum wins, as in max_pool2d.
                        let first = _mm512_set1_epi32((px.row[0] * f + c0) as i32);
                        let (mut blo, mut bhi, mut zblo, mut zbhi) = (lo[0], hi[0], zlo[0], zhi[0]);
                        let (mut alo, mut ahi) = (_mm512_add_epi32(first, lanes), _mm512_add_epi32(first, lanes_hi));
                        for i in 1..M {
                            let at = _mm512_set1_epi32((px.row[i] * f + c0) as i32);
                            let mlo = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(lo[i], blo);
                            let mhi = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(hi[i], bhi);
                            blo = _mm512_mask_blend_ps(mlo, blo, lo[i]);
                            bhi = _mm512_mask_blend_ps(mhi, bhi, hi[i]);
                            zblo = _mm512_mask_blend_ps(mlo, zblo, zlo[i]);
                            zbhi = _mm512_mask_blend_ps(mhi, zbhi, zhi[i]);
                            alo = _mm512_mask_blend_epi32(mlo, alo, _mm512_add_epi32(at, lanes));
                            ahi = _mm512_mask_blend_epi32(mhi, ahi, _mm512_add_epi32(at, lanes_hi));
                        }
                        let o = (((n - n0) * poh + pr) * pow + pc) * f + c0;
                        unsafe {
                            _mm512_storeu_ps(y.as_mut_ptr().add(o), blo);
                            _mm512_storeu_ps(y.as_mut_ptr().add(o + 16), bhi);
                            _mm512_storeu_si512(arg.as_mut_ptr().add(o).cast(), alo);
                            _mm512_storeu_si512(arg.as_mut_ptr().add(o + 16).cast(), ahi);
                            if keep_z {
                                _mm512_storeu_ps(zs.as_mut_ptr().add(o), zblo);
                                _mm512_storeu_ps(zs.as_mut_ptr().add(o + 16), zbhi);
                            }
                        }
                    }
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn weight_grad<const K: usize, const M: usize>(
        g: &Window,
        pool: (usize, usize),
        n0: usize,
        n1: usize,
        x: &[f32],
        d: &[f32],
        arg: &[u32],
        dw: &mut [f32],
        _q: &mut [f32],
    ) {
        let f = dw.len() / K;
        let (poh, pow) = (g.oh / pool.0, g.ow / pool.1);
        let img = g.h * g.w * g.c;
        let off = patch_offsets(g);
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let lanes_hi = _mm512_add_epi32(lanes, _mm512_set1_epi32(16));
        for n in n0..n1 {
            let xs = unsafe { x.as_ptr().add((n - n0) * img) };
            for c0 in (0..f).step_by(NC) {
                // 2K accumulators (18 of the 32 registers for a 3x3 patch), so each broadcast pixel value
                // serves both halves of the block.
                let mut lo = [_mm512_setzero_ps(); K];
                let mut hi = [_mm512_setzero_ps(); K];
                for pr in 0..poh {
                    for pc in 0..pow {
                        let px = WindowPixels::<M>::new(g, pool, n, pr, pc);
                        let o = (((n - n0) * poh + pr) * pow + pc) * f + c0;
                        let (d0, d1, a0, a1) = unsafe {
                            (
                                _mm512_loadu_ps(d.as_ptr().add(o)),
                                _mm512_loadu_ps(d.as_ptr().add(o + 16)),
                                _mm512_loadu_si512(arg.as_ptr().add(o).cast()),
                                _mm512_loadu_si512(arg.as_ptr().add(o + 16).cast()),
                            )
                        };
                        for i in 0..M {
                            // The gradient reaches this pixel only in the channels whose maximum it was.
                            let at = _mm512_set1_epi32((px.row[i] * f + c0) as i32);
                            let z0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a0, _mm512_add_epi32(at, lanes)), d0);
                            let z1 =
                                _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a1, _mm512_add_epi32(at, lanes_hi)), d1);
                            for j in 0..K {
                                let v = _mm512_set1_ps(unsafe { *xs.add(px.base[i] + off[j]) });
                                lo[j] = _mm512_fmadd_ps(v, z0, lo[j]);
                                hi[j] = _mm512_fmadd_ps(v, z1, hi[j]);
                            }
                        }
                    }
                }
                for j in 0..K {
                    unsafe {
                        let p = dw.as_mut_ptr().add(j * f + c0);
                        _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), lo[j]));
                        _mm512_storeu_ps(p.add(16), _mm512_add_ps(_mm512_loadu_ps(p.add(16)), hi[j]));
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{NC, WC, Window, WindowPixels, patch_offsets};
    use crate::ops::unary::UnaryOp;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn forward<const M: usize>(
        g: &Window,
        pool: (usize, usize),
        n0: usize,
        n1: usize,
        x: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        act: Option<UnaryOp>,
        y: &mut [f32],
        arg: &mut [u32],
        zs: &mut [f32],
    ) {
        let (k, f) = (g.patch(), w.len() / g.patch());
        let (poh, pow) = (g.oh / pool.0, g.ow / pool.1);
        let img = g.h * g.w * g.c;
        let off = patch_offsets(g);
        let keep_z = !zs.is_empty();
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let lanes_hi = _mm256_add_epi32(lanes, _mm256_set1_epi32(8));
        let relu = act == Some(UnaryOp::Relu);
        for n in n0..n1 {
            let xs = unsafe { x.as_ptr().add((n - n0) * img) };
            for pr in 0..poh {
                for pc in 0..pow {
                    let px = WindowPixels::<M>::new(g, pool, n, pr, pc);
                    for c0 in (0..f).step_by(NC) {
                        let (mut lo, mut hi) = match b {
                            Some(b) => unsafe {
                                ([_mm256_loadu_ps(&b[c0]); M], [_mm256_loadu_ps(b.as_ptr().add(c0 + 8)); M])
                            },
                            None => ([_mm256_setzero_ps(); M], [_mm256_setzero_ps(); M]),
                        };
                        for (j, &o) in off.iter().enumerate().take(k) {
                            let wj = unsafe { w.as_ptr().add(j * f + c0) };
                            let (w0, w1) = unsafe { (_mm256_loadu_ps(wj), _mm256_loadu_ps(wj.add(8))) };
                            for i in 0..M {
                                let v = unsafe { _mm256_broadcast_ss(&*xs.add(px.base[i] + o)) };
                                lo[i] = _mm256_fmadd_ps(v, w0, lo[i]);
                                hi[i] = _mm256_fmadd_ps(v, w1, hi[i]);
                            }
                        }
                        let (zlo, zhi) = (lo, hi);
                        if relu {
                            for i in 0..M {
                                lo[i] = _mm256_max_ps(lo[i], _mm256_setzero_ps());
                                hi[i] = _mm256_max_ps(hi[i], _mm256_setzero_ps());
                            }
                        } else if let Some(op) = act {
                            let mut buf = [[0f32; NC]; M];
                            for i in 0..M {
                                unsafe {
                                    _mm256_storeu_ps(buf[i].as_mut_ptr(), lo[i]);
                                    _mm256_storeu_ps(buf[i].as_mut_ptr().add(8), hi[i]);
                                }
                            }
                            op.apply_in_place(buf.as_flattened_mut());
                            for i in 0..M {
                                unsafe {
                                    lo[i] = _mm256_loadu_ps(buf[i].as_ptr());
                                    hi[i] = _mm256_loadu_ps(buf[i].as_ptr().add(8));
                                }
                            }
                        }
                        // Strictly greater replaces, so the first maximum wins, as in max_pool2d.
                        let first = _mm256_set1_epi32((px.row[0] * f + c0) as i32);
                        let (mut blo, mut bhi, mut zblo, mut zbhi) = (lo[0], hi[0], zlo[0], zhi[0]);
                        let (mut alo, mut ahi) = (_mm256_add_epi32(first, lanes), _mm256_add_epi32(first, lanes_hi));
                        for i in 1..M {
                            let at = _mm256_set1_epi32((px.row[i] * f + c0) as i32);
                            let (mlo, mhi) =
                                (_mm256_cmp_ps::<_CMP_GT_OQ>(lo[i], blo), _mm256_cmp_ps::<_CMP_GT_OQ>(hi[i], bhi));
                            blo = _mm256_blendv_ps(blo, lo[i], mlo);
                            bhi = _mm256_blendv_ps(bhi, hi[i], mhi);
                            zblo = _mm256_blendv_ps(zblo, zlo[i], mlo);
                            zbhi = _mm256_blendv_ps(zbhi, zhi[i], mhi);
                            let (ilo, ihi) = (_mm256_add_epi32(at, lanes), _mm256_add_epi32(at, lanes_hi));
                            alo = _mm256_castps_si256(_mm256_blendv_ps(
                                _mm256_castsi256_ps(alo),
                                _mm256_castsi256_ps(ilo),
                                mlo,
                            ));
                            ahi = _mm256_castps_si256(_mm256_blendv_ps(
                                _mm256_castsi256_ps(ahi),
                                _mm256_castsi256_ps(ihi),
                                mhi,
                            ));
                        }
                        let o = (((n - n0) * poh + pr) * pow + pc) * f + c0;
                        unsafe {
                            _mm256_storeu_ps(y.as_mut_ptr().add(o), blo);
                            _mm256_storeu_ps(y.as_mut_ptr().add(o + 8), bhi);
                            _mm256_storeu_si256(arg.as_mut_ptr().add(o).cast(), alo);
                            _mm256_storeu_si256(arg.as_mut_ptr().add(o + 8).cast(), ahi);
                            if keep_z {
                                _mm256_storeu_ps(zs.as_mut_ptr().add(o), zblo);
                                _mm256_storeu_ps(zs.as_mut_ptr().add(o + 8), zbhi);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The weight gradient with one FMA per tap, channel block and window, not one per window pixel: each
    /// channel's gradient flows to one pixel of its window (its maximum), so instead of masking the other
    /// pixels' products to zero, the tap's values at the window's M pixels sit in one 4-lane vector `q` and
    /// `vpermilps` picks each channel's pixel. `q` holds those vectors for every input position, built once
    /// per image; the channel blocks then read them. On the reference CNN's first layer (AVX2 EPYC, `perf` of
    /// `opbench fused`) this kernel's time fell from 0.72x the forward kernel's to 0.21x; an epoch's conv
    /// backward in `kiln-bench --profile` from 0.30 and 0.45 s to 0.19 and 0.21 s (alternating runs). Doing the
    /// same for the forward pass (four pixels in one vector, weights repeated) was slower: it needs every
    /// pixel's product, so it makes as many FMAs, and its transpose costs more than the broadcasts it saves.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn weight_grad<const K: usize, const M: usize>(
        g: &Window,
        pool: (usize, usize),
        n0: usize,
        n1: usize,
        x: &[f32],
        d: &[f32],
        arg: &[u32],
        dw: &mut [f32],
        q: &mut [f32],
    ) {
        let f = dw.len() / K;
        let (poh, pow) = (g.oh / pool.0, g.ow / pool.1);
        let img = g.h * g.w * g.c;
        let off = patch_offsets(g);
        // Where a window's pixels lie relative to its first: in the input, and as conv-output rows (argmax).
        let first = WindowPixels::<M>::new(g, pool, 0, 0, 0);
        let dx: [usize; M] = std::array::from_fn(|i| first.base[i] - first.base[0]);
        let drow: [__m256i; M] = std::array::from_fn(|i| _mm256_set1_epi32(((first.row[i] - first.row[0]) * f) as i32));
        let pick: [__m256i; M] = std::array::from_fn(|i| _mm256_set1_epi32(i as i32));
        // q[4p + i] = x[p + dx[i]] for every position p whose window pixels lie inside the image.
        let last = img - dx[M - 1];
        assert!(q.len() >= super::q_len(g));
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for n in n0..n1 {
            let xs = &x[(n - n0) * img..(n - n0 + 1) * img];
            // SAFETY: this function's features; `build_q` bounds its accesses itself.
            unsafe { build_q::<M>(xs, &dx, last, q) };
            for c0 in (0..f).step_by(WC) {
                let mut acc = [_mm256_setzero_ps(); K];
                let lanes_c0 = _mm256_add_epi32(lanes, _mm256_set1_epi32(c0 as i32));
                for pr in 0..poh {
                    for pc in 0..pow {
                        let base0 = (pr * pool.0 * g.sh * g.w + pc * pool.1 * g.sw) * g.c;
                        let row0 = (n * g.oh + pr * pool.0) * g.ow + pc * pool.1;
                        let o = (((n - n0) * poh + pr) * pow + pc) * f + c0;
                        let (ds, at) = unsafe {
                            (_mm256_loadu_ps(d.as_ptr().add(o)), _mm256_loadu_si256(arg.as_ptr().add(o).cast()))
                        };
                        // Which pixel of the window each channel's maximum was: at = (row0 + drow[i])·f + c.
                        let rel =
                            _mm256_sub_epi32(at, _mm256_add_epi32(_mm256_set1_epi32((row0 * f) as i32), lanes_c0));
                        let mut idx = _mm256_setzero_si256();
                        for i in 1..M {
                            idx = _mm256_or_si256(idx, _mm256_and_si256(_mm256_cmpeq_epi32(rel, drow[i]), pick[i]));
                        }
                        for j in 0..K {
                            // SAFETY: base0 + off[j] < last (the window's last pixel's patch is inside the image).
                            let v = unsafe { _mm256_broadcast_ps(&*q.as_ptr().add(4 * (base0 + off[j])).cast()) };
                            acc[j] = _mm256_fmadd_ps(_mm256_permutevar_ps(v, idx), ds, acc[j]);
                        }
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    let p = unsafe { dw.as_mut_ptr().add(j * f + c0) };
                    unsafe { _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), *a)) };
                }
            }
        }
    }

    /// q[4p + i] = xs[p + dx[i]] for p < last and i < M (lanes M.. are zero: never picked),
    /// eight positions at a time: M loads and a 4x8 transpose.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn build_q<const M: usize>(xs: &[f32], dx: &[usize; M], last: usize, q: &mut [f32]) {
        assert!(last + dx[M - 1] <= xs.len() && q.len() >= 4 * last);
        let (x, qp) = (xs.as_ptr(), q.as_mut_ptr());
        let mut p = 0;
        while p + 8 <= last {
            // SAFETY: p + 7 + dx[i] < last + dx[M - 1] <= xs.len(); 4p + 31 < 4 * last <= q.len().
            unsafe {
                let v: [__m256; 4] =
                    std::array::from_fn(
                        |i| if i < M { _mm256_loadu_ps(x.add(p + dx[i])) } else { _mm256_setzero_ps() },
                    );
                let (t0, t1) = (_mm256_unpacklo_ps(v[0], v[1]), _mm256_unpackhi_ps(v[0], v[1]));
                let (t2, t3) = (_mm256_unpacklo_ps(v[2], v[3]), _mm256_unpackhi_ps(v[2], v[3]));
                let (u0, u1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
                let (u2, u3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
                let out = qp.add(4 * p);
                _mm256_storeu_ps(out, _mm256_permute2f128_ps::<0x20>(u0, u1));
                _mm256_storeu_ps(out.add(8), _mm256_permute2f128_ps::<0x20>(u2, u3));
                _mm256_storeu_ps(out.add(16), _mm256_permute2f128_ps::<0x31>(u0, u1));
                _mm256_storeu_ps(out.add(24), _mm256_permute2f128_ps::<0x31>(u2, u3));
            }
            p += 8;
        }
        for p in p..last {
            for i in 0..M {
                q[4 * p + i] = xs[p + dx[i]];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Padding, Shape};

    fn cpu_has_avx2_fma() -> bool {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Whether the direct kernels take `x` (NHWC) convolved with a k kernel of `f` filters and pooled.
    fn takes<T: Float>(
        x: [usize; 4],
        k: (usize, usize),
        f: usize,
        s: (usize, usize),
        p: Padding,
        pool: (usize, usize),
    ) -> bool {
        let g = Window::new(Shape::new(&x).unwrap(), k, s, p, "conv2d").unwrap();
        applies::<T>(&g, f, pool)
    }

    /// The direct kernels are a speed-up only: a wrong `false` leaves results right (tests/suite/fast_paths.rs cannot
    /// see it), so the cases they must take are listed here, with those they must leave to the tiled path.
    #[test]
    fn the_direct_kernels_take_the_shapes_they_are_for() {
        // The processor's own answer, not `has_avx2()`: a dispatch that wrongly said no would pass otherwise.
        if !cpu_has_avx2_fma() {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "NOTICE: no AVX2+FMA here; the direct conv+pool kernels are off");
            return;
        }
        let v = Padding::Valid;
        assert!(takes::<f32>([64, 28, 28, 1], (3, 3), 32, (1, 1), v, (2, 2)), "the MNIST CNN's first layer");
        assert!(takes::<f32>([2, 13, 12, 1], (3, 3), 16, (2, 2), v, (2, 2)), "strided");
        assert!(takes::<f32>([2, 10, 10, 3], (2, 2), 48, (1, 1), v, (1, 1)), "12 values, no pooling");
        assert!(
            takes::<f32>([2, 9, 9, 1], (1, 1), 16, (1, 1), Padding::Same, (2, 2)),
            "same padding that pads nothing"
        );
        // The last window of `same` padding that pads only the bottom/right hangs over the edge.
        assert!(!takes::<f32>([2, 9, 9, 1], (2, 2), 16, (2, 2), Padding::Same, (2, 2)));
        assert!(!takes::<f32>([2, 9, 8, 1], (2, 3), 16, (1, 1), Padding::Same, (2, 2)));
        assert!(!takes::<f32>([2, 9, 9, 1], (3, 3), 16, (1, 1), Padding::Same, (2, 2)), "top/left padding");
        assert!(!takes::<f32>([2, 9, 9, 2], (3, 3), 16, (1, 1), v, (2, 2)), "18 values a patch");
        assert!(!takes::<f32>([2, 9, 9, 1], (3, 3), 24, (1, 1), v, (2, 2)), "filters not in blocks of 16");
        assert!(!takes::<f32>([2, 9, 9, 1], (3, 3), 16, (1, 1), v, (3, 2)), "6 pixels a window");
        assert!(takes::<f32>([2, 9, 9, 1], (3, 3), 16, (1, 1), v, (1, 4)), "4 pixels a window, in a row");
        // Windows inside along one axis only: both must be.
        assert!(!takes::<f32>([2, 9, 8, 1], (2, 1), 16, (1, 1), Padding::Same, (2, 2)));
        assert!(!takes::<f32>([2, 8, 9, 1], (1, 2), 16, (1, 1), Padding::Same, (2, 2)));
        assert!(!takes::<f32>([2, 9, 8, 1], (2, 1), 16, (2, 1), Padding::Same, (2, 2)));
        assert!(!takes::<f32>([2, 8, 9, 1], (1, 2), 16, (1, 2), Padding::Same, (2, 2)));
        assert!(!takes::<f64>([2, 9, 9, 1], (3, 3), 16, (1, 1), v, (2, 2)), "f64");
    }

    /// The kernels read and write through raw pointers, bounded by the asserts at their top: a buffer one
    /// element too short must panic there, never reach the SIMD code.
    #[test]
    fn buffers_too_short_are_refused_before_the_kernels_run() {
        if !cpu_has_avx2_fma() {
            return;
        }
        let (n, f, pool) = (2, 16, (2, 2));
        let g = Window::new(Shape::new(&[n, 10, 8, 1]).unwrap(), (3, 3), (1, 1), Padding::Valid, "conv2d").unwrap();
        let outs = n * (g.oh / 2) * (g.ow / 2) * f;
        let (x, w, b) = (vec![0.5f32; n * 10 * 8], vec![0.25f32; 9 * f], vec![0.0f32; f]);
        let refused = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
        let fwd = |xl: usize, yl: usize, al: usize, zl: usize| {
            let (mut y, mut arg, mut zs) = (vec![0f32; yl], vec![0u32; al], vec![0f32; zl]);
            forward(&g, pool, 0, n, &x[..xl], &w, Some(&b), None, &mut y, &mut arg, &mut zs);
        };
        fwd(x.len(), outs, outs, outs);
        assert!(refused(&|| fwd(x.len() - 1, outs, outs, outs)), "x");
        assert!(refused(&|| fwd(x.len(), outs - 1, outs, outs)), "y");
        assert!(refused(&|| fwd(x.len(), outs, outs - 1, outs)), "arg");
        assert!(refused(&|| fwd(x.len(), outs, outs, outs - 1)), "zs");
        let grad = |xl: usize, dl: usize, al: usize| {
            let (d, arg, mut dw, mut q) = (vec![1f32; dl], vec![0u32; al], vec![0f32; 9 * f], vec![0f32; q_len(&g)]);
            weight_grad(&g, pool, 0, n, &x[..xl], &d, &arg, &mut dw, &mut q);
        };
        grad(x.len(), outs, outs);
        assert!(refused(&|| grad(x.len() - 1, outs, outs)), "x");
        assert!(refused(&|| grad(x.len(), outs - 1, outs)), "d");
        assert!(refused(&|| grad(x.len(), outs, outs - 1)), "arg");
    }
}
