//! Scaled dot-product attention over several heads as one op (Vaswani et al. 2017), taking the
//! projections as the linear layers give them: q, k, v [b·t, width] with width = heads·dh, each head's
//! columns side by side. Written with the engine's small ops (split heads by permutes, batched products, a
//! broadcast scale and mask bias, softmax) it spent most of a MiniLM forward outside the products, holding
//! every [b, h, t, t] intermediate (measured: 31 texts/s and 1.7 GB on review texts); here each (text,
//! head) pair is computed in a cache-sized scratch, pairs in parallel, and only the weights P are kept
//! (for backward). `Graph::attention_unfused` keeps the op-by-op version as the reference this is tested
//! against (tests/suite/fused.rs).
//!
//! Per text and head, with Q, K, V [t, dh] and a key bias β [t] (0 for a token, `MASKED` for padding):
//!   S = Q·Kᵀ·s + β (s = 1/√dh; with `causal`, S[i, j] = MASKED for j > i), P = softmax over each row,
//!   O = (P ⊙ M)·V, M the dropout mask (all ones without dropout).
//! Backward: dV = (P ⊙ M)ᵀ·dO; dP = (dO·Vᵀ) ⊙ M; dS = P ⊙ (dP − rowsum(dP ⊙ P)); dQ = dS·K·s; dK = dSᵀ·Q·s.
//!
//! Dropout on the weights (PyTorch's `nn.MultiheadAttention(dropout=...)`) draws M from a counter-based
//! hash of (seed, element index) rather than a stream: each (text, head) pair draws its own elements in
//! parallel, and backward recomputes M instead of keeping [b, heads, t, t] more values. Measured on a
//! 2-block transformer over 100-term reviews: op by op with the engine's dropout, 108 s an epoch, of which
//! 82 s in the attention's small ops.

use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result};

/// What a masked key adds to its scores: its weight becomes negligible (under 1e-37) next to any unmasked key.
pub const MASKED: f64 = -1e30;

/// The shape of one attention: `b` sequences of `t` steps, `heads` heads of `dh` values, and whether each
/// step attends to itself and earlier steps only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    pub b: usize,
    pub t: usize,
    pub heads: usize,
    pub dh: usize,
    pub causal: bool,
    /// Dropout on the weights: an element is dropped when its hash is below `drop` (rate·2⁶⁴; 0: none).
    pub drop: u64,
    pub seed: u64,
}

impl AttentionDims {
    pub fn width(&self) -> usize {
        self.heads * self.dh
    }

    /// The dropout mask's value at element `i` of [b, heads, t, t]: 0, or 1/(1 − rate) for a kept weight.
    #[inline(always)]
    pub fn mask<T: Float>(&self, i: usize) -> T {
        if self.kept(i) { T::from_f64(self.keep_scale()) } else { T::ZERO }
    }

    /// Whether dropout keeps element `i` of [b, heads, t, t].
    #[inline(always)]
    pub fn kept(&self, i: usize) -> bool {
        dropout_hash(self.seed, i as u64) >= self.drop
    }

    /// 1/(1 − rate).
    pub fn keep_scale(&self) -> f64 {
        1.0 / (1.0 - self.drop as f64 / 18446744073709551616.0)
    }
}

/// SplitMix64's finalizer of seed + i·γ: a well-mixed 64-bit value per (seed, element) (Steele et al. 2014).
#[inline(always)]
pub fn dropout_hash(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Dropout on the attention weights: `rate` of them zeroed, drawn from `seed` (see the header).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionDropout {
    pub rate: f64,
    pub seed: u64,
}

impl AttentionDropout {
    /// `AttentionDims::drop` for `rate`: rate·2⁶⁴.
    pub fn threshold(rate: f64) -> u64 {
        (rate * 18446744073709551616.0) as u64
    }
}

impl<T: Float> Graph<T> {
    /// Multi-head attention of `q` over `k` and `v` ([b·t, heads·dh] each) for `b` sequences of `t` steps:
    /// `keep` [b·t] is 1 for a step keys may attend to and 0 for padding (None: every step); `causal`
    /// hides later steps. Returns [b·t, heads·dh], the heads side by side.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: Var,
        k: Var,
        v: Var,
        b: usize,
        t: usize,
        heads: usize,
        keep: Option<&[T]>,
        causal: bool,
    ) -> Result<Var> {
        self.attention_dropout(q, k, v, b, t, heads, keep, causal, None)
    }

    /// `attention` with dropout on the weights (training): `rate` in [0, 1), the mask drawn from `seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_dropout(
        &mut self,
        q: Var,
        k: Var,
        v: Var,
        b: usize,
        t: usize,
        heads: usize,
        keep: Option<&[T]>,
        causal: bool,
        dropout: Option<AttentionDropout>,
    ) -> Result<Var> {
        let drop = match dropout {
            Some(d) if !(0.0..1.0).contains(&d.rate) => {
                return Err(Error::Invalid(format!("attention: dropout rate {} must be in [0, 1)", d.rate)));
            }
            Some(d) => AttentionDropout::threshold(d.rate),
            None => 0,
        };
        let sq = self.shape(q);
        let width = if sq.rank() == 2 { sq.dim(1) } else { 0 };
        let fits = heads > 0 && width > 0 && width.is_multiple_of(heads) && sq.dims() == [b * t, width];
        if !fits || self.shape(k) != sq || self.shape(v) != sq {
            return Err(Error::Shape(format!(
                "attention: queries {sq}, keys {}, values {} for {b} sequences of {t} steps in {heads} heads: want \
                 three [b·t, width] with width a multiple of the heads",
                self.shape(k),
                self.shape(v)
            )));
        }
        if let Some(m) = keep
            && m.len() != b * t
        {
            return Err(Error::Shape(format!(
                "attention: a mask of {} values for {b} sequences of {t} steps",
                m.len()
            )));
        }
        let seed = dropout.map_or(0, |d| d.seed);
        let dims = AttentionDims { b, t, heads, dh: width / heads, causal, drop, seed };
        let bias: Vec<T> = match keep {
            Some(m) => m.iter().map(|&x| if x > T::ZERO { T::ZERO } else { T::from_f64(MASKED) }).collect(),
            None => vec![T::ZERO; b * t],
        };
        let bias = self.pool.copied(&bias);
        let rg = self.requires_grad(q) || self.requires_grad(k) || self.requires_grad(v);
        let keep_p = rg && self.is_recording();
        let mut y = self.out(b * t * width);
        let mut p = if keep_p { self.out(b * heads * t * t) } else { Vec::new().into() };
        let (qv, kv, vv) = (self.buf(q), self.buf(k), self.buf(v));
        let p_buf = keep_p.then_some(p.view_mut());
        self.backend.attention(qv, kv, vv, Buf::Host(&bias), dims, p_buf, y.view_mut());
        let node = self.push(Op::Attention(q, k, v, dims), sq, y, rg);
        if keep_p {
            self.keep_aux_f(node, p);
        }
        self.pool.put(bias);
        Ok(node)
    }

    /// `attention_dropout` written with the engine's small ops (heads split by permutes, batched products,
    /// a broadcast scale and mask bias, softmax, the same dropout mask as a constant): the reference the
    /// fused op is tested against.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_unfused(
        &mut self,
        q: Var,
        k: Var,
        v: Var,
        b: usize,
        t: usize,
        heads: usize,
        keep: Option<&[T]>,
        causal: bool,
        dropout: Option<AttentionDropout>,
    ) -> Result<Var> {
        let sq = self.shape(q);
        let width = if sq.rank() == 2 { sq.dim(1) } else { 0 };
        if heads == 0 || width == 0 || !width.is_multiple_of(heads) || sq.dims() != [b * t, width] {
            return Err(Error::Shape(format!(
                "attention: queries {sq} for {b} sequences of {t} steps in {heads} heads: want [b·t, width] with \
                 width a multiple of the heads"
            )));
        }
        let dh = width / heads;
        // [b·t, heads·dh] -> [b, heads, t, dh] (keys: [b, heads, dh, t]).
        let split = |g: &mut Self, x, perm: &[usize]| {
            let x = g.reshape(x, &[b, t, heads, dh])?;
            g.permute(x, perm)
        };
        let qh = split(self, q, &[0, 2, 1, 3])?;
        let kt = split(self, k, &[0, 2, 3, 1])?;
        let vh = split(self, v, &[0, 2, 1, 3])?;
        let s = self.matmul(qh, kt)?;
        let scale = self.input(&[1], &[T::from_f64(1.0 / (dh as f64).sqrt())])?;
        let mut s = self.mul(s, scale)?;
        let masked = T::from_f64(MASKED);
        if let Some(keep) = keep {
            let pad: Vec<T> = keep.iter().map(|&m| if m > T::ZERO { T::ZERO } else { masked }).collect();
            let pad = self.input(&[b, 1, 1, t], &pad)?;
            s = self.add(s, pad)?;
        }
        if causal {
            let later: Vec<T> = (0..t * t).map(|i| if i % t > i / t { masked } else { T::ZERO }).collect();
            let later = self.input(&[1, 1, t, t], &later)?;
            s = self.add(s, later)?;
        }
        let mut p = self.softmax(s, 3)?;
        if let Some(d) = dropout {
            let dims =
                AttentionDims { b, t, heads, dh, causal, drop: AttentionDropout::threshold(d.rate), seed: d.seed };
            let mask: Vec<T> = (0..b * heads * t * t).map(|i| dims.mask(i)).collect();
            let mask = self.input(&[b, heads, t, t], &mask)?;
            p = self.mul(p, mask)?;
        }
        let o = self.matmul(p, vh)?;
        let o = self.permute(o, &[0, 2, 1, 3])?;
        self.reshape(o, &[b * t, width])
    }
}

/// dV = Pᵀ·dO; dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(dP ⊙ P)); dQ = dS·K·s; dK = dSᵀ·Q·s (per text and head).
pub(crate) fn backward<T: Float>(
    ctx: &mut BackCtx<T>,
    node: usize,
    (q, k, v): (Var, Var, Var),
    dims: AttentionDims,
    gy: Buf<T>,
) {
    let n = dims.b * dims.t * dims.width();
    let (be, p) = (ctx.backend, ctx.aux_buf(node));
    let (qv, kv, vv) = (ctx.buf(q), ctx.buf(k), ctx.buf(v));
    // The three gradients are computed together (they share dS); each is added to its input's gradient.
    let mut grads = ctx.scratch(3 * n);
    be.attention_backward(qv, kv, vv, p, gy, dims, grads.view_mut());
    for (i, x) in [q, k, v].into_iter().enumerate() {
        if ctx.needs(x) {
            be.copy_blocks(grads.view().slice(i * n..(i + 1) * n), (0, 0), ctx.grad_buf(x), (0, 0), 1, n, true);
        }
    }
    ctx.put(grads);
}
