//! `sgemm`'s register tile and B packing for processors with AVX2 and FMA but no AVX-512: 6 rows x 2 vectors
//! of 8 columns (12 of the 16 registers hold sums, two hold the B vectors, one the broadcast A value). A packed
//! B panel is read whole (its columns past the output are zero); a B read in place, and the output, take masked
//! loads and stores only on a tile that ends inside the panel. A tile reading a B packed once ahead of time
//! (`Packed`) from memory prefetches the stream ahead of it when asked (`Tile::prefetch`).

use super::{Kernel, Panel, Tile};
use crate::backend::cpu::gemm::Mat;
use std::arch::x86_64::*;

/// The AVX2 kernel for `sgemm::blocked`.
pub(super) struct Avx2;

/// Columns of a B panel: two vectors of 8.
const NR: usize = 16;

impl Kernel for Avx2 {
    const MR: usize = 6;
    const NR: usize = NR;

    /// One tile of c, dispatched to a kernel of exactly t.rows rows and to whole or masked reads of B.
    ///
    /// # Safety
    /// AVX2 and FMA present; A holds t.rows rows and B t.cols columns (NR when t.padded) over kc steps; the tile
    /// lies inside c.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile(kc: usize, a: Panel, b: Panel, c: *mut f32, ldc: usize, t: Tile) {
        if t.padded || t.cols == NR {
            // SAFETY: B holds NR readable columns; the rest is the caller's contract.
            unsafe { by_rows::<false>(kc, a, b, c, ldc, t) }
        } else {
            // SAFETY: the caller's contract; B's columns past t.cols are masked off.
            unsafe { by_rows::<true>(kc, a, b, c, ldc, t) }
        }
    }

    /// A B panel (NR columns of kc values, k-major) from columns c0..c0+cols of a B whose rows are contiguous.
    ///
    /// # Safety
    /// AVX2 present; b.cs = 1 and elements (p0 + p, c0 + j) for p < kc, j < cols lie inside b's data.
    #[target_feature(enable = "avx2")]
    unsafe fn pack_rows(b: Mat<f32>, p0: usize, kc: usize, c0: usize, cols: usize, panel: &mut [f32]) {
        assert!(panel.len() >= NR * kc);
        let (m0, m1) = (lanes(cols), lanes(cols.saturating_sub(8)));
        for p in 0..kc {
            // SAFETY: the first `cols` values of the row are inside b (caller's contract), the rest are masked off
            // and not read; the panel holds NR values at p·NR (asserted above).
            unsafe {
                let src = b.data.as_ptr().add((p0 + p) * b.rs + c0);
                let dst = panel.as_mut_ptr().add(p * NR);
                if cols == NR {
                    _mm256_storeu_ps(dst, _mm256_loadu_ps(src));
                    _mm256_storeu_ps(dst.add(8), _mm256_loadu_ps(src.add(8)));
                } else {
                    _mm256_storeu_ps(dst, _mm256_maskload_ps(src, m0));
                    _mm256_storeu_ps(dst.add(8), _mm256_maskload_ps(src.wrapping_add(8), m1));
                }
            }
        }
    }

    /// A B panel from a B whose columns are contiguous (rs = 1): each 8 columns x 8 k steps are loaded as 8 rows,
    /// transposed in registers (in-lane unpacks and shuffles, then 128-bit lane swaps) and stored as 8 k steps of
    /// 8 columns. Columns past `cols` are zero.
    ///
    /// # Safety
    /// AVX2 present; b.rs = 1 and elements (p0 + p, c0 + j) for p < kc, j < cols lie inside b's data.
    #[target_feature(enable = "avx2")]
    unsafe fn pack_transposed(b: Mat<f32>, p0: usize, kc: usize, c0: usize, cols: usize, panel: &mut [f32]) {
        assert!(panel.len() >= NR * kc);
        for h in 0..NR / 8 {
            let here = cols.saturating_sub(h * 8).min(8);
            for p in (0..kc).step_by(8) {
                let len = (kc - p).min(8);
                let pmask = lanes(len);
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, ri) in r.iter_mut().enumerate().take(here) {
                    let at = (c0 + h * 8 + i) * b.cs + p0 + p;
                    // SAFETY: the first `len` values from `at` are inside b (caller's contract); the rest are
                    // masked off and not read.
                    *ri = unsafe { _mm256_maskload_ps(b.data.as_ptr().wrapping_add(at), pmask) };
                }
                // t[2q], t[2q + 1]: rows 2q and 2q + 1 interleaved (k steps 0, 1 | 4, 5 and 2, 3 | 6, 7).
                let mut t = [_mm256_setzero_ps(); 8];
                for q in 0..4 {
                    t[2 * q] = _mm256_unpacklo_ps(r[2 * q], r[2 * q + 1]);
                    t[2 * q + 1] = _mm256_unpackhi_ps(r[2 * q], r[2 * q + 1]);
                }
                // u[4g + s], 128-bit lane l: k step s + 4l of rows 4g..4g+4.
                let mut u = [_mm256_setzero_ps(); 8];
                for g in 0..2 {
                    let (lo, hi) = (t[4 * g], t[4 * g + 1]);
                    let (lo2, hi2) = (t[4 * g + 2], t[4 * g + 3]);
                    u[4 * g] = _mm256_shuffle_ps::<0x44>(lo, lo2);
                    u[4 * g + 1] = _mm256_shuffle_ps::<0xee>(lo, lo2);
                    u[4 * g + 2] = _mm256_shuffle_ps::<0x44>(hi, hi2);
                    u[4 * g + 3] = _mm256_shuffle_ps::<0xee>(hi, hi2);
                }
                for s in 0..4 {
                    // k step s (low lanes of u[s] and u[4 + s]) and k step s + 4 (their high lanes), 8 rows each.
                    let out = [
                        (s, _mm256_permute2f128_ps::<0x20>(u[s], u[4 + s])),
                        (s + 4, _mm256_permute2f128_ps::<0x31>(u[s], u[4 + s])),
                    ];
                    for (j, o) in out {
                        if j < len {
                            // SAFETY: (p + j) < kc, so the 8 values lie inside the panel (asserted above).
                            unsafe { _mm256_storeu_ps(panel.as_mut_ptr().add((p + j) * NR + h * 8), o) };
                        }
                    }
                }
            }
        }
    }
}

/// A lane mask for maskload/maskstore: lanes 0..n set (n past 8 counts as 8).
#[target_feature(enable = "avx2")]
fn lanes(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// # Safety
/// As for tile; B holds NR columns when MASK is false.
#[target_feature(enable = "avx2,fma")]
unsafe fn by_rows<const MASK: bool>(kc: usize, a: Panel, b: Panel, c: *mut f32, ldc: usize, t: Tile) {
    // Few rows keep more sets of sums, so that at least 8 FMAs are in flight (4 cycles of latency, 2 a cycle).
    unsafe {
        match t.rows {
            6 => rows::<6, 1, MASK>(kc, a, b, c, ldc, t),
            5 => rows::<5, 1, MASK>(kc, a, b, c, ldc, t),
            4 => rows::<4, 1, MASK>(kc, a, b, c, ldc, t),
            3 => rows::<3, 2, MASK>(kc, a, b, c, ldc, t),
            2 => rows::<2, 2, MASK>(kc, a, b, c, ldc, t),
            _ => rows::<1, 4, MASK>(kc, a, b, c, ldc, t),
        }
    }
}

/// M rows x 16 columns over kc steps; S independent sets of sums over alternate k steps.
///
/// # Safety
/// As for by_rows.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn rows<const M: usize, const S: usize, const MASK: bool>(
    kc: usize,
    a: Panel,
    b: Panel,
    c: *mut f32,
    ldc: usize,
    t: Tile,
) {
    let (m0, m1) = (lanes(t.cols), lanes(t.cols.saturating_sub(8)));
    let mut acc = [[[_mm256_setzero_ps(); 2]; M]; S];
    let step = |acc: &mut [[__m256; 2]; M], p: usize| unsafe {
        let bp = b.ptr.add(p * b.rs);
        if t.prefetch > 0 {
            // A hint only: an address past B's end is not read and does not fault.
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(t.prefetch).cast());
        }
        let (b0, b1) = match MASK {
            // A masked-off lane is not read, so the second vector's address may lie past B's end.
            true => (_mm256_maskload_ps(bp, m0), _mm256_maskload_ps(bp.wrapping_add(8), m1)),
            false => (_mm256_loadu_ps(bp), _mm256_loadu_ps(bp.add(8))),
        };
        let ap = a.ptr.add(p * a.cs);
        for (i, sums) in acc.iter_mut().enumerate() {
            let v = _mm256_broadcast_ss(&*ap.add(i * a.rs));
            sums[0] = _mm256_fmadd_ps(v, b0, sums[0]);
            sums[1] = _mm256_fmadd_ps(v, b1, sums[1]);
        }
    };
    let whole = kc / S * S;
    for p in (0..whole).step_by(S) {
        for (s, set) in acc.iter_mut().enumerate() {
            step(set, p + s);
        }
    }
    for p in whole..kc {
        step(&mut acc[0], p);
    }
    let (first, rest) = acc.split_at_mut(1);
    for set in rest.iter() {
        for (f, r) in first[0].iter_mut().zip(set) {
            *f = [_mm256_add_ps(f[0], r[0]), _mm256_add_ps(f[1], r[1])];
        }
    }
    for (i, [lo, hi]) in acc[0].into_iter().enumerate() {
        // SAFETY: row i of the tile lies inside c (caller's contract); past t.cols the lanes are masked off.
        unsafe {
            let row = c.add(i * ldc);
            if t.cols == NR {
                let (mut l, mut h) = (lo, hi);
                if t.add {
                    l = _mm256_add_ps(l, _mm256_loadu_ps(row));
                    h = _mm256_add_ps(h, _mm256_loadu_ps(row.add(8)));
                }
                _mm256_storeu_ps(row, l);
                _mm256_storeu_ps(row.add(8), h);
            } else {
                let (mut l, mut h) = (lo, hi);
                let row8 = row.wrapping_add(8);
                if t.add {
                    l = _mm256_add_ps(l, _mm256_maskload_ps(row, m0));
                    h = _mm256_add_ps(h, _mm256_maskload_ps(row8, m1));
                }
                _mm256_maskstore_ps(row, m0, l);
                _mm256_maskstore_ps(row8, m1, h);
            }
        }
    }
}
