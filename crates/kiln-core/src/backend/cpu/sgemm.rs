//! kiln's own f32 matrix-product kernel for processors with AVX-512, blocked as usual (Goto; BLIS): a
//! KC-deep block of B stays in cache while rows of A pass it, and an 8x32 register tile accumulates each
//! piece of the output.
//!
//! Two reasons it exists beside the `gemm` crate: on a stable compiler that crate runs its AVX2 kernels
//! only (its AVX-512 ones need its `nightly` feature), and this machine's cores do twice the f32 FMAs with
//! AVX-512 (measured: 225 against 120 GFLOP/s per core on a register-only loop); and it allocates its
//! packing buffers on every call, where these are kept per thread and reused, so a training step makes no
//! heap allocation.

use super::gemm::Mat;
use std::cell::Cell;

/// Rows and columns of the register tile: 8 x 2 vectors of 16 = 16 accumulators of the 32 registers.
const MR: usize = 8;
const NR: usize = 32;
/// Depth of a packed block: one B panel (KC x NR, 32 KiB) stays in L1 while the A panels pass.
const KC: usize = 256;
/// Rows of A packed at a time (MC x KC, 128 KiB: in L2).
const MC: usize = 128;
/// Columns of B packed at a time (KC x NC, 2 MiB).
const NC: usize = 2048;

/// Whether this processor runs the kernel (checked once). `KILN_GEMM_CRATE=1` in the environment sends
/// every product to the `gemm` crate instead, to compare the two (`opbench matrix`).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| std::env::var_os("KILN_GEMM_CRATE").is_none() && is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

thread_local! {
    /// This thread's buffer for packed blocks of B: it grows to its largest size once and is then reused.
    static PACKED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Gives the calling thread its packing buffer at full size now, rather than at its first product (or a
/// larger one) in the middle of training.
pub(crate) fn reserve() {
    if available() {
        let mut pb = PACKED.take();
        pb.resize(KC * NC, 0.0);
        PACKED.set(pb);
    }
}

/// Where the kernel reads an operand panel: element (row or k, column or k) at ptr[i·rs + j·cs].
#[derive(Clone, Copy)]
struct Panel {
    ptr: *const f32,
    rs: usize,
    cs: usize,
}

/// c[m, n] (leading dimension `ldc`) = a · b, or += when `accumulate`.
///
/// A is read in place whatever its strides: the kernel broadcasts one value at a time, and a last panel of
/// fewer than MR rows gets a kernel of its own size (packing A was 25-40% slower here). B is packed, since
/// rows of a 128-column B read in place, 512 bytes apart, fall into the same few L1 sets; except for a few
/// rows of A (batch 1 at inference), where each B value is used too few times to repay packing it.
///
/// # Safety
/// `available()` must be true; every element (r, col) for r < m, col < n must be valid at c[r·ldc + col];
/// a and b must hold their m x k and k x n extents (as `gemm::checked` asserts).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    ldc: usize,
    a: Mat<f32>,
    b: Mat<f32>,
    accumulate: bool,
) {
    let mut pb = PACKED.take();
    let b_in_place = b.cs == 1 && m <= 2 * MR;
    if !b_in_place && pb.len() < KC * NC.min(n.next_multiple_of(NR)) {
        pb.resize(KC * NC.min(n.next_multiple_of(NR)), 0.0);
    }
    for j0 in (0..n).step_by(NC) {
        let nc = NC.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            let add = accumulate || p0 > 0;
            if !b_in_place {
                pack_b(b, p0, kc, j0, nc, &mut pb);
            }
            for i0 in (0..m).step_by(MC) {
                let mc = MC.min(m - i0);
                for jr in (0..nc).step_by(NR) {
                    let bp = match b_in_place {
                        true => Panel { ptr: b.data[p0 * b.rs + j0 + jr..].as_ptr(), rs: b.rs, cs: 1 },
                        false => Panel { ptr: pb[jr * kc..].as_ptr(), rs: NR, cs: 1 },
                    };
                    for ir in (0..mc).step_by(MR) {
                        let r = i0 + ir;
                        let ap = Panel { ptr: a.data[r * a.rs + p0 * a.cs..].as_ptr(), rs: a.rs, cs: a.cs };
                        let tile = Tile { rows: MR.min(m - r), cols: NR.min(nc - jr), add };
                        // SAFETY: the tile lies inside c (caller's contract); its rows of A and columns of B
                        // over kc steps lie inside a and b or the packed block (bounds asserted by
                        // `gemm::checked`), and the kernel masks off columns past the tile's.
                        unsafe { avx512::tile(kc, ap, bp, c.add(r * ldc + j0 + jr), ldc, tile) };
                    }
                }
            }
        }
    }
    PACKED.set(pb);
}

/// Which part of a register tile is inside the output, and whether it adds to what is there.
#[derive(Clone, Copy)]
struct Tile {
    rows: usize,
    cols: usize,
    add: bool,
}

/// B[p0.., j0..] (kc x nc) into panels of NR columns, each stored k-major (NR values per k), columns past
/// n zero.
fn pack_b(b: Mat<f32>, p0: usize, kc: usize, j0: usize, nc: usize, buf: &mut [f32]) {
    for (jp, panel) in buf[..nc.div_ceil(NR) * NR * kc].chunks_exact_mut(NR * kc).enumerate() {
        let c0 = j0 + jp * NR;
        let cols = NR.min(j0 + nc - c0);
        #[cfg(target_arch = "x86_64")]
        if b.cs == 1 {
            // Rows of B are contiguous: one run per k, two vector loads and stores (a call of `memcpy` per
            // run was 5% of a training epoch of the reference CNN).
            // SAFETY: available() holds wherever sgemm runs; columns c0..c0+cols over p0..p0+kc lie inside
            // b (asserted by gemm::checked) and the panel holds NR x kc values.
            unsafe { avx512::pack_rows(b, p0, kc, c0, cols, panel) };
            continue;
        }
        #[cfg(target_arch = "x86_64")]
        if b.rs == 1 {
            // Columns of B are contiguous (B is a transposed row-major matrix: the dense layer's weights in
            // its input gradient): 16x16 blocks are transposed in registers, four times faster here than
            // the element-by-element copy below (opbench linear, forward+backward).
            // SAFETY: as for pack_rows.
            unsafe { avx512::pack_transposed(b, p0, kc, c0, cols, panel) };
            continue;
        }
        for col in 0..NR {
            if col >= cols {
                panel[col..].iter_mut().step_by(NR).for_each(|v| *v = 0.0);
                continue;
            }
            let base = p0 * b.rs + (c0 + col) * b.cs;
            for (p, v) in panel[col..].iter_mut().step_by(NR).enumerate() {
                *v = b.data[base + p * b.rs];
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Mat, NR, Panel, Tile};
    use std::arch::x86_64::*;

    /// One tile of c (t.rows <= MR rows, t.cols <= NR columns) from t.rows rows of A and a B panel over kc
    /// steps, dispatched to a kernel of exactly that many rows.
    ///
    /// # Safety
    /// AVX-512F present; A holds t.rows rows and B t.cols columns over kc steps; the tile lies inside c.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile(kc: usize, a: Panel, b: Panel, c: *mut f32, ldc: usize, t: Tile) {
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
    pub(super) unsafe fn pack_rows(b: Mat<f32>, p0: usize, kc: usize, c0: usize, cols: usize, panel: &mut [f32]) {
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
    pub(super) unsafe fn pack_transposed(b: Mat<f32>, p0: usize, kc: usize, c0: usize, cols: usize, panel: &mut [f32]) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel runs wherever the processor has AVX-512F: a check that wrongly said no would leave every
    /// product right (the `gemm` crate takes over) and twice as slow.
    #[test]
    fn the_kernel_runs_where_the_processor_has_avx512() {
        #[cfg(target_arch = "x86_64")]
        if std::env::var_os("KILN_GEMM_CRATE").is_none() {
            assert_eq!(available(), is_x86_feature_detected!("avx512f"));
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert!(!available());
    }

    /// `reserve` gives the thread the largest packing buffer any product asks for (KC x NC), so that no
    /// product in a training step grows it later (the allocation tests of the `kiln` crate rely on it).
    #[test]
    fn reserve_sizes_the_packing_buffer_for_every_product() {
        if !available() {
            return;
        }
        std::thread::spawn(|| {
            reserve();
            let pb = PACKED.take();
            assert_eq!(pb.len(), KC * NC);
            // The widest product then packs into it without growing it.
            PACKED.set(pb);
            let (m, n, k) = (40, 3 * NC, KC + 3);
            let (a, b) = (vec![1.0f32; m * k], vec![0.5f32; k * n]);
            let mut c = vec![0.0f32; m * n];
            // SAFETY: available() holds; a, b and c hold their m x k, k x n and m x n extents.
            unsafe { sgemm(m, n, k, c.as_mut_ptr(), n, Mat::rows(&a, k), Mat::rows(&b, n), false) };
            assert!(c.iter().all(|&v| v == 0.5 * k as f32));
            let pb = PACKED.take();
            assert_eq!((pb.len(), pb.capacity() >= KC * NC), (KC * NC, true));
        })
        .join()
        .unwrap();
    }

    /// B with contiguous columns (the transpose of a row-major matrix), packed by 16x16 register transposes:
    /// widths and depths that are not multiples of 16 (a last half-panel, a last short k block, a panel
    /// with no second half) and an offset start, against a plain loop.
    #[test]
    fn a_transposed_b_is_packed_right() {
        if !available() {
            return;
        }
        let mut rng = crate::Rng::new(6);
        for (m, n, k) in [(9, 70, 300), (17, 5, 19), (3, 33, KC + 17), (8, 16, 16)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
            // B(p, j) = data[1 + p + j·(k + 3)]: the transpose of an [n, k + 3] matrix, from its second value.
            let data: Vec<f32> = (0..n * (k + 3) + 1).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
            let b = Mat { data: &data[1..], rs: 1, cs: k + 3 };
            let mut c = vec![0.0f32; m * n];
            // SAFETY: available() holds; a holds m x k, b's last element (k-1) + (n-1)(k+3) is inside data[1..].
            unsafe { sgemm(m, n, k, c.as_mut_ptr(), n, Mat::rows(&a, k), b, false) };
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| a[i * k + p] as f64 * data[1 + p + j * (k + 3)] as f64).sum();
                    let got = c[i * n + j] as f64;
                    assert!((got - want).abs() < 1e-4, "{m}x{n}x{k} ({i}, {j}): {got} vs {want}");
                }
            }
        }
    }

    /// B with neither stride 1 (every other column of a wider transposed matrix), packed element by element:
    /// kiln's own operands have rs = 1 whenever cs != 1, which would hide a stride used the wrong way.
    #[test]
    fn a_b_strided_both_ways_is_packed_right() {
        if !available() {
            return;
        }
        let (m, n, k) = (20, 70, 300);
        let mut rng = crate::Rng::new(5);
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
        // B(p, j) = data[p·2 + j·2k]: the transpose of an [n, 2k] matrix, every other column.
        let data: Vec<f32> = (0..n * 2 * k).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
        let b = Mat { data: &data, rs: 2, cs: 2 * k };
        let mut c = vec![0.0f32; m * n];
        // SAFETY: available() holds; a holds m x k, b's last element (k-1)·2 + (n-1)·2k is inside data.
        unsafe { sgemm(m, n, k, c.as_mut_ptr(), n, Mat::rows(&a, k), b, false) };
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|p| a[i * k + p] as f64 * data[p * 2 + j * 2 * k] as f64).sum();
                assert!((c[i * n + j] as f64 - want).abs() < 1e-4, "({i}, {j}): {} vs {want}", c[i * n + j]);
            }
        }
    }
}
