//! The dense layer's op, with bias and activation fused into one pass over the output.

use super::unary::UnaryOp;
use crate::backend::{Buf, BufMut, MatView};
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result};

impl<T: Float> Graph<T> {
    /// y[n, o] = act(x[n, i] · w[i, o] + b[o])
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>, act: Option<UnaryOp>) -> Result<Var> {
        let (sx, sw) = (self.shape(x), self.shape(w));
        if sx.rank() != 2 || sw.rank() != 2 || sx.dim(1) != sw.dim(0) {
            return Err(Error::Shape(format!("linear: input {sx} does not fit weights {sw} (want [n, i] and [i, o])")));
        }
        let (n, k, o) = (sx.dim(0), sx.dim(1), sw.dim(1));
        if let Some(b) = b
            && self.shape(b).dims() != [o]
        {
            return Err(Error::Shape(format!("linear: bias {} does not fit {o} outputs", self.shape(b))));
        }
        let out = sx.with_dim(1, o);
        let mut y = self.out(n * o);
        let (be, y_buf) = (&self.backend, y.view_mut());
        let (xv, wv) = (MatView::rows(self.buf(x), 0, k), MatView::rows(self.buf(w), 0, o));
        // An inference tape multiplies by a parameter's weights as the backend laid them out once (the CPU:
        // packed panels, so a product of a few rows neither packs them again nor reads them out of order).
        let packed = match self.param_of(w) {
            Some(id) if !self.is_recording() && be.prepacks_for(n) => {
                self.store().prepacked(id, |p| be.prepack(&p.value, k, o))
            }
            _ => None,
        };
        match packed {
            Some(p) => be.gemm_prepacked(n, o, k, y_buf, 0, xv, wv, &p, false),
            None => be.gemm(n, o, k, y_buf, 0, xv, wv, false),
        }
        let rg = self.requires_grad(x) || self.requires_grad(w) || b.is_some_and(|b| self.requires_grad(b));
        let keep = rg && self.is_recording() && act.is_some_and(|a| a.needs_input());
        let mut z = if keep { Some(self.out(n * o)) } else { None };
        let bias = b.map(|b| self.buf(b));
        self.backend.bias_act(y.view_mut(), o, bias, act, z.as_mut().map(|z| z.view_mut()));
        let v = self.push(Op::Linear(x, w, b, act), out, y, rg);
        if let Some(z) = z {
            self.keep_aux_f(v, z);
        }
        Ok(v)
    }
}

impl Graph<f32> {
    /// y[n, o] = act(x[n, i] · w[i, o] + b[o]) with `w` a block-quantized kernel (`Param::quant`), dequantized
    /// 32 weights at a time (`QMatrix::matmul_t`). Inference only: nothing flows back through it, so it is an
    /// error while recording for a trainable `x`.
    pub fn linear_q(&mut self, x: Var, w: crate::ParamId, b: Option<Var>, act: Option<UnaryOp>) -> Result<Var> {
        let params = self.shared_params();
        let p = params.get(w);
        let Some(q) = p.quant.as_ref() else {
            return Err(Error::Invalid(format!("linear_q: `{}` is not quantized (use linear)", p.name)));
        };
        if self.is_recording() && self.requires_grad(x) {
            return Err(Error::Invalid(format!(
                "linear_q: `{}` is {}: quantized weights are for inference, no gradient passes through them",
                p.name,
                q.dtype()
            )));
        }
        let sx = self.shape(x);
        if sx.rank() != 2 || sx.dim(1) != q.cols() {
            return Err(Error::Shape(format!(
                "linear_q: input {sx} does not fit `{}` [{}, {}] (want [n, {}])",
                p.name,
                q.cols(),
                q.rows(),
                q.cols()
            )));
        }
        let (n, o) = (sx.dim(0), q.rows());
        if let Some(b) = b
            && self.shape(b).dims() != [o]
        {
            return Err(Error::Shape(format!("linear_q: bias {} does not fit {o} outputs", self.shape(b))));
        }
        let mut y = self.pool.scratch(n * o);
        self.backend.matmul_q(q, self.buf(x), n, BufMut::Host(&mut y))?;
        let bias = b.map(|b| self.buf(b));
        self.backend.bias_act(BufMut::Host(&mut y), o, bias, act, None);
        Ok(self.push(Op::Leaf, sx.with_dim(1, o), y, false))
    }
}

/// dz = dy ⊙ act'(z); db += Σₙ dz; dw += xᵀ · dz; dx += dz · wᵀ
pub(crate) fn backward<T: Float>(
    ctx: &mut BackCtx<T>,
    node: usize,
    x: Var,
    w: Var,
    b: Option<Var>,
    act: Option<UnaryOp>,
    gy: Buf<T>,
) {
    let (n, k) = (ctx.shape(x).dim(0), ctx.shape(x).dim(1));
    let o = ctx.shape(w).dim(1);
    let be = ctx.backend;
    let tmp = act.map(|a| {
        let mut tmp = ctx.scratch(n * o);
        // The activation's derivative at z when it needs z (kept in forward), else at y.
        let at = if a.needs_input() { ctx.aux_buf(node) } else { ctx.out_buf(node) };
        be.unary_backward(a, gy, at, ctx.out_buf(node), tmp.view_mut(), false);
        tmp
    });
    let dz = tmp.as_ref().map_or(gy, |t| t.view());
    if let Some(b) = b
        && ctx.needs(b)
    {
        be.col_sum_add(ctx.grad_buf(b), dz, o);
    }
    let (vx, vw) = (ctx.buf(x), ctx.buf(w));
    if ctx.needs(w) {
        let (gw, fresh) = ctx.grad_overwrite_buf(w);
        be.gemm(k, o, n, gw, 0, MatView::rows_t(vx, 0, k), MatView::rows(dz, 0, o), !fresh);
    }
    if ctx.needs(x) {
        let (gx, fresh) = ctx.grad_overwrite_buf(x);
        be.gemm(n, k, o, gx, 0, MatView::rows(dz, 0, o), MatView::rows_t(vw, 0, o), !fresh);
    }
    if let Some(t) = tmp {
        ctx.put(t);
    }
}
