//! Batched matrix product.

use crate::backend::{Buf, MatView};
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result, Shape};

/// (batch, m, k, n, whether b is shared by every batch)
fn dims(sa: Shape, sb: Shape) -> Result<(usize, usize, usize, usize, bool)> {
    if sa.rank() < 2 || sb.rank() < 2 {
        return Err(Error::Shape(format!("matmul needs two matrices (rank >= 2), got {sa} and {sb}")));
    }
    let (ra, rb) = (sa.rank(), sb.rank());
    let (m, k, k2, n) = (sa.dim(ra - 2), sa.dim(ra - 1), sb.dim(rb - 2), sb.dim(rb - 1));
    if k != k2 {
        return Err(Error::Shape(format!("matmul: inner dimensions differ: {sa} x {sb}")));
    }
    let batch: usize = sa.dims()[..ra - 2].iter().product();
    if rb == 2 {
        return Ok((batch, m, k, n, true));
    }
    if sa.dims()[..ra - 2] != sb.dims()[..rb - 2] {
        return Err(Error::Shape(format!("matmul: batch dimensions differ: {sa} x {sb}")));
    }
    Ok((batch, m, k, n, false))
}

impl<T: Float> Graph<T> {
    /// y[..., m, n] = a[..., m, k] · b[..., k, n]; `b` may be a single [k, n] matrix shared by every batch.
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        let (batch, m, k, n, shared) = dims(sa, sb)?;
        let out = sa.with_dim(sa.rank() - 1, n);
        let mut y = self.out(out.numel());
        let (va, vb) = (self.buf(a), self.buf(b));
        for i in 0..batch {
            let bi = if shared { 0 } else { i };
            let (ai, bi) = (MatView::rows(va, i * m * k, k), MatView::rows(vb, bi * k * n, n));
            self.backend.gemm(m, n, k, y.view_mut(), i * m * n, ai, bi, false);
        }
        let rg = self.requires_grad(a) || self.requires_grad(b);
        Ok(self.push(Op::MatMul(a, b), out, y, rg))
    }
}

/// da[i] += dy[i] · b[i]ᵀ ; db[i] += a[i]ᵀ · dy[i] (summed over the batch when b is shared)
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, a: Var, b: Var, gy: Buf<T>) {
    let (batch, m, k, n, shared) = dims(ctx.shape(a), ctx.shape(b)).expect("checked in forward");
    let (be, va, vb) = (ctx.backend, ctx.buf(a), ctx.buf(b));
    if ctx.needs(a) {
        for i in 0..batch {
            let bi = if shared { 0 } else { i };
            let (dy, bt) = (MatView::rows(gy, i * m * n, n), MatView::rows_t(vb, bi * k * n, n));
            be.gemm(m, k, n, ctx.grad_buf(a), i * m * k, dy, bt, true);
        }
    }
    if ctx.needs(b) {
        for i in 0..batch {
            let bi = if shared { 0 } else { i };
            let (at, dy) = (MatView::rows_t(va, i * m * k, k), MatView::rows(gy, i * m * n, n));
            be.gemm(k, n, m, ctx.grad_buf(b), bi * k * n, at, dy, true);
        }
    }
}
