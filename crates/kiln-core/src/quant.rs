//! GGML/GGUF block-quantized weights (Q8_0, Q4_0, Q4_1) and f32 <-> bf16/f16 slice conversions.
//!
//! The blocks are byte-for-byte those of ggml (`ggml-common.h`, `ggml-quants.c`), so a GGUF tensor is
//! read without conversion and a quantized kiln weight can be written back. Each block holds 32 weights,
//! every scale is an IEEE half stored little-endian, and quantizing rounds exactly as ggml's reference
//! quantizers `quantize_row_*_ref` (and gguf-py's `gguf.quants`, which the tests compare against) do:
//!
//! | type | bytes | layout                          | value of element j                          |
//! |------|-------|---------------------------------|---------------------------------------------|
//! | Q8_0 | 34    | d: f16, qs: [i8; 32]            | qs[j] * d;  d = amax / 127                  |
//! | Q4_0 | 18    | d: f16, qs: [u8; 16]            | (q - 8) * d; d = max / -8 (max: signed      |
//! |      |       |                                 | value of largest magnitude)                 |
//! | Q4_1 | 20    | d: f16, m: f16, qs: [u8; 16]    | q * d + m;  d = (max - min) / 15, m = min   |
//!
//! In Q4_0 and Q4_1 element j (j < 16) is the low nibble of qs[j] and element j + 16 its high nibble.
//! The rounding uses the f32 scale, the stored one is its f16 rounding; both as in ggml.
//!
//! [`QMatrix`] is a weight [rows, cols] quantized along cols, as GGUF stores a linear layer [out, in];
//! [`QMatrix::matmul_t`] multiplies by it dequantizing one block of 32 at a time, never the whole matrix.
//! It holds f16 and bf16 weights the same way ([`BlockHalf`]: runs of 32 halves, the bytes of a GGUF F16 or
//! BF16 tensor), rounded to nearest (ties to even) and widened exactly.

use crate::dtype::DType;
use crate::par::{Disjoint, for_parts, parts_for};
use crate::{Error, Result};
use half::slice::HalfFloatSliceExt;
pub use half::{bf16, f16};

/// Elements per block, for every quantized type here.
pub const QK: usize = 32;

/// One block of 32 quantized weights.
pub trait QuantBlock: Copy + Send + Sync + std::fmt::Debug + PartialEq + 'static {
    const DTYPE: DType;
    /// Bytes of one block in a GGUF file.
    const BYTES: usize;
    /// Quantizes 32 values as ggml's reference quantizer does.
    fn quantize(x: &[f32; QK]) -> Self;
    fn dequantize(&self, out: &mut [f32; QK]);
    /// Reads a block from its first `BYTES` bytes (little-endian).
    fn read(b: &[u8]) -> Self;
    /// Writes the block into the first `BYTES` bytes of `out`.
    fn write(&self, out: &mut [u8]);
}

/// 8-bit weights with one scale: 34 bytes per 32 weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// 4-bit weights centred on 8 with one scale: 18 bytes per 32 weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// 4-bit weights with a scale and a minimum: 20 bytes per 32 weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

fn read_f16(b: &[u8]) -> f16 {
    f16::from_le_bytes([b[0], b[1]])
}

/// 1/d, or 0 for an all-zero block (ggml's `d ? 1.0f/d : 0.0f`).
fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// Packs 32 nibbles: element j low, element j + 16 high.
fn pack_nibbles(q: impl Fn(usize) -> u8) -> [u8; QK / 2] {
    std::array::from_fn(|j| q(j) | (q(j + QK / 2) << 4))
}

/// out[j] = f(element j) for packed nibbles, in two branch-free halves so that it vectorizes.
#[inline(always)]
fn unpack_nibbles(qs: &[u8; QK / 2], out: &mut [f32; QK], f: impl Fn(u8) -> f32) {
    let (lo, hi) = out.split_at_mut(QK / 2);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(qs) {
        *l = f(q & 0x0f);
        *h = f(q >> 4);
    }
}

impl QuantBlock for BlockQ8_0 {
    const DTYPE: DType = DType::Q8_0;
    const BYTES: usize = 34;

    fn quantize(x: &[f32; QK]) -> Self {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = inverse(d);
        // f32::round rounds half away from zero, as C's roundf.
        BlockQ8_0 { d: f16::from_f32(d), qs: x.map(|v| (v * id).round() as i8) }
    }

    fn dequantize(&self, out: &mut [f32; QK]) {
        let d = self.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = q as f32 * d;
        }
    }

    fn read(b: &[u8]) -> Self {
        BlockQ8_0 { d: read_f16(b), qs: std::array::from_fn(|j| b[2 + j] as i8) }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        for (o, &q) in out[2..Self::BYTES].iter_mut().zip(&self.qs) {
            *o = q as u8;
        }
    }
}

impl QuantBlock for BlockQ4_0 {
    const DTYPE: DType = DType::Q4_0;
    const BYTES: usize = 18;

    fn quantize(x: &[f32; QK]) -> Self {
        // The signed value of largest magnitude; the first one wins a tie, as in ggml.
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = inverse(d);
        // `as i32` truncates toward zero like C's (int8_t) cast; +8.5 turns that into rounding.
        let q = |j: usize| ((x[j] * id + 8.5) as i32).clamp(0, 15) as u8;
        BlockQ4_0 { d: f16::from_f32(d), qs: pack_nibbles(q) }
    }

    fn dequantize(&self, out: &mut [f32; QK]) {
        let d = self.d.to_f32();
        unpack_nibbles(&self.qs, out, |q| (q as i32 - 8) as f32 * d);
    }

    fn read(b: &[u8]) -> Self {
        BlockQ4_0 { d: read_f16(b), qs: b[2..Self::BYTES].try_into().unwrap() }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..Self::BYTES].copy_from_slice(&self.qs);
    }
}

impl QuantBlock for BlockQ4_1 {
    const DTYPE: DType = DType::Q4_1;
    const BYTES: usize = 20;

    fn quantize(x: &[f32; QK]) -> Self {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let q = |j: usize| (((x[j] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(min), qs: pack_nibbles(q) }
    }

    fn dequantize(&self, out: &mut [f32; QK]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        unpack_nibbles(&self.qs, out, |q| q as f32 * d + m);
    }

    fn read(b: &[u8]) -> Self {
        BlockQ4_1 { d: read_f16(b), m: read_f16(&b[2..]), qs: b[4..Self::BYTES].try_into().unwrap() }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d.to_le_bytes());
        out[2..4].copy_from_slice(&self.m.to_le_bytes());
        out[4..Self::BYTES].copy_from_slice(&self.qs);
    }
}

fn check_whole_blocks(dtype: DType, what: &str, len: usize) -> Result<()> {
    if !len.is_multiple_of(QK) {
        return Err(Error::Invalid(format!(
            "{dtype} stores blocks of {QK} elements; {what} has {len}, not a multiple of {QK}"
        )));
    }
    Ok(())
}

/// Quantizes a row of f32 whose length is a multiple of 32.
pub fn quantize_row<B: QuantBlock>(x: &[f32]) -> Result<Vec<B>> {
    check_whole_blocks(B::DTYPE, "the row", x.len())?;
    Ok(x.chunks_exact(QK).map(|c| B::quantize(c.try_into().unwrap())).collect())
}

/// out[32 * blocks.len()] = the values the blocks hold.
pub fn dequantize_row<B: QuantBlock>(blocks: &[B], out: &mut [f32]) -> Result<()> {
    if out.len() != blocks.len() * QK {
        return Err(Error::Shape(format!(
            "dequantizing {} {} blocks ({} values) into a buffer of {}",
            blocks.len(),
            B::DTYPE,
            blocks.len() * QK,
            out.len()
        )));
    }
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        b.dequantize(o.try_into().unwrap());
    }
    Ok(())
}

/// Blocks from their GGUF bytes; the length must be a whole number of blocks.
pub fn blocks_from_bytes<B: QuantBlock>(bytes: &[u8]) -> Result<Vec<B>> {
    if !bytes.len().is_multiple_of(B::BYTES) {
        return Err(Error::Invalid(format!(
            "{} bytes are not a whole number of {} blocks of {} bytes",
            bytes.len(),
            B::DTYPE,
            B::BYTES
        )));
    }
    Ok(bytes.chunks_exact(B::BYTES).map(B::read).collect())
}

/// The GGUF bytes of `blocks`.
pub fn blocks_to_bytes<B: QuantBlock>(blocks: &[B]) -> Vec<u8> {
    let mut out = vec![0u8; blocks.len() * B::BYTES];
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(B::BYTES)) {
        b.write(o);
    }
    out
}

/// The blocks of a [`QMatrix`], one variant per stored dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum QBlocks {
    Q8_0(Vec<BlockQ8_0>),
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
    F16(Vec<BlockHalf<f16>>),
    BF16(Vec<BlockHalf<bf16>>),
}

/// Runs `$body` with `$b` bound to the typed block vector of a [`QBlocks`].
macro_rules! with_blocks {
    ($blocks:expr, $b:ident => $body:expr) => {
        match $blocks {
            QBlocks::Q8_0($b) => $body,
            QBlocks::Q4_0($b) => $body,
            QBlocks::Q4_1($b) => $body,
            QBlocks::F16($b) => $body,
            QBlocks::BF16($b) => $body,
        }
    };
}

/// A weight [rows, cols], row-major and quantized along cols (cols / 32 blocks per row), as GGUF stores a
/// linear layer's weight [out, in]. Forward-only: quantized weights are never trained.
#[derive(Clone, Debug, PartialEq)]
pub struct QMatrix {
    dtype: DType,
    rows: usize,
    cols: usize,
    blocks: QBlocks,
    /// The blocks interleaved by 16 rows for one token's products on AVX-512 (qdot/rows16.rs, its only
    /// user), made on first use and kept beside them; the blocks never change, so neither does it.
    relaid: Relaid,
}

/// A [`QMatrix`]'s blocks in rows16.rs's layout, as bytes only that kernel reads. Not part of the matrix's
/// value: two matrices with the same blocks are equal whether or not either has one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Relaid(std::sync::OnceLock<Vec<u8>>);

impl PartialEq for Relaid {
    fn eq(&self, _: &Relaid) -> bool {
        true
    }
}

impl QMatrix {
    fn check(dtype: DType, rows: usize, cols: usize) -> Result<()> {
        if !QMatrix::holds(dtype) {
            return Err(Error::Invalid(format!("a QMatrix holds q8_0, q4_0, q4_1, f16 or bf16 weights, not {dtype}")));
        }
        check_whole_blocks(dtype, &format!("a weight [{rows}, {cols}] row"), cols)
    }

    /// Whether a weight may be stored as `dtype`: the block-quantized types and the halves.
    pub fn holds(dtype: DType) -> bool {
        dtype.is_quantized() || matches!(dtype, DType::F16 | DType::BF16)
    }

    /// Quantizes `w[rows, cols]` (row-major); cols must be a multiple of 32.
    pub fn quantize(dtype: DType, rows: usize, cols: usize, w: &[f32]) -> Result<QMatrix> {
        QMatrix::check(dtype, rows, cols)?;
        if Some(w.len()) != rows.checked_mul(cols) {
            return Err(Error::Shape(format!(
                "quantizing a {dtype} weight [{rows}, {cols}] ({} values) from {} values",
                rows.saturating_mul(cols),
                w.len()
            )));
        }
        let blocks = match dtype {
            DType::Q8_0 => QBlocks::Q8_0(quantize_row(w)?),
            DType::Q4_0 => QBlocks::Q4_0(quantize_row(w)?),
            DType::F16 => QBlocks::F16(quantize_row(w)?),
            DType::BF16 => QBlocks::BF16(quantize_row(w)?),
            _ => QBlocks::Q4_1(quantize_row(w)?),
        };
        Ok(QMatrix { dtype, rows, cols, blocks, relaid: Relaid::default() })
    }

    /// A weight [rows, cols] from the raw bytes of a GGUF tensor of that dtype.
    pub fn from_bytes(dtype: DType, rows: usize, cols: usize, bytes: &[u8]) -> Result<QMatrix> {
        QMatrix::check(dtype, rows, cols)?;
        let want = dtype.bytes_for(cols)?.checked_mul(rows);
        if want != Some(bytes.len()) {
            return Err(Error::Shape(format!(
                "a {dtype} weight [{rows}, {cols}] takes {} bytes, got {}",
                want.map_or("too many".into(), |w| w.to_string()),
                bytes.len()
            )));
        }
        let blocks = match dtype {
            DType::Q8_0 => QBlocks::Q8_0(blocks_from_bytes(bytes)?),
            DType::Q4_0 => QBlocks::Q4_0(blocks_from_bytes(bytes)?),
            DType::F16 => QBlocks::F16(blocks_from_bytes(bytes)?),
            DType::BF16 => QBlocks::BF16(blocks_from_bytes(bytes)?),
            _ => QBlocks::Q4_1(blocks_from_bytes(bytes)?),
        };
        Ok(QMatrix { dtype, rows, cols, blocks, relaid: Relaid::default() })
    }

    /// The raw GGUF bytes of the weight.
    pub fn to_bytes(&self) -> Vec<u8> {
        with_blocks!(&self.blocks, b => blocks_to_bytes(b))
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn blocks(&self) -> &QBlocks {
        &self.blocks
    }
    /// The blocks in rows16.rs's layout (`make` is `rows16::relay`), made the first time it is asked for.
    pub(crate) fn relaid(&self, make: impl FnOnce(&QBlocks) -> Vec<u8>) -> &[u8] {
        self.relaid.0.get_or_init(|| make(&self.blocks))
    }

    /// Row `r` as f32 into `out` (cols values): an embedding lookup in a quantized table.
    pub fn dequantize_row_into(&self, r: usize, out: &mut [f32]) -> Result<()> {
        if r >= self.rows || out.len() != self.cols {
            return Err(Error::Shape(format!(
                "row {r} of a {} weight [{}, {}] into {} values",
                self.dtype,
                self.rows,
                self.cols,
                out.len()
            )));
        }
        let kb = self.cols / QK;
        with_blocks!(&self.blocks, b => dequantize_row(&b[r * kb..(r + 1) * kb], out))
    }

    /// The whole weight [rows, cols] as f32 (for checks and export; `matmul_t` does not need it).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        with_blocks!(&self.blocks, b => dequantize_row(b, &mut out)).expect("sizes checked on construction");
        out
    }

    /// out[n, rows] = x[n, cols] · Wᵀ, dequantizing one block of 32 weights at a time and reusing it for
    /// all n rows of x. Output rows of W are split across threads when the work is large.
    pub fn matmul_t(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        if Some(x.len()) != n.checked_mul(cols) || Some(out.len()) != n.checked_mul(rows) {
            return Err(Error::Shape(format!(
                "{} weight [{rows}, {cols}] times x: expected x [{n}, {cols}] ({} values) and out [{n}, {rows}] \
                 ({} values), got x of {} values and out of {}",
                self.dtype,
                n.saturating_mul(cols),
                n.saturating_mul(rows),
                x.len(),
                out.len()
            )));
        }
        with_blocks!(&self.blocks, b => matmul_t_blocks(b, rows, cols, x, n, out));
        Ok(())
    }
}

/// Σ a[i] b[i] over one block, in 8 lanes so that it vectorizes.
#[inline(always)]
fn dot_block(a: &[f32; QK], b: &[f32; QK]) -> f32 {
    let mut s = [0.0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for l in 0..8 {
            s[l] += ca[l] * cb[l];
        }
    }
    ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}

/// out[b, r] = Σ_c x[b, c] w[r, c] for W given as `cols / 32` blocks per row. Each output is computed by
/// one thread in a fixed order, so the result does not depend on how rows are split.
fn matmul_t_blocks<B: QuantBlock>(blocks: &[B], rows: usize, cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    let kb = cols / QK;
    let parts = parts_for(rows, n * cols);
    // One accumulator per row of x for each part.
    let mut acc = vec![0.0f32; parts * n];
    let dst = Disjoint::new(out);
    for_parts(rows, parts, &mut [0u8; 0], 0, &mut acc, n, &|range, _, acc| {
        crate::simd::vectorized(|| {
            let mut w = [0.0f32; QK];
            for r in range {
                acc.fill(0.0);
                for (k, blk) in blocks[r * kb..(r + 1) * kb].iter().enumerate() {
                    blk.dequantize(&mut w);
                    for (b, a) in acc.iter_mut().enumerate() {
                        let xs: &[f32; QK] = x[b * cols + k * QK..][..QK].try_into().unwrap();
                        *a += dot_block(&w, xs);
                    }
                }
                for (b, &a) in acc.iter().enumerate() {
                    // SAFETY: element (b, r) belongs to the part that owns row r alone.
                    unsafe { dst.part(b * rows + r..b * rows + r + 1)[0] = a };
                }
            }
        })
    });
}

/// 32 weights stored as halves (f16 or bf16), so that half-precision weights go through `QMatrix` and its
/// product like the quantized ones: 64 bytes, the little-endian halves themselves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockHalf<H>(pub [H; QK]);

impl<H: Half + std::fmt::Debug + PartialEq> QuantBlock for BlockHalf<H> {
    const DTYPE: DType = H::DTYPE;
    const BYTES: usize = 2 * QK;

    fn quantize(x: &[f32; QK]) -> Self {
        let mut h = [H::default(); QK];
        H::slice_from_f32(x, &mut h);
        BlockHalf(h)
    }

    fn dequantize(&self, out: &mut [f32; QK]) {
        H::slice_to_f32(&self.0, out);
    }

    fn read(b: &[u8]) -> Self {
        BlockHalf(std::array::from_fn(|j| H::from_le_bytes([b[2 * j], b[2 * j + 1]])))
    }

    fn write(&self, out: &mut [u8]) {
        for (o, h) in out[..Self::BYTES].chunks_exact_mut(2).zip(&self.0) {
            o.copy_from_slice(&h.to_le_bytes());
        }
    }
}

/// A stored half type: f16 or bf16. Kernels convert it to f32, compute in f32, and round results back.
pub trait Half: Copy + Default + Send + Sync + 'static {
    const DTYPE: DType;
    fn slice_to_f32(src: &[Self], dst: &mut [f32]);
    fn slice_from_f32(src: &[f32], dst: &mut [Self]);
    fn from_le_bytes(b: [u8; 2]) -> Self;
    fn to_le_bytes(self) -> [u8; 2];
}

impl Half for f16 {
    const DTYPE: DType = DType::F16;
    fn slice_to_f32(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
    fn slice_from_f32(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src)
    }
    fn from_le_bytes(b: [u8; 2]) -> Self {
        f16::from_le_bytes(b)
    }
    fn to_le_bytes(self) -> [u8; 2] {
        f16::to_le_bytes(self)
    }
}

impl Half for bf16 {
    const DTYPE: DType = DType::BF16;
    fn slice_to_f32(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
    fn slice_from_f32(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src)
    }
    fn from_le_bytes(b: [u8; 2]) -> Self {
        bf16::from_le_bytes(b)
    }
    fn to_le_bytes(self) -> [u8; 2] {
        bf16::to_le_bytes(self)
    }
}

fn check_same_len(what: &str, src: usize, dst: usize) -> Result<()> {
    if src != dst {
        return Err(Error::Shape(format!("{what}: {src} values into a buffer of {dst}")));
    }
    Ok(())
}

/// dst = src widened to f32 (exact).
pub fn to_f32<H: Half>(src: &[H], dst: &mut [f32]) -> Result<()> {
    check_same_len(&format!("converting {} to f32", H::DTYPE), src.len(), dst.len())?;
    H::slice_to_f32(src, dst);
    Ok(())
}

/// dst = src rounded to the nearest half (ties to even; overflow gives ±inf).
pub fn from_f32<H: Half>(src: &[f32], dst: &mut [H]) -> Result<()> {
    check_same_len(&format!("converting f32 to {}", H::DTYPE), src.len(), dst.len())?;
    H::slice_from_f32(src, dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(len: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173).collect()
    }

    fn round_trip<B: QuantBlock>() {
        let x = ramp(3 * QK);
        let blocks: Vec<B> = quantize_row(&x).unwrap();
        let bytes = blocks_to_bytes(&blocks);
        assert_eq!(bytes.len(), 3 * B::BYTES);
        assert_eq!(bytes.len(), B::DTYPE.bytes_for(x.len()).unwrap());
        assert_eq!(blocks_from_bytes::<B>(&bytes).unwrap(), blocks);
        let mut back = vec![0.0; x.len()];
        dequantize_row(&blocks, &mut back).unwrap();
        // Requantizing dequantized values gives the same blocks (the grid points are fixed points).
        assert_eq!(blocks_to_bytes(&quantize_row::<B>(&back).unwrap()), bytes);
    }

    #[test]
    fn blocks_round_trip_through_bytes_and_values() {
        round_trip::<BlockQ8_0>();
        round_trip::<BlockQ4_0>();
        round_trip::<BlockQ4_1>();
    }

    #[test]
    fn nibbles_hold_element_j_low_and_j_plus_16_high() {
        // Q4_1 of 0..32 / 31 * 15 gives q = round(j * 15 / 31); check the packing against that.
        let x: Vec<f32> = (0..QK).map(|j| j as f32).collect();
        let b = &quantize_row::<BlockQ4_1>(&x).unwrap()[0];
        for j in 0..QK / 2 {
            let q = |j: usize| ((j as f32 * 15.0 / 31.0) + 0.5) as u8;
            assert_eq!(b.qs[j], q(j) | (q(j + 16) << 4), "byte {j}");
        }
        let bytes = blocks_to_bytes(std::slice::from_ref(b));
        assert_eq!(&bytes[..4], &[b.d.to_le_bytes(), b.m.to_le_bytes()].concat()[..]);
    }

    #[test]
    fn half_conversions_round_to_nearest() {
        let x = [1.0f32, 1.0 + 1.0 / 2048.0, 65520.0, -0.0, 3.0e-8];
        let mut h = [f16::ZERO; 5];
        from_f32(&x, &mut h).unwrap();
        let mut back = [0.0f32; 5];
        to_f32(&h, &mut back).unwrap();
        // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: to even gives 1. 65520 rounds up past f16's max.
        assert_eq!(back[..2], [1.0, 1.0]);
        assert!(back[2].is_infinite() && back[3] == 0.0 && back[3].is_sign_negative());
        // 3e-8 is just over half the smallest subnormal, 2^-24.
        assert_eq!(back[4], 2.0f32.powi(-24));
        let mut b = [bf16::ZERO; 2];
        from_f32(&[1.0 + 1.0 / 256.0, 3.0], &mut b).unwrap();
        assert_eq!(b.map(|v| v.to_f32()), [1.0, 3.0]);
        let err = to_f32(&b, &mut back).unwrap_err().to_string();
        assert!(err.contains("bf16") && err.contains('2') && err.contains('5'), "{err}");
    }
}
