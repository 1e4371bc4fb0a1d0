//! A prompt's products on AMX (`QIsa::Amx`: Intel's tile matrix units, Sapphire Rapids and later): one
//! `tdpbusd`-family instruction multiplies a tile of 16 activation rows by 32 bytes with one of 32 bytes by 16
//! weight rows, 8,192 products of bytes summed into 16×16 integers, where a 512-bit `vpdpbusd` does 64. On the
//! Intel Xeon where llama.cpp's prompts ran at twice kiln's f32 rate (README), that was the difference: its
//! prompts run on these tiles. With this kernel SmolLM2's 128-token prompt went from 635 to about 1,500 tokens a
//! second on kiln's default 16-bit activations (llama.cpp: 1,300-1,400), and 1,900 on 8 bits.
//!
//! The weights are the copy interleaved by 16 rows that a new token reads (`rows16::relay`): a Q8_0 block of a
//! group is, as it lies, a tile of 8 rows of 64 bytes, row t holding each weight row's bytes 4t..4t + 4, the
//! layout the tile products take for their second operand; a Q4 block is unpacked to one (its low nibbles are
//! rows 0..4, its high ones rows 4..8). The activations are copied into tiles of 16 rows by one block
//! (`Q8Rows::make_tiles`). Each block's integer sums are stored and scaled on AVX-512 into a buffer of 32 rows
//! by 32 columns, which holds the float sums across blocks and goes out at the end.
//!
//! The integers are the portable loop's, exactly: the four instructions take either operand signed or unsigned,
//! so 8-bit x (signed) meets Q8_0's signed weights in `tdpbssd` and Q4's nibbles in `tdpbsud`; 16-bit x goes in
//! as bytes (x = 256·h + l, h signed, l unsigned), two products a block. Only the order of the float sums
//! differs.
//!
//! Rust has no stable AMX intrinsics, so the tile instructions are inline assembly on fixed tile registers,
//! which the compiler never allocates. Linux hands a process the tiles' 8 KiB of state only when asked
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), which `usable` does once.

use super::rows16::{G, Q4_0, Q4_1, Q8_0, halves, layout};
use super::{Blocks, Q8Rows};
use crate::quant::QK;
use std::arch::asm;
use std::arch::x86_64::*;

/// Whether this processor has AMX's tiles and byte products and the kernel gave this process their state; set
/// `KILN_NO_AMX` in the environment (to any value) to leave them unused, to compare.
pub(super) fn usable() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
        let edx = __cpuid_count(7, 0).edx;
        edx >> 24 & 3 == 3 && std::env::var_os("KILN_NO_AMX").is_none() && request_tiles()
    })
}

/// arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): permission for this process's threads to use the
/// tiles (Linux 5.16 and later; 0 when granted, and refused where the kernel has not enabled their state).
/// The x86-64 system call number: the x32 ABI's differs.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn request_tiles() -> bool {
    let ret: i64;
    // SAFETY: the arch_prctl system call (158) with a request that changes nothing but the permission.
    unsafe {
        asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64, in("rsi") 18i64,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret == 0
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn request_tiles() -> bool {
    false
}

/// One tile instruction (the registers named in it).
macro_rules! tile {
    ($op:literal) => {
        asm!($op, options(nostack))
    };
    ($op:literal, $p:expr) => {
        asm!($op, in(reg) $p, options(nostack))
    };
    ($op:literal, $p:expr, $stride:expr) => {
        asm!($op, in(reg) $p, in(reg) $stride, options(nostack))
    };
}

/// The tile registers (`products`): tmm0 and tmm1 x (two tiles of 16 rows on 8 bits; one tile's low and high
/// bytes on 16), tmm2 and tmm3 two groups' weights, tmm4..tmm7 the sums. x's tiles are 16 rows of 32 bytes (one
/// block), the weights' 8 rows of 64 (a block of 16 rows, 4 bytes each), the sums 16 rows of 16 i32. Palette 1;
/// bytes 16.. the bytes a row of each tile, 48.. its rows.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new() -> Config {
        let mut c = [0u8; 64];
        c[0] = 1;
        for (t, (rows, bytes)) in
            [(16, 32), (16, 32), (8, 64), (8, 64), (16, 64), (16, 64), (16, 64), (16, 64)].into_iter().enumerate()
        {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&(bytes as u16).to_le_bytes());
            c[48 + t] = rows;
        }
        Config(c)
    }
}

#[repr(C, align(64))]
struct Aligned<T>(T);

/// Half of the products of one block for KIND's weights and x of WIDE (zeroing the sums first): HALF 0 into
/// tmm4 and tmm6 against the first group's weights (tmm2), HALF 1 into tmm5 and tmm7 against the second's
/// (tmm3). On 8 bits tmm4 and tmm5 take x's first tile (tmm0), tmm6 and tmm7 its second (tmm1); on 16 bits tmm4
/// and tmm5 the low bytes (tmm0), tmm6 and tmm7 the high bytes (tmm1).
#[inline(always)]
unsafe fn products<const KIND: u8, const WIDE: bool, const HALF: u8>() {
    // Each arm names its registers: the assembly takes no register numbers as operands.
    macro_rules! half {
        ($lo:literal, $hi:literal) => {
            match HALF {
                0 => {
                    tile!("tilezero tmm4");
                    tile!("tilezero tmm6");
                    asm!(concat!($lo, " tmm4, tmm0, tmm2"), options(nostack));
                    asm!(concat!($hi, " tmm6, tmm1, tmm2"), options(nostack));
                }
                _ => {
                    tile!("tilezero tmm5");
                    tile!("tilezero tmm7");
                    asm!(concat!($lo, " tmm5, tmm0, tmm3"), options(nostack));
                    asm!(concat!($hi, " tmm7, tmm1, tmm3"), options(nostack));
                }
            }
        };
    }
    // SAFETY: the tiles were configured and loaded by the caller.
    unsafe {
        match (KIND == Q8_0, WIDE) {
            // x signed against signed weights, or against nibbles.
            (true, false) => half!("tdpbssd", "tdpbssd"),
            (false, false) => half!("tdpbsud", "tdpbsud"),
            // Low bytes unsigned and high bytes signed, against signed weights or nibbles.
            (true, true) => half!("tdpbusd", "tdpbssd"),
            (false, true) => half!("tdpbuud", "tdpbsud"),
        }
    }
}

/// Groups g0..g1 of one matrix (`data` from `relay`, `kb` blocks a row) times x's n rows, into columns
/// 16·g0..16·g1 of out [n, rows] (the output's other columns untouched): out[b·rows + 16·g + l] is weight row
/// 16·g + l times activation row b, the portable loop's value but for the order of its float sums. x's
/// `tiles` must be made (`make_tiles`).
///
/// # Safety
/// `usable()` is true and AVX-512 F and BW are there; out points to n·rows values of which these columns
/// belong to the caller alone.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn groups(
    blocks: Blocks<'_>,
    data: &[u8],
    g0: usize,
    g1: usize,
    kb: usize,
    x: &Q8Rows,
    n: usize,
    out: *mut f32,
    rows: usize,
) {
    let (kind, size) = layout(blocks);
    let blocks_x = n * kb;
    assert!(
        kb > 0 && g0 <= g1 && g1 * G <= rows && data.len() >= g1 * kb * size && x.d.len() >= blocks_x,
        "groups {g0}..{g1} of {kb} blocks in {} bytes, {n} rows of x",
        data.len()
    );
    assert!(x.sum.len() >= blocks_x && x.s.len() >= blocks_x, "{n} rows of x");
    assert!(x.tiles.len() >= tiles_bytes(n, kb, x.wide), "{n} rows of x in {} bytes of tiles", x.tiles.len());
    let config = Config::new();
    // Set once here: zeroing them for every pass took 9% of qbench's samples.
    let mut bufs = Buffers { weights: Aligned([0; 2048]), acc: Aligned([0.0; 1024]), sums: Aligned([0; 2048]) };
    // SAFETY: the sizes just checked; the features and out are the caller's.
    unsafe {
        tile!("ldtilecfg [{}]", config.0.as_ptr());
        for b0 in (0..n).step_by(tokens(x.wide)) {
            let mut g = g0;
            while g < g1 {
                let pass = (g, b0, kb, x, n, out, rows, data, size, &mut bufs);
                match (kind, x.wide, g + 2 <= g1) {
                    (Q4_1, false, true) => groups_of::<Q4_1, false, 2>(pass),
                    (Q4_1, false, false) => groups_of::<Q4_1, false, 1>(pass),
                    (Q4_1, true, true) => groups_of::<Q4_1, true, 2>(pass),
                    (Q4_1, true, false) => groups_of::<Q4_1, true, 1>(pass),
                    (Q4_0, false, true) => groups_of::<Q4_0, false, 2>(pass),
                    (Q4_0, false, false) => groups_of::<Q4_0, false, 1>(pass),
                    (Q4_0, true, true) => groups_of::<Q4_0, true, 2>(pass),
                    (Q4_0, true, false) => groups_of::<Q4_0, true, 1>(pass),
                    (_, false, true) => groups_of::<Q8_0, false, 2>(pass),
                    (_, false, false) => groups_of::<Q8_0, false, 1>(pass),
                    (_, true, true) => groups_of::<Q8_0, true, 2>(pass),
                    (_, true, false) => groups_of::<Q8_0, true, 1>(pass),
                }
                g += if g + 2 <= g1 { 2 } else { 1 };
            }
        }
        tile!("tilerelease");
    }
}

/// Rows of x a pass takes: two tiles of 16 on 8 bits, one on 16 bits (whose low and high bytes fill the
/// other's place among the tile registers).
fn tokens(wide: bool) -> usize {
    if wide { 16 } else { 32 }
}

/// The bytes of x's tiles for n rows (`Q8Rows::make_tiles`): 512 a tile of 16 rows by one block, twice that on
/// 16 bits; rows up to a whole pass.
fn tiles_bytes(n: usize, kb: usize, wide: bool) -> usize {
    let t = tokens(wide);
    n.div_ceil(t) * t / 16 * kb * if wide { 1024 } else { 512 }
}

/// What a pass reads: (its first group, its first row of x, kb, x, n, out, rows, data, block size, buffers).
type Pass<'a> = (usize, usize, usize, &'a Q8Rows, usize, *mut f32, usize, &'a [u8], usize, &'a mut Buffers);

/// A pass's buffers: two turns of a block of two groups' Q4 weights unpacked (two tiles each), the sums of
/// its rows and groups (32 by 32), and two turns of a block's integer sums (four tiles each): one written by
/// the tiles while the other is scaled.
struct Buffers {
    weights: Aligned<[u8; 2048]>,
    acc: Aligned<[f32; 1024]>,
    sums: Aligned<[i32; 2048]>,
}

/// Groups g..g + NG against rows b0.. of x (`tokens`), every block in turn: the sums gather in a buffer of
/// their own (4 KiB) and go out at the end. The weights stream through (a part's rows, read once a pass, stay
/// in L2) and x's tiles come from L1: a first kernel took each block's weights once against every row of x,
/// which, read again for every two groups from L2 and with the stride of x's rows, held the tile instructions
/// waiting (`perf`: the samples sat after the loads of x), and its sums, in the output's rows 6 KiB apart,
/// fell into 4 of L1's 64 sets.
#[inline(always)]
unsafe fn groups_of<const KIND: u8, const WIDE: bool, const NG: usize>(pass: Pass<'_>) {
    let (g, b0, kb, x, n, out, rows, data, size, bufs) = pass;
    let runs = if KIND == Q8_0 { 8 } else { 4 };
    let m = (n - b0).min(tokens(WIDE));
    let (wbuf, acc, sums) = (bufs.weights.0.as_mut_ptr(), bufs.acc.0.as_mut_ptr(), bufs.sums.0.as_mut_ptr());
    let mut pending = None;
    // SAFETY (loads and stores): `groups` checked data, x's tiles and out.
    unsafe {
        let block =
            |k: usize| -> [*const u8; NG] { std::array::from_fn(|i| data.as_ptr().add(((g + i) * kb + k) * size)) };
        let xt = x.tiles.as_ptr().add(b0 / 16 * kb * 512 * if WIDE { 2 } else { 1 });
        if KIND != Q8_0 {
            unpack::<NG>(block(0), wbuf);
        }
        for k in 0..kb {
            let p = block(k);
            if KIND == Q8_0 {
                tile!("tileloadd tmm2, [{} + {}*1]", p[0], 64usize);
                if NG == 2 {
                    tile!("tileloadd tmm3, [{} + {}*1]", p[1], 64usize);
                }
            } else {
                // Unpacked a block ahead: a tile loaded from stores still in flight waits for them (in `perf`
                // the samples sat after these loads).
                let w = wbuf.add(1024 * (k % 2));
                tile!("tileloadd tmm2, [{} + {}*1]", w, 64usize);
                if NG == 2 {
                    tile!("tileloadd tmm3, [{} + {}*1]", w.add(512), 64usize);
                }
            }
            // 8 bits: tiles (b0/16, k) and (b0/16 + 1, k), 512 bytes each, kb·512 apart; 16 bits: tile (b0/16, k),
            // its low bytes and then its high bytes.
            let a = xt.add(k * if WIDE { 1024 } else { 512 });
            tile!("tileloadd tmm0, [{} + {}*1]", a, QK);
            tile!("tileloadd tmm1, [{} + {}*1]", a.add(if WIDE { 512 } else { kb * 512 }), QK);
            let s = sums.add(1024 * (k % 2));
            // The block before this one is scaled in two halves of its rows, each after half of this block's
            // tile work: scaled after all of it, the two took as long as each alone added (qbench, one thread),
            // the tile instructions' long wait holding the scaling behind them.
            products::<KIND, WIDE, 0>();
            tile!("tilestored [{} + {}*1], tmm4", s, 64usize);
            tile!("tilestored [{} + {}*1], tmm6", s.add(512), 64usize);
            if let Some(p) = pending {
                scale::<KIND, WIDE, NG>(p, b0, 0..m / 2, kb, x, acc, k == 1);
            }
            if NG == 2 {
                products::<KIND, WIDE, 1>();
                tile!("tilestored [{} + {}*1], tmm5", s.add(256), 64usize);
                tile!("tilestored [{} + {}*1], tmm7", s.add(768), 64usize);
            }
            if let Some(p) = pending {
                scale::<KIND, WIDE, NG>(p, b0, m / 2..m, kb, x, acc, k == 1);
            }
            if KIND != Q8_0 && k + 1 < kb {
                unpack::<NG>(block(k + 1), wbuf.add(1024 * ((k + 1) % 2)));
            }
            let dw: [__m512; NG] = std::array::from_fn(|i| halves(p[i].add(64 * runs)));
            let mw: [__m512; NG] = std::array::from_fn(|i| match KIND {
                Q4_1 => halves(p[i].add(64 * runs + 2 * G)),
                _ => _mm512_setzero_ps(),
            });
            pending = Some((s.cast_const(), k, dw, mw));
        }
        if let Some(p) = pending {
            scale::<KIND, WIDE, NG>(p, b0, 0..m, kb, x, acc, kb == 1);
        }
        for r in 0..m {
            for i in 0..NG {
                _mm512_storeu_ps(out.add((b0 + r) * rows + (g + i) * G), _mm512_load_ps(acc.add((r * NG + i) * G)));
            }
        }
    }
}

/// NG groups' Q4 block (4 runs of 64 bytes each) as their weight tiles at w, 512 bytes a group: the low
/// nibbles of the runs are the tile's rows 0..4 (elements 4t..4t + 4 of each weight row), the high ones rows
/// 4..8 (elements 16 + 4t..).
#[inline(always)]
unsafe fn unpack<const NG: usize>(p: [*const u8; NG], w: *mut u8) {
    // SAFETY: the caller's: p holds the blocks, w 512·NG bytes, aligned to 64.
    unsafe {
        let mask = _mm512_set1_epi8(15);
        for (i, p) in p.iter().enumerate() {
            for t in 0..4 {
                let v = _mm512_loadu_si512(p.add(64 * t).cast());
                let w = w.add(512 * i + 64 * t);
                _mm512_store_si512(w.cast(), _mm512_and_si512(v, mask));
                _mm512_store_si512(w.add(256).cast(), _mm512_and_si512(_mm512_srli_epi16(v, 4), mask));
            }
        }
    }
}

/// A block's sums waiting to be scaled: (the sums, the block, the groups' d and Q4_1's m).
type Sums<const NG: usize> = (*const i32, usize, [__m512; NG], [__m512; NG]);

/// Scales a block's sums for rows b0 + rs (d_w·d_x·Σ, Q4_0's offset and Q4_1's m·d_x·Σx) into `acc` (row
/// r's NG groups at 16·NG·r), set instead of added on the `first` block. The sums of row r and group i: on 8
/// bits tile r/16's, at 512·(r/16) + 256·i + 16·(r % 16); on 16 bits the low bytes' at 256·i + 16·r and the
/// high bytes' 512 further.
#[inline(always)]
unsafe fn scale<const KIND: u8, const WIDE: bool, const NG: usize>(
    block: Sums<NG>,
    b0: usize,
    rs: std::ops::Range<usize>,
    kb: usize,
    x: &Q8Rows,
    acc: *mut f32,
    first: bool,
) {
    let (s, k, dw, mw) = block;
    // SAFETY: the caller's (`groups_of`): x holds these rows' blocks, acc NG·16 floats a row.
    unsafe {
        for r in rs {
            let at = (b0 + r) * kb + k;
            let dx = _mm512_set1_ps(*x.d.get_unchecked(at));
            for i in 0..NG {
                let mut c = match WIDE {
                    true => {
                        let (l, h) = (s.add(256 * i + 16 * r), s.add(512 + 256 * i + 16 * r));
                        let h = _mm512_load_si512(h.cast());
                        _mm512_add_epi32(_mm512_slli_epi32(h, 8), _mm512_load_si512(l.cast()))
                    }
                    false => _mm512_load_si512(s.add(512 * (r / 16) + 256 * i + 16 * (r % 16)).cast()),
                };
                if KIND == Q4_0 {
                    // Q4_0's nibbles are offset by 8: Σ(n − 8)·x = Σn·x − 8·Σx.
                    c = _mm512_sub_epi32(c, _mm512_set1_epi32(8 * *x.sum.get_unchecked(at)));
                }
                let o = acc.add((r * NG + i) * G);
                let before = if first { _mm512_setzero_ps() } else { _mm512_load_ps(o) };
                let mut v = _mm512_fmadd_ps(_mm512_mul_ps(dw[i], dx), _mm512_cvtepi32_ps(c), before);
                if KIND == Q4_1 {
                    v = _mm512_fmadd_ps(mw[i], _mm512_set1_ps(*x.s.get_unchecked(at)), v);
                }
                _mm512_store_ps(o, v);
            }
        }
    }
}

impl Q8Rows {
    /// x's n rows (`kb` blocks each) as the tiles `groups` reads, into `tiles`: for each 16 rows and block in
    /// turn, the 16 rows' 32 values of the block one after another (512 bytes; rows past n zeros), and on 16
    /// bits their low bytes so and then their high bytes (x = 256·h + l). A tile read with the stride of x's
    /// rows (one cache line a row, 1-3 KiB apart, from L2 for every two groups) held the tile instructions
    /// waiting: in `perf` the samples sat after each load.
    pub(super) fn make_tiles(&mut self, n: usize, kb: usize) {
        let (wide, tile) = (self.wide, if self.wide { 1024 } else { 512 });
        self.tiles.clear();
        self.tiles.resize(tiles_bytes(n, kb, wide), 0);
        let count = self.tiles.len() / tile;
        let (qs, qw, tiles) = (&self.qs, &self.qw, crate::par::Disjoint::new(&mut self.tiles));
        // Split over the hot pool, AVX-512 moving a row's block at a time: a scalar loop on one thread took
        // 6% of qbench's samples.
        let parts = crate::hot::parts_for(count * tile);
        crate::hot::pool().run(parts, &|part| {
            for i in part * count / parts..(part + 1) * count / parts {
                // SAFETY: each part writes its own tiles.
                let t = unsafe { tiles.part(i * tile..(i + 1) * tile) };
                let (b0, k) = (i / kb * 16, i % kb);
                for r in 0..16.min(n.saturating_sub(b0)) {
                    let at = ((b0 + r) * kb + k) * QK;
                    match wide {
                        // SAFETY: `usable` implies AVX-512 F and BW (the caller's path is `Amx`).
                        true => unsafe { split_row(&qw[at..at + QK], &mut t[r * QK..], r) },
                        false => {
                            let row = &qs[at..at + QK];
                            t[r * QK..(r + 1) * QK].iter_mut().zip(row).for_each(|(t, &v)| *t = v as u8);
                        }
                    }
                }
            }
        });
    }
}

/// One row's block of 32 16-bit values into a tile: their low bytes at t[0..32], their high bytes 512 further.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn split_row(q: &[i16], t: &mut [u8], r: usize) {
    assert!(q.len() >= QK && t.len() >= 512 + QK, "row {r}: {} values into {} bytes", q.len(), t.len());
    // SAFETY: the lengths just checked.
    unsafe {
        let v = _mm512_loadu_si512(q.as_ptr().cast());
        _mm256_storeu_si256(t.as_mut_ptr().cast(), _mm512_cvtepi16_epi8(v));
        _mm256_storeu_si256(t.as_mut_ptr().add(512).cast(), _mm512_cvtepi16_epi8(_mm512_srai_epi16(v, 8)));
    }
}
