//! Movement ops: reshape (a view, no copy), permute, concat, slice, index-select.

use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, MAX_RANK, Result, Shape};

impl<T: Float> Graph<T> {
    /// Same values, new shape. One dimension may be `usize::MAX`, meaning "whatever is left".
    pub fn reshape(&mut self, a: Var, dims: &[usize]) -> Result<Var> {
        let s = self.shape(a);
        let known: usize = dims.iter().filter(|&&d| d != usize::MAX).product();
        let mut d = [0usize; MAX_RANK];
        if dims.len() > MAX_RANK {
            return Err(Error::Shape(format!("reshape: rank {} is more than {MAX_RANK}", dims.len())));
        }
        d[..dims.len()].copy_from_slice(dims);
        if let Some(i) = dims.iter().position(|&x| x == usize::MAX) {
            if known == 0 || !s.numel().is_multiple_of(known) {
                return Err(Error::Shape(format!("reshape: cannot reshape {s} to {dims:?}")));
            }
            d[i] = s.numel() / known;
        }
        let out = Shape::new(&d[..dims.len()])?;
        if out.numel() != s.numel() {
            return Err(Error::Shape(format!("reshape: cannot reshape {s} ({} values) to {out}", s.numel())));
        }
        let rg = self.requires_grad(a);
        Ok(self.push(Op::Reshape(a), out, Vec::new(), rg))
    }

    /// [n, d1, d2, ...] -> [n, d1·d2·...]
    pub fn flatten(&mut self, a: Var) -> Result<Var> {
        let s = self.shape(a);
        if s.rank() == 0 {
            return Err(Error::Shape("flatten: needs at least one axis".into()));
        }
        self.reshape(a, &[s.dim(0), usize::MAX])
    }

    /// Output axis i is input axis perm[i].
    pub fn permute(&mut self, a: Var, perm: &[usize]) -> Result<Var> {
        let s = self.shape(a);
        let mut seen = [false; MAX_RANK];
        if perm.len() != s.rank() || perm.iter().any(|&p| p >= s.rank() || std::mem::replace(&mut seen[p], true)) {
            return Err(Error::Shape(format!("permute: {perm:?} is not a permutation of the axes of {s}")));
        }
        let mut p = [0u8; MAX_RANK];
        let mut od = [0usize; MAX_RANK];
        for (i, &ax) in perm.iter().enumerate() {
            p[i] = ax as u8;
            od[i] = s.dim(ax);
        }
        let out = Shape::new(&od[..s.rank()])?;
        let mut y = self.out(out.numel());
        self.backend.permute(self.buf(a), s, p, y.view_mut());
        let rg = self.requires_grad(a);
        Ok(self.push(Op::Permute(a, p), out, y, rg))
    }

    /// Swaps two axes.
    pub fn transpose(&mut self, a: Var, d0: usize, d1: usize) -> Result<Var> {
        let r = self.shape(a).rank();
        if d0 >= r || d1 >= r {
            return Err(Error::Shape(format!("transpose: axes {d0}, {d1} out of range for {}", self.shape(a))));
        }
        let mut perm = [0usize; MAX_RANK];
        for (i, p) in perm.iter_mut().enumerate().take(r) {
            *p = i;
        }
        perm.swap(d0, d1);
        self.permute(a, &perm[..r])
    }

    /// Joins tensors along `axis`; all other axes must agree.
    pub fn concat(&mut self, xs: &[Var], axis: usize) -> Result<Var> {
        let Some(&first) = xs.first() else {
            return Err(Error::Invalid("concat: no inputs".into()));
        };
        let s0 = self.shape(first);
        s0.axis(axis, "concat")?;
        let mut total = 0;
        for &x in xs {
            let s = self.shape(x);
            if s.rank() != s0.rank() || (0..s.rank()).any(|d| d != axis && s.dim(d) != s0.dim(d)) {
                return Err(Error::Shape(format!("concat along axis {axis}: shapes {s0} and {s} do not fit")));
            }
            total += s.dim(axis);
        }
        let out = s0.with_dim(axis, total);
        let (outer, _, inner) = out.split_at_axis(axis);
        let mut y = self.out(out.numel());
        let mut ids = self.ipool.zeroed(0);
        let mut off = 0;
        for &x in xs {
            let n = self.shape(x).dim(axis);
            let (src, dst) = ((0, n * inner), (off * inner, total * inner));
            self.backend.copy_blocks(self.buf(x), src, y.view_mut(), dst, outer, n * inner, false);
            off += n;
            ids.push(x.0);
        }
        let rg = xs.iter().any(|&x| self.requires_grad(x));
        let v = self.push(Op::Concat(axis), out, y, rg);
        self.keep_aux_i(v, ids);
        Ok(v)
    }

    /// Elements start..end of `axis`.
    pub fn slice(&mut self, a: Var, axis: usize, start: usize, end: usize) -> Result<Var> {
        let s = self.shape(a);
        s.axis(axis, "slice")?;
        if start > end || end > s.dim(axis) {
            return Err(Error::Shape(format!("slice: range {start}..{end} out of bounds for axis {axis} of {s}")));
        }
        let len = end - start;
        let out = s.with_dim(axis, len);
        let (outer, n, inner) = s.split_at_axis(axis);
        let mut y = self.out(out.numel());
        let (src, dst) = ((start * inner, n * inner), (0, len * inner));
        self.backend.copy_blocks(self.buf(a), src, y.view_mut(), dst, outer, len * inner, false);
        let rg = self.requires_grad(a);
        Ok(self.push(Op::Slice(a, axis, start), out, y, rg))
    }

    /// Picks entries `indices` along `axis` (an embedding lookup is `index_select(table, 0, ids)`).
    /// The output has `indices.len()` entries along `axis`.
    pub fn index_select(&mut self, a: Var, axis: usize, indices: &[u32]) -> Result<Var> {
        let s = self.shape(a);
        s.axis(axis, "index_select")?;
        let (outer, n, inner) = s.split_at_axis(axis);
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= n) {
            return Err(Error::Shape(format!("index_select: index {bad} out of range for axis {axis} of {s}")));
        }
        let len = indices.len();
        let out = s.with_dim(axis, len);
        let mut y = self.out(out.numel());
        let idx = self.ipool.copied(indices);
        self.backend.gather(self.buf(a), Buf::Host(&idx), (outer, n, inner), y.view_mut());
        let rg = self.requires_grad(a);
        let v = self.push(Op::IndexSelect(a, axis), out, y, rg);
        self.keep_aux_i(v, idx);
        Ok(v)
    }
}

/// dx += dy (the same values in x's shape)
pub(crate) fn backward_reshape<T: Float>(ctx: &mut BackCtx<T>, a: Var, gy: Buf<T>) {
    if ctx.needs(a) {
        let (n, be) = (ctx.shape(a).numel(), ctx.backend);
        be.copy_blocks(gy, (0, 0), ctx.grad_buf(a), (0, 0), 1, n, true);
    }
}

/// dx += dy with the permutation undone
pub(crate) fn backward_permute<T: Float>(ctx: &mut BackCtx<T>, a: Var, perm: [u8; MAX_RANK], gy: Buf<T>) {
    if ctx.needs(a) {
        let (s, be) = (ctx.shape(a), ctx.backend);
        be.permute_backward(gy, s, perm, ctx.grad_buf(a));
    }
}

/// dxᵢ += dy's block of input i along `axis`
pub(crate) fn backward_concat<T: Float>(ctx: &mut BackCtx<T>, node: usize, axis: usize, gy: Buf<T>) {
    let (outer, total, inner) = ctx.nodes[node].shape.split_at_axis(axis);
    let be = ctx.backend;
    let mut off = 0;
    for &id in ctx.aux_i[node].host() {
        let x = Var(id);
        let n = ctx.shape(x).dim(axis);
        if ctx.needs(x) {
            let (src, dst) = ((off * inner, total * inner), (0, n * inner));
            be.copy_blocks(gy, src, ctx.grad_buf(x), dst, outer, n * inner, true);
        }
        off += n;
    }
}

/// dx[start..end along axis] += dy
pub(crate) fn backward_slice<T: Float>(
    ctx: &mut BackCtx<T>,
    node: usize,
    a: Var,
    axis: usize,
    start: usize,
    gy: Buf<T>,
) {
    if !ctx.needs(a) {
        return;
    }
    let len = ctx.nodes[node].shape.dim(axis);
    let ((outer, n, inner), be) = (ctx.shape(a).split_at_axis(axis), ctx.backend);
    let (src, dst) = ((0, len * inner), (start * inner, n * inner));
    be.copy_blocks(gy, src, ctx.grad_buf(a), dst, outer, len * inner, true);
}

/// dx[indices[k] along axis] += dy[k along axis]
pub(crate) fn backward_index_select<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Var, axis: usize, gy: Buf<T>) {
    if !ctx.needs(a) {
        return;
    }
    let (dims, be, idx) = (ctx.shape(a).split_at_axis(axis), ctx.backend, ctx.aux_i_buf(node));
    be.scatter_add(gy, idx, dims, ctx.grad_buf(a));
}
