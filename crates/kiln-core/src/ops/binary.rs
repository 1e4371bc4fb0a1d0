//! add, sub, mul, div with NumPy broadcasting. Backward sums each input's gradient over the axes it was
//! broadcast along.

use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, MAX_RANK, Result, Shape};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
    #[inline]
    pub fn apply<T: Float>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
    /// (∂y/∂a, ∂y/∂b)
    #[inline]
    pub fn partials<T: Float>(self, a: T, b: T) -> (T, T) {
        match self {
            BinaryOp::Add => (T::ONE, T::ONE),
            BinaryOp::Sub => (T::ONE, -T::ONE),
            BinaryOp::Mul => (b, a),
            BinaryOp::Div => (T::ONE / b, -a / (b * b)),
        }
    }
}

/// The broadcast result of two shapes, aligned on their last axes.
pub fn broadcast_shape(a: Shape, b: Shape, op: &str) -> Result<Shape> {
    let r = a.rank().max(b.rank());
    let mut out = [0usize; MAX_RANK];
    for (i, o) in out.iter_mut().enumerate().take(r) {
        let da = if i + a.rank() >= r { a.dim(i + a.rank() - r) } else { 1 };
        let db = if i + b.rank() >= r { b.dim(i + b.rank() - r) } else { 1 };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::Shape(format!("{op}: shapes {a} and {b} cannot be broadcast together")));
            }
        };
    }
    Shape::new(&out[..r])
}

impl<T: Float> Graph<T> {
    pub fn binary(&mut self, a: Var, b: Var, op: BinaryOp) -> Result<Var> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        let out = broadcast_shape(sa, sb, op.name())?;
        let mut y = self.out(out.numel());
        self.backend.binary(op, out, self.buf(a), sa, self.buf(b), sb, y.view_mut());
        let rg = self.requires_grad(a) || self.requires_grad(b);
        Ok(self.push(Op::Binary(a, b, op), out, y, rg))
    }

    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, BinaryOp::Add)
    }
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, BinaryOp::Sub)
    }
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, BinaryOp::Mul)
    }
    pub fn div(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, BinaryOp::Div)
    }
}

/// da += Σ_broadcast dy · ∂y/∂a, and likewise for b.
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Var, b: Var, op: BinaryOp, gy: Buf<T>) {
    let (out, be) = (ctx.nodes[node].shape, ctx.backend);
    let (sa, sb) = (ctx.shape(a), ctx.shape(b));
    let (va, vb) = (ctx.buf(a), ctx.buf(b));
    if ctx.needs(a) {
        be.binary_backward(op, false, out, gy, va, sa, vb, sb, ctx.grad_buf(a));
    }
    if ctx.needs(b) {
        be.binary_backward(op, true, out, gy, va, sa, vb, sb, ctx.grad_buf(b));
    }
}
