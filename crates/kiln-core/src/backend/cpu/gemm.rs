//! Matrix products: f32 on processors with AVX-512 or AVX2 through kiln's own kernel (`sgemm`), f64 and
//! everything else through the `gemm` crate. Both take strides, so transposed operands cost no copy; this
//! file splits work across threads, and multiplies by weights packed once (`gemm_packed`).

use super::sgemm;
use crate::Float;
use crate::simd::as_f32;
use std::sync::atomic::{AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads for matrix products: 0 = rayon's pool size (the default), 1 = the calling thread only.
pub fn set_num_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

/// A strided matrix operand: element (r, c) is at `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major [rows, cols] matrix.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major [rows, cols] matrix.
    pub fn rows_t(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: 1, cs: cols }
    }
}

/// Asserts that every index the kernel touches is inside the slices, and handles empty products. Returns
/// false when nothing is left for the kernel to do.
fn checked<T: Float>(m: usize, n: usize, k: usize, dst: &mut [T], a: Mat<T>, b: Mat<T>, accumulate: bool) -> bool {
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return false;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::ZERO);
        }
        return false;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(a.data.len() > last(m, k, a.rs, a.cs) && b.data.len() > last(k, n, b.rs, b.cs));
    true
}

/// Below this many flops a product runs on the calling thread: splitting costs more than it saves.
const SPLIT_FLOPS: usize = 4_000_000;

pub(crate) fn num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => rayon::current_num_threads(),
        t => t,
    }
}

/// dst[m, n] = a[m, k] · b[k, n], or += when `accumulate`. `dst` is row-major.
///
/// Work is split across threads by hand rather than by the kernel crate: measured here, its own threading
/// slows the dense layer's forward product (m = 64) and does not split a long k at all (the convolution's
/// weight gradient, m·n = 288, k = 43,264). Large outputs are split along their longer side; small
/// outputs with a long k are split along k into per-thread partial sums.
pub(crate) fn gemm<T: Float>(m: usize, n: usize, k: usize, dst: &mut [T], a: Mat<T>, b: Mat<T>, accumulate: bool) {
    if !checked(m, n, k, dst, a, b, accumulate) {
        return;
    }
    let t = num_threads();
    if t <= 1 || 2 * m * n * k < SPLIT_FLOPS {
        // SAFETY: bounds checked above.
        unsafe { kernel(m, n, k, dst.as_mut_ptr(), n, a, b, accumulate) };
        return;
    }
    if m.max(n) >= 128 {
        split_output(m, n, k, dst, a, b, accumulate, t);
    } else {
        split_k(m, n, k, dst, a, b, accumulate, t);
    }
}

/// dst[m, n] = a[m, k] · b (or += when `accumulate`) with b packed once (`sgemm::pack`), split across threads
/// as `gemm` splits: bands of rows when the output is taller than wide, else bands of whole panels of columns.
pub(crate) fn gemm_packed(m: usize, dst: &mut [f32], a: Mat<f32>, b: &sgemm::Packed, accumulate: bool) {
    let (n, k) = (b.n(), b.k());
    assert!(dst.len() >= m * n);
    if m == 0 {
        return;
    }
    assert!(a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs, "a [{m}, {k}] is not inside its data");
    let t = num_threads();
    let parts = if t <= 1 || 2 * m * n * k < SPLIT_FLOPS { 1 } else { t };
    packed_bands(m, 0..n, dst.as_mut_ptr(), n, a, b, accumulate, parts);
}

/// Rows [0, m) x columns `cols` of the output at `dst` (leading dimension ld), in `parts` bands.
#[allow(clippy::too_many_arguments)]
fn packed_bands(
    m: usize,
    cols: std::ops::Range<usize>,
    dst: *mut f32,
    ld: usize,
    a: Mat<f32>,
    b: &sgemm::Packed,
    acc: bool,
    parts: usize,
) {
    let width = cols.len();
    let split_cols = (width * (parts / 2) / parts).next_multiple_of(b.panel());
    if parts <= 1 || (m < width && (split_cols == 0 || split_cols >= width)) {
        // SAFETY: rows [0, m) and columns `cols` of dst are the caller's own (the top call's dst holds m x n;
        // bands below are disjoint); a holds m x k (asserted at the top).
        unsafe { sgemm::sgemm_packed(m, cols, dst, ld, a, b, acc) };
        return;
    }
    let (p1, p2) = (parts / 2, parts - parts / 2);
    let ptr = SendPtr(dst);
    if m >= width {
        let m1 = m * p1 / parts;
        let a2 = Mat { data: &a.data[m1 * a.rs..], ..a };
        let c2 = cols.clone();
        rayon::join(
            || packed_bands(m1, cols, { ptr }.0, ld, a, b, acc, p1),
            // SAFETY: rows from m1 on lie inside the caller's rows.
            || packed_bands(m - m1, c2, unsafe { { ptr }.0.add(m1 * ld) }, ld, a2, b, acc, p2),
        );
    } else {
        let mid = cols.start + split_cols;
        let (left, right) = (cols.start..mid, mid..cols.end);
        rayon::join(
            || packed_bands(m, left, { ptr }.0, ld, a, b, acc, p1),
            // SAFETY: columns [mid, end) of the caller's band start split_cols values into it.
            || packed_bands(m, right, unsafe { { ptr }.0.add(split_cols) }, ld, a, b, acc, p2),
        );
    }
}

/// Each thread computes a band of rows (or columns) of dst.
#[allow(clippy::too_many_arguments)]
fn split_output<T: Float>(m: usize, n: usize, k: usize, dst: &mut [T], a: Mat<T>, b: Mat<T>, acc: bool, parts: usize) {
    if parts <= 1 {
        // SAFETY: the caller's bands stay inside dst, a and b (checked at the top-level call).
        unsafe { kernel(m, n, k, dst.as_mut_ptr(), n, a, b, acc) };
        return;
    }
    let (p1, p2) = (parts / 2, parts - parts / 2);
    let ptr = SendPtr(dst.as_mut_ptr());
    let ld = n;
    if m >= n {
        let m1 = m * p1 / parts;
        let a2 = Mat { data: &a.data[m1 * a.rs..], ..a };
        let (top, bottom) = dst.split_at_mut(m1 * n);
        rayon::join(
            || split_output(m1, n, k, top, a, b, acc, p1),
            || split_output(m - m1, n, k, bottom, a2, b, acc, p2),
        );
    } else {
        let n1 = n * p1 / parts;
        let b2 = Mat { data: &b.data[n1 * b.cs..], ..b };
        // Column bands of a row-major dst interleave in memory, so each side writes through the raw pointer
        // to its own columns only.
        rayon::join(
            // SAFETY: columns [0, n1) and [n1, n) are disjoint; every row of both lies within dst.
            || unsafe { kernel(m, n1, k, { ptr }.0, ld, a, b, acc) },
            || unsafe { kernel(m, n - n1, k, { ptr }.0.add(n1), ld, a, b2, acc) },
        );
    }
}

/// Two halves of k into two partial products, then summed into dst.
#[allow(clippy::too_many_arguments)]
fn split_k<T: Float>(m: usize, n: usize, k: usize, dst: &mut [T], a: Mat<T>, b: Mat<T>, acc: bool, _parts: usize) {
    let k1 = k / 2;
    let a2 = Mat { data: &a.data[k1 * a.cs..], ..a };
    let b2 = Mat { data: &b.data[k1 * b.rs..], ..b };
    PARTIAL.with(|cell| {
        let mut part = cell.take();
        part.clear();
        part.resize(m * n, 0.0f64);
        // The partial is kept in T's own type through a typed view of the f64 scratch (T is f32 or f64).
        let view: &mut [T] = unsafe { std::slice::from_raw_parts_mut(part.as_mut_ptr() as *mut T, m * n) };
        rayon::join(
            // SAFETY: dst and view are distinct buffers of m·n elements.
            || unsafe { kernel(m, n, k1, dst.as_mut_ptr(), n, a, b, acc) },
            || unsafe { kernel(m, n, k - k1, view.as_mut_ptr(), n, a2, b2, false) },
        );
        for (d, &p) in dst[..m * n].iter_mut().zip(view.iter()) {
            *d += p;
        }
        cell.set(part);
    });
}

thread_local! {
    /// Scratch for split-k partial sums, reused so steady-state products do not allocate.
    static PARTIAL: std::cell::Cell<Vec<f64>> = const { std::cell::Cell::new(Vec::new()) };
}

thread_local! {
    static IN_KERNEL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct ClearOnDrop;
impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        IN_KERNEL.with(|f| f.set(false));
    }
}

/// Whether this thread is inside a call of the matrix-product kernel crate. The crate allocates its packing
/// buffers on every call; allocation tests use this to tell those apart from kiln's own.
pub fn in_matmul_kernel() -> bool {
    IN_KERNEL.with(|f| f.get())
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// dst[m, n] = a · b (or +=) on the calling thread only: for callers that already split work by thread.
pub(crate) fn gemm_serial<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    a: Mat<T>,
    b: Mat<T>,
    accumulate: bool,
) {
    if !checked(m, n, k, dst, a, b, accumulate) {
        return;
    }
    // SAFETY: bounds checked above.
    unsafe { kernel(m, n, k, dst.as_mut_ptr(), n, a, b, accumulate) }
}

/// One single-threaded call of the kernel crate; dst has leading dimension `ld`.
///
/// # Safety
/// Every element (r, c) for r < m, c < n must be valid at dst[r·ld + c], a and b for their extents.
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    ld: usize,
    a: Mat<T>,
    b: Mat<T>,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if let (Some(ad), Some(bd), true) = (as_f32(a.data), as_f32(b.data), sgemm::available()) {
        let (a, b) = (Mat { data: ad, rs: a.rs, cs: a.cs }, Mat { data: bd, rs: b.rs, cs: b.cs });
        // SAFETY: T is f32 (as_f32 succeeded), so dst points at f32; the caller's contract covers the rest.
        return unsafe { sgemm::sgemm(m, n, k, dst.cast(), ld, a, b, accumulate) };
    }
    IN_KERNEL.with(|f| f.set(true));
    let _clear = ClearOnDrop;
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ld as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    /// Every layout and edge the kernels have (rows and columns that are not whole register tiles, k and n
    /// past one packed block, transposed operands, accumulation), against a plain f64 triple loop.
    #[test]
    fn products_match_a_plain_loop() {
        let mut rng = Rng::new(7);
        for &(m, k, n) in
            &[(1, 1, 1), (3, 5, 7), (8, 256, 32), (13, 300, 45), (64, 600, 130), (9, 70, 2100), (200, 17, 64)]
        {
            for (ta, tb, acc) in [(false, false, false), (true, false, true), (false, true, false), (true, true, true)]
            {
                let a: Vec<f32> = (0..m * k).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
                let b: Vec<f32> = (0..k * n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
                let c0: Vec<f32> = (0..m * n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
                // A transposed operand is stored as its transpose: [k, m] for a, [n, k] for b.
                let am = if ta { Mat::rows_t(&a, m) } else { Mat::rows(&a, k) };
                let bm = if tb { Mat::rows_t(&b, k) } else { Mat::rows(&b, n) };
                let mut c = c0.clone();
                gemm(m, n, k, &mut c, am, bm, acc);
                for i in 0..m {
                    for j in 0..n {
                        let mut want = if acc { c0[i * n + j] as f64 } else { 0.0 };
                        for p in 0..k {
                            want += am.data[i * am.rs + p * am.cs] as f64 * bm.data[p * bm.rs + j * bm.cs] as f64;
                        }
                        let got = c[i * n + j] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{m}x{k}x{n} {ta} {tb}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
