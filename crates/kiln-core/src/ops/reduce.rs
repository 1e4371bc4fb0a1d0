//! sum, mean and max over one axis or over everything.

use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Float, Graph, Result, Shape};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
}

/// (outer, n, inner) of the reduction: the input is viewed as [outer, n, inner] and reduced over n.
fn split(s: Shape, axis: Option<usize>) -> (usize, usize, usize) {
    match axis {
        Some(ax) => s.split_at_axis(ax),
        None => (1, s.numel(), 1),
    }
}

impl<T: Float> Graph<T> {
    /// Reduces `a` over `axis` (every axis when `None`); `keepdim` keeps the reduced axis with size 1.
    pub fn reduce(&mut self, a: Var, op: ReduceOp, axis: Option<usize>, keepdim: bool) -> Result<Var> {
        let s = self.shape(a);
        if let Some(ax) = axis {
            s.axis(ax, "reduce")?;
        }
        let (outer, n, inner) = split(s, axis);
        let out_shape = match (axis, keepdim) {
            (None, false) => Shape::scalar(),
            (None, true) => Shape::new(&[1; crate::MAX_RANK][..s.rank()])?,
            (Some(ax), true) => s.with_dim(ax, 1),
            (Some(ax), false) => {
                let mut d = [0usize; crate::MAX_RANK];
                let dims = s.dims();
                d[..ax].copy_from_slice(&dims[..ax]);
                d[ax..s.rank() - 1].copy_from_slice(&dims[ax + 1..]);
                Shape::new(&d[..s.rank() - 1])?
            }
        };
        let mut y = self.out(outer * inner);
        let mut arg = if op == ReduceOp::Max { self.out_idx(outer * inner) } else { Vec::new().into() };
        let arg_buf = (op == ReduceOp::Max).then_some(arg.view_mut());
        self.backend.reduce(op, self.buf(a), y.view_mut(), arg_buf, (outer, n, inner));
        let rg = self.requires_grad(a);
        let v = self.push(Op::Reduce(a, op, axis), out_shape, y, rg);
        if op == ReduceOp::Max {
            self.keep_aux_i(v, arg);
        }
        Ok(v)
    }

    pub fn sum(&mut self, a: Var, axis: Option<usize>, keepdim: bool) -> Result<Var> {
        self.reduce(a, ReduceOp::Sum, axis, keepdim)
    }
    pub fn mean(&mut self, a: Var, axis: Option<usize>, keepdim: bool) -> Result<Var> {
        self.reduce(a, ReduceOp::Mean, axis, keepdim)
    }
    pub fn max(&mut self, a: Var, axis: Option<usize>, keepdim: bool) -> Result<Var> {
        self.reduce(a, ReduceOp::Max, axis, keepdim)
    }
}

/// sum: dx = dy broadcast; mean: dy / n broadcast; max: dy to the position of the maximum.
pub(crate) fn backward<T: Float>(
    ctx: &mut BackCtx<T>,
    node: usize,
    a: Var,
    op: ReduceOp,
    axis: Option<usize>,
    gy: Buf<T>,
) {
    if !ctx.needs(a) {
        return;
    }
    let (dims, be, arg) = (split(ctx.shape(a), axis), ctx.backend, ctx.aux_i_buf(node));
    be.reduce_backward(op, gy, arg, ctx.grad_buf(a), dims);
}
