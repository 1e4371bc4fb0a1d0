//! softmax and log_softmax along one axis, computed stably (max subtracted first).

use crate::graph::{BackCtx, Op, Var};
use crate::{Float, Graph, Result};

/// Writes softmax (or log_softmax) of each lane of `x` viewed as [outer, n, inner] into `y`.
pub(crate) fn softmax_lanes<T: Float>(x: &[T], y: &mut [T], outer: usize, n: usize, inner: usize, log: bool) {
    for o in 0..outer {
        for j in 0..inner {
            let at = |k: usize| (o * n + k) * inner + j;
            let mut m = T::NEG_INFINITY;
            for k in 0..n {
                m = m.max(x[at(k)]);
            }
            let mut s = T::ZERO;
            for k in 0..n {
                let e = (x[at(k)] - m).exp();
                y[at(k)] = e;
                s += e;
            }
            if log {
                let ls = s.ln();
                for k in 0..n {
                    y[at(k)] = x[at(k)] - m - ls;
                }
            } else {
                let inv = T::ONE / s;
                for k in 0..n {
                    y[at(k)] *= inv;
                }
            }
        }
    }
}

impl<T: Float> Graph<T> {
    pub fn softmax(&mut self, a: Var, axis: usize) -> Result<Var> {
        self.softmax_impl(a, axis, false)
    }

    pub fn log_softmax(&mut self, a: Var, axis: usize) -> Result<Var> {
        self.softmax_impl(a, axis, true)
    }

    fn softmax_impl(&mut self, a: Var, axis: usize, log: bool) -> Result<Var> {
        let s = self.shape(a);
        s.axis(axis, if log { "log_softmax" } else { "softmax" })?;
        let (outer, n, inner) = s.split_at_axis(axis);
        let mut y = self.pool.scratch(s.numel());
        softmax_lanes(self.value(a), &mut y, outer, n, inner, log);
        let op = if log { Op::LogSoftmax(a, axis) } else { Op::Softmax(a, axis) };
        let rg = self.requires_grad(a);
        Ok(self.push(op, s, y, rg))
    }
}

/// dx = y ⊙ (dy − Σ dy⊙y)
pub(crate) fn backward_softmax<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Var, axis: usize, gy: &[T]) {
    if !ctx.needs(a) {
        return;
    }
    let (outer, n, inner) = ctx.shape(a).split_at_axis(axis);
    let y = ctx.out(node);
    let gx = ctx.grad(a);
    for o in 0..outer {
        for j in 0..inner {
            let at = |k: usize| (o * n + k) * inner + j;
            let dot: T = (0..n).map(|k| gy[at(k)] * y[at(k)]).sum();
            for k in 0..n {
                gx[at(k)] += y[at(k)] * (gy[at(k)] - dot);
            }
        }
    }
}

/// dx = dy − softmax ⊙ Σ dy, with softmax = exp(y)
pub(crate) fn backward_log_softmax<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Var, axis: usize, gy: &[T]) {
    if !ctx.needs(a) {
        return;
    }
    let (outer, n, inner) = ctx.shape(a).split_at_axis(axis);
    let y = ctx.out(node);
    let gx = ctx.grad(a);
    for o in 0..outer {
        for j in 0..inner {
            let at = |k: usize| (o * n + k) * inner + j;
            let s: T = (0..n).map(|k| gy[at(k)]).sum();
            for k in 0..n {
                gx[at(k)] += gy[at(k)] - y[at(k)].exp() * s;
            }
        }
    }
}
