//! Products with quantized weights on integer arithmetic, as llama.cpp's fast kernels compute them: the
//! activations are quantized to 8 bits per block of 32 first (`Q8Rows`: d = max|x|/127, q = round(x/d), and
//! Σq kept), and each block's dot product is a sum of 32 small integer products, scaled once:
//!
//! ```text
//! Q8_0 · Q8:  d_w·d_x · Σ q_w q_x
//! Q4_0 · Q8:  d_w·d_x · (Σ n_w q_x − 8 Σ q_x)        n_w the stored nibble (0..15)
//! Q4_1 · Q8:  d_w·d_x · Σ n_w q_x + m_w·d_x·Σ q_x
//! ```
//!
//! That reads a quarter of the bytes of f32 activations and multiplies 32 pairs in two AVX2 instructions
//! (`maddubs`, `madd`), where dequantizing each block to f32 (`QMatrix::matmul_t`, the exact path) costs
//! 32 conversions and 32 FMAs. The rounding of the activations moves results by about 1e-3 of their scale
//! (tests/suite/quant.rs bounds it against the exact path). The path is chosen at run time (`QIsa`): AVX2, or
//! AVX2 with AVX-512 VNNI's one-instruction dot products (qdot/x86.rs), and with AVX-512 a new token's products
//! on 16 weight rows a 512-bit vector from a copy of the weights interleaved by 16 (qdot/rows16.rs), and where
//! the processor has AMX a prompt's on its tile units from that copy (qdot/amx.rs); the portable one is the same
//! loop in plain Rust. Without AMX a prompt on 16-bit activations (the default) goes dequantized onto the f32
//! kernel instead (qdot/dequant.rs), which is faster once each weight serves 48 rows or more.

use crate::par::Disjoint;
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QBlocks, QK, QMatrix};
use crate::{Error, Result};

/// Rows of activations quantized per block of 32: scale, Σq and the 32 values of each block.
#[derive(Clone, Debug, Default)]
pub struct Q8Rows {
    pub d: Vec<f32>,
    pub sum: Vec<i32>,
    /// d·Σq: the block's sum of values as quantized (the minimum term of Q4_1, the offset of Q4_0).
    pub s: Vec<f32>,
    pub qs: Vec<i8>,
    /// With `wide`: the values as 16-bit integers instead (d = max|x|/32767), 256 times finer than 8 bits
    /// and about 1.3 times slower (SmolLM2-135M: logits within 2e-4 of the exact product's largest, where 8
    /// bits move them by 3.6%).
    pub wide: bool,
    pub qw: Vec<i16>,
    /// Callers that hold this scratch may ask for the exact product (weights dequantized, x as it is)
    /// instead: the reference the integer product is checked against.
    pub exact: bool,
    /// With `wide`, for one row on `QIsa::Vnni512`: each block's values as bytes, its 32 low ones and then its
    /// 32 high ones, and the high ones' sum per block (`rows16.rs`: VNNI multiplies bytes).
    pub split: Vec<u8>,
    pub hsum: Vec<i32>,
    /// On `QIsa::Amx`, for a prompt: the rows as AMX tiles of 16 rows by one block (`amx.rs`).
    pub tiles: Vec<u8>,
}

impl Q8Rows {
    /// Quantizes x [n, cols] (cols a multiple of 32), reusing the buffers; split over the hot pool when
    /// long (a 128-token prompt's down projection quantizes 196,608 values, which on one thread with libm's
    /// `roundf` per value took a fifth of the product's time while the other thread waited).
    pub fn quantize(&mut self, x: &[f32]) {
        self.quantize_on(x, QIsa::best() != QIsa::Portable);
    }

    /// `quantize` on the AVX2 path when `fast`, else the portable one (the products' path chooses).
    fn quantize_on(&mut self, x: &[f32], fast: bool) {
        let blocks = x.len() / QK;
        self.d.resize(blocks, 0.0);
        self.sum.resize(blocks, 0);
        self.s.resize(blocks, 0.0);
        if self.wide {
            self.qw.resize(blocks * QK, 0);
        } else {
            self.qs.resize(blocks * QK, 0);
        }
        let wide = self.wide;
        let (d, sum, s) = (Disjoint::new(&mut self.d), Disjoint::new(&mut self.sum), Disjoint::new(&mut self.s));
        let (qs, qw) = (Disjoint::new(&mut self.qs), Disjoint::new(&mut self.qw));
        let parts = crate::hot::parts_for(x.len() * 4);
        crate::hot::pool().run(parts, &|p| {
            let span = p * blocks / parts..(p + 1) * blocks / parts;
            let q = span.start * QK..span.end * QK;
            // SAFETY: each part takes its own blocks and their values.
            let (d, sum, s) = unsafe { (d.part(span.clone()), sum.part(span.clone()), s.part(span.clone())) };
            let xs = &x[q.clone()];
            #[cfg(target_arch = "x86_64")]
            if fast {
                for (k, xb) in xs.chunks_exact(QK).enumerate() {
                    let xb: &[f32; QK] = xb.try_into().expect("a block");
                    // SAFETY: AVX2 is there; each block writes its own 32 values.
                    let (dk, t) = unsafe {
                        match wide {
                            true => x86::quantize16(xb, qw.part(q.start + k * QK..q.start + (k + 1) * QK)),
                            false => x86::quantize8(xb, qs.part(q.start + k * QK..q.start + (k + 1) * QK)),
                        }
                    };
                    (d[k], sum[k], s[k]) = (dk, t, dk * t as f32);
                }
                return;
            }
            if wide {
                quantize_blocks(xs, unsafe { qw.part(q) }, 32767.0, d, sum, s);
            } else {
                quantize_blocks(xs, unsafe { qs.part(q) }, 127.0, d, sum, s);
            }
        });
    }
}

/// A block's scale d = max|x|/top and 1/d. A block whose d is not a normal float (all zeros, or max|x| below
/// about 1e-36) gets d = 0 and quantizes to zeros, so that 1/d is never infinite (its values times infinity
/// rounded differently on the two paths).
#[inline(always)]
fn block_scale(amax: f32, top: f32) -> (f32, f32) {
    let d = amax / top;
    if d >= f32::MIN_POSITIVE { (d, 1.0 / d) } else { (0.0, 0.0) }
}

/// Per block of 32: d = max|x|/top, q = round(x/d) (to nearest, ties to even, as llama.cpp's AVX2 path
/// rounds), Σq and d·Σq: the portable path, and the reference for `x86::quantize8` and `quantize16` (the
/// same bytes for finite x).
fn quantize_blocks<T: Copy + Into<i32>>(x: &[f32], q: &mut [T], top: f32, d: &mut [f32], sum: &mut [i32], s: &mut [f32])
where
    f32: ToInt<T>,
{
    for (k, (xb, qb)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (dk, id) = block_scale(amax, top);
        let mut t = 0i32;
        for (q, &v) in qb.iter_mut().zip(xb) {
            *q = (v * id).round_ties_even().to_int();
            t += (*q).into();
        }
        d[k] = dk;
        sum[k] = t;
        s[k] = dk * t as f32;
    }
}

/// f32 to the activations' integer type (the value already within its range).
trait ToInt<T> {
    fn to_int(self) -> T;
}
impl ToInt<i8> for f32 {
    #[inline(always)]
    fn to_int(self) -> i8 {
        self as i8
    }
}
impl ToInt<i16> for f32 {
    #[inline(always)]
    fn to_int(self) -> i16 {
        self as i16
    }
}

/// One weight block's product with one quantized activation block.
trait Q8Dot: Sync {
    /// The block's dot product with activation block (d, Σq, qs).
    fn dot<T: Copy + Into<i32>>(&self, d: f32, sum: i32, qs: &[T; QK]) -> f32;
}

impl Q8Dot for BlockQ8_0 {
    #[inline(always)]
    fn dot<T: Copy + Into<i32>>(&self, d: f32, _sum: i32, qs: &[T; QK]) -> f32 {
        let mut s = 0i32;
        for (&w, &x) in self.qs.iter().zip(qs) {
            s += w as i32 * x.into();
        }
        self.d.to_f32() * d * s as f32
    }
}

/// Σ n_j q_j over a block's 32 nibbles (element j < 16 low nibble of byte j, j + 16 its high nibble).
#[inline(always)]
fn nibble_dot<T: Copy + Into<i32>>(ns: &[u8; QK / 2], qs: &[T; QK]) -> i32 {
    let mut s = 0i32;
    for j in 0..QK / 2 {
        s += (ns[j] & 15) as i32 * qs[j].into() + (ns[j] >> 4) as i32 * qs[j + QK / 2].into();
    }
    s
}

impl Q8Dot for BlockQ4_0 {
    #[inline(always)]
    fn dot<T: Copy + Into<i32>>(&self, d: f32, sum: i32, qs: &[T; QK]) -> f32 {
        self.d.to_f32() * d * (nibble_dot(&self.qs, qs) - 8 * sum) as f32
    }
}

impl Q8Dot for BlockQ4_1 {
    #[inline(always)]
    fn dot<T: Copy + Into<i32>>(&self, d: f32, sum: i32, qs: &[T; QK]) -> f32 {
        self.d.to_f32() * d * nibble_dot(&self.qs, qs) as f32 + self.m.to_f32() * d * sum as f32
    }
}

#[cfg(target_arch = "x86_64")]
mod amx;
mod dequant;
#[cfg(target_arch = "x86_64")]
mod rows16;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Where the integer products run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QIsa {
    /// Plain Rust: the reference the others are tested against.
    Portable,
    /// AVX2, FMA and F16C.
    Avx2,
    /// AVX2 with AVX-512 VNNI's dot instructions on 256-bit vectors (AVX512VNNI and AVX512VL): the same
    /// arithmetic as `Avx2` in fewer instructions.
    Vnni,
    /// `Vnni`, and one activation row (a new token) against 16 weight rows at once on 512-bit vectors (with
    /// AVX512F and AVX512BW), from a copy of the weights interleaved by 16 (`rows16.rs`): the same integers,
    /// the float sums in another order.
    Vnni512,
    /// `Vnni512`, and prompts (two activation rows or more) on AMX tiles (`amx.rs`) from the same interleaved
    /// copy: the same integers, the float sums in another order. Unused with `KILN_NO_AMX=1`.
    Amx,
}

impl QIsa {
    /// The paths this processor can run, the portable one first and the fastest last.
    pub fn available() -> Vec<QIsa> {
        let mut all = vec![QIsa::Portable];
        #[cfg(target_arch = "x86_64")]
        if crate::simd::has_avx2() && is_x86_feature_detected!("f16c") {
            all.push(QIsa::Avx2);
            if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                all.push(QIsa::Vnni);
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                    all.push(QIsa::Vnni512);
                    if amx::usable() {
                        all.push(QIsa::Amx);
                    }
                }
            }
        }
        all
    }

    /// Whether the path has AVX-512 VNNI's dot instructions (`Vnni` and the paths built on it).
    fn vnni(self) -> bool {
        matches!(self, QIsa::Vnni | QIsa::Vnni512 | QIsa::Amx)
    }

    /// The path the products take: the last of `available`.
    pub fn best() -> QIsa {
        static BEST: std::sync::OnceLock<QIsa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| *QIsa::available().last().expect("the portable path"))
    }
}

/// The portable row product.
fn row_portable<B: Q8Dot>(w: &[B], x: &Q8Rows, xb0: usize) -> f32 {
    let mut s = 0.0f32;
    for (k, b) in w.iter().enumerate() {
        let (d, sum) = (x.d[xb0 + k], x.sum[xb0 + k]);
        s += if x.wide {
            let qs: &[i16; QK] = x.qw[(xb0 + k) * QK..][..QK].try_into().unwrap();
            b.dot(d, sum, qs)
        } else {
            let qs: &[i8; QK] = x.qs[(xb0 + k) * QK..][..QK].try_into().unwrap();
            b.dot(d, sum, qs)
        };
    }
    s
}

/// A matrix's blocks, typed, for the row kernels.
#[derive(Clone, Copy)]
enum Blocks<'a> {
    Q4_1(&'a [BlockQ4_1]),
    Q4_0(&'a [BlockQ4_0]),
    Q8_0(&'a [BlockQ8_0]),
}

impl Blocks<'_> {
    fn of(m: &QMatrix) -> Option<Blocks<'_>> {
        match m.blocks() {
            QBlocks::Q4_1(b) => Some(Blocks::Q4_1(b)),
            QBlocks::Q4_0(b) => Some(Blocks::Q4_0(b)),
            QBlocks::Q8_0(b) => Some(Blocks::Q8_0(b)),
            QBlocks::F16(_) | QBlocks::BF16(_) => None,
        }
    }

    /// Rows r0..r0 + RW (`kb` blocks each) times the R activation rows whose blocks start at `xb`:
    /// out[i][r].
    #[inline(always)]
    fn tile<const RW: usize, const R: usize>(
        self,
        r0: usize,
        kb: usize,
        x: &Q8Rows,
        xb: [usize; R],
        isa: QIsa,
    ) -> [[f32; R]; RW] {
        // SAFETY: `isa` is one `QIsa::available` gave (the products take `best` or a caller's choice checked
        // against it), and the caller sized x for every xb + kb block.
        #[cfg(target_arch = "x86_64")]
        if isa == QIsa::Avx2 {
            return unsafe { x86::tile(self, r0, kb, x, xb) };
        } else if isa.vnni() {
            return unsafe { x86::tile_vnni(self, r0, kb, x, xb) };
        }
        let _ = isa;
        let span = |i: usize| (r0 + i) * kb..(r0 + i + 1) * kb;
        std::array::from_fn(|i| match self {
            Blocks::Q4_1(b) => xb.map(|o| row_portable(&b[span(i)], x, o)),
            Blocks::Q4_0(b) => xb.map(|o| row_portable(&b[span(i)], x, o)),
            Blocks::Q8_0(b) => xb.map(|o| row_portable(&b[span(i)], x, o)),
        })
    }
}

impl Blocks<'_> {
    /// Rows r0..r1 (`kb` blocks each) times one activation row (x holds one): out[r − r0].
    fn rows_times_one(self, r0: usize, r1: usize, kb: usize, x: &Q8Rows, out: &mut [f32], isa: QIsa) {
        #[cfg(target_arch = "x86_64")]
        if isa != QIsa::Portable && kb > 0 {
            assert!(out.len() == r1 - r0 && x.d.len() >= kb, "rows {r0}..{r1} into {} outputs", out.len());
            // SAFETY: `isa` is available (as in `tile`); x holds kb blocks (checked); rows are sliced.
            unsafe {
                match isa.vnni() {
                    true => x86::rows_vnni(self, r0, r1, kb, x, out),
                    false => x86::rows(self, r0, r1, kb, x, out),
                }
            }
            return;
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.tile::<1, 1>(r0 + i, kb, x, [0], isa)[0][0];
        }
    }
}

/// Weight rows r0..r0 + RW of one matrix (`rows` in all) times every activation row, R at a time and then
/// the rest one by one, each value through `put(b, r, v)`.
#[inline(always)]
fn weight_rows<const RW: usize, const R: usize>(
    blocks: Blocks<'_>,
    r0: usize,
    kb: usize,
    x: &Q8Rows,
    n: usize,
    put: &impl Fn(usize, usize, f32),
    isa: QIsa,
) {
    let mut b = 0;
    while b + R <= n {
        let v = blocks.tile::<RW, R>(r0, kb, x, std::array::from_fn(|j| (b + j) * kb), isa);
        for (i, v) in v.iter().enumerate() {
            v.iter().enumerate().for_each(|(j, &v)| put(b + j, r0 + i, v));
        }
        b += R;
    }
    for b in b..n {
        let v = blocks.tile::<RW, 1>(r0, kb, x, [b * kb], isa);
        v.iter().enumerate().for_each(|(i, v)| put(b, r0 + i, v[0]));
    }
}

/// A prompt's tile for these weights against these activations: (weight rows, activation rows). Measured
/// with qbench at SmolLM2's feed-forward shapes, 128 tokens, every shape in one process taking turns (the
/// machine's speed drifted by a third between separate runs), on an AVX2 EPYC: against two weight rows by
/// four activation rows, four by three made Q4_1 products 10-15% faster with either activation width, Q4_0
/// 8-12% on 8 bits, Q8_0 9-10% on 16 bits (4x2 and 3x3 between the two); Q8_0 on 8 bits and Q4_0 on 16 stayed
/// fastest at 2 by 4 (4 by 3: 2-6% slower). Taking the activations in
/// chunks that stay in L1 or L2 across weight tiles made no difference there. On 16 bits every type now
/// takes four by four, whose four activation rows share one sum per weight row (`x86::tile4_q8_0_w16`),
/// measured on the same machine with old and new alternating twelve times in one process (2026-12-03, two
/// threads): SmolLM2's 128-token prompt 0.81-0.95 of the time at Q8_0 (best 325 against 402 ms) and 0.81-1.02
/// at Q4_1 (344 against 412); Q4_0's products alone (qbench's shapes, medians of 40) 0.72-0.80. The same fold on 8 bits
/// (Q8_0, 4x4 against 2x4) made no difference (0.95-1.06) and is not used. On an AVX-512 EPYC with VNNI
/// (2026-12-03, qbench, two runs each), 16-bit tiles of 2, 4, 6 and 8 weight rows by four (the VNNI path has
/// 32 vector registers) differed by less than the machine's noise between runs; 4x4 stays. Q8_0 on 8 bits with
/// VNNI takes four by four with its weights offset to unsigned bytes (`x86::tile4_q8_0_u8`): against 2x4, the
/// two alternating in qbench (two runs, both shapes), 1.23-1.58 times the products a second.
fn tile_shape(blocks: Blocks<'_>, wide: bool, isa: QIsa) -> (usize, usize) {
    match (blocks, wide) {
        (Blocks::Q8_0(_), false) if isa.vnni() => (4, 4),
        (_, true) => (4, 4),
        (Blocks::Q8_0(_), false) => (2, 4),
        _ => (4, 3),
    }
}

/// outs[i][b, r] = row r of matrix i · activation row b, for every matrix at once: one parallel pass over
/// all their rows (q, k and v of a layer share an input, so they share the pass and the quantized x).
/// Weight rows go in tiles (`Blocks::tile`, shaped by `tile_shape`) against several activation rows on a
/// prompt, single rows for one token and where a part or a matrix ends.
///
/// With `dense` (x itself, as f32) the rows instead go dequantized onto the f32 kernel (`dequant::rows_f32`),
/// a chunk at a time. A matrix's third field, when not empty, is its rows interleaved by 16 (`rows16::relay`),
/// which one token's product reads for the whole groups of its part.
fn product(
    mats: &[(Blocks<'_>, usize, &[u8])],
    kb: usize,
    x: &Q8Rows,
    dense: Option<&[f32]>,
    n: usize,
    outs: &mut [&mut [f32]],
    isa: QIsa,
) {
    let total: usize = mats.iter().map(|m| m.1).sum();
    let parts = crate::hot::parts_for(total * n * kb * QK);
    let dsts: Vec<Disjoint<f32>> = outs.iter_mut().map(|o| Disjoint::new(o)).collect();
    // Global rows g..end, whichever thread takes them.
    let span = |mut g: usize, end: usize| {
        let (mut i, mut first) = (0, 0);
        while g < end {
            while g >= first + mats[i].1 {
                first += mats[i].1;
                i += 1;
            }
            let (blocks, rows, relaid) = mats[i];
            let r = g - first;
            if let Some(xf) = dense {
                let r1 = rows.min(end - first);
                let (o, len) = dsts[i].raw();
                assert!(len >= n * rows, "output [{n}, {rows}] in {len} values");
                // SAFETY: columns r..r1 of output i's n rows belong to this span alone; dense is only passed
                // where dequant::runs().
                unsafe { dequant::rows_f32(blocks, r..r1, kb, xf, n, o.add(r), rows) };
                g = first + r1;
                continue;
            }
            if n == 1 {
                // A new token: this part's rows of this matrix in one call; out[i][r] is row r's value. The
                // whole groups of 16 among them (a..b) from the interleaved copy when there is one.
                let r1 = rows.min(end - first);
                #[cfg(target_arch = "x86_64")]
                let (a, b) = match rows16::whole_groups(r, r1) {
                    Some((ga, gb)) if !relaid.is_empty() => (ga * rows16::G, gb * rows16::G),
                    _ => (r1, r1),
                };
                #[cfg(not(target_arch = "x86_64"))]
                let (a, b, _) = (r1, r1, relaid);
                // SAFETY: rows r..r1 of matrix i belong to this part alone.
                blocks.rows_times_one(r, a, kb, x, unsafe { dsts[i].part(r..a) }, isa);
                #[cfg(target_arch = "x86_64")]
                if a < b {
                    // SAFETY: a relaid copy is made only for `Vnni512` and `Amx`, which `isa` is (AVX-512 F, BW,
                    // VNNI).
                    unsafe { rows16::groups(blocks, relaid, a / rows16::G, b / rows16::G, kb, x, dsts[i].part(a..b)) };
                }
                blocks.rows_times_one(b, r1, kb, x, unsafe { dsts[i].part(b..r1) }, isa);
                g = first + r1;
                continue;
            }
            // Rows of this matrix that this part owns from r on.
            #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
            let mut left = rows.min(end - first) - r;
            // On AMX the whole groups of 16 rows from here in one call. Rows before the first group (where a
            // matrix before this one in the pass ends mid-group) go in tiles up to it, rows after the last in
            // tiles.
            #[cfg(target_arch = "x86_64")]
            if isa == QIsa::Amx
                && !relaid.is_empty()
                && let Some((ga, gb)) = rows16::whole_groups(r, r + left)
            {
                if ga * rows16::G == r {
                    let (o, len) = dsts[i].raw();
                    assert!(len >= n * rows, "output [{n}, {rows}] in {len} values");
                    // SAFETY: as for `groups` above; columns of groups ga..gb of output i's n rows belong to
                    // this span alone.
                    unsafe { amx::groups(blocks, relaid, ga, gb, kb, x, n, o, rows) };
                    g = first + gb * rows16::G;
                    continue;
                }
                left = ga * rows16::G - r;
            }
            // SAFETY (each write): element (b, r) of output i belongs to the one span (a thread's part, or a chunk
            // that one thread took from the counter) that holds global row g.
            let put = |b: usize, r: usize, v: f32| unsafe { dsts[i].part(b * rows + r..b * rows + r + 1)[0] = v };
            // One token (generation) reads each weight row once, from memory: there tiles of 2 or 4 rows
            // were faster with the weights in cache (qbench) and slower in a whole model (lmbench, SmolLM2
            // Q4_1: 48-61 tokens/s against 62-75 one row at a time), where reading several rows side by side
            // defeats the prefetcher's one stream; so do two or three tokens.
            let (tw, tr) = if n < 4 { (1, 4) } else { tile_shape(blocks, x.wide, isa) };
            let step = if left >= tw { tw } else { 1 };
            match (step, tr) {
                (4, 3) => weight_rows::<4, 3>(blocks, r, kb, x, n, &put, isa),
                (4, 4) => weight_rows::<4, 4>(blocks, r, kb, x, n, &put, isa),
                (2, 4) => weight_rows::<2, 4>(blocks, r, kb, x, n, &put, isa),
                (_, 3) => weight_rows::<1, 3>(blocks, r, kb, x, n, &put, isa),
                _ => weight_rows::<1, 4>(blocks, r, kb, x, n, &put, isa),
            }
            g += step;
        }
    };
    // On a prompt, chunks of CHUNK rows (a multiple of every tile's 4) taken in turn from a shared counter, so
    // that a thread that runs slower takes fewer: with half the rows each, the caller had waited for the
    // helper (6% of a 128-token prompt's samples in `HotPool::run`). Both ways alternating in one process
    // (AVX2 EPYC, 2 threads, 2026-12-03, twelve SmolLM2 prompts each): 0.81-0.96 of the time at Q8_0,
    // 0.86-0.97 at Q4_1. A new token keeps one span per thread: chunks there ran 0.91-1.02 times the tokens a
    // second (the weights stream from memory, one stream a thread).
    //
    // On AMX a prompt also keeps one span per thread, cut at a multiple of 32 rows (two groups of 16): each
    // call of `amx::groups` reads x's tiles again for its own rows, and one call over a thread's half ran
    // faster than chunks taken in turn. SmolLM2's 128-token prompt (lmbench, Intel Xeon with AMX, 2 threads,
    // 2026-12-06, the two alternating three rounds): tokens a second on 16 bits at Q4_1 1,241-1,341 with chunks
    // of 256 rows, 1,492-1,505 halves; Q8_0 1,454-1,492 against 1,538-1,595; chunks of 32 rows had been slower
    // than 64, and 64 than 128.
    const CHUNK: usize = 64;
    let amx = n > 1 && isa == QIsa::Amx;
    let chunks = if n > 1 && !amx { total.div_ceil(CHUNK) } else { 0 };
    let cut = |p: usize| if amx { (p * total / parts).next_multiple_of(32).min(total) } else { p * total / parts };
    let next = std::sync::atomic::AtomicUsize::new(0);
    // The hot pool: generation runs about 150 of these a token, too short for sleeping workers to join.
    crate::hot::pool().run(parts, &|p| {
        if chunks > parts {
            loop {
                let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if c >= chunks {
                    break;
                }
                span(c * CHUNK, ((c + 1) * CHUNK).min(total));
            }
        } else {
            span(cut(p), cut(p + 1));
        }
    });
}

/// Activation rows from which a product with 16-bit activations (the default) goes dequantized onto the f32
/// kernel instead (`dequant.rs`). `qbench` at SmolLM2's feed-forward shapes on an AVX2 EPYC, the two paths
/// taking turns: at 16 rows the integer tiles were faster for every type (1.0-1.4x), at 32 either way by type,
/// at 48 the dequantized product level or faster, at 64 and 128 faster for every type (1.2-1.8x at 128).
pub const DENSE_ROWS: usize = 48;

/// Whether a prompt's products (`DENSE_ROWS` rows or more, 16-bit activations) go dequantized onto the f32
/// kernel here: where kiln's f32 kernel runs (AVX2 with FMA, or AVX-512) and the processor has no AMX (whose
/// integer tiles were 2.4 times as fast on SmolLM2's prompt: amx.rs), unless `KILN_INT_PROMPTS=1` in the
/// environment keeps them on the integer tiles, to compare the two.
pub fn dense_prompts() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| dequant::runs() && QIsa::best() != QIsa::Amx && std::env::var_os("KILN_INT_PROMPTS").is_none())
}

impl QMatrix {
    /// out[n, rows] = x[n, cols] · Wᵀ with x quantized to 8 bits per block first (into `scratch`, reused):
    /// llama.cpp's arithmetic, several times faster than `matmul_t`, within about 1e-3 of its scale.
    /// F16 and BF16 weights take `matmul_t`.
    pub fn matmul_t_q8(&self, x: &[f32], n: usize, out: &mut [f32], scratch: &mut Q8Rows) -> Result<()> {
        QMatrix::matmul_t_q8_many(&[self], x, n, &mut [out], scratch)
    }

    /// `matmul_t_q8` of several matrices with the same input (each `outs[i]` [n, rows_i]), in one parallel
    /// pass with x quantized once.
    pub fn matmul_t_q8_many(
        mats: &[&QMatrix],
        x: &[f32],
        n: usize,
        outs: &mut [&mut [f32]],
        scratch: &mut Q8Rows,
    ) -> Result<()> {
        let dense = scratch.wide && n >= DENSE_ROWS && dense_prompts();
        QMatrix::q8_many(mats, x, n, outs, scratch, QIsa::best(), dense)
    }

    /// `matmul_t_q8` on the path `isa` (one of `QIsa::available`, else an error): tests compare the paths.
    pub fn matmul_t_q8_on(&self, isa: QIsa, x: &[f32], n: usize, out: &mut [f32], scratch: &mut Q8Rows) -> Result<()> {
        if !QIsa::available().contains(&isa) {
            return Err(Error::Invalid(format!("the integer products' {isa:?} path does not run on this processor")));
        }
        QMatrix::q8_many(&[self], x, n, &mut [out], scratch, isa, false)
    }

    fn q8_many(
        mats: &[&QMatrix],
        x: &[f32],
        n: usize,
        outs: &mut [&mut [f32]],
        scratch: &mut Q8Rows,
        isa: QIsa,
        dense: bool,
    ) -> Result<()> {
        let cols = mats.first().map_or(0, |m| m.cols());
        for (m, out) in mats.iter().zip(outs.iter()) {
            let rows = m.rows();
            if m.cols() != cols || Some(x.len()) != n.checked_mul(cols) || Some(out.len()) != n.checked_mul(rows) {
                return Err(Error::Shape(format!(
                    "{} weight [{rows}, {}] times x: expected x [{n}, {}] and out [{n}, {rows}], got {} and {} values",
                    m.dtype(),
                    m.cols(),
                    m.cols(),
                    x.len(),
                    out.len()
                )));
            }
        }
        if mats.len() != outs.len() {
            return Err(Error::Shape(format!("{} weights for {} outputs", mats.len(), outs.len())));
        }
        let kb = cols / QK;
        // One token on `Vnni512` (and `Amx`), and a prompt on `Amx`, read each matrix interleaved by 16 rows, a
        // copy made on its first use.
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
        let relay = !dense && (n == 1 && isa == QIsa::Vnni512 || isa == QIsa::Amx);
        let typed: Option<Vec<(Blocks<'_>, usize, &[u8])>> = mats
            .iter()
            .map(|m| {
                #[cfg(target_arch = "x86_64")]
                let relaid = if relay { m.relaid(|b| rows16::relay(b, kb)) } else { &[] };
                #[cfg(not(target_arch = "x86_64"))]
                let relaid: &[u8] = &[];
                Some((Blocks::of(m)?, m.rows(), relaid))
            })
            .collect();
        let Some(typed) = typed else {
            // Halves: the exact path, one matrix at a time.
            for (m, out) in mats.iter().zip(outs.iter_mut()) {
                m.matmul_t(x, n, out)?;
            }
            return Ok(());
        };
        if dense {
            product(&typed, kb, scratch, Some(x), n, outs, isa);
            return Ok(());
        }
        scratch.quantize_on(x, isa != QIsa::Portable);
        #[cfg(target_arch = "x86_64")]
        if relay && scratch.wide && n == 1 {
            scratch.split();
        }
        #[cfg(target_arch = "x86_64")]
        if relay && n > 1 {
            scratch.make_tiles(n, kb);
        }
        product(&typed, kb, scratch, None, n, outs, isa);
        Ok(())
    }
}
