//! A LLaMA-family decoder (LLaMA, SmolLM, Mistral-style GQA) run from a GGUF file with its weights left in
//! their stored blocks (Q4_0, Q4_1, Q8_0, F16, BF16 or F32): every product dequantizes 32 weights at a time
//! (`QMatrix::matmul_t`), so the model takes its file's size in memory. One step, for the tokens at
//! positions p..p+n (llm.c's names; d = embedding width, h heads of hd, g key/value heads):
//!
//! ```text
//! x [n, d] = token_embd[ids]
//! per block:  a = RMSNorm(x)·attn_norm                       RMSNorm(x) = x / √(mean(x²) + ε)
//!             q [n, h·hd] = a·Wqᵀ, k, v [n, g·hd] = a·Wkᵀ, a·Wvᵀ
//!             q, k rotated by position (RoPE on adjacent pairs: GGUF's q/k rows are permuted for it)
//!             k, v appended to the cache; each head attends causally over cache[0..p+i] of its
//!             key/value head (head / (h/g))
//!             x += attn·Woᵀ
//!             f = RMSNorm(x)·ffn_norm;  x += (silu(f·Wgateᵀ) ⊙ f·Wupᵀ)·Wdownᵀ
//! logits [vocab] = RMSNorm(x_last)·output_norm · outputᵀ  (output = token_embd when the file ties them)
//! ```
//!
//! The products run on integers, the activations quantized per block of 32 (`QMatrix::matmul_t_q8`): to 16
//! bits by default (a prompt of 48 tokens or more instead on f32 activations and weights dequantized a chunk at
//! a time, faster there: qdot/dequant.rs), or to 8 bits with `fast8` as llama.cpp's kernels do; with `exact`, on f32 activations and
//! weights dequantized block by block (`QMatrix::matmul_t`), the reference. tests/suite/llm.rs holds the exact and
//! the default paths to Hugging Face transformers' float32 reading of the same file (logits within 1e-4 and
//! 1e-3 of the largest, the same greedy text). 8-bit activations moved the logits by up to 3.6% of the
//! largest on SmolLM2-135M and changed its first answer token (most of it from the down projection, whose
//! input has outliers that an 8-bit block scale rounds coarsely), so they are not the default.

use super::gguf::{Gguf, Matrix};
use crate::{Error, Result};
use kiln_core::Float;
use kiln_core::qdot::Q8Rows;

/// The shape of the model, from the GGUF metadata (`llama.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub vocab: usize,
    pub dim: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub context: usize,
    pub rope_base: f32,
    pub eps: f32,
}

struct Block {
    attn_norm: Vec<f32>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    wo: Matrix,
    ffn_norm: Vec<f32>,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
}

pub struct Llama {
    pub config: LlamaConfig,
    /// Products on f32 activations with the weights dequantized block by block (the reference), instead
    /// of the integer products (the default, several times faster).
    pub exact: bool,
    /// 8-bit activations (llama.cpp's arithmetic: faster, and the logits move by a few percent) instead of
    /// the default 16-bit ones (within 2e-4 of the exact product).
    pub fast8: bool,
    embed: Matrix,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    /// None: the output head is the token embedding (tied).
    output: Option<Matrix>,
}

/// Keys and values of the positions seen so far, per block: [positions, g·hd] each.
#[derive(Clone)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    /// The tokens whose keys and values are cached, in order.
    tokens: Vec<u32>,
    capacity: usize,
}

impl KvCache {
    /// Positions cached so far (the next token's position).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    /// The tokens cached so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Forgets every position (a new conversation).
    pub fn clear(&mut self) {
        self.tokens.clear();
    }
    /// Keeps the first `len` positions (a shared prefix of the next prompt).
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }
}

impl Llama {
    /// The model of a GGUF file whose `general.architecture` is `llama`.
    pub fn from_gguf(g: &Gguf) -> Result<Llama> {
        let arch = g.str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::Data(format!(
                "{}: general.architecture is `{arch}`; kiln runs LLaMA-family models (`llama`)",
                g.path.display()
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let dim = g.usize(&key("embedding_length"))?;
        let heads = g.usize(&key("attention.head_count"))?;
        let kv_heads = match g.metadata.contains_key(&key("attention.head_count_kv")) {
            true => g.usize(&key("attention.head_count_kv"))?,
            false => heads,
        };
        let embed_info = g
            .tensor_info("token_embd.weight")
            .ok_or_else(|| Error::Data(format!("{}: the model lacks `token_embd.weight`", g.path.display())))?;
        let vocab = embed_info.dims.get(1).copied().unwrap_or(0);
        let config = LlamaConfig {
            vocab,
            dim,
            layers: g.usize(&key("block_count"))?,
            heads,
            kv_heads,
            head_dim: dim.checked_div(heads).unwrap_or(0),
            ffn: g.usize(&key("feed_forward_length"))?,
            context: g.usize(&key("context_length"))?,
            rope_base: match g.metadata.contains_key(&key("rope.freq_base")) {
                true => g.f64(&key("rope.freq_base"))? as f32,
                false => 10_000.0,
            },
            eps: g.f64(&key("attention.layer_norm_rms_epsilon"))? as f32,
        };
        let c = &config;
        if c.heads == 0
            || c.kv_heads == 0
            || !c.dim.is_multiple_of(c.heads)
            || !c.heads.is_multiple_of(c.kv_heads)
            || !c.head_dim.is_multiple_of(2)
        {
            return Err(Error::Data(format!(
                "{}: {} heads of {} key/value heads over width {} do not fit a LLaMA model",
                g.path.display(),
                c.heads,
                c.kv_heads,
                c.dim
            )));
        }
        let (d, kv) = (c.dim, c.kv_heads * c.head_dim);
        let mut blocks = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let t = |n: &str| format!("blk.{i}.{n}.weight");
            blocks.push(Block {
                attn_norm: g.f32s(&t("attn_norm"), &[d])?,
                wq: g.matrix(&t("attn_q"), d, d)?,
                wk: g.matrix(&t("attn_k"), kv, d)?,
                wv: g.matrix(&t("attn_v"), kv, d)?,
                wo: g.matrix(&t("attn_output"), d, d)?,
                ffn_norm: g.f32s(&t("ffn_norm"), &[d])?,
                gate: g.matrix(&t("ffn_gate"), c.ffn, d)?,
                up: g.matrix(&t("ffn_up"), c.ffn, d)?,
                down: g.matrix(&t("ffn_down"), d, c.ffn)?,
            });
        }
        let output = match g.tensor_info("output.weight") {
            Some(_) => Some(g.matrix("output.weight", c.vocab, d)?),
            None => None,
        };
        Ok(Llama {
            exact: false,
            fast8: false,
            embed: g.matrix("token_embd.weight", c.vocab, d)?,
            norm: g.f32s("output_norm.weight", &[d])?,
            blocks,
            output,
            config,
        })
    }

    /// An empty cache for up to `capacity` positions (at most the model's context).
    pub fn cache(&self, capacity: usize) -> KvCache {
        let c = &self.config;
        let capacity = capacity.min(c.context).max(1);
        let w = c.kv_heads * c.head_dim;
        KvCache {
            k: (0..c.layers).map(|_| vec![0.0; capacity * w]).collect(),
            v: (0..c.layers).map(|_| vec![0.0; capacity * w]).collect(),
            tokens: Vec::new(),
            capacity,
        }
    }

    /// Runs `ids` at the cache's next positions, adds them to the cache, and returns the logits [vocab] of
    /// the last one.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let c = &self.config;
        let n = ids.len();
        if n == 0 {
            return Err(Error::Invalid("a forward step needs at least one token".into()));
        }
        if cache.len() + n > cache.capacity {
            return Err(Error::Invalid(format!(
                "{} tokens after {} would pass the context of {} positions",
                n,
                cache.len(),
                cache.capacity
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(Error::Invalid(format!("token id {bad} is outside the vocabulary of {}", c.vocab)));
        }
        let (d, hd, p0) = (c.dim, c.head_dim, cache.len());
        let kvw = c.kv_heads * hd;
        let mut x = vec![0.0f32; n * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(ids) {
            self.embed.row(t as usize, row)?;
        }
        let mut a = vec![0.0f32; n * d];
        let (mut q, mut k, mut v) = (vec![0.0f32; n * d], vec![0.0f32; n * kvw], vec![0.0f32; n * kvw]);
        let mut att = vec![0.0f32; n * d];
        let mut proj = vec![0.0f32; n * d];
        let (mut g, mut u) = (vec![0.0f32; n * c.ffn], vec![0.0f32; n * c.ffn]);
        let rope = RopeTable::new(hd, c.rope_base, p0, n);
        let mut q8 = Q8Rows { exact: self.exact, wide: !self.fast8, ..Q8Rows::default() };
        for (li, b) in self.blocks.iter().enumerate() {
            rms_norm(&x, &b.attn_norm, c.eps, &mut a);
            Matrix::matmul_t_many(&[&b.wq, &b.wk, &b.wv], &a, n, &mut [&mut q, &mut k, &mut v], &mut q8)?;
            rope.apply(&mut q, c.heads);
            rope.apply(&mut k, c.kv_heads);
            cache.k[li][p0 * kvw..(p0 + n) * kvw].copy_from_slice(&k);
            cache.v[li][p0 * kvw..(p0 + n) * kvw].copy_from_slice(&v);
            if n >= ATTEND_BLOCK_FROM {
                attend_blocks(c, &q, &cache.k[li], &cache.v[li], p0, &mut att);
            } else {
                attend_grouped(c, &q, &cache.k[li], &cache.v[li], p0, &mut att);
            }
            b.wo.matmul_t(&att, n, &mut proj, &mut q8)?;
            x.iter_mut().zip(&proj).for_each(|(x, p)| *x += p);
            rms_norm(&x, &b.ffn_norm, c.eps, &mut a);
            Matrix::matmul_t_many(&[&b.gate, &b.up], &a, n, &mut [&mut g, &mut u], &mut q8)?;
            kiln_core::simd::vectorized(|| g.iter_mut().zip(&u).for_each(|(g, u)| *g = silu(*g) * u));
            b.down.matmul_t(&g, n, &mut proj, &mut q8)?;
            x.iter_mut().zip(&proj).for_each(|(x, p)| *x += p);
        }
        cache.tokens.extend_from_slice(ids);
        let last = &x[(n - 1) * d..];
        let mut h = vec![0.0f32; d];
        rms_norm(last, &self.norm, c.eps, &mut h);
        let mut logits = vec![0.0f32; c.vocab];
        self.output.as_ref().unwrap_or(&self.embed).matmul_t(&h, 1, &mut logits, &mut q8)?;
        Ok(logits)
    }
}

/// x·sigmoid(x), in a form that vectorizes (`Float::sigmoid_fast`, within 2e-7 of libm's).
#[inline(always)]
fn silu(x: f32) -> f32 {
    x * x.sigmoid_fast()
}

/// Each row of x [rows, d] over √(mean of squares + ε), times w.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = xr.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / d as f64;
        let scale = (1.0 / (ms + eps as f64).sqrt()) as f32;
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// cos and sin of position·base^(−2i/hd) for the positions of one step.
struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    fn new(hd: usize, base: f32, p0: usize, n: usize) -> RopeTable {
        let half = hd / 2;
        let (mut cos, mut sin) = (Vec::with_capacity(n * half), Vec::with_capacity(n * half));
        for p in p0..p0 + n {
            for i in 0..half {
                let theta = p as f64 * (base as f64).powf(-2.0 * i as f64 / hd as f64);
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
        RopeTable { half, cos, sin }
    }

    /// Rotates each head's adjacent pairs (x[2i], x[2i+1]) of x [n, heads·hd] by its position's angle.
    fn apply(&self, x: &mut [f32], heads: usize) {
        let hd = 2 * self.half;
        for (t, row) in x.chunks_exact_mut(heads * hd).enumerate() {
            let (cos, sin) = (&self.cos[t * self.half..][..self.half], &self.sin[t * self.half..][..self.half]);
            for head in row.chunks_exact_mut(hd) {
                for i in 0..self.half {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = a * cos[i] - b * sin[i];
                    head[2 * i + 1] = a * sin[i] + b * cos[i];
                }
            }
        }
    }
}

/// Steps of at least this many tokens (a prompt) attend through `attend_blocks`; fewer, one at a time.
const ATTEND_BLOCK_FROM: usize = 8;
/// The step's tokens per task of `attend_blocks`.
const ATTEND_BLOCK: usize = 32;

/// `attend` as matrix products, for a prompt: per head and block of up to 32 of the step's tokens, with
/// seen = p0 + the block's last token + 1 positions,
///
/// ```text
/// S [rows, seen] = q_block [rows, hd] · k[..seen]ᵀ · 1/√hd     (each row's positions after its own token
/// P = softmax of each row                                      masked out)
/// out_block [rows, hd] = P · v[..seen]
/// ```
///
/// on kiln's f32 product kernels, each task on one thread of the hot pool (heaviest blocks dealt first).
/// `attend`, one query and one key at a time with a horizontal sum per position, took about 12% of a
/// 128-token SmolLM2 prompt's samples (`perf record` on lmbench); it stays the reference in the tests.
/// Both ways alternating in one process (lmbench, medians of eight prompts), SmolLM2-135M: 128 tokens
/// Q8_0 387 → 410 and 388 → 434 tokens/s, Q4_1 320 → 348; 512 tokens Q8_0 227 → 314.
fn attend_blocks(c: &LlamaConfig, q: &[f32], k: &[f32], v: &[f32], p0: usize, out: &mut [f32]) {
    let (hd, h, qw) = (c.head_dim, c.heads, c.heads * c.head_dim);
    let n = out.len() / qw;
    let blocks = n.div_ceil(ATTEND_BLOCK);
    let tasks = h * blocks;
    let parts = kiln_core::hot::parts_for(h * n * (p0 + n) * hd);
    let dst = kiln_core::par::Disjoint::new(out);
    kiln_core::hot::pool().run(parts, &|p| {
        let (mut s, mut o) = (Vec::new(), Vec::new());
        for i in (p..tasks).step_by(parts) {
            // Later blocks see more positions: they go first.
            let (block, head) = (blocks - 1 - i / h, i % h);
            let (t0, t1) = (block * ATTEND_BLOCK, ((block + 1) * ATTEND_BLOCK).min(n));
            o.resize((t1 - t0) * hd, 0.0);
            let rows = (&q[t0 * qw + head * hd..], qw, t1 - t0);
            attend_rows(c, rows, (k, v, head / (h / c.kv_heads)), p0 + t1, true, &mut s, &mut o);
            for (r, o) in o.chunks_exact(hd).enumerate() {
                let at = (t0 + r) * qw + head * hd;
                // SAFETY: task i alone writes head `head` of its block's tokens.
                unsafe { dst.part(at..at + hd) }.copy_from_slice(o);
            }
        }
    });
}

/// `attend` for a few tokens (generation) as matrix products: per token and key/value head, the query heads
/// that share it as the rows of one product (their values are adjacent in q and in out),
///
/// ```text
/// S [group, seen] = q [group, hd] · k[..seen]ᵀ · 1/√hd
/// P = softmax of each row
/// out [group, hd] = P · v[..seen]
/// ```
///
/// SmolLM2-135M Q8_0 generation, both ways alternating in one process (lmbench, medians of six runs of 32
/// tokens): 79 → 86 tokens/s after a 128-token prompt, 52 → 68 after 512 (`attend`'s dot per position and
/// head). Its three tasks a token share two threads unevenly, yet splitting the positions into pieces of 128
/// too, each piece's softmax sums combined after (flash-decoding), measured 1-3% faster, within the noise:
/// not kept.
fn attend_grouped(c: &LlamaConfig, q: &[f32], k: &[f32], v: &[f32], p0: usize, out: &mut [f32]) {
    let (hd, h, g) = (c.head_dim, c.heads, c.kv_heads);
    let (group, qw) = (h / g, h * hd);
    let n = out.len() / qw;
    let tasks = n * g;
    let parts = kiln_core::hot::parts_for(h * n * (p0 + n) * hd);
    let dst = kiln_core::par::Disjoint::new(out);
    kiln_core::hot::pool().run(parts, &|p| {
        let mut s = Vec::new();
        for i in (p..tasks).step_by(parts) {
            let (t, kvh) = (i / g, i % g);
            let at = t * qw + kvh * group * hd;
            // SAFETY: task i alone writes the heads of key/value head kvh for token t.
            let o = unsafe { dst.part(at..at + group * hd) };
            attend_rows(c, (&q[at..], hd, group), (k, v, kvh), p0 + t + 1, false, &mut s, o);
        }
    });
}

/// One task of `attend_blocks` or `attend_grouped`: `rows` queries (from `q` at row stride `q_rs`) over the
/// first `seen` positions of key/value head `kvh`, into o [rows, hd]:
///
/// ```text
/// S [rows, seen] = q · k[..seen]ᵀ · 1/√hd      (causal: row r of a block of consecutive tokens, the last
/// P = softmax of each row                       seeing all `seen`, masked after position seen − rows + r)
/// o = P · v[..seen]
/// ```
///
/// on kiln's f32 product kernel and row softmax, on the calling thread; `s` is scratch.
#[allow(clippy::too_many_arguments)]
fn attend_rows(
    c: &LlamaConfig,
    (q, q_rs, rows): (&[f32], usize, usize),
    (k, v, kvh): (&[f32], &[f32], usize),
    seen: usize,
    causal: bool,
    s: &mut Vec<f32>,
    o: &mut [f32],
) {
    let (hd, kvw) = (c.head_dim, c.kv_heads * c.head_dim);
    let scale = 1.0 / (hd as f32).sqrt();
    let (ks, vs) = (&k[kvh * hd..], &v[kvh * hd..]);
    s.clear();
    s.resize(rows * seen, 0.0);
    kiln_core::backend::matmul_on_this_thread((rows, seen, hd), s, (q, q_rs, 1), (ks, 1, kvw), false);
    for (r, row) in s.chunks_exact_mut(seen).enumerate() {
        let (own, later) = row.split_at_mut(if causal { seen - rows + r + 1 } else { seen });
        later.fill(0.0);
        own.iter_mut().for_each(|x| *x *= scale);
        kiln_core::backend::softmax_rows(own, own.len());
    }
    kiln_core::backend::matmul_on_this_thread((rows, hd, seen), o, (s, seen, 1), (vs, kvw, 1), false);
}

/// The reference for `attend_blocks` and `attend_grouped` (tests): causal attention of the step's queries q [n, h·hd]
/// over the cache's keys and values [p0 + n, g·hd]: out [n, h·hd]. One task per (token, head), in parallel on the hot
/// pool (the products' pool: its helper spins between them, so even one new token's heads are worth sharing, and
/// rayon's workers would compete with it for the cores); tasks are dealt out in turn, since later tokens see more
/// positions.
#[cfg(test)]
fn attend(c: &LlamaConfig, q: &[f32], k: &[f32], v: &[f32], p0: usize, out: &mut [f32]) {
    let (hd, h, g) = (c.head_dim, c.heads, c.kv_heads);
    let (kvw, group) = (g * hd, h / g);
    let scale = 1.0 / (hd as f32).sqrt();
    let tasks = out.len() / hd;
    let work = tasks * (p0 + tasks / h) * hd;
    let task = |task: usize, o: &mut [f32]| {
        kiln_core::simd::vectorized(|| {
            let (t, head) = (task / h, task % h);
            let kvh = head / group;
            let qv = &q[t * h * hd + head * hd..][..hd];
            let seen = p0 + t + 1;
            // kiln_core::simd::dot: lane sums that vectorize (one serial chain of additions here was 12% of
            // a SmolLM2 bench run's samples).
            let mut s: Vec<f32> =
                (0..seen).map(|p| kiln_core::simd::dot(qv, &k[p * kvw + kvh * hd..][..hd]) * scale).collect();
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            s.iter_mut().for_each(|x| {
                *x = (*x - max).exp_fast();
                sum += *x;
            });
            o.fill(0.0);
            for (p, &w) in s.iter().enumerate() {
                let w = w / sum;
                for (o, &vv) in o.iter_mut().zip(&v[p * kvw + kvh * hd..][..hd]) {
                    *o += w * vv;
                }
            }
        })
    };
    // One part runs on the caller, without the pool's lock.
    let parts = kiln_core::hot::parts_for(work);
    let dst = kiln_core::par::Disjoint::new(out);
    kiln_core::hot::pool().run(parts, &|p| {
        for i in (p..tasks).step_by(parts) {
            // SAFETY: task i writes out[i·hd..(i+1)·hd] alone, and each i belongs to one part.
            task(i, unsafe { dst.part(i * hd..(i + 1) * hd) });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `attend_blocks` and `attend_grouped` against `attend` (one query and key at a time): grouped heads,
    /// steps shorter and longer than a block and not whole blocks, after an empty cache and after earlier
    /// positions (index i/2 of the output, i odd for the grouped path).
    #[test]
    fn attention_as_products_matches_one_position_at_a_time() {
        let mut rng = kiln_core::Rng::new(3);
        for (heads, kv_heads, hd) in [(6, 2, 16), (9, 3, 64), (4, 4, 8)] {
            let c = LlamaConfig {
                vocab: 1,
                dim: heads * hd,
                layers: 1,
                heads,
                kv_heads,
                head_dim: hd,
                ffn: 1,
                context: 128,
                rope_base: 10000.0,
                eps: 1e-5,
            };
            for (p0, n) in [(0, 1), (0, 8), (0, 33), (5, 40), (17, 70), (0, 96), (130, 1), (255, 2), (300, 5)] {
                let mut r =
                    |len: usize| -> Vec<f32> { (0..len).map(|_| rng.uniform_range(-2.0, 2.0) as f32).collect() };
                let q = r(n * heads * hd);
                let (k, v) = (r((p0 + n + 3) * kv_heads * hd), r((p0 + n + 3) * kv_heads * hd));
                let mut want = vec![0.0; n * heads * hd];
                attend(&c, &q, &k, &v, p0, &mut want);
                let (mut blocks, mut grouped) = (vec![f32::NAN; want.len()], vec![f32::NAN; want.len()]);
                attend_blocks(&c, &q, &k, &v, p0, &mut blocks);
                attend_grouped(&c, &q, &k, &v, p0, &mut grouped);
                let got = blocks.iter().zip(&grouped).flat_map(|(b, g)| [b, g]);
                for (i, (w, g)) in want.iter().flat_map(|w| [w, w]).zip(got).enumerate() {
                    assert!(
                        (w - g).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{heads}/{kv_heads}x{hd} p0 {p0} n {n} [{i}]: {g}, want {w}"
                    );
                }
            }
        }
    }
}
