//! Layer normalization over the last axis (Ba et al. 2016; PyTorch's `nn.LayerNorm`, Keras's
//! `LayerNormalization`): each row of `d` values is centred and scaled by its own statistics, then by a
//! learned γ and β per position. The statistics are the biased ones, as both frameworks compute them.
//!
//! Forward, per row: μ = mean(x), r = 1/√(mean((x − μ)²) + eps), x̂ = (x − μ)·r, y = γ·x̂ + β.
//! Backward, per row, with g = γ·dy: dx = r·(g − mean(g) − x̂·mean(g·x̂)); over rows: dγ += Σ dy·x̂,
//! dβ += Σ dy. μ and r are kept per row (2 values), so backward never recomputes them.

use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result};

impl<T: Float> Graph<T> {
    /// y[.., d] = γ[d]·(x − μ)/√(σ² + eps) + β[d], μ and σ² over each row's last axis.
    pub fn layer_norm(&mut self, x: Var, gamma: Var, beta: Var, eps: f64) -> Result<Var> {
        let sx = self.shape(x);
        let d = sx.dims().last().copied().unwrap_or(0);
        let (sg, sb) = (self.shape(gamma), self.shape(beta));
        if sx.rank() == 0 || d == 0 || sg.dims() != [d] || sb.dims() != [d] {
            return Err(Error::Shape(format!(
                "layer_norm: input {sx} with gamma {sg} and beta {sb}: want [.., d] with [d] and [d]"
            )));
        }
        if eps.is_nan() || eps <= 0.0 {
            return Err(Error::Invalid(format!("layer_norm: eps {eps} must be positive")));
        }
        let rows = sx.numel() / d;
        let mut y = self.out(rows * d);
        let mut saved = self.out(2 * rows);
        let (xv, gv, bv) = (self.buf(x), self.buf(gamma), self.buf(beta));
        self.backend.layer_norm(xv, gv, bv, eps, d, saved.view_mut(), y.view_mut());
        let rg = self.requires_grad(x) || self.requires_grad(gamma) || self.requires_grad(beta);
        let v = self.push(Op::LayerNorm(x, gamma, beta), sx, y, rg);
        self.keep_aux_f(v, saved);
        Ok(v)
    }
}

/// dx += r·(g − mean(g) − x̂·mean(g·x̂)) with g = γ·dy; dγ += Σ dy·x̂; dβ += Σ dy.
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, x: Var, gamma: Var, beta: Var, gy: Buf<T>) {
    let d = *ctx.shape(x).dims().last().expect("checked in forward");
    let (be, saved, xv, g) = (ctx.backend, ctx.aux_buf(node), ctx.buf(x), ctx.buf(gamma));
    if ctx.needs(gamma) || ctx.needs(beta) {
        let mut sums = ctx.scratch(2 * d);
        be.layer_norm_sums(xv, gy, saved, d, sums.view_mut());
        if ctx.needs(gamma) {
            be.copy_blocks(sums.view().slice(0..d), (0, 0), ctx.grad_buf(gamma), (0, 0), 1, d, true);
        }
        if ctx.needs(beta) {
            be.copy_blocks(sums.view().slice(d..2 * d), (0, 0), ctx.grad_buf(beta), (0, 0), 1, d, true);
        }
        ctx.put(sums);
    }
    if ctx.needs(x) {
        be.layer_norm_backward_x(xv, gy, g, saved, d, ctx.grad_buf(x));
    }
}
