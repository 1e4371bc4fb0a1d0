//! The dense layer's op, with bias and activation fused into one pass over the output.

use super::gemm::{Mat, gemm};
use super::unary::UnaryOp;
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result};

/// y = z + b (per column), then y = act(y) in place; returns z when the activation's derivative needs it.
pub(crate) fn bias_act<T: Float>(
    y: &mut [T],
    cols: usize,
    bias: Option<&[T]>,
    act: Option<UnaryOp>,
    keep_z: Option<&mut Vec<T>>,
) {
    if let Some(b) = bias {
        crate::simd::vectorized(
            #[inline(always)]
            || {
                for row in y.chunks_exact_mut(cols) {
                    for (v, &bb) in row.iter_mut().zip(b) {
                        *v += bb;
                    }
                }
            },
        );
    }
    if let Some(op) = act {
        if let Some(z) = keep_z {
            z.extend_from_slice(y);
        }
        op.apply_in_place(y);
    }
}

/// dz = dy ⊙ act'(z), written into `dz`; z is `saved_z` when kept, else y stands in for it.
pub(crate) fn act_backward<T: Float>(dz: &mut [T], gy: &[T], y: &[T], saved_z: &[T], act: UnaryOp) {
    let x = if act.needs_input() { saved_z } else { y };
    act.deriv_slice(gy, x, y, dz, false);
}

/// gb[j] += Σ_rows dz[row, j]
pub(crate) fn add_column_sums<T: Float>(gb: &mut [T], dz: &[T], cols: usize) {
    crate::simd::vectorized(
        #[inline(always)]
        || {
            for row in dz.chunks_exact(cols) {
                for (g, &d) in gb.iter_mut().zip(row) {
                    *g += d;
                }
            }
        },
    )
}

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
        let mut y = self.pool.scratch(n * o);
        gemm(n, o, k, &mut y, Mat::rows(self.value(x), k), Mat::rows(self.value(w), o), false);
        let rg = self.requires_grad(x) || self.requires_grad(w) || b.is_some_and(|b| self.requires_grad(b));
        let keep = rg && self.is_recording() && act.is_some_and(|a| a.needs_input());
        let mut z = if keep { Some(self.pool.zeroed(0)) } else { None };
        bias_act(&mut y, o, b.map(|b| self.value(b)), act, z.as_mut());
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
        q.matmul_t(self.value(x), n, &mut y)?;
        bias_act(&mut y, o, b.map(|b| self.value(b)), act, None);
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
    gy: &[T],
) {
    let (n, k) = (ctx.shape(x).dim(0), ctx.shape(x).dim(1));
    let o = ctx.shape(w).dim(1);
    let mut tmp = Vec::new();
    let dz: &[T] = match act {
        None => gy,
        Some(a) => {
            tmp = ctx.pool.scratch(gy.len());
            act_backward(&mut tmp, gy, ctx.out(node), &ctx.aux_f[node], a);
            &tmp
        }
    };
    if let Some(b) = b
        && ctx.needs(b)
    {
        add_column_sums(ctx.grad(b), dz, o);
    }
    let (vx, vw) = (ctx.value(x), ctx.value(w));
    if ctx.needs(w) {
        let (gw, fresh) = ctx.grad_overwrite(w);
        gemm(k, o, n, gw, Mat::rows_t(vx, k), Mat::rows(dz, o), !fresh);
    }
    if ctx.needs(x) {
        let (gx, fresh) = ctx.grad_overwrite(x);
        gemm(n, k, o, gx, Mat::rows(dz, o), Mat::rows_t(vw, o), !fresh);
    }
    ctx.pool.put(tmp);
}
