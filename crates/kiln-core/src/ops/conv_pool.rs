//! conv2d → activation → max pooling in one op, for the common case of non-overlapping pooling windows:
//! only the pooled values, the position of each maximum (and z there, when the activation's derivative
//! needs it) are kept. The arithmetic is the backend's (CPU: backend/cpu/conv_pool.rs). `conv2d` followed
//! by `max_pool2d` is the reference it is tested against.

use super::conv::{Conv2dArgs, Padding};
use super::unary::UnaryOp;
use crate::backend::{Buf, Workspace};
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result, Shape};

impl<T: Float> Graph<T> {
    /// max_pool2d(conv2d(x, w, b, strides, padding, act), pool, pool, valid): windows `pool` with strides
    /// equal to their size. A trailing conv row or column that fills no whole window is dropped, as valid
    /// pooling does.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_max_pool(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        strides: (usize, usize),
        padding: Padding,
        act: Option<UnaryOp>,
        pool: (usize, usize),
    ) -> Result<Var> {
        let (win, f) = self.conv_geometry(x, w, b, strides, padding)?;
        let (ph, pw) = pool;
        if ph == 0 || pw == 0 || win.oh < ph || win.ow < pw {
            return Err(Error::Shape(format!("max_pool2d: window {ph}x{pw} does not fit {}x{}", win.oh, win.ow)));
        }
        let (poh, pow) = (win.oh / ph, win.ow / pw);
        let outs = win.n * poh * pow * f;
        let keep_z = act.is_some_and(|a| a.needs_input()) && self.is_recording();
        let mut y = self.out(outs);
        let mut arg = self.out_idx(outs);
        let mut zs = keep_z.then(|| self.out(outs));
        let mut ws = std::mem::take(&mut self.pool);
        let (xv, wv, bv) = (self.buf(x), self.buf(w), b.map(|b| self.buf(b)));
        let (y_buf, arg_buf, zs_buf) = (y.view_mut(), arg.view_mut(), zs.as_mut().map(|z| z.view_mut()));
        let ws_ref = &mut Workspace(&mut ws);
        self.backend.conv2d_max_pool(&win, pool, xv, wv, bv, act, y_buf, arg_buf, zs_buf, ws_ref);
        self.pool = ws;
        let rg = self.requires_grad(x) || self.requires_grad(w) || b.is_some_and(|b| self.requires_grad(b));
        let out = Shape::new(&[win.n, poh, pow, f])?;
        let node = self.push(Op::Conv2dMaxPool(Conv2dArgs { x, w, b, act, win }, pool), out, y, rg);
        self.keep_aux_i(node, arg);
        if let Some(zs) = zs {
            self.keep_aux_f(node, zs);
        }
        Ok(node)
    }
}

/// dz is zero except at each window's maximum, where it is dy ⊙ act'(z); then per tile, as in conv2d:
/// db += Σ dz; dw += colsᵀ · dz; dx += col2im(dz · wᵀ).
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Conv2dArgs, pool: (usize, usize), gy: Buf<T>) {
    super::conv::conv_backward(ctx, node, a, Some(pool), gy)
}
