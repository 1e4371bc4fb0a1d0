//! Scaled dot-product attention over several heads as one op (Vaswani et al. 2017), taking the
//! projections as the linear layers give them: q, k, v [b·t, width] with width = heads·dh, each head's
//! columns side by side. Written with the engine's small ops (split heads by permutes, batched products, a
//! broadcast scale and mask bias, softmax) it spent most of a MiniLM forward outside the products, holding
//! every [b, h, t, t] intermediate (measured: 31 texts/s and 1.7 GB on review texts); here each (text,
//! head) pair is computed in a cache-sized scratch, pairs in parallel, and only the weights P are kept
//! (for backward). `pretrained::attention::multi_head` in the kiln crate keeps the op-by-op version as the
//! reference this is tested against.
//!
//! Per text and head, with Q, K, V [t, dh] and a key bias β [t] (0 for a token, `MASKED` for padding):
//!   S = Q·Kᵀ·s + β (s = 1/√dh; with `causal`, S[i, j] = MASKED for j > i), P = softmax over each row,
//!   O = P·V.
//! Backward: dV = Pᵀ·dO; dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(dP ⊙ P)); dQ = dS·K·s; dK = dSᵀ·Q·s.

use crate::backend::{Buf, BufMut};
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
}

impl AttentionDims {
    pub fn width(&self) -> usize {
        self.heads * self.dh
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
        let dims = AttentionDims { b, t, heads, dh: width / heads, causal };
        let bias: Vec<T> = match keep {
            Some(m) => m.iter().map(|&x| if x > T::ZERO { T::ZERO } else { T::from_f64(MASKED) }).collect(),
            None => vec![T::ZERO; b * t],
        };
        let bias = self.pool.copied(&bias);
        let rg = self.requires_grad(q) || self.requires_grad(k) || self.requires_grad(v);
        let keep_p = rg && self.is_recording();
        let mut y = self.pool.scratch(b * t * width);
        let mut p = if keep_p { self.pool.scratch(b * heads * t * t) } else { Vec::new() };
        let (qv, kv, vv) = (self.buf(q), self.buf(k), self.buf(v));
        let p_buf = keep_p.then_some(BufMut::Host(&mut p));
        self.backend.attention(qv, kv, vv, Buf::Host(&bias), dims, p_buf, BufMut::Host(&mut y));
        let node = self.push(Op::Attention(q, k, v, dims), sq, y, rg);
        if keep_p {
            self.keep_aux_f(node, p);
        }
        self.pool.put(bias);
        Ok(node)
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
    let mut grads = ctx.pool.scratch(3 * n);
    be.attention_backward(qv, kv, vv, p, gy, dims, BufMut::Host(&mut grads));
    for (i, x) in [q, k, v].into_iter().enumerate() {
        if ctx.needs(x) {
            be.copy_blocks(Buf::Host(&grads[i * n..(i + 1) * n]), (0, 0), ctx.grad_buf(x), (0, 0), 1, n, true);
        }
    }
    ctx.pool.put(grads);
}
