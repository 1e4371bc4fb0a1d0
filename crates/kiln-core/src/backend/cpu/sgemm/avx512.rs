//! `sgemm`'s register tile and B packing for processors with AVX-512F: 8 rows x 2 vectors of 16 columns (16 of
//! the 32 registers hold sums), masked loads and stores for the columns past a tile's edge. It reads every B
//! panel through masks, packed or not (`Tile::padded` changes nothing here), and issues no prefetches
//! (`Tile::prefetch`, measured on AVX2 only).

use super::{Kernel, Panel, Tile};
use crate::backend::cpu::gemm::Mat;
use std::arch::x86_64::*;

/// The AVX-512 kernel for `sgemm::blocked`.
pub(super) struct Avx512;

/// Columns of a B panel: two vectors of 16.
const NR: usize = 32;

impl Kernel for Avx512 {
    const MR: usize = 8;
    const NR: usize = NR;

    /// One tile of c (t.rows <= MR rows, t.cols <= NR columns) from t.rows rows of A and a B panel over kc
    /// steps, dispatched to a kernel of exactly that many rows.
    ///
    /// # Safety
    /// AVX-512F present; A holds t.rows rows and B t.cols columns over kc steps; the tile lies inside c.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile(kc: usize, a: Panel, b: Panel, c: *mut f32, ldc: usize, t: Tile) {
        unsafe {
            match t.rows {
                8 => rows::<8, 1>(kc, a, b, c, ldc, t),
                7 => rows::<7, 1>(kc, a, b, c, ldc, t),
                6 => rows::<6, 1>(kc, a, b, c, ldc, t),
                5 => rows::<5, 1>(kc, a, b, c, ldc, t),
                4 => rows::<4, 2>(kc, a, b, c, ldc, t),
                3 => rows::<3, 2>(kc, a, b, c, ldc, t),
                2 => rows::<2, 4>(kc, a, b, c, ldc, t),
                _ => rows::<1, 4>(kc, a, b, c, ldc, t),
            }
        }
    }

    /// A B panel (NR columns of kc values, k-major) from columns c0..c0+cols of a B whose rows are
    /// contiguous (cs = 1); columns past `cols` are zero.
    ///
    /// # Safety
    /// AVX-512F present; b.cs = 1 and elements (p0 + p, c0 + j) for p < kc, j < cols lie inside b's data;
    /// `panel` holds NR x kc values.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_rows(b: Mat<f32>, p0: usize, kc: usize, c0: usize, cols: usize, panel: &mut [f32]) {
        assert!(panel.len() >= NR * kc);
        let (mlo, mhi) =
            (((1u32 << cols.min(16)) - 1) as __mmask16, ((1u32 << cols.saturating_sub(16)) - 1) as __mmask16);
        for p in 0..kc {
            // SAFETY: the first `cols` values of the row are inside b (caller's contract), the rest are
            // masked off and not read; the panel holds NR values at p·NR (asserted above).
            unsafe {
                let src = b.data.as_ptr().add((p0 + p) * b.rs + c0);
                let dst = panel.as_mut_ptr().add(p * NR);
                _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps(mlo, src));
                _mm512_storeu_ps(dst.add(16), _mm512_maskz_loadu_ps(mhi, src.add(16)));
            }
        }
    }

    /// A B panel (NR columns of kc values, k-major) from columns c0..c0+cols of a B whose columns are
    /// contiguous (rs = 1): each 16 columns x 16 k steps are loaded as 16 rows, transposed in registers (two
    /// rounds of in-lane unpacks, two of 128-bit lane shuffles) and stored as 16 k steps of 16 columns.
    /// Columns past `cols` are zero.
    ///
    /// # Safety
    /// AVX-512F present; b.rs = 1 and elements (p0 + p, c0 + j) for p < kc, j < cols lie inside b's data;
    /// `panel` holds NR x kc values.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_transposed(b: Mat<f32>, p0: usize, kc: usize, c0: usize, cols: usize, panel: &mut [f32]) {
        assert!(panel.len() >= NR * kc);
        let (ps, pd) = (_mm512_castps_pd, _mm512_castpd_ps);
        for h in 0..NR / 16 {
            let here = cols.saturating_sub(h * 16).min(16);
            for p in (0..kc).step_by(16) {
                let len = (kc - p).min(16);
                let pmask = ((1u32 << len) - 1) as __mmask16;
                let mut r = [_mm512_setzero_ps(); 16];
                for (i, ri) in r.iter_mut().enumerate().take(here) {
                    let at = (c0 + h * 16 + i) * b.cs + p0 + p;
                    // SAFETY: the first `len` values from `at` are inside b (caller's contract); the rest
                    // are masked off and not read.
                    *ri = unsafe { _mm512_maskz_loadu_ps(pmask, b.data.as_ptr().add(at)) };
                }
                let mut t = [_mm512_setzero_ps(); 16];
                for i in 0..8 {
                    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
                }
                // u[4g + c], lane l: rows 4g..4g+4 of column 4l + c.
                let mut u = [_mm512_setzero_ps(); 16];
                for g in 0..4 {
                    let (a0, a1, a2, a3) = (ps(t[4 * g]), ps(t[4 * g + 1]), ps(t[4 * g + 2]), ps(t[4 * g + 3]));
                    u[4 * g] = pd(_mm512_unpacklo_pd(a0, a2));
                    u[4 * g + 1] = pd(_mm512_unpackhi_pd(a0, a2));
                    u[4 * g + 2] = pd(_mm512_unpacklo_pd(a1, a3));
                    u[4 * g + 3] = pd(_mm512_unpackhi_pd(a1, a3));
                }
                for c in 0..4 {
                    let v = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
                    let w = _mm512_shuffle_f32x4::<0xdd>(u[c], u[4 + c]);
                    let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
                    let w2 = _mm512_shuffle_f32x4::<0xdd>(u[8 + c], u[12 + c]);
                    let out = [
                        _mm512_shuffle_f32x4::<0x88>(v, v2),
                        _mm512_shuffle_f32x4::<0x88>(w, w2),
                        _mm512_shuffle_f32x4::<0xdd>(v, v2),
                        _mm512_shuffle_f32x4::<0xdd>(w, w2),
                    ];
                    // Column 4l + c of the block is k step p + 4l + c.
                    for (l, o) in out.iter().enumerate() {
                        let j = 4 * l + c;
                        if j < len {
                            let at = (p + j) * NR + h * 16;
                            // SAFETY: (p + j) < kc, so the 16 values lie inside the panel (asserted above).
                            unsafe { _mm512_storeu_ps(panel.as_mut_ptr().add(at), *o) };
                        }
                    }
                }
            }
        }
    }
}

/// M rows; S independent sets of accumulators over alternate k steps, so that few rows still keep
/// enough FMAs in flight to cover their latency.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn rows<const M: usize, const S: usize>(kc: usize, a: Panel, b: Panel, c: *mut f32, ldc: usize, t: Tile) {
    let mask = |cols: usize| -> __mmask16 { ((1u32 << cols.min(16)) - 1) as __mmask16 };
    let (mlo, mhi) = (mask(t.cols), mask(t.cols.saturating_sub(16)));
    let mut lo = [[_mm512_setzero_ps(); M]; S];
    let mut hi = [[_mm512_setzero_ps(); M]; S];
    let step = |lo: &mut [__m512; M], hi: &mut [__m512; M], p: usize| unsafe {
        let bp = b.ptr.add(p * b.rs);
        let (b0, b1) = (_mm512_maskz_loadu_ps(mlo, bp), _mm512_maskz_loadu_ps(mhi, bp.add(16)));
        let ap = a.ptr.add(p * a.cs);
        for i in 0..M {
            let v = _mm512_set1_ps(*ap.add(i * a.rs));
            lo[i] = _mm512_fmadd_ps(v, b0, lo[i]);
            hi[i] = _mm512_fmadd_ps(v, b1, hi[i]);
        }
    };
    let whole = kc / S * S;
    for p in (0..whole).step_by(S) {
        for s in 0..S {
            step(&mut lo[s], &mut hi[s], p + s);
        }
    }
    for p in whole..kc {
        step(&mut lo[0], &mut hi[0], p);
    }
    for s in 1..S {
        for i in 0..M {
            lo[0][i] = _mm512_add_ps(lo[0][i], lo[s][i]);
            hi[0][i] = _mm512_add_ps(hi[0][i], hi[s][i]);
        }
    }
    for i in 0..M {
        unsafe {
            let row = c.add(i * ldc);
            let (mut l, mut h) = (lo[0][i], hi[0][i]);
            if t.add {
                l = _mm512_add_ps(l, _mm512_maskz_loadu_ps(mlo, row));
                h = _mm512_add_ps(h, _mm512_maskz_loadu_ps(mhi, row.add(16)));
            }
            _mm512_mask_storeu_ps(row, mlo, l);
            _mm512_mask_storeu_ps(row.add(16), mhi, h);
        }
    }
}
