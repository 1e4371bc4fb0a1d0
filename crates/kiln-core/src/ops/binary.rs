//! add, sub, mul, div with NumPy broadcasting. Backward sums each input's gradient over the axes it was
//! broadcast along.

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
    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
    #[inline]
    fn apply<T: Float>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
    /// (∂y/∂a, ∂y/∂b)
    #[inline]
    fn partials<T: Float>(self, a: T, b: T) -> (T, T) {
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

/// Calls `f(i, ia, ib)` for every output element `i` and the elements of `a` and `b` it reads.
fn for_each_broadcast(out: Shape, a: Shape, b: Shape, mut f: impl FnMut(usize, usize, usize)) {
    let n = out.numel();
    if a == b {
        (0..n).for_each(|i| f(i, i, i));
        return;
    }
    let (na, nb) = (a.numel(), b.numel());
    if na == n && out.dims().ends_with(b.dims()) {
        (0..n).for_each(|i| f(i, i, i % nb));
        return;
    }
    if nb == n && out.dims().ends_with(a.dims()) {
        (0..n).for_each(|i| f(i, i % na, i));
        return;
    }
    let r = out.rank();
    let strides = |s: Shape| {
        let st = s.strides();
        let mut res = [0usize; MAX_RANK];
        for i in 0..s.rank() {
            if s.dim(i) != 1 {
                res[i + r - s.rank()] = st[i];
            }
        }
        res
    };
    let (sa, sb) = (strides(a), strides(b));
    let mut idx = [0usize; MAX_RANK];
    let (mut ia, mut ib) = (0usize, 0usize);
    for i in 0..n {
        f(i, ia, ib);
        for d in (0..r).rev() {
            idx[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if idx[d] < out.dim(d) {
                break;
            }
            ia -= sa[d] * idx[d];
            ib -= sb[d] * idx[d];
            idx[d] = 0;
        }
    }
}

impl<T: Float> Graph<T> {
    pub fn binary(&mut self, a: Var, b: Var, op: BinaryOp) -> Result<Var> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        let out = broadcast_shape(sa, sb, op.name())?;
        let mut y = self.pool.scratch(out.numel());
        let (va, vb) = (self.value(a), self.value(b));
        for_each_broadcast(out, sa, sb, |i, ia, ib| y[i] = op.apply(va[ia], vb[ib]));
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
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Var, b: Var, op: BinaryOp, gy: &[T]) {
    let out = ctx.nodes[node].shape;
    let (sa, sb) = (ctx.shape(a), ctx.shape(b));
    let (va, vb) = (ctx.value(a), ctx.value(b));
    if ctx.needs(a) {
        let ga = ctx.grad(a);
        for_each_broadcast(out, sa, sb, |i, ia, ib| ga[ia] += gy[i] * op.partials(va[ia], vb[ib]).0);
    }
    if ctx.needs(b) {
        let gb = ctx.grad(b);
        for_each_broadcast(out, sa, sb, |i, ia, ib| gb[ib] += gy[i] * op.partials(va[ia], vb[ib]).1);
    }
}
