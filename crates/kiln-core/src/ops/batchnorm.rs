//! Batch normalization over every axis but the last (channels last).

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
        let m = s.numel() / c;
        let mut saved = self.pool.zeroed(3 * c);
        let mut y = self.pool.zeroed(s.numel());
        let xv = self.value(x);
        let (mean, rest) = saved.split_at_mut(c);
        let (var, inv) = rest.split_at_mut(c);
        match stats {
            Some((mm, mv)) => {
                mean.copy_from_slice(self.value(mm));
                var.copy_from_slice(self.value(mv));
            }
            None => {
                for row in xv.chunks(c) {
                    for (a, &v) in mean.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                mean.iter_mut().for_each(|a| *a /= T::from_usize(m));
                for row in xv.chunks(c) {
                    for ((a, &v), &mu) in var.iter_mut().zip(row).zip(mean.iter()) {
                        *a += (v - mu) * (v - mu);
                    }
                }
                var.iter_mut().for_each(|a| *a /= T::from_usize(m));
            }
        }
        for (i, v) in inv.iter_mut().zip(var.iter()) {
            *i = T::ONE / (*v + T::from_f64(eps)).sqrt();
        }
        let (g, b) = (self.value(gamma), self.value(beta));
        for (yr, xr) in y.chunks_mut(c).zip(xv.chunks(c)) {
            for j in 0..c {
                yr[j] = g[j] * (xr[j] - mean[j]) * inv[j] + b[j];
            }
        }
        let rg = self.requires_grad(x) || self.requires_grad(gamma) || self.requires_grad(beta);
        let node = self.push(Op::BatchNorm(x, gamma, beta, stats, eps), s, y, rg);
        // Kept even without recording: the layer reads the batch statistics to update its moving averages.
        self.aux_f[node.id()] = saved;
        Ok(node)
    }
}

/// x̂ = (x − μ)·inv; dβ += Σ dy; dγ += Σ dy·x̂;
/// training: dx += γ·inv/m · (m·dy − Σ dy − x̂·Σ dy·x̂); inference: dx += γ·inv·dy (and see below)
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: Float>(
    ctx: &mut BackCtx<T>,
    node: usize,
    x: Var,
    gamma: Var,
    beta: Var,
    stats: Option<(Var, Var)>,
    _eps: f64,
    gy: &[T],
) {
    let s = ctx.shape(x);
    let c = *s.dims().last().expect("checked in forward");
    let m = s.numel() / c;
    let saved = ctx.aux_f[node].as_slice();
    let (mean, inv) = (&saved[..c], &saved[2 * c..]);
    let xv = ctx.value(x);
    let g = ctx.value(gamma);
    let mut sums = ctx.pool.zeroed(2 * c);
    let (sdy, sdyx) = sums.split_at_mut(c);
    for (xr, dr) in xv.chunks(c).zip(gy.chunks(c)) {
        for j in 0..c {
            sdy[j] += dr[j];
            sdyx[j] += dr[j] * (xr[j] - mean[j]) * inv[j];
        }
    }
    if ctx.needs(beta) {
        for (a, &v) in ctx.grad(beta).iter_mut().zip(sdy.iter()) {
            *a += v;
        }
    }
    if ctx.needs(gamma) {
        for (a, &v) in ctx.grad(gamma).iter_mut().zip(sdyx.iter()) {
            *a += v;
        }
    }
    if ctx.needs(x) {
        let gx = ctx.grad(x);
        let mf = T::from_usize(m);
        for ((gr, xr), dr) in gx.chunks_mut(c).zip(xv.chunks(c)).zip(gy.chunks(c)) {
            for j in 0..c {
                gr[j] += match stats {
                    Some(_) => g[j] * inv[j] * dr[j],
                    None => {
                        let xhat = (xr[j] - mean[j]) * inv[j];
                        g[j] * inv[j] / mf * (mf * dr[j] - sdy[j] - xhat * sdyx[j])
                    }
                };
            }
        }
    }
    // Inference mode with statistics that are themselves differentiated (they are non-trainable in layers):
    // dμ += −γ·inv·Σ dy; dσ² += −½·γ·inv³·Σ dy·(x − μ)
    if let Some((mm, mv)) = stats {
        if ctx.needs(mm) {
            for (j, a) in ctx.grad(mm).iter_mut().enumerate() {
                *a -= g[j] * inv[j] * sdy[j];
            }
        }
        if ctx.needs(mv) {
            for (j, a) in ctx.grad(mv).iter_mut().enumerate() {
                *a -= T::from_f64(0.5) * g[j] * inv[j] * inv[j] * sdyx[j];
            }
        }
    }
    ctx.pool.put(sums);
}
