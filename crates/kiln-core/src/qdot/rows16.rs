//! One activation row (a new token) against weight rows interleaved by 16, on 512-bit AVX-512 VNNI vectors
//! (`QIsa::Vnni512`): each of a vector's 16 lanes is one weight row, so a block's 32 products for 16 rows are
//! 8 `vpdpbusd` on weights read in order, no horizontal sum, and the 16 rows' scales are one vector. The row
//! kernel of x86.rs unpacks, multiplies and sums each row's block on 256 bits by itself: about ten
//! instructions a row and block against one here.
//!
//! The layout (`relay`), a group of 16 rows after another, in each its blocks in order: the weights in runs of
//! 4 bytes, lane l of run t holding row l's bytes 4t..4t + 4 (Q4: four runs, whose low nibbles are elements
//! 4t..4t + 4 and high nibbles 16 + 4t..; Q8_0: eight runs of elements 4t..4t + 4), then the 16 rows' d as
//! f16, then for Q4_1 their m: 16 times a block's own size, so the copy is as large as the matrix. Rows past
//! the last whole group stay with the row kernel.
//!
//! The integer sums are the portable loop's, exactly (a Q8_0 weight byte of −128, which llama.cpp never writes,
//! included; the row kernel takes it as −127). VNNI multiplies bytes, so 16-bit activations are
//! split first (`split`): x = 256·h + l with h signed and l unsigned, Σw·x = 256·Σw·h + Σw·l, h taken against
//! unsigned weights and l against signed ones; Q8_0's weights are signed, so against h they are offset by 128
//! (Σ(w + 128)·h − 128·Σh), as on 8-bit activations (Σ(w + 128)·x − 128·Σx). Only the order of the float
//! sums differs from the portable loop.

use super::{Blocks, Q8Rows};
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, QBlocks, QK, QuantBlock};
use std::arch::x86_64::*;

/// Rows a group interleaves: one per lane of a 512-bit vector of i32.
pub(super) const G: usize = 16;

/// The whole groups among rows r..r1, first to end, when there is one.
pub(super) fn whole_groups(r: usize, r1: usize) -> Option<(usize, usize)> {
    let (ga, gb) = (r.div_ceil(G), r1 / G);
    (ga < gb).then_some((ga, gb))
}

/// Bytes ahead of the block being read that each block's lines are fetched from: each thread reads one stream
/// and does little arithmetic per byte, so generation waits on memory (in `perf` its samples sit on the weight
/// loads). SmolLM2 Q4_1, lmbench 8 128 with 0, 512, 1024, 2048 and 4096 bytes taking turns (Intel Xeon with
/// AVX-512, 2 threads, 2026-12-06, three rounds each): tokens a second on 16 bits 86-101 without, 105-116 at
/// 512, 111-121 at 1024, 114-132 at 2048, 93-100 at 4096; on 8 bits 94-108, 120-128, 116-131, 120-134 and
/// 100-116. Q8_0 (two rounds): 73-75 without, 84-93 at 1024, 82-83 at 2048 on 16 bits.
const PREFETCH: usize = 1024;

pub(super) const Q4_1: u8 = 0;
pub(super) const Q4_0: u8 = 1;
pub(super) const Q8_0: u8 = 2;

/// The kind of a matrix's blocks, and the bytes of one group's block: 16 times a block's own.
pub(super) fn layout(b: Blocks<'_>) -> (u8, usize) {
    match b {
        Blocks::Q4_1(_) => (Q4_1, G * BlockQ4_1::BYTES),
        Blocks::Q4_0(_) => (Q4_0, G * BlockQ4_0::BYTES),
        Blocks::Q8_0(_) => (Q8_0, G * BlockQ8_0::BYTES),
    }
}

/// The whole groups of 16 rows of `blocks` (`kb` blocks a row) in this file's layout; empty for halves.
pub(super) fn relay(blocks: &QBlocks, kb: usize) -> Vec<u8> {
    // A block's GGUF bytes (`QuantBlock::write`) are its f16 scales (d, and Q4_1's m) and then its 16 or 32
    // weight bytes; these go out as the weight runs of the group's 16 rows, then the scales, one after another.
    fn each<B: QuantBlock>(b: &[B], kb: usize) -> Vec<u8> {
        let (head, groups) = (B::BYTES % 16, b.len() / kb.max(1) / G);
        let mut out = Vec::with_capacity(groups * kb * G * B::BYTES);
        let mut bytes = vec![0u8; G * B::BYTES];
        for g in 0..groups {
            for k in 0..kb {
                for (l, dst) in bytes.chunks_exact_mut(B::BYTES).enumerate() {
                    b[(g * G + l) * kb + k].write(dst);
                }
                let lanes = |at: usize, len: usize, out: &mut Vec<u8>| {
                    bytes.chunks_exact(B::BYTES).for_each(|blk| out.extend_from_slice(&blk[at..at + len]))
                };
                (head..B::BYTES).step_by(4).for_each(|t| lanes(t, 4, &mut out));
                (0..head).step_by(2).for_each(|s| lanes(s, 2, &mut out));
            }
        }
        out
    }
    match blocks {
        QBlocks::Q4_1(b) => each(b, kb),
        QBlocks::Q4_0(b) => each(b, kb),
        QBlocks::Q8_0(b) => each(b, kb),
        QBlocks::F16(_) | QBlocks::BF16(_) => Vec::new(),
    }
}

impl Q8Rows {
    /// The 16-bit activations of one row (`wide`) as bytes for this file's kernel: per block its 32 low
    /// bytes (unsigned), then its 32 high bytes (signed), x = 256·h + l, into `split`, and Σh into `hsum`.
    pub(super) fn split(&mut self) {
        let blocks = self.qw.len() / QK;
        self.split.resize(blocks * 2 * QK, 0);
        self.hsum.resize(blocks, 0);
        for (k, (xs, out)) in self.qw.chunks_exact(QK).zip(self.split.chunks_exact_mut(2 * QK)).enumerate() {
            let mut h = 0;
            for (j, &v) in xs.iter().enumerate() {
                out[j] = v as u8;
                out[QK + j] = (v >> 8) as u8;
                h += (v >> 8) as i32;
            }
            self.hsum[k] = h;
        }
    }
}

/// Lane-wide copies of the 4 bytes at p + 4t.
#[inline(always)]
unsafe fn bcast(p: *const u8, t: usize) -> __m512i {
    unsafe { _mm512_set1_epi32(p.add(4 * t).cast::<i32>().read_unaligned()) }
}

#[inline(always)]
unsafe fn sum4(a: [__m512i; 4]) -> __m512i {
    unsafe { _mm512_add_epi32(_mm512_add_epi32(a[0], a[1]), _mm512_add_epi32(a[2], a[3])) }
}

/// Run t of a Q4 block as its low and high nibbles, unsigned bytes.
#[inline(always)]
unsafe fn nibbles(w: *const u8, t: usize) -> (__m512i, __m512i) {
    unsafe {
        let (v, m) = (_mm512_loadu_si512(w.add(64 * t).cast()), _mm512_set1_epi8(15));
        (_mm512_and_si512(v, m), _mm512_and_si512(_mm512_srli_epi16(v, 4), m))
    }
}

/// Σ n·x for each of NG groups' 16 rows of Q4 nibbles at w[i] and 8-bit x at `xq`. Groups are taken NG at a
/// time so that they share the broadcasts of x. Plain loops: a closure (`array::from_fn`) would be a function
/// of its own, compiled without the caller's target features.
#[inline(always)]
unsafe fn q4_x8<const NG: usize>(w: [*const u8; NG], xq: *const u8) -> [__m512i; NG] {
    unsafe {
        // a[t][i]: run t's sums for group i.
        let mut a = [[_mm512_setzero_si512(); NG]; 4];
        for (t, a) in a.iter_mut().enumerate() {
            let (x0, x1) = (bcast(xq, t), bcast(xq, t + 4));
            for i in 0..NG {
                let (lo, hi) = nibbles(w[i], t);
                a[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a[i], lo, x0), hi, x1);
            }
        }
        let mut out = [_mm512_setzero_si512(); NG];
        for i in 0..NG {
            out[i] = sum4([a[0][i], a[1][i], a[2][i], a[3][i]]);
        }
        out
    }
}

/// Σ n·x for NG groups' Q4 nibbles and 16-bit x split into low bytes at l and high bytes at h.
#[inline(always)]
unsafe fn q4_x16<const NG: usize>(w: [*const u8; NG], l: *const u8, h: *const u8) -> [__m512i; NG] {
    unsafe {
        let (mut ah, mut al) = ([[_mm512_setzero_si512(); 4]; NG], [[_mm512_setzero_si512(); 4]; NG]);
        for t in 0..4 {
            let (h0, h1, l0, l1) = (bcast(h, t), bcast(h, t + 4), bcast(l, t), bcast(l, t + 4));
            for i in 0..NG {
                let (lo, hi) = nibbles(w[i], t);
                ah[i][t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(ah[i][t], lo, h0), hi, h1);
                al[i][t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(al[i][t], l0, lo), l1, hi);
            }
        }
        let mut out = [_mm512_setzero_si512(); NG];
        for i in 0..NG {
            out[i] = _mm512_add_epi32(_mm512_slli_epi32(sum4(ah[i]), 8), sum4(al[i]));
        }
        out
    }
}

/// Σ w·x for NG groups' Q8_0 weights and 8-bit x at `xq` whose sum is `xsum`.
#[inline(always)]
unsafe fn q8_x8<const NG: usize>(w: [*const u8; NG], xq: *const u8, xsum: i32) -> [__m512i; NG] {
    unsafe {
        let (mut a, off) = ([[_mm512_setzero_si512(); 4]; NG], _mm512_set1_epi8(-128));
        for t in 0..8 {
            let xt = bcast(xq, t);
            for i in 0..NG {
                let u = _mm512_xor_si512(_mm512_loadu_si512(w[i].add(64 * t).cast()), off);
                a[i][t % 4] = _mm512_dpbusd_epi32(a[i][t % 4], u, xt);
            }
        }
        let mut out = [_mm512_setzero_si512(); NG];
        for i in 0..NG {
            out[i] = _mm512_sub_epi32(sum4(a[i]), _mm512_set1_epi32(128 * xsum));
        }
        out
    }
}

/// Σ w·x for NG groups' Q8_0 weights and 16-bit x split into low bytes at l and high bytes at h (Σh `hsum`).
/// |Σ(w + 128)·h| ≤ 32·255·128, so 256 times it stays within i32.
#[inline(always)]
unsafe fn q8_x16<const NG: usize>(w: [*const u8; NG], l: *const u8, h: *const u8, hsum: i32) -> [__m512i; NG] {
    unsafe {
        let (mut ah, mut al) = ([[_mm512_setzero_si512(); 4]; NG], [[_mm512_setzero_si512(); 4]; NG]);
        let off = _mm512_set1_epi8(-128);
        for t in 0..8 {
            let (ht, lt) = (bcast(h, t), bcast(l, t));
            for i in 0..NG {
                let v = _mm512_loadu_si512(w[i].add(64 * t).cast());
                ah[i][t % 4] = _mm512_dpbusd_epi32(ah[i][t % 4], _mm512_xor_si512(v, off), ht);
                al[i][t % 4] = _mm512_dpbusd_epi32(al[i][t % 4], lt, v);
            }
        }
        let mut out = [_mm512_setzero_si512(); NG];
        for i in 0..NG {
            let h = _mm512_sub_epi32(sum4(ah[i]), _mm512_set1_epi32(128 * hsum));
            out[i] = _mm512_add_epi32(_mm512_slli_epi32(h, 8), sum4(al[i]));
        }
        out
    }
}

/// 16 f16 at p as f32.
#[inline(always)]
pub(super) unsafe fn halves(p: *const u8) -> __m512 {
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
}

/// Groups g0..g1 of one matrix (`data` from `relay`, `kb` blocks a row) times x's one row: out[16·(g − g0) + l]
/// is row 16·g + l's product, the same value as the portable loop's but for the order of its float sums. Two
/// groups at a time (`span`), then the last alone.
#[inline(always)]
unsafe fn run<const KIND: u8, const WIDE: bool>(
    data: &[u8],
    size: usize,
    g0: usize,
    g1: usize,
    kb: usize,
    x: &Q8Rows,
    out: &mut [f32],
) {
    let mut g = g0;
    // SAFETY: the caller's checks (groups), for groups g and g + 1 below g1.
    unsafe {
        while g + 2 <= g1 {
            span::<KIND, WIDE, 2>(data, size, g, kb, x, out.as_mut_ptr().add((g - g0) * G));
            g += 2;
        }
        if g < g1 {
            span::<KIND, WIDE, 1>(data, size, g, kb, x, out.as_mut_ptr().add((g - g0) * G));
        }
    }
}

/// Groups g..g + NG into out[0..16·NG].
#[inline(always)]
unsafe fn span<const KIND: u8, const WIDE: bool, const NG: usize>(
    data: &[u8],
    size: usize,
    g: usize,
    kb: usize,
    x: &Q8Rows,
    out: *mut f32,
) {
    let runs = if KIND == Q8_0 { 8 } else { 4 };
    // SAFETY (the loads and stores): the caller checked that data holds these groups' kb blocks of `size`
    // bytes, that x holds kb blocks (as `split` bytes when WIDE) and out 16·NG values.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NG];
        for k in 0..kb {
            let mut p = [data.as_ptr(); NG];
            for (i, p) in p.iter_mut().enumerate() {
                *p = data.as_ptr().add(((g + i) * kb + k) * size);
                for line in (0..size).step_by(64) {
                    // Past the end of data it fetches nothing that is read: a hint, never a fault.
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + line).cast());
                }
            }
            let sums = match (KIND, WIDE) {
                (Q8_0, false) => q8_x8(p, x.qs.as_ptr().add(k * QK).cast(), *x.sum.get_unchecked(k)),
                (Q8_0, true) => {
                    let s = x.split.as_ptr().add(2 * k * QK);
                    q8_x16(p, s, s.add(QK), *x.hsum.get_unchecked(k))
                }
                (_, false) => q4_x8(p, x.qs.as_ptr().add(k * QK).cast()),
                (_, true) => {
                    let s = x.split.as_ptr().add(2 * k * QK);
                    q4_x16(p, s, s.add(QK))
                }
            };
            let dx = _mm512_set1_ps(*x.d.get_unchecked(k));
            for i in 0..NG {
                // Q4_0's nibbles are offset by 8: Σ(n − 8)·x = Σn·x − 8·Σx.
                let sum = match KIND {
                    Q4_0 => _mm512_sub_epi32(sums[i], _mm512_set1_epi32(8 * *x.sum.get_unchecked(k))),
                    _ => sums[i],
                };
                let d = _mm512_mul_ps(halves(p[i].add(64 * runs)), dx);
                acc[i] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sum), acc[i]);
                if KIND == Q4_1 {
                    let m = halves(p[i].add(64 * runs + 2 * G));
                    acc[i] = _mm512_fmadd_ps(m, _mm512_set1_ps(*x.s.get_unchecked(k)), acc[i]);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(i * G), *acc);
        }
    }
}

/// Groups g0..g1 of `blocks` as `relay` laid them out in `data` (`kb` blocks a row) times x's one row (its
/// `split` made when `wide`), into out[(g1 − g0)·16]. SAFETY (callers): AVX-512 F, BW and VNNI are there.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn groups(
    blocks: Blocks<'_>,
    data: &[u8],
    g0: usize,
    g1: usize,
    kb: usize,
    x: &Q8Rows,
    out: &mut [f32],
) {
    let (kind, size) = layout(blocks);
    let xs = match x.wide {
        true => x.split.len() >= 2 * kb * QK && x.hsum.len() >= kb,
        false => x.qs.len() >= kb * QK,
    };
    assert!(
        g0 <= g1 && data.len() >= g1 * kb * size && xs && x.d.len() >= kb && x.sum.len() >= kb && x.s.len() >= kb,
        "groups {g0}..{g1} of {kb} blocks in {} bytes",
        data.len()
    );
    assert!(out.len() == (g1 - g0) * G, "groups {g0}..{g1} into {} values", out.len());
    // SAFETY: the sizes just checked; the features are the caller's.
    unsafe {
        match (kind, x.wide) {
            (Q4_1, false) => run::<Q4_1, false>(data, size, g0, g1, kb, x, out),
            (Q4_1, true) => run::<Q4_1, true>(data, size, g0, g1, kb, x, out),
            (Q4_0, false) => run::<Q4_0, false>(data, size, g0, g1, kb, x, out),
            (Q4_0, true) => run::<Q4_0, true>(data, size, g0, g1, kb, x, out),
            (_, false) => run::<Q8_0, false>(data, size, g0, g1, kb, x, out),
            (_, true) => run::<Q8_0, true>(data, size, g0, g1, kb, x, out),
        }
    }
}
