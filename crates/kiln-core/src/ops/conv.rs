//! 2-D convolution, channels last (NHWC, Keras's default) with Keras's kernel layout [kh, kw, c_in, c_out]:
//! shapes, padding and window geometry here; the arithmetic is the backend's (CPU: backend/cpu/conv.rs,
//! im2col tiles that stay in cache).

use super::unary::UnaryOp;
use crate::backend::{Buf, Workspace};
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result, Shape};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: the output shrinks by kernel − 1.
    #[default]
    Valid,
    /// Zero padding so that output = ceil(input / stride), split as TensorFlow does (extra on the bottom/right).
    Same,
}

/// Output size and leading pad along one spatial axis.
pub fn out_size(input: usize, k: usize, stride: usize, padding: Padding) -> Option<(usize, usize)> {
    match padding {
        Padding::Valid => (input >= k).then(|| ((input - k) / stride + 1, 0)),
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = ((out - 1) * stride + k).saturating_sub(input);
            Some((out, total / 2))
        }
    }
}

/// Window geometry shared by convolution and pooling: input [n, h, w, c], window kh x kw, strides sh, sw,
/// leading padding pt (top), pl (left), output oh x ow.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Window {
    pub fn new(x: Shape, k: (usize, usize), s: (usize, usize), padding: Padding, op: &str) -> Result<Window> {
        if x.rank() != 4 {
            return Err(Error::Shape(format!("{op}: input must be [batch, height, width, channels], got {x}")));
        }
        if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 {
            return Err(Error::Invalid(format!("{op}: window {k:?} and strides {s:?} must be positive")));
        }
        let (n, h, w, c) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3));
        let bad = || Error::Shape(format!("{op}: window {}x{} does not fit input {x} with valid padding", k.0, k.1));
        let (oh, pt) = out_size(h, k.0, s.0, padding).ok_or_else(bad)?;
        let (ow, pl) = out_size(w, k.1, s.1, padding).ok_or_else(bad)?;
        Ok(Window { n, h, w, c, kh: k.0, kw: k.1, sh: s.0, sw: s.1, pt, pl, oh, ow })
    }

    /// Input row/column for output position `o`, kernel offset `k`, or None inside the padding.
    #[inline]
    pub fn src(o: usize, k: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
        let i = (o * stride + k).checked_sub(pad)?;
        (i < size).then_some(i)
    }

    pub fn rows(&self) -> usize {
        self.n * self.oh * self.ow
    }

    pub fn patch(&self) -> usize {
        self.kh * self.kw * self.c
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Conv2dArgs {
    pub(crate) x: Var,
    pub(crate) w: Var,
    pub(crate) b: Option<Var>,
    pub(crate) act: Option<UnaryOp>,
    pub(crate) win: Window,
}

impl<T: Float> Graph<T> {
    /// Checks a convolution's operands; returns its window and the number of filters.
    pub(crate) fn conv_geometry(
        &self,
        x: Var,
        w: Var,
        b: Option<Var>,
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<(Window, usize)> {
        let (sx, sw) = (self.shape(x), self.shape(w));
        if sw.rank() != 4 {
            return Err(Error::Shape(format!("conv2d: kernel must be [kh, kw, c_in, c_out], got {sw}")));
        }
        let win = Window::new(sx, (sw.dim(0), sw.dim(1)), strides, padding, "conv2d")?;
        if sw.dim(2) != win.c {
            return Err(Error::Shape(format!(
                "conv2d: input {sx} has {} channels but kernel {sw} expects {}",
                win.c,
                sw.dim(2)
            )));
        }
        let f = sw.dim(3);
        if let Some(b) = b
            && self.shape(b).dims() != [f]
        {
            return Err(Error::Shape(format!("conv2d: bias {} does not fit {f} filters", self.shape(b))));
        }
        Ok((win, f))
    }

    /// y[n, oh, ow, f] = act(Σ x[n, oh·s + kh − p, ow·s + kw − p, c] · w[kh, kw, c, f] + b[f])
    pub fn conv2d(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        strides: (usize, usize),
        padding: Padding,
        act: Option<UnaryOp>,
    ) -> Result<Var> {
        let (win, f) = self.conv_geometry(x, w, b, strides, padding)?;
        let mut y = self.out(win.rows() * f);
        let mut ws = std::mem::take(&mut self.pool);
        let bv = b.map(|b| self.buf(b));
        let y_buf = y.view_mut();
        self.backend.conv2d(&win, self.buf(x), self.buf(w), bv, act, y_buf, &mut Workspace(&mut ws));
        self.pool = ws;
        let rg = self.requires_grad(x) || self.requires_grad(w) || b.is_some_and(|b| self.requires_grad(b));
        let out = Shape::new(&[win.n, win.oh, win.ow, f])?;
        Ok(self.push(Op::Conv2d(Conv2dArgs { x, w, b, act, win }), out, y, rg))
    }
}

/// Per tile: cols = im2col(x); z = cols · w + b only when the activation needs it; dz = dy ⊙ act'(z);
/// db += Σ dz; dw += colsᵀ · dz; dx += col2im(dz · wᵀ) (the backend's tiles: CPU backend/cpu/conv.rs).
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Conv2dArgs, gy: Buf<T>) {
    conv_backward(ctx, node, a, None, gy)
}

/// The gradients of `conv2d` (`pool` None) or `conv2d_max_pool`: the backend adds dx into x's gradient and
/// writes dw and db into one buffer [k·f + f], added here into the parameters' gradients.
pub(crate) fn conv_backward<T: Float>(
    ctx: &mut BackCtx<T>,
    node: usize,
    a: Conv2dArgs,
    pool: Option<(usize, usize)>,
    gy: Buf<T>,
) {
    let f = ctx.shape(a.w).dim(3);
    let kf = a.win.patch() * f;
    let (need_x, need_w) = (ctx.needs(a.x), ctx.needs(a.w));
    let need_b = a.b.is_some_and(|b| ctx.needs(b));
    let (be, xv, wv, yv) = (ctx.backend, ctx.buf(a.x), ctx.buf(a.w), ctx.out_buf(node));
    let bv = a.b.map(|b| ctx.buf(b));
    let (arg, zs) = (ctx.aux_i_buf(node), ctx.aux_buf(node));
    let mut dwb = ctx.scratch(kf + f);
    dwb.zero();
    if need_x {
        // x's gradient comes from the graph's pool (the workspace below borrows the pool whole).
        ctx.grad_buf(a.x);
    }
    let mut ws = std::mem::take(&mut *ctx.pool);
    {
        let gx = if need_x { Some(ctx.grad_buf(a.x)) } else { None };
        let (dwb_buf, need, ws) = (dwb.view_mut(), (need_w, need_b), &mut Workspace(&mut ws));
        match pool {
            None => be.conv2d_backward(&a.win, xv, wv, bv, a.act, yv, gy, gx, dwb_buf, need, ws),
            Some(p) => {
                be.conv2d_max_pool_backward(&a.win, p, xv, wv, bv, a.act, yv, arg, zs, gy, gx, dwb_buf, need, ws)
            }
        }
    }
    *ctx.pool = ws;
    if need_w {
        be.copy_blocks(dwb.view().slice(0..kf), (0, 0), ctx.grad_buf(a.w), (0, 0), 1, kf, true);
    }
    if let Some(b) = a.b.filter(|_| need_b) {
        be.copy_blocks(dwb.view().slice(kf..kf + f), (0, 0), ctx.grad_buf(b), (0, 0), 1, f, true);
    }
    ctx.put(dwb);
}
