//! softmax and log_softmax along one axis, computed stably (max subtracted first).

use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Float, Graph, Result};

impl<T: Float> Graph<T> {
    pub fn softmax(&mut self, a: Var, axis: usize) -> Result<Var> {
        self.softmax_impl(a, axis, false)
    }

    pub fn log_softmax(&mut self, a: Var, axis: usize) -> Result<Var> {
        self.softmax_impl(a, axis, true)
    }

    /// y = softmax(x) = exp(x − max) / Σ exp(x − max), or log_softmax(x) = x − max − log Σ exp(x − max),
    /// along `axis`.
    fn softmax_impl(&mut self, a: Var, axis: usize, log: bool) -> Result<Var> {
        let s = self.shape(a);
        s.axis(axis, if log { "log_softmax" } else { "softmax" })?;
        let mut y = self.out(s.numel());
        self.backend.softmax(self.buf(a), y.view_mut(), s.split_at_axis(axis), log);
        let op = if log { Op::LogSoftmax(a, axis) } else { Op::Softmax(a, axis) };
        let rg = self.requires_grad(a);
        Ok(self.push(op, s, y, rg))
    }
}

/// softmax: dx = y ⊙ (dy − Σ dy⊙y); log_softmax: dx = dy − exp(y) ⊙ Σ dy (exp(y) is the softmax)
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Var, axis: usize, log: bool, gy: Buf<T>) {
    if !ctx.needs(a) {
        return;
    }
    let (dims, be, y) = (ctx.shape(a).split_at_axis(axis), ctx.backend, ctx.out_buf(node));
    be.softmax_backward(gy, y, ctx.grad_buf(a), dims, log);
}
