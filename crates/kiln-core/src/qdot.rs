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
//! (tests/suite/quant.rs bounds it against the exact path). An AVX2 path is chosen at run time; the portable one
//! is the same loop in plain Rust.

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
}

impl Q8Rows {
    /// Quantizes x [n, cols] (cols a multiple of 32), reusing the buffers.
    pub fn quantize(&mut self, x: &[f32]) {
        let blocks = x.len() / QK;
        self.d.resize(blocks, 0.0);
        self.sum.resize(blocks, 0);
        self.s.resize(blocks, 0.0);
        if self.wide {
            self.qw.resize(blocks * QK, 0);
        } else {
            self.qs.resize(blocks * QK, 0);
        }
        let top = if self.wide { 32767.0 } else { 127.0 };
        for (k, xb) in x.chunks_exact(QK).enumerate() {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / top;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut s = 0i32;
            if self.wide {
                for (q, &v) in self.qw[k * QK..(k + 1) * QK].iter_mut().zip(xb) {
                    *q = (v * id).round() as i16;
                    s += *q as i32;
                }
            } else {
                for (q, &v) in self.qs[k * QK..(k + 1) * QK].iter_mut().zip(xb) {
                    *q = (v * id).round() as i8;
                    s += *q as i32;
                }
            }
            self.d[k] = d;
            self.sum[k] = s;
            self.s[k] = d * s as f32;
        }
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
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn half(bits: u16) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// The 32 nibbles of a Q4 block as 32 unsigned bytes, elements 0..16 then 16..32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn nibbles(ns: &[u8; QK / 2]) -> __m256i {
        unsafe {
            let q = _mm_loadu_si128(ns.as_ptr().cast());
            let m = _mm_set1_epi8(15);
            let lo = _mm_and_si128(q, m);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
            _mm256_set_m128i(hi, lo)
        }
    }

    /// Eight partial sums (i32) of Σ u_j·s_j for unsigned u and signed s bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dot_us(u: __m256i, s: __m256i) -> __m256 {
        let p16 = _mm256_maddubs_epi16(u, s);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// d and m of a Q4_1 block (adjacent halves) as f32, in one conversion.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn halves(d: u16, m: u16) -> (f32, f32) {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128((d as u32 | (m as u32) << 16) as i32));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    /// One weight row's products with R activation rows (their first blocks at `xb`), the nibbles of each
    /// weight block unpacked once for all R; blocks in pairs, each with its own sums, so that no sum waits
    /// on the one before. The caller checks that every block read exists.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_q4_1<const R: usize>(w: &[BlockQ4_1], x: &Q8Rows, xb: [usize; R]) -> [f32; R] {
        unsafe {
            let (qs, dx, sx) = (x.qs.as_ptr(), x.d.as_ptr(), x.s.as_ptr());
            let mut acc = [[_mm256_setzero_ps(); R]; 2];
            let mut mins = [[0.0f32; R]; 2];
            for (k, b) in w.iter().enumerate() {
                let h = k & 1;
                let n = nibbles(&b.qs);
                let (d, m) = halves(b.d.to_bits(), b.m.to_bits());
                for r in 0..R {
                    let i = xb[r] + k;
                    let xq = _mm256_loadu_si256(qs.add(i * QK).cast());
                    acc[h][r] = _mm256_fmadd_ps(_mm256_set1_ps(d * *dx.add(i)), dot_us(n, xq), acc[h][r]);
                    mins[h][r] += m * *sx.add(i);
                }
            }
            std::array::from_fn(|r| hsum(_mm256_add_ps(acc[0][r], acc[1][r])) + (mins[0][r] + mins[1][r]))
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_q4_0<const R: usize>(w: &[BlockQ4_0], x: &Q8Rows, xb: [usize; R]) -> [f32; R] {
        unsafe {
            let (qs, dx, sx) = (x.qs.as_ptr(), x.d.as_ptr(), x.s.as_ptr());
            let mut acc = [_mm256_setzero_ps(); R];
            let mut off = [0.0f32; R];
            for (k, b) in w.iter().enumerate() {
                let n = nibbles(&b.qs);
                let d = half(b.d.to_bits());
                for r in 0..R {
                    let i = xb[r] + k;
                    let xq = _mm256_loadu_si256(qs.add(i * QK).cast());
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * *dx.add(i)), dot_us(n, xq), acc[r]);
                    off[r] += 8.0 * d * *sx.add(i);
                }
            }
            std::array::from_fn(|r| hsum(acc[r]) - off[r])
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_q8_0<const R: usize>(w: &[BlockQ8_0], x: &Q8Rows, xb: [usize; R]) -> [f32; R] {
        unsafe {
            let (qs, dx) = (x.qs.as_ptr(), x.d.as_ptr());
            let mut acc = [_mm256_setzero_ps(); R];
            for (k, b) in w.iter().enumerate() {
                let wq = _mm256_loadu_si256(b.qs.as_ptr().cast());
                // maddubs takes unsigned × signed: |w| × (x with w's sign).
                let aw = _mm256_sign_epi8(wq, wq);
                let d = half(b.d.to_bits());
                for r in 0..R {
                    let i = xb[r] + k;
                    let xq = _mm256_loadu_si256(qs.add(i * QK).cast());
                    let p = dot_us(aw, _mm256_sign_epi8(xq, wq));
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * *dx.add(i)), p, acc[r]);
                }
            }
            std::array::from_fn(|r| hsum(acc[r]))
        }
    }

    /// Σ w_j·x_j over a block for 32 weights as i16 (lo: 0..16, hi: 16..32) and 16-bit activations at `x`,
    /// as eight i32 sums converted to f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn dot16(lo: __m256i, hi: __m256i, x: *const i16) -> __m256 {
        unsafe {
            let a = _mm256_madd_epi16(lo, _mm256_loadu_si256(x.cast()));
            let b = _mm256_madd_epi16(hi, _mm256_loadu_si256(x.add(16).cast()));
            _mm256_cvtepi32_ps(_mm256_add_epi32(a, b))
        }
    }

    /// A Q4 block's nibbles as two vectors of 16 i16 (elements 0..16, 16..32).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn nibbles16(ns: &[u8; QK / 2]) -> (__m256i, __m256i) {
        unsafe {
            let q = _mm_loadu_si128(ns.as_ptr().cast());
            let m = _mm_set1_epi8(15);
            let lo = _mm_and_si128(q, m);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
            (_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi))
        }
    }

    /// `rows_q4_1` on 16-bit activations.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_q4_1_w16<const R: usize>(w: &[BlockQ4_1], x: &Q8Rows, xb: [usize; R]) -> [f32; R] {
        unsafe {
            let (qs, dx, sx) = (x.qw.as_ptr(), x.d.as_ptr(), x.s.as_ptr());
            let mut acc = [[_mm256_setzero_ps(); R]; 2];
            let mut mins = [[0.0f32; R]; 2];
            for (k, b) in w.iter().enumerate() {
                let h = k & 1;
                let (lo, hi) = nibbles16(&b.qs);
                let (d, m) = halves(b.d.to_bits(), b.m.to_bits());
                for r in 0..R {
                    let i = xb[r] + k;
                    let p = dot16(lo, hi, qs.add(i * QK));
                    acc[h][r] = _mm256_fmadd_ps(_mm256_set1_ps(d * *dx.add(i)), p, acc[h][r]);
                    mins[h][r] += m * *sx.add(i);
                }
            }
            std::array::from_fn(|r| hsum(_mm256_add_ps(acc[0][r], acc[1][r])) + (mins[0][r] + mins[1][r]))
        }
    }

    /// `rows_q4_0` on 16-bit activations.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_q4_0_w16<const R: usize>(w: &[BlockQ4_0], x: &Q8Rows, xb: [usize; R]) -> [f32; R] {
        unsafe {
            let (qs, dx, sx) = (x.qw.as_ptr(), x.d.as_ptr(), x.s.as_ptr());
            let mut acc = [_mm256_setzero_ps(); R];
            let mut off = [0.0f32; R];
            for (k, b) in w.iter().enumerate() {
                let (lo, hi) = nibbles16(&b.qs);
                let d = half(b.d.to_bits());
                for r in 0..R {
                    let i = xb[r] + k;
                    let p = dot16(lo, hi, qs.add(i * QK));
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * *dx.add(i)), p, acc[r]);
                    off[r] += 8.0 * d * *sx.add(i);
                }
            }
            std::array::from_fn(|r| hsum(acc[r]) - off[r])
        }
    }

    /// `rows_q8_0` on 16-bit activations.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_q8_0_w16<const R: usize>(w: &[BlockQ8_0], x: &Q8Rows, xb: [usize; R]) -> [f32; R] {
        unsafe {
            let (qs, dx) = (x.qw.as_ptr(), x.d.as_ptr());
            let mut acc = [_mm256_setzero_ps(); R];
            for (k, b) in w.iter().enumerate() {
                let wq = _mm256_loadu_si256(b.qs.as_ptr().cast());
                let lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wq));
                let hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wq, 1));
                let d = half(b.d.to_bits());
                for r in 0..R {
                    let i = xb[r] + k;
                    let p = dot16(lo, hi, qs.add(i * QK));
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * *dx.add(i)), p, acc[r]);
                }
            }
            std::array::from_fn(|r| hsum(acc[r]))
        }
    }
}

/// Whether the AVX2 kernels can run here (AVX2, FMA and F16C).
fn has_avx2_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| crate::simd::has_avx2() && is_x86_feature_detected!("f16c"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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

    /// Row `r` (`kb` blocks) times the R activation rows whose blocks start at `xb`.
    #[inline(always)]
    fn rows<const R: usize>(self, r: usize, kb: usize, x: &Q8Rows, xb: [usize; R], fast: bool) -> [f32; R] {
        let span = r * kb..(r + 1) * kb;
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: AVX2, FMA and F16C are there (`fast`), and the caller sized x for every xb + kb block.
            return unsafe {
                match (self, x.wide) {
                    (Blocks::Q4_1(b), false) => avx2::rows_q4_1(&b[span], x, xb),
                    (Blocks::Q4_0(b), false) => avx2::rows_q4_0(&b[span], x, xb),
                    (Blocks::Q8_0(b), false) => avx2::rows_q8_0(&b[span], x, xb),
                    (Blocks::Q4_1(b), true) => avx2::rows_q4_1_w16(&b[span], x, xb),
                    (Blocks::Q4_0(b), true) => avx2::rows_q4_0_w16(&b[span], x, xb),
                    (Blocks::Q8_0(b), true) => avx2::rows_q8_0_w16(&b[span], x, xb),
                }
            };
        }
        let _ = fast;
        match self {
            Blocks::Q4_1(b) => xb.map(|o| row_portable(&b[span.clone()], x, o)),
            Blocks::Q4_0(b) => xb.map(|o| row_portable(&b[span.clone()], x, o)),
            Blocks::Q8_0(b) => xb.map(|o| row_portable(&b[span.clone()], x, o)),
        }
    }
}

/// outs[i][b, r] = row r of matrix i · activation row b, for every matrix at once: one parallel pass over
/// all their rows (q, k and v of a layer share an input, so they share the pass and the quantized x).
/// Activation rows go four at a time, each weight block unpacked once for the four.
fn product(mats: &[(Blocks<'_>, usize)], kb: usize, x: &Q8Rows, n: usize, outs: &mut [&mut [f32]], fast: bool) {
    let total: usize = mats.iter().map(|m| m.1).sum();
    let parts = crate::hot::parts_for(total * n * kb * QK);
    let dsts: Vec<Disjoint<f32>> = outs.iter_mut().map(|o| Disjoint::new(o)).collect();
    // The hot pool: generation runs about 150 of these a token, too short for sleeping workers to join.
    crate::hot::pool().run(parts, &|p| {
        let range = p * total / parts..(p + 1) * total / parts;
        let (mut i, mut first) = (0, 0);
        for g in range {
            while g >= first + mats[i].1 {
                first += mats[i].1;
                i += 1;
            }
            let (blocks, rows) = mats[i];
            let r = g - first;
            // SAFETY (each write): element (b, r) of output i belongs to the part that owns global row g alone.
            let put = |b: usize, v: f32| unsafe { dsts[i].part(b * rows + r..b * rows + r + 1)[0] = v };
            let mut b = 0;
            while b + 4 <= n {
                let v = blocks.rows(r, kb, x, [b * kb, (b + 1) * kb, (b + 2) * kb, (b + 3) * kb], fast);
                v.iter().enumerate().for_each(|(j, &v)| put(b + j, v));
                b += 4;
            }
            for b in b..n {
                put(b, blocks.rows(r, kb, x, [b * kb], fast)[0]);
            }
        }
    });
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
        QMatrix::q8_many(mats, x, n, outs, scratch, has_avx2_f16c())
    }

    /// `matmul_t_q8_many` on the portable path even where AVX2 runs (tests compare the two).
    pub fn matmul_t_q8_portable(&self, x: &[f32], n: usize, out: &mut [f32], scratch: &mut Q8Rows) -> Result<()> {
        QMatrix::q8_many(&[self], x, n, &mut [out], scratch, false)
    }

    fn q8_many(
        mats: &[&QMatrix],
        x: &[f32],
        n: usize,
        outs: &mut [&mut [f32]],
        scratch: &mut Q8Rows,
        fast: bool,
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
        let typed: Option<Vec<(Blocks<'_>, usize)>> = mats.iter().map(|m| Some((Blocks::of(m)?, m.rows()))).collect();
        let Some(typed) = typed else {
            // Halves: the exact path, one matrix at a time.
            for (m, out) in mats.iter().zip(outs.iter_mut()) {
                m.matmul_t(x, n, out)?;
            }
            return Ok(());
        };
        scratch.quantize(x);
        product(&typed, cols / QK, scratch, n, outs, fast);
        Ok(())
    }
}
