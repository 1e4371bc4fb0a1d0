//! The x86 kernels of `qdot`, chosen at run time: the activations' quantization (AVX2) and the tiles of block
//! products, each the same arithmetic as the portable loop in qdot.rs that the tests hold it to, but for a Q8_0
//! weight byte of −128 (never written by llama.cpp), which `tile_q8_0` on 8 bits takes as −127 (quant.rs's
//! `q8_0_weights_of_minus_128_stay_within_one_unit_on_avx2` bounds the difference; `tile4_q8_0_u8` is exact).
//!
//! The tiles are written once, generic over `Dots` (the integer dot products), and compiled twice through the
//! entry points at the end: with AVX2 (`maddubs` + `madd` for bytes, `madd` + `add` for 16-bit pairs) and with
//! AVX-512 VNNI on 256-bit vectors (`vpdpbusd`, `vpdpwssd`: one instruction each), whose sums are the same
//! integers (maddubs's 16-bit sums never saturate here: |x| ≤ 127 against |w| ≤ 127, or nibbles ≤ 15), so the
//! two paths give the same floats, except for Q8_0 on 8 bits in tiles of four activation rows, which VNNI takes
//! in a tile of its own (`tile4_q8_0_u8`: weights offset to unsigned bytes, on which `maddubs` could saturate).
//! Everything below the entry points is `#[inline(always)]` without target features, so that it is compiled into
//! each entry with that entry's features.

use super::*;
use std::arch::x86_64::*;

/// The integer dot products a tile is built on.
pub trait Dots {
    /// Whether `us8`'s products of unsigned bytes up to 255 with signed ones are exact (no 16-bit saturation
    /// on the way, as AVX2's `maddubs` has), so Q8_0 weights may be offset to unsigned (`tile4_q8_0_u8`).
    const UNSIGNED_WEIGHTS: bool;
    /// Eight i32 sums, each of four products u_j·s_j of unsigned bytes u and signed bytes s.
    unsafe fn us8(u: __m256i, s: __m256i) -> __m256i;
    /// acc + eight i32 sums, each of two products a_j·b_j of 16-bit integers.
    unsafe fn acc16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;
}

/// AVX2 (with FMA and F16C).
pub struct Avx2;

impl Dots for Avx2 {
    const UNSIGNED_WEIGHTS: bool = false;
    #[inline(always)]
    unsafe fn us8(u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)) }
    }
    #[inline(always)]
    unsafe fn acc16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)) }
    }
}

/// AVX2 with AVX-512 VNNI's dot instructions on 256-bit vectors (AVX512VL).
pub struct Vnni;

impl Dots for Vnni {
    const UNSIGNED_WEIGHTS: bool = true;
    #[inline(always)]
    unsafe fn us8(u: __m256i, s: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s) }
    }
    #[inline(always)]
    unsafe fn acc16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_dpwssd_epi32(acc, a, b) }
    }
}

#[inline(always)]
unsafe fn half(bits: u16) -> f32 {
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))) }
}

/// The 32 nibbles of a Q4 block as 32 unsigned bytes, elements 0..16 then 16..32.
#[inline(always)]
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
#[inline(always)]
unsafe fn dot_us<D: Dots>(u: __m256i, s: __m256i) -> __m256 {
    unsafe { _mm256_cvtepi32_ps(D::us8(u, s)) }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

/// d and m of a Q4_1 block (adjacent halves) as f32, in one conversion.
#[inline(always)]
unsafe fn halves(d: u16, m: u16) -> (f32, f32) {
    unsafe {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128((d as u32 | (m as u32) << 16) as i32));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }
}

/// A Q4 block as the tiles read it: its nibbles n, and (d, c) such that its product with an activation block
/// (d_x, q, s_x = d_x·Σq) is d·d_x·Σ n·q + c·s_x: Q4_1's minimum m for c, and for Q4_0, whose nibbles are offset
/// by 8, −8d (the same floats as subtracting 8d·s_x: FMA and rounding are symmetric in sign).
trait Q4 {
    fn nibbles(&self) -> &[u8; QK / 2];
    unsafe fn dc(&self) -> (f32, f32);
}

impl Q4 for BlockQ4_1 {
    #[inline(always)]
    fn nibbles(&self) -> &[u8; QK / 2] {
        &self.qs
    }
    #[inline(always)]
    unsafe fn dc(&self) -> (f32, f32) {
        unsafe { halves(self.d.to_bits(), self.m.to_bits()) }
    }
}

impl Q4 for BlockQ4_0 {
    #[inline(always)]
    fn nibbles(&self) -> &[u8; QK / 2] {
        &self.qs
    }
    #[inline(always)]
    unsafe fn dc(&self) -> (f32, f32) {
        let d = unsafe { half(self.d.to_bits()) };
        (d, -8.0 * d)
    }
}

/// A block of 32 values as i32 q = round(x/d) (to nearest, ties to even), d = max|x|/top, and Σq.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn block_i32(x: &[f32; QK], top: f32) -> (f32, [__m256i; 4], i32) {
    // SAFETY: four loads of 8 within the block.
    let v: [__m256; 4] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) });
    let sign = _mm256_set1_ps(-0.0);
    let m = v.iter().fold(_mm256_setzero_ps(), |m, &v| _mm256_max_ps(m, _mm256_andnot_ps(sign, v)));
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let (d, id) = block_scale(amax, top);
    let id = _mm256_set1_ps(id);
    let q = v.map(|v| {
        _mm256_cvtps_epi32(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(v, id)))
    });
    let t = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let t = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b01_00_11_10));
    let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b10_11_00_01));
    (d, q, _mm_cvtsi128_si32(t))
}

/// `quantize_blocks` of one block to 8 bits: (d, Σq).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn quantize8(x: &[f32; QK], out: &mut [i8]) -> (f32, i32) {
    let (d, q, t) = block_i32(x, 127.0);
    // packs interleave 128-bit lanes; the permutation puts the 32 values back in order.
    let p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    assert_eq!(out.len(), QK);
    // SAFETY: 32 bytes into 32.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), p) };
    (d, t)
}

/// `quantize_blocks` of one block to 16 bits: (d, Σq).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn quantize16(x: &[f32; QK], out: &mut [i16]) -> (f32, i32) {
    let (d, q, t) = block_i32(x, 32767.0);
    let a = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0b11_01_10_00);
    let b = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0b11_01_10_00);
    assert_eq!(out.len(), QK);
    // SAFETY: 2 × 16 values into 32.
    unsafe {
        _mm256_storeu_si256(out.as_mut_ptr().cast(), a);
        _mm256_storeu_si256(out.as_mut_ptr().add(16).cast(), b);
    }
    (d, t)
}

/// How many sets of sums a tile keeps: two for a single product (one row by one row, a new token), block
/// k0 + h adding into set h, so that each FMA need not wait for the one before (one set ran generation at
/// 46-57 tokens/s where two ran 57-71); one for a larger tile, whose several sums already overlap. The tiles
/// step through the blocks that many at a time with h a constant after unrolling: a set chosen as k & 1 at
/// run time had kept the two on the stack, loaded and stored every block. SmolLM2's generation with the old
/// and new kernels alternating ten times in one process (48 tokens each, 2 threads, AVX2 EPYC, 2026-12-03):
/// Q4_1 1.05-1.12 times the tokens a second on 16 bits, 1.08-1.19 on 8; Q8_0, which reads more bytes a
/// weight, 0.98-1.08 and 0.97-1.13.
#[inline(always)]
fn sets<const RW: usize, const R: usize>() -> usize {
    if RW * R == 1 { 2 } else { 1 }
}

/// Σ_k m_k·s_k for the R activation rows as four lanes: `sx` at each row's block index (the minimum
/// term of Q4_1 and the offset of Q4_0 take it, one broadcast and one FMA a weight block for all R).
#[inline(always)]
unsafe fn lanes<const R: usize>(sx: *const f32, i: [usize; R]) -> __m128 {
    unsafe {
        let mut v = [0.0f32; 4];
        for r in 0..R {
            v[r] = *sx.add(i[r]);
        }
        _mm_loadu_ps(v.as_ptr())
    }
}

/// Lane r of a `lanes` sum, for each of the R rows.
#[inline(always)]
fn unlane<const R: usize>(v: __m128) -> [f32; R] {
    let mut a = [0.0f32; 4];
    // SAFETY: four f32 to four f32.
    unsafe { _mm_storeu_ps(a.as_mut_ptr(), v) };
    std::array::from_fn(|r| a[r])
}

/// out[i][r]: both sets of sum (i, r), their lanes added, plus lane r of both sets of extra[i] (`lanes`: the
/// Q4 blocks' c·s_x terms, `Q4`). Plain loops: a closure here (`array::from_fn`) is a
/// function of its own, compiled without the entry point's target features, and calling it with the sums
/// had moved every 8-bit tile's sums to memory (SmolLM2's 128-token prompt on 8 bits at 0.54-0.63 of the speed).
#[inline(always)]
unsafe fn finish<const RW: usize, const R: usize>(
    acc: &[[[__m256; R]; RW]; 2],
    extra: &[[__m128; RW]; 2],
) -> [[f32; R]; RW] {
    let mut out = [[0.0f32; R]; RW];
    for i in 0..RW {
        // SAFETY: SSE and AVX, which the entry points' features include.
        let e = unlane::<R>(unsafe { _mm_add_ps(extra[0][i], extra[1][i]) });
        for r in 0..R {
            out[i][r] = unsafe { hsum(_mm256_add_ps(acc[0][i][r], acc[1][i][r])) } + e[r];
        }
    }
    out
}

/// A tile of products: RW weight rows (`w`, the same number of blocks each) times R activation rows
/// (their first blocks at `xb`), out[i][r]. Each weight block is unpacked once for the R rows and each
/// activation block loaded once for the RW weight rows, with RW·R sums in registers (4×3 or 2×4 on a
/// prompt, `tile_shape`'s choice, as llama.cpp's tinyBLAS tiles its products; one weight row at a time loaded
/// every activation block once per row; 16-bit tiles of four activation rows fold theirs, `tile4_q8_0_w16`).
/// Activations on 16 bits when `WIDE`, else on 8. The caller checks that every block read exists.
#[inline(always)]
unsafe fn tile_q4<D: Dots, B: Q4, const WIDE: bool, const RW: usize, const R: usize>(
    w: [&[B]; RW],
    x: &Q8Rows,
    xb: [usize; R],
) -> [[f32; R]; RW] {
    if WIDE && R == 4 {
        // SAFETY: the caller's.
        let v = unsafe { tile4_q4_w16::<D, B, RW>(w, x, std::array::from_fn(|r| xb[r])) };
        return std::array::from_fn(|i| std::array::from_fn(|r| v[i][r]));
    }
    unsafe {
        let (dx, sx) = (x.d.as_ptr(), x.s.as_ptr());
        let mut acc = [[[_mm256_setzero_ps(); R]; RW]; 2];
        let mut terms = [[_mm_setzero_ps(); RW]; 2];
        let (kb, hs) = (w[0].len(), sets::<RW, R>());
        for k0 in (0..kb).step_by(hs) {
            for h in 0..hs {
                let k = k0 + h;
                if k == kb {
                    break;
                }
                let s = lanes(sx, xb.map(|b| b + k));
                for i in 0..RW {
                    let b = w[i].get_unchecked(k);
                    let (d, c) = b.dc();
                    let dv = _mm256_set1_ps(d);
                    terms[h][i] = _mm_fmadd_ps(_mm_set1_ps(c), s, terms[h][i]);
                    if WIDE {
                        let (lo, hi) = nibbles16(b.nibbles());
                        for r in 0..R {
                            let j = xb[r] + k;
                            let p = dot16::<D>(lo, hi, x.qw.as_ptr().add(j * QK));
                            acc[h][i][r] =
                                _mm256_fmadd_ps(_mm256_mul_ps(dv, _mm256_broadcast_ss(&*dx.add(j))), p, acc[h][i][r]);
                        }
                    } else {
                        let n = nibbles(b.nibbles());
                        for r in 0..R {
                            let j = xb[r] + k;
                            let xq = _mm256_loadu_si256(x.qs.as_ptr().add(j * QK).cast());
                            let p = dot_us::<D>(n, xq);
                            acc[h][i][r] =
                                _mm256_fmadd_ps(_mm256_mul_ps(dv, _mm256_broadcast_ss(&*dx.add(j))), p, acc[h][i][r]);
                        }
                    }
                }
            }
        }
        finish(&acc, &terms)
    }
}

/// |x| once per activation row for the RW weight rows, w signed by x, and d_w converted as a vector so that
/// d_w·d_x is one `vmulps`: where |w| once per weight row and x signed by w had the compiler multiply scalars,
/// broadcast the product and spill accumulators of the 2x4 tile. qbench on an AVX2 EPYC (2026-12-03), the two
/// alternating in one process, 8-bit Q8_0 products of 128 tokens: 4-11% less time in eight of eight pairs
/// (SmolLM2's gate and down shapes, one and two threads). The instructions alone, every operand in registers,
/// take 0.63 ns a block pair on one core, the kernel about 1 ns: the rest is outside the arithmetic, not found.
#[inline(always)]
unsafe fn tile_q8_0<D: Dots, const RW: usize, const R: usize>(
    w: [&[BlockQ8_0]; RW],
    x: &Q8Rows,
    xb: [usize; R],
) -> [[f32; R]; RW] {
    if D::UNSIGNED_WEIGHTS && R == 4 {
        // SAFETY: the caller's.
        let v = unsafe { tile4_q8_0_u8::<D, RW>(w, x, std::array::from_fn(|r| xb[r])) };
        return std::array::from_fn(|i| std::array::from_fn(|r| v[i][r]));
    }
    unsafe {
        let (qs, dx) = (x.qs.as_ptr(), x.d.as_ptr());
        let mut acc = [[[_mm256_setzero_ps(); R]; RW]; 2];
        let (kb, hs) = (w[0].len(), sets::<RW, R>());
        for k0 in (0..kb).step_by(hs) {
            for (h, acc) in acc.iter_mut().enumerate().take(hs) {
                let k = k0 + h;
                if k == kb {
                    break;
                }
                let mut wq = [_mm256_setzero_si256(); RW];
                let mut dv = [_mm256_setzero_ps(); RW];
                for i in 0..RW {
                    let b = w[i].get_unchecked(k);
                    // −128, which llama.cpp's quantizer never writes (|q| <= 127), would stay −128 when signed by a
                    // negative x; as −127 it is one unit off instead of the wrong sign.
                    wq[i] = _mm256_max_epi8(_mm256_loadu_si256(b.qs.as_ptr().cast()), _mm256_set1_epi8(-127));
                    dv[i] = _mm256_cvtph_ps(_mm_set1_epi16(b.d.to_bits() as i16));
                }
                for r in 0..R {
                    let j = xb[r] + k;
                    let xq = _mm256_loadu_si256(qs.add(j * QK).cast());
                    // maddubs takes unsigned × signed: |x| × (w with x's sign).
                    let ax = _mm256_sign_epi8(xq, xq);
                    let dxv = _mm256_broadcast_ss(&*dx.add(j));
                    for i in 0..RW {
                        let p = dot_us::<D>(ax, _mm256_sign_epi8(wq[i], xq));
                        acc[i][r] = _mm256_fmadd_ps(_mm256_mul_ps(dv[i], dxv), p, acc[i][r]);
                    }
                }
            }
        }
        finish(&acc, &[[_mm_setzero_ps(); RW]; 2])
    }
}

/// Σ w_j·x_j over a block for 32 weights as i16 (lo: 0..16, hi: 16..32) and 16-bit activations at `x`,
/// as eight i32 sums converted to f32.
#[inline(always)]
unsafe fn dot16<D: Dots>(lo: __m256i, hi: __m256i, x: *const i16) -> __m256 {
    unsafe {
        let a = _mm256_madd_epi16(lo, _mm256_loadu_si256(x.cast()));
        _mm256_cvtepi32_ps(D::acc16(a, hi, _mm256_loadu_si256(x.add(16).cast())))
    }
}

/// A Q4 block's nibbles as two vectors of 16 i16 (elements 0..16, 16..32).
#[inline(always)]
unsafe fn nibbles16(ns: &[u8; QK / 2]) -> (__m256i, __m256i) {
    unsafe {
        let q = _mm_loadu_si128(ns.as_ptr().cast());
        let m = _mm_set1_epi8(15);
        let lo = _mm_and_si128(q, m);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
        (_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi))
    }
}

/// `tile_q8_0` on 16-bit activations; four activation rows go to `tile4_q8_0_w16`.
#[inline(always)]
unsafe fn tile_q8_0_w16<D: Dots, const RW: usize, const R: usize>(
    w: [&[BlockQ8_0]; RW],
    x: &Q8Rows,
    xb: [usize; R],
) -> [[f32; R]; RW] {
    if R == 4 {
        // SAFETY: the caller's.
        let v = unsafe { tile4_q8_0_w16::<D, RW>(w, x, std::array::from_fn(|r| xb[r])) };
        return std::array::from_fn(|i| std::array::from_fn(|r| v[i][r]));
    }
    unsafe {
        let (qs, dx) = (x.qw.as_ptr(), x.d.as_ptr());
        let mut acc = [[[_mm256_setzero_ps(); R]; RW]; 2];
        let (kb, hs) = (w[0].len(), sets::<RW, R>());
        for k0 in (0..kb).step_by(hs) {
            for (h, acc) in acc.iter_mut().enumerate().take(hs) {
                let k = k0 + h;
                if k == kb {
                    break;
                }
                for i in 0..RW {
                    let b = w[i].get_unchecked(k);
                    let wq = _mm256_loadu_si256(b.qs.as_ptr().cast());
                    let lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wq));
                    let hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wq, 1));
                    let d = half(b.d.to_bits());
                    let dv = _mm256_set1_ps(d);
                    for r in 0..R {
                        let j = xb[r] + k;
                        let p = dot16::<D>(lo, hi, qs.add(j * QK));
                        acc[i][r] = _mm256_fmadd_ps(_mm256_mul_ps(dv, _mm256_broadcast_ss(&*dx.add(j))), p, acc[i][r]);
                    }
                }
            }
        }
        finish(&acc, &[[_mm_setzero_ps(); RW]; 2])
    }
}

/// Four vectors of eight i32 folded into one, lane r of each 128-bit half the sum of p[r]'s four lanes in
/// that half (two rounds of `hadd`), converted to f32.
#[inline(always)]
unsafe fn fold4(p: [__m256i; 4]) -> __m256 {
    unsafe { _mm256_cvtepi32_ps(_mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]))) }
}

/// `tile_q8_0` for four activation rows where `us8` takes unsigned bytes up to 255 exactly (VNNI): each weight
/// byte offset by 128 (its top bit flipped) is unsigned, so one `us8` per row multiplies it with the signed
/// activations, with no signing of one by the other; Σ(w+128)·x − 128·Σx = Σw·x exactly (a weight of −128
/// included), the correction subtracted as integers before the conversion; the four rows folded as
/// `tile4_q8_0_w16` folds them.
#[inline(always)]
unsafe fn tile4_q8_0_u8<D: Dots, const RW: usize>(w: [&[BlockQ8_0]; RW], x: &Q8Rows, xb: [usize; 4]) -> [[f32; 4]; RW] {
    unsafe {
        let (qs, dx, sum) = (x.qs.as_ptr(), x.d.as_ptr(), x.sum.as_ptr());
        let flip = _mm256_set1_epi8(-128);
        let mut acc = [_mm256_setzero_ps(); RW];
        for k in 0..w[0].len() {
            let dxv = dx4(dx, xb, k);
            // 128·Σx of each row, half in each 128-bit half of the fold (lane r and r + 4).
            let c = _mm_setr_epi32(
                64 * *sum.add(xb[0] + k),
                64 * *sum.add(xb[1] + k),
                64 * *sum.add(xb[2] + k),
                64 * *sum.add(xb[3] + k),
            );
            let c = _mm256_set_m128i(c, c);
            let mut xs = [_mm256_setzero_si256(); 4];
            for r in 0..4 {
                xs[r] = _mm256_loadu_si256(qs.add((xb[r] + k) * QK).cast());
            }
            for i in 0..RW {
                let b = w[i].get_unchecked(k);
                let wu = _mm256_xor_si256(_mm256_loadu_si256(b.qs.as_ptr().cast()), flip);
                let mut p = [_mm256_setzero_si256(); 4];
                for r in 0..4 {
                    p[r] = D::us8(wu, xs[r]);
                }
                let p = _mm256_sub_epi32(
                    _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3])),
                    c,
                );
                let dv = _mm256_cvtph_ps(_mm_set1_epi16(b.d.to_bits() as i16));
                acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dv, dxv), _mm256_cvtepi32_ps(p), acc[i]);
            }
        }
        let mut out = [[0.0; 4]; RW];
        for i in 0..RW {
            out[i] = unfold4(acc[i]);
        }
        out
    }
}

/// Σ w_j·x_j over one weight block (as i16, lo and hi as in `dot16`) and block k of each of the four
/// activation rows whose blocks start at `xb`, folded (`fold4`: lane r for row r).
#[inline(always)]
unsafe fn dot16_x4<D: Dots>(lo: __m256i, hi: __m256i, qs: *const i16, xb: [usize; 4], k: usize) -> __m256 {
    unsafe {
        let mut p = [_mm256_setzero_si256(); 4];
        for r in 0..4 {
            let x = qs.add((xb[r] + k) * QK);
            let a = _mm256_madd_epi16(lo, _mm256_loadu_si256(x.cast()));
            p[r] = D::acc16(a, hi, _mm256_loadu_si256(x.add(16).cast()));
        }
        fold4(p)
    }
}

/// d_x of block k of the four activation rows whose blocks start at `xb`, as [d_x0..d_x3 | d_x0..d_x3] (the
/// lanes of `fold4`).
#[inline(always)]
unsafe fn dx4(dx: *const f32, xb: [usize; 4], k: usize) -> __m256 {
    unsafe {
        let d = _mm_setr_ps(*dx.add(xb[0] + k), *dx.add(xb[1] + k), *dx.add(xb[2] + k), *dx.add(xb[3] + k));
        _mm256_set_m128(d, d)
    }
}

/// The four sums of a folded accumulator: lane r plus lane r + 4.
#[inline(always)]
unsafe fn unfold4(v: __m256) -> [f32; 4] {
    let mut o = [0.0f32; 4];
    // SAFETY: four f32 into four.
    unsafe { _mm_storeu_ps(o.as_mut_ptr(), _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1))) };
    o
}

/// `tile_q4` on 16 bits for four activation rows, folded as `tile4_q8_0_w16`. (The same fold on 8 bits, VNNI
/// or AVX2, against 4x3: within the noise of an AVX-512 EPYC in qbench, two runs; not used.)
#[inline(always)]
unsafe fn tile4_q4_w16<D: Dots, B: Q4, const RW: usize>(w: [&[B]; RW], x: &Q8Rows, xb: [usize; 4]) -> [[f32; 4]; RW] {
    unsafe {
        let (dx, sx) = (x.d.as_ptr(), x.s.as_ptr());
        let mut acc = [_mm256_setzero_ps(); RW];
        let mut terms = [_mm_setzero_ps(); RW];
        for k in 0..w[0].len() {
            let dxv = dx4(dx, xb, k);
            let s = lanes(sx, xb.map(|b| b + k));
            for i in 0..RW {
                let b = w[i].get_unchecked(k);
                let (d, c) = b.dc();
                terms[i] = _mm_fmadd_ps(_mm_set1_ps(c), s, terms[i]);
                let (lo, hi) = nibbles16(b.nibbles());
                let p = dot16_x4::<D>(lo, hi, x.qw.as_ptr(), xb, k);
                acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(d), dxv), p, acc[i]);
            }
        }
        let mut out = [[0.0; 4]; RW];
        for i in 0..RW {
            let (v, c) = (unfold4(acc[i]), unlane::<4>(terms[i]));
            out[i] = std::array::from_fn(|r| v[r] + c[r]);
        }
        out
    }
}

/// `tile_q8_0_w16` for four activation rows, which share each weight row's sum: their block products (eight
/// i32 each) are folded into one vector (`fold4`, lane r for row r), so that one conversion, one d_w·d_x
/// multiply ([d_w]·[d_x0..d_x3 | d_x0..d_x3]) and one FMA serve four block pairs where they served one, and
/// RW sums stand where 4x3 held twelve, eight of which the compiler moved through the stack every block (the
/// 4x4 fold, in the disassembly, three vectors). On this AVX2 EPYC (Zen 3) vpmaddwd, vcvtdq2ps, vmulps and the
/// FMA share two pipes (a throwaway microbenchmark: any two of them together ran at two a cycle, each alone at
/// two), which the fold relieves; its hadds (two cycles each) ran beside them. Measured: `tile_shape`.
#[inline(always)]
unsafe fn tile4_q8_0_w16<D: Dots, const RW: usize>(
    w: [&[BlockQ8_0]; RW],
    x: &Q8Rows,
    xb: [usize; 4],
) -> [[f32; 4]; RW] {
    unsafe {
        let (qs, dx) = (x.qw.as_ptr(), x.d.as_ptr());
        let mut acc = [_mm256_setzero_ps(); RW];
        for k in 0..w[0].len() {
            let dxv = dx4(dx, xb, k);
            for i in 0..RW {
                let b = w[i].get_unchecked(k);
                let lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.qs.as_ptr().cast()));
                let hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.qs.as_ptr().add(16).cast()));
                let dv = _mm256_cvtph_ps(_mm_set1_epi16(b.d.to_bits() as i16));
                acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dv, dxv), dot16_x4::<D>(lo, hi, qs, xb, k), acc[i]);
            }
        }
        let mut out = [[0.0; 4]; RW];
        for i in 0..RW {
            out[i] = unfold4(acc[i]);
        }
        out
    }
}

/// Rows r0..r0 + RW of `blocks` (`kb` blocks each) times the R activation rows whose blocks start at `xb`:
/// out[i][r], by the tile for the blocks' type and the activations' width.
#[inline(always)]
unsafe fn tile_of<D: Dots, const RW: usize, const R: usize>(
    blocks: Blocks<'_>,
    r0: usize,
    kb: usize,
    x: &Q8Rows,
    xb: [usize; R],
) -> [[f32; R]; RW] {
    fn ws<B, const RW: usize>(b: &[B], r0: usize, kb: usize) -> [&[B]; RW] {
        std::array::from_fn(|i| &b[(r0 + i) * kb..(r0 + i + 1) * kb])
    }
    // SAFETY: the caller's; each weight row's slice is checked here (`ws`), all of kb blocks.
    unsafe {
        match (blocks, x.wide) {
            (Blocks::Q4_1(b), false) => tile_q4::<D, _, false, RW, R>(ws(b, r0, kb), x, xb),
            (Blocks::Q4_0(b), false) => tile_q4::<D, _, false, RW, R>(ws(b, r0, kb), x, xb),
            (Blocks::Q8_0(b), false) => tile_q8_0::<D, RW, R>(ws(b, r0, kb), x, xb),
            (Blocks::Q4_1(b), true) => tile_q4::<D, _, true, RW, R>(ws(b, r0, kb), x, xb),
            (Blocks::Q4_0(b), true) => tile_q4::<D, _, true, RW, R>(ws(b, r0, kb), x, xb),
            (Blocks::Q8_0(b), true) => tile_q8_0_w16::<D, RW, R>(ws(b, r0, kb), x, xb),
        }
    }
}

/// One activation row (at block 0 of `x`) times rows r0..r1 of `blocks` (`kb` blocks each): out[r − r0], the
/// rows in one call, so that a new token's product does not pay a call and an output check per row (6% of a
/// generation profile was that bookkeeping around `tile::<1, 1>`).
#[inline(always)]
unsafe fn rows_of<D: Dots>(blocks: Blocks<'_>, r0: usize, r1: usize, kb: usize, x: &Q8Rows, out: &mut [f32]) {
    for (r, o) in (r0..r1).zip(out.iter_mut()) {
        // SAFETY: the caller's: x holds kb blocks; each row of `blocks` kb blocks (sliced, so checked).
        *o = unsafe { tile_of::<D, 1, 1>(blocks, r, kb, x, [0]) }[0][0];
    }
}

/// `tile_of` on AVX2. SAFETY (callers): AVX2, FMA and F16C are there, and x holds every block xb + kb reads.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile<const RW: usize, const R: usize>(
    blocks: Blocks<'_>,
    r0: usize,
    kb: usize,
    x: &Q8Rows,
    xb: [usize; R],
) -> [[f32; R]; RW] {
    unsafe { tile_of::<Avx2, RW, R>(blocks, r0, kb, x, xb) }
}

/// `tile_of` with AVX-512 VNNI. SAFETY (callers): as `tile`, and AVX512VNNI and AVX512VL are there.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(super) unsafe fn tile_vnni<const RW: usize, const R: usize>(
    blocks: Blocks<'_>,
    r0: usize,
    kb: usize,
    x: &Q8Rows,
    xb: [usize; R],
) -> [[f32; R]; RW] {
    unsafe { tile_of::<Vnni, RW, R>(blocks, r0, kb, x, xb) }
}

/// `rows_of` on AVX2. SAFETY (callers): AVX2, FMA and F16C are there, and x holds kb blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows(blocks: Blocks<'_>, r0: usize, r1: usize, kb: usize, x: &Q8Rows, out: &mut [f32]) {
    unsafe { rows_of::<Avx2>(blocks, r0, r1, kb, x, out) }
}

/// `rows_of` with AVX-512 VNNI. SAFETY (callers): as `rows`, and AVX512VNNI and AVX512VL are there.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(super) unsafe fn rows_vnni(blocks: Blocks<'_>, r0: usize, r1: usize, kb: usize, x: &Q8Rows, out: &mut [f32]) {
    unsafe { rows_of::<Vnni>(blocks, r0, r1, kb, x, out) }
}
