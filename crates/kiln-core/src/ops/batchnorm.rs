//! Batch normalization over every axis but the last (channels last); the arithmetic is the backend's
//! (CPU: backend/cpu/norm.rs).

use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result};

impl<T: Float> Graph<T> {
    /// Training mode: y = γ·(x − μ_B)/√(σ²_B + ε) + β with the batch's mean and (biased) variance, which stay
    /// readable through `saved(y)` as [mean (c), variance (c), 1/√(σ² + ε) (c)].
    /// Inference mode (`stats` = moving mean and variance): the same with those in place of the batch's.
    pub fn batch_norm(&mut self, x: Var, gamma: Var, beta: Var, stats: Option<(Var, Var)>, eps: f64) -> Result<Var> {
        let s = self.shape(x);
        let c = *s.dims().last().ok_or_else(|| Error::Shape("batch_norm: scalar input".into()))?;
        for (name, p) in [
            ("gamma", Some(gamma)),
            ("beta", Some(beta)),
            ("mean", stats.map(|s| s.0)),
            ("variance", stats.map(|s| s.1)),
        ] {
            if let Some(p) = p
                && self.shape(p).dims() != [c]
            {
                return Err(Error::Shape(format!(
                    "batch_norm: {name} {} does not fit {c} channels of {s}",
                    self.shape(p)
                )));
            }
        }
        let mut saved = self.out(3 * c);
        let mut y = self.out(s.numel());
        let st = stats.map(|(m, v)| (self.buf(m), self.buf(v)));
        let (xv, g, b) = (self.buf(x), self.buf(gamma), self.buf(beta));
        self.backend.batch_norm(xv, g, b, st, eps, c, saved.view_mut(), y.view_mut());
        let rg = self.requires_grad(x) || self.requires_grad(gamma) || self.requires_grad(beta);
        let node = self.push(Op::BatchNorm(x, gamma, beta, stats, eps), s, y, rg);
        // Kept even without recording: the layer reads the batch statistics to update its moving averages.
        self.aux_f[node.id()] = saved;
        Ok(node)
    }
}

/// x̂ = (x − μ)·inv; dβ += Σ dy; dγ += Σ dy·x̂;
/// training: dx += γ·inv/m · (m·dy − Σ dy − x̂·Σ dy·x̂); inference: dx += γ·inv·dy;
/// inference with statistics that are themselves differentiated (they are non-trainable in layers):
/// dμ += −γ·inv·Σ dy; dσ² += −½·γ·inv³·Σ dy·(x − μ)
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: Float>(
    ctx: &mut BackCtx<T>,
    node: usize,
    x: Var,
    gamma: Var,
    beta: Var,
    stats: Option<(Var, Var)>,
    _eps: f64,
    gy: Buf<T>,
) {
    let c = *ctx.shape(x).dims().last().expect("checked in forward");
    let (be, saved, xv, g) = (ctx.backend, ctx.aux_buf(node), ctx.buf(x), ctx.buf(gamma));
    let mut sums = ctx.scratch(2 * c);
    be.batch_norm_sums(xv, gy, saved, c, sums.view_mut());
    let (sdy, sdyx) = (sums.view().slice(0..c), sums.view().slice(c..2 * c));
    if ctx.needs(beta) {
        be.copy_blocks(sdy, (0, 0), ctx.grad_buf(beta), (0, 0), 1, c, true);
    }
    if ctx.needs(gamma) {
        be.copy_blocks(sdyx, (0, 0), ctx.grad_buf(gamma), (0, 0), 1, c, true);
    }
    let sums_buf = sums.view();
    if ctx.needs(x) {
        be.batch_norm_backward_x(xv, gy, g, saved, sums_buf, c, stats.is_some(), ctx.grad_buf(x));
    }
    if let Some((mm, mv)) = stats {
        if ctx.needs(mm) {
            be.batch_norm_backward_stat(false, g, saved, sums_buf, c, ctx.grad_buf(mm));
        }
        if ctx.needs(mv) {
            be.batch_norm_backward_stat(true, g, saved, sums_buf, c, ctx.grad_buf(mv));
        }
    }
    ctx.put(sums);
}
