//! kiln's own f32 matrix-product kernel for x86 processors, blocked as usual (Goto; BLIS): a KC-deep block of
//! B stays in cache while rows of A pass it, and a register tile (one file per instruction set:
//! `sgemm/avx512.rs` 8x32, `sgemm/avx2.rs` 6x16) accumulates each piece of the output.
//!
//! With AVX-512 it runs every f32 product. The `gemm` crate, which f64 products and other processors use, runs
//! only its AVX2 kernels on a stable compiler (its AVX-512 ones need its `nightly` feature), where these cores
//! do twice the f32 FMAs with AVX-512 (measured: 225 against 120 GFLOP/s per core on a register-only loop); and
//! it allocates its packing buffers on every call, where these are kept per thread and reused, so a training
//! step makes no heap allocation.
//!
//! With AVX2 alone it runs the products by weights packed once for inference (`Packed`): one text through
//! MiniLM (18 rows a product, the weights read from memory every time) took 22-24 ms of products in the
//! crate and 6.5-8 ms here, alternating on an AMD EPYC (Zen 3). Other products stay with the crate, which
//! packs A as well and was faster on large ones there (1024x1024x1024: 88-149 against 68-89 GFLOP/s, in
//! alternating runs on a noisy machine).

use super::gemm::Mat;
use std::cell::Cell;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Depth of a packed block: one B panel (KC x NR: 32 KiB with AVX-512, 16 KiB with AVX2) stays in L1 while
/// the A panels pass.
const KC: usize = 256;
/// Rows of A taken at a time (MC x KC, 128 KiB: in L2).
const MC: usize = 128;
/// Columns of B packed at a time (KC x NC, 2 MiB).
const NC: usize = 2048;

/// The instruction set the kernel runs with on this processor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isa {
    Avx512,
    Avx2,
}

/// Which kernel this processor runs (checked once): AVX-512F, else AVX2 with FMA, else none (the `gemm`
/// crate). `KILN_GEMM_CRATE=1` in the environment sends every product to the crate instead (and packs no
/// weights), to compare the two (`opbench matrix`, `embedbench`).
fn isa() -> Option<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static ISA: OnceLock<Option<Isa>> = OnceLock::new();
        *ISA.get_or_init(|| {
            if std::env::var_os("KILN_GEMM_CRATE").is_some() {
                None
            } else if is_x86_feature_detected!("avx512f") {
                Some(Isa::Avx512)
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                Some(Isa::Avx2)
            } else {
                None
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Whether this processor runs every f32 product on the kernel (AVX-512); with AVX2 alone, only those by
/// packed weights (`pack`).
pub(crate) fn available() -> bool {
    isa() == Some(Isa::Avx512)
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

/// Which part of a register tile is inside the output, whether it adds to what is there, whether the B
/// panel may be read whole (packed: NR columns, zero past `cols`) or only its first `cols` columns (in place),
/// and how far past each B row read to prefetch (in values; 0: none).
#[derive(Clone, Copy)]
struct Tile {
    rows: usize,
    cols: usize,
    add: bool,
    padded: bool,
    prefetch: usize,
}

/// What an instruction set's kernel gives the blocked driver.
trait Kernel {
    /// Rows and columns of the register tile; B panels are NR columns wide.
    const MR: usize;
    const NR: usize;
    /// One tile of c (t.rows <= MR rows, t.cols <= NR columns) from t.rows rows of A and a B panel over kc
    /// steps.
    ///
    /// # Safety
    /// The processor has the kernel's instruction set; A holds t.rows rows and B t.cols columns (NR when
    /// t.padded) over kc steps; the tile lies inside c.
    unsafe fn tile(kc: usize, a: Panel, b: Panel, c: *mut f32, ldc: usize, t: Tile);
    /// A B panel (NR columns of kc values, k-major) from columns c0..c0+cols of a B whose rows are contiguous
    /// (cs = 1); columns past `cols` zero.
    ///
    /// # Safety
    /// As for tile; elements (p0 + p, c0 + j) for p < kc, j < cols lie inside b; `panel` holds NR x kc values.
    unsafe fn pack_rows(b: Mat<f32>, p0: usize, kc: usize, c0: usize, cols: usize, panel: &mut [f32]);
    /// The same from a B whose columns are contiguous (rs = 1: the transpose of a row-major matrix).
    ///
    /// # Safety
    /// As for pack_rows.
    unsafe fn pack_transposed(b: Mat<f32>, p0: usize, kc: usize, c0: usize, cols: usize, panel: &mut [f32]);
}

/// c[m, n] (leading dimension `ldc`) = a · b, or += when `accumulate`, with the AVX-512 kernel.
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
    // SAFETY: isa() names an instruction set this processor has; the rest is the caller's contract.
    #[cfg(target_arch = "x86_64")]
    if isa() == Some(Isa::Avx512) {
        return unsafe { blocked::<avx512::Avx512>(m, n, k, c, ldc, a, b, accumulate) };
    }
    unreachable!("sgemm called on a processor without its kernel ({m}x{k}x{n})");
}

/// c[m, n] (leading dimension `ldc`) = a · b on the calling thread with kiln's own kernel on either
/// instruction set, for a caller that measured it best for its shapes (a prompt's products by quantized
/// weights, dequantized a chunk at a time: `qdot/dequant.rs`).
///
/// # Safety
/// `own_kernel()` must be true; every element (r, col) for r < m, col < n must be valid at c[r·ldc + col];
/// a and b must hold their m x k and k x n extents.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_own(m: usize, n: usize, k: usize, c: *mut f32, ldc: usize, a: Mat<f32>, b: Mat<f32>) {
    if m == 0 || n == 0 || k == 0 {
        for r in 0..m {
            // SAFETY: row r's n values lie inside c (the caller's contract).
            unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), n) }.fill(0.0);
        }
        return;
    }
    // SAFETY: isa() names an instruction set this processor has; the rest is the caller's contract.
    #[cfg(target_arch = "x86_64")]
    match isa() {
        Some(Isa::Avx512) => return unsafe { blocked::<avx512::Avx512>(m, n, k, c, ldc, a, b, false) },
        Some(Isa::Avx2) => return unsafe { blocked::<avx2::Avx2>(m, n, k, c, ldc, a, b, false) },
        None => {}
    }
    unreachable!("sgemm_own called on a processor without kiln's kernel ({m}x{k}x{n})");
}

/// Whether `sgemm_own` runs here (AVX-512, or AVX2 with FMA; not with `KILN_GEMM_CRATE` set).
pub(crate) fn own_kernel() -> bool {
    isa().is_some()
}

/// The blocked product on kernel K.
///
/// A is read in place whatever its strides: the kernel broadcasts one value at a time, and a last panel of
/// fewer than MR rows gets a kernel of its own size (packing A was 25-40% slower with AVX-512). B is packed,
/// since rows of a 128-column B read in place, 512 bytes apart, fall into the same few L1 sets; except for a
/// few rows of A (batch 1 at inference), where each B value is used too few times to repay packing it.
///
/// # Safety
/// As for `sgemm`, with K's instruction set present.
#[allow(clippy::too_many_arguments)]
unsafe fn blocked<K: Kernel>(
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
    let b_in_place = b.cs == 1 && m <= 2 * K::MR;
    if !b_in_place && pb.len() < KC * NC.min(n.next_multiple_of(K::NR)) {
        pb.resize(KC * NC.min(n.next_multiple_of(K::NR)), 0.0);
    }
    for j0 in (0..n).step_by(NC) {
        let nc = NC.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            let add = accumulate || p0 > 0;
            if !b_in_place {
                // SAFETY: K's instruction set is present (caller); the block lies inside b (gemm::checked).
                unsafe { pack_b::<K>(b, p0, kc, j0, nc, &mut pb) };
            }
            let panel = |jr: usize| match b_in_place {
                true => Panel { ptr: b.data[p0 * b.rs + j0 + jr..].as_ptr(), rs: b.rs, cs: 1 },
                false => Panel { ptr: pb[jr * kc..].as_ptr(), rs: K::NR, cs: 1 },
            };
            // SAFETY: columns j0..j0+nc of c are the caller's; in place the kernel reads no column of B past the
            // tile's, and a packed panel holds NR columns (bounds asserted by `gemm::checked`).
            let at = Block { p0, kc, width: nc, add, padded: !b_in_place, prefetch: 0 };
            unsafe { block::<K>(m, a, at, panel, c.add(j0), ldc) };
        }
    }
    PACKED.set(pb);
}

/// A B operand [k, n] packed once in its kernel's layout (a weight of an inference tape, `Backend::prepack`):
/// for each KC block of k, its panels of NR columns one after another, kc x NR values each, columns past n
/// zero. A product from it skips packing, and its B stream is read in order, which the prefetcher follows;
/// with one text through an encoder (18 rows) the weights come from memory at every product, and packing them
/// on every call had been a fifth of the time (`perf`).
pub(crate) struct Packed {
    isa: Isa,
    k: usize,
    n: usize,
    /// Columns of a panel (K::NR), and n rounded up to whole panels.
    nr: usize,
    npad: usize,
    data: Vec<f32>,
}

impl Packed {
    pub(crate) fn k(&self) -> usize {
        self.k
    }
    pub(crate) fn n(&self) -> usize {
        self.n
    }
    /// Columns of a panel: a split of the columns between threads falls on a multiple of this.
    pub(crate) fn panel(&self) -> usize {
        self.nr
    }
}

/// Rows up to which a product with AVX2 alone takes packed weights: one text of up to 256 tokens (where
/// sentence-transformers truncates) through MiniLM. Above them the `gemm` crate, which took 0.94x of the time
/// at batch 32 (about 640 rows a product: 161 against 152 texts/s, medians of six alternating runs of
/// `embedbench`). Against a limit of 64 rows, whole reviews one at a time took 0.82-0.97 of the time.
const AVX2_PACKED_ROWS: usize = 256;

/// Whether a product of `rows` rows is best taken from weights packed once: always with AVX-512 (its kernel
/// runs every product, and packing once saves packing per call), up to AVX2_PACKED_ROWS with AVX2 alone.
pub(crate) fn packs_for(rows: usize) -> bool {
    match isa() {
        Some(Isa::Avx512) => true,
        Some(Isa::Avx2) => rows <= AVX2_PACKED_ROWS,
        None => false,
    }
}

/// `b` [k, n] in the panel layout of this processor's kernel; None without a kernel, or for an empty b.
///
/// # Panics
/// If b does not hold its k x n extent.
pub(crate) fn pack(b: Mat<f32>, k: usize, n: usize) -> Option<Packed> {
    if k == 0 || n == 0 {
        return None;
    }
    assert!(b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs, "a packed B [{k}, {n}] is not inside its data");
    #[cfg(target_arch = "x86_64")]
    match isa()? {
        Isa::Avx512 => return Some(pack_with::<avx512::Avx512>(Isa::Avx512, b, k, n)),
        Isa::Avx2 => return Some(pack_with::<avx2::Avx2>(Isa::Avx2, b, k, n)),
    }
    #[allow(unreachable_code)]
    None
}

fn pack_with<K: Kernel>(isa: Isa, b: Mat<f32>, k: usize, n: usize) -> Packed {
    let npad = n.next_multiple_of(K::NR);
    let mut data = vec![0.0f32; npad * k];
    for p0 in (0..k).step_by(KC) {
        let kc = KC.min(k - p0);
        // SAFETY: `isa` is this processor's (pack checked isa()); the block lies inside b (asserted by pack),
        // and block p0 gets its npad x kc values from p0·npad.
        unsafe { pack_b::<K>(b, p0, kc, 0, n, &mut data[p0 * npad..]) };
    }
    Packed { isa, k, n, nr: K::NR, npad, data }
}

/// c[m, cols] = a · b[.., cols] (or += when `accumulate`) from a packed b; `cols` starts on a panel and c points
/// at its first column.
///
/// # Safety
/// Every element (r, j) for r < m, j < cols.len() must be valid at c[r·ldc + j]; a must hold m x b.k().
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_packed(
    m: usize,
    cols: std::ops::Range<usize>,
    c: *mut f32,
    ldc: usize,
    a: Mat<f32>,
    b: &Packed,
    accumulate: bool,
) {
    assert!(cols.start.is_multiple_of(b.panel()) && cols.end <= b.n, "columns {cols:?} of a packed B of {}", b.n);
    // SAFETY: b was packed by this processor's kernel; the rest is the caller's contract.
    #[cfg(target_arch = "x86_64")]
    match b.isa {
        Isa::Avx512 => unsafe { from_packed::<avx512::Avx512>(m, cols, c, ldc, a, b, accumulate) },
        Isa::Avx2 => unsafe { from_packed::<avx2::Avx2>(m, cols, c, ldc, a, b, accumulate) },
    }
}

/// How far ahead the first row tile of a panel prefetches the packed stream: two panels of AVX2's 16 columns.
/// One text's products through MiniLM's weights took 0.86-0.98 of the time without it (four alternating pairs).
const PREFETCH: usize = 2 * KC * 16;

/// The blocked product over a packed B (as `blocked`, without the packing).
///
/// # Safety
/// As for sgemm_packed, with K the kernel b was packed for.
#[allow(clippy::too_many_arguments)]
unsafe fn from_packed<K: Kernel>(
    m: usize,
    cols: std::ops::Range<usize>,
    c: *mut f32,
    ldc: usize,
    a: Mat<f32>,
    b: &Packed,
    accumulate: bool,
) {
    for p0 in (0..b.k).step_by(KC) {
        let kc = KC.min(b.k - p0);
        let data = &b.data[p0 * b.npad..(p0 + kc) * b.npad];
        let panel = |jr: usize| Panel { ptr: data[(cols.start + jr) * kc..].as_ptr(), rs: K::NR, cs: 1 };
        let at = Block { p0, kc, width: cols.len(), add: accumulate || p0 > 0, padded: true, prefetch: PREFETCH };
        // SAFETY: the band's columns of c are the caller's; every panel's NR x kc values lie inside the block.
        unsafe { block::<K>(m, a, at, panel, c, ldc) };
    }
}

/// Where one KC block of a product lies: from k step p0, kc deep, `width` columns of c; whether it adds to c,
/// whether its B panels are packed (`Tile::padded`), and how far the first row tile of a panel prefetches.
#[derive(Clone, Copy)]
struct Block {
    p0: usize,
    kc: usize,
    width: usize,
    add: bool,
    padded: bool,
    prefetch: usize,
}

/// Rows [0, m) of A against one block of B, MC rows at a time, panel by panel (`panel(jr)`: the panel of
/// columns jr..jr+NR of the block), MR rows a tile. Only the first tile over a panel reads it from memory;
/// the later ones find it in cache, so only that one prefetches.
///
/// # Safety
/// K's instruction set is present; every tile of rows [0, m) x columns [0, at.width) lies inside c; A holds m
/// rows over the block's k steps; each panel holds its tile's columns (NR when at.padded) over kc steps.
unsafe fn block<K: Kernel>(m: usize, a: Mat<f32>, at: Block, panel: impl Fn(usize) -> Panel, c: *mut f32, ldc: usize) {
    for i0 in (0..m).step_by(MC) {
        let mc = MC.min(m - i0);
        for jr in (0..at.width).step_by(K::NR) {
            let bp = panel(jr);
            for ir in (0..mc).step_by(K::MR) {
                let r = i0 + ir;
                let ap = Panel { ptr: a.data[r * a.rs + at.p0 * a.cs..].as_ptr(), rs: a.rs, cs: a.cs };
                let tile = Tile {
                    rows: K::MR.min(mc - ir),
                    cols: K::NR.min(at.width - jr),
                    add: at.add,
                    padded: at.padded,
                    prefetch: if r == 0 { at.prefetch } else { 0 },
                };
                // SAFETY: the caller's contract.
                unsafe { K::tile(at.kc, ap, bp, c.add(r * ldc + jr), ldc, tile) };
            }
        }
    }
}

/// B[p0.., j0..] (kc x nc) into panels of K::NR columns, each stored k-major (NR values per k), columns past
/// n zero.
///
/// # Safety
/// K's instruction set is present; the block lies inside b.
unsafe fn pack_b<K: Kernel>(b: Mat<f32>, p0: usize, kc: usize, j0: usize, nc: usize, buf: &mut [f32]) {
    let nr = K::NR;
    for (jp, panel) in buf[..nc.div_ceil(nr) * nr * kc].chunks_exact_mut(nr * kc).enumerate() {
        let c0 = j0 + jp * nr;
        let cols = nr.min(j0 + nc - c0);
        if b.cs == 1 {
            // Rows of B are contiguous: one run per k, vector loads and stores (a call of `memcpy` per run
            // was 5% of a training epoch of the reference CNN).
            // SAFETY: the caller's contract; columns c0..c0+cols over p0..p0+kc lie inside b, and the panel
            // holds NR x kc values.
            unsafe { K::pack_rows(b, p0, kc, c0, cols, panel) };
            continue;
        }
        if b.rs == 1 {
            // Columns of B are contiguous (B is a transposed row-major matrix: the dense layer's weights in
            // its input gradient): square blocks are transposed in registers, four times faster with AVX-512
            // than the element-by-element copy below (opbench linear, forward+backward).
            // SAFETY: as for pack_rows.
            unsafe { K::pack_transposed(b, p0, kc, c0, cols, panel) };
            continue;
        }
        for col in 0..nr {
            if col >= cols {
                panel[col..].iter_mut().step_by(nr).for_each(|v| *v = 0.0);
                continue;
            }
            let base = p0 * b.rs + (c0 + col) * b.cs;
            for (p, v) in panel[col..].iter_mut().step_by(nr).enumerate() {
                *v = b.data[base + p * b.rs];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver on one kernel.
    type Run = unsafe fn(usize, usize, usize, *mut f32, usize, Mat<f32>, Mat<f32>, bool);

    /// Every kernel this processor can run (on an AVX-512 machine, the AVX2 one as well), named.
    fn kernels() -> Vec<(&'static str, Run)> {
        #[allow(unused_mut)]
        let mut all: Vec<(&'static str, Run)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                all.push(("avx512", blocked::<avx512::Avx512>));
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                all.push(("avx2", blocked::<avx2::Avx2>));
            }
        }
        all
    }

    /// c = a · b (+ c0 when `acc`) on `run`, against a plain f64 loop, with c's rows `ldc` apart and the
    /// values between them left alone.
    #[allow(clippy::too_many_arguments)]
    fn check(name: &str, run: Run, m: usize, n: usize, k: usize, a: Mat<f32>, b: Mat<f32>, acc: bool) {
        let ldc = n + 3;
        let c0: Vec<f32> = (0..m * ldc).map(|i| (i % 7) as f32 - 3.0).collect();
        let mut c = c0.clone();
        // SAFETY: the test's processor has the kernel (kernels()); c holds m rows of ldc; a and b hold their
        // extents (the callers' shapes).
        unsafe { run(m, n, k, c.as_mut_ptr(), ldc, a, b, acc) };
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j] as f64;
                if j >= n {
                    assert_eq!(got, c0[i * ldc + j] as f64, "{name} {m}x{k}x{n}: ({i}, {j}) is past the output");
                    continue;
                }
                let mut want = if acc { c0[i * ldc + j] as f64 } else { 0.0 };
                for p in 0..k {
                    want += a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                }
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{name} {m}x{k}x{n} ({i}, {j}): {got} vs {want}"
                );
            }
        }
    }

    fn random(len: usize, rng: &mut crate::Rng) -> Vec<f32> {
        (0..len).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect()
    }

    /// The kernel runs every product wherever the processor has AVX-512F, and packed products wherever it has
    /// AVX2 with FMA: a check that wrongly said no would leave every product right (the `gemm` crate takes
    /// over) and slower.
    #[test]
    fn the_kernel_runs_where_the_processor_has_avx512_or_avx2() {
        #[cfg(target_arch = "x86_64")]
        if std::env::var_os("KILN_GEMM_CRATE").is_none() {
            let want = match (is_x86_feature_detected!("avx512f"), is_x86_feature_detected!("avx2")) {
                (true, _) => Some(Isa::Avx512),
                (false, true) if is_x86_feature_detected!("fma") => Some(Isa::Avx2),
                _ => None,
            };
            assert_eq!((isa(), available()), (want, want == Some(Isa::Avx512)));
            let b = [1.0f32; 6];
            assert_eq!(pack(Mat::rows(&b, 3), 2, 3).is_some(), want.is_some());
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert!(!available() && pack(Mat::rows(&[1.0f32], 1), 1, 1).is_none());
    }

    /// Each kernel against a plain loop: rows that are not whole tiles (every remainder of 6 and 8), B read in
    /// place (up to 2·MR rows) and packed, columns that end inside a panel, k past one block, a transposed A,
    /// accumulation, and an output whose rows are longer than the product's.
    #[test]
    fn every_kernel_matches_a_plain_loop() {
        let mut rng = crate::Rng::new(11);
        for (name, run) in kernels() {
            for &(m, k, n) in &[
                (1, 3, 5),
                (5, 17, 21),
                (7, 300, 16),
                (12, 40, 35),
                (13, 260, 47),
                (17, 9, 8),
                (50, 33, 70),
                (3, 17, 64),
                (4, 17, 64),
                (16, 17, 64),
                (100, 17, 64),
                (200, 17, 64),
            ] {
                for (ta, acc) in [(false, false), (true, true), (true, false)] {
                    let (a, b) = (random(m * k, &mut rng), random(k * n, &mut rng));
                    let am = if ta { Mat::rows_t(&a, m) } else { Mat::rows(&a, k) };
                    check(name, run, m, n, k, am, Mat::rows(&b, n), acc);
                }
            }
        }
    }

    /// Each kernel from a B packed once: every column band starting on a panel (as threads split them), k past
    /// one block, rows past one tile, accumulation, against a plain loop; what lies past the band untouched.
    #[test]
    fn every_kernel_multiplies_by_a_packed_b() {
        let mut rng = crate::Rng::new(13);
        #[allow(unused_mut)]
        type Packer = fn(Mat<f32>, usize, usize) -> Packed;
        let mut packers: Vec<(&str, Packer)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                packers.push(("avx512", |b, k, n| pack_with::<avx512::Avx512>(Isa::Avx512, b, k, n)));
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                packers.push(("avx2", |b, k, n| pack_with::<avx2::Avx2>(Isa::Avx2, b, k, n)));
            }
        }
        for (name, pack) in packers {
            for (m, k, n) in [(1, 3, 5), (7, KC + 40, 70), (20, 33, 16), (13, 2 * KC + 1, 100), (200, 40, 40)] {
                let (a, b) = (random(m * k, &mut rng), random(k * n, &mut rng));
                let packed = pack(Mat::rows(&b, n), k, n);
                for start in (0..n).step_by(packed.panel()) {
                    for end in [n.min(start + packed.panel()), n] {
                        let acc = end == n;
                        let c0 = random(m * n, &mut rng);
                        let mut c = c0.clone();
                        // SAFETY: columns start..end of each of m rows lie inside c; a holds m x k.
                        unsafe {
                            sgemm_packed(m, start..end, c[start..].as_mut_ptr(), n, Mat::rows(&a, k), &packed, acc)
                        };
                        for i in 0..m {
                            for j in 0..n {
                                let got = c[i * n + j] as f64;
                                if !(start..end).contains(&j) {
                                    assert_eq!(
                                        got,
                                        c0[i * n + j] as f64,
                                        "{name} {m}x{k}x{n} [{start}, {end}): ({i}, {j})"
                                    );
                                    continue;
                                }
                                let mut want = if acc { c0[i * n + j] as f64 } else { 0.0 };
                                for p in 0..k {
                                    want += a[i * k + p] as f64 * b[p * n + j] as f64;
                                }
                                assert!(
                                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                    "{name} {m}x{k}x{n} [{start}, {end}): ({i}, {j}) {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
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

    /// B with contiguous columns (the transpose of a row-major matrix), packed by register transposes: widths
    /// and depths that are not multiples of the block (a last half-panel, a last short k block, a panel with no
    /// second half) and an offset start, on each kernel.
    #[test]
    fn a_transposed_b_is_packed_right() {
        let mut rng = crate::Rng::new(6);
        for (name, run) in kernels() {
            for (m, n, k) in [(9, 70, 300), (17, 5, 19), (3, 33, KC + 17), (8, 16, 16), (13, 12, 7)] {
                let a = random(m * k, &mut rng);
                // B(p, j) = data[1 + p + j·(k + 3)]: the transpose of an [n, k + 3] matrix, from its second value.
                let data = random(n * (k + 3) + 1, &mut rng);
                let b = Mat { data: &data[1..], rs: 1, cs: k + 3 };
                check(name, run, m, n, k, Mat::rows(&a, k), b, false);
            }
        }
    }

    /// B with neither stride 1 (every other column of a wider transposed matrix), packed element by element:
    /// kiln's own operands have rs = 1 whenever cs != 1, which would hide a stride used the wrong way.
    #[test]
    fn a_b_strided_both_ways_is_packed_right() {
        let (m, n, k) = (20, 70, 300);
        let mut rng = crate::Rng::new(5);
        let a = random(m * k, &mut rng);
        // B(p, j) = data[p·2 + j·2k]: the transpose of an [n, 2k] matrix, every other column.
        let data = random(n * 2 * k, &mut rng);
        for (name, run) in kernels() {
            check(name, run, m, n, k, Mat::rows(&a, k), Mat { data: &data, rs: 2, cs: 2 * k }, true);
        }
    }
}
