//! Max and average pooling, NHWC. Max pooling records the argmax of each window as it goes, so its
//! backward is a scatter. The loops are the backend's (CPU: backend/cpu/pool.rs).

use super::conv::{Padding, Window};
use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Float, Graph, Result, Shape};

#[derive(Clone, Copy, Debug)]
pub struct PoolArgs {
    pub(crate) win: Window,
}

impl<T: Float> Graph<T> {
    /// y[n, oh, ow, c] = max over the window of x; `strides` defaults to the pool size in layers.
    pub fn max_pool2d(
        &mut self,
        x: Var,
        size: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Var> {
        let g = Window::new(self.shape(x), size, strides, padding, "max_pool2d")?;
        let out = Shape::new(&[g.n, g.oh, g.ow, g.c])?;
        let mut y = self.out(out.numel());
        let mut arg = self.out_idx(out.numel());
        self.backend.max_pool2d(&g, self.buf(x), y.view_mut(), arg.view_mut());
        let rg = self.requires_grad(x);
        let node = self.push(Op::MaxPool2d(x, PoolArgs { win: g }), out, y, rg);
        self.keep_aux_i(node, arg);
        Ok(node)
    }

    /// y[n, oh, ow, c] = mean over the window of x, counting only positions inside the input (as TensorFlow).
    pub fn avg_pool2d(
        &mut self,
        x: Var,
        size: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Var> {
        let g = Window::new(self.shape(x), size, strides, padding, "avg_pool2d")?;
        let out = Shape::new(&[g.n, g.oh, g.ow, g.c])?;
        let mut y = self.out(out.numel());
        self.backend.avg_pool2d(&g, self.buf(x), y.view_mut());
        let rg = self.requires_grad(x);
        Ok(self.push(Op::AvgPool2d(x, PoolArgs { win: g }), out, y, rg))
    }
}

/// dx[argmax] += dy
pub(crate) fn backward_max<T: Float>(ctx: &mut BackCtx<T>, node: usize, x: Var, a: PoolArgs, gy: Buf<T>) {
    if !ctx.needs(x) {
        return;
    }
    let (be, arg) = (ctx.backend, ctx.aux_i_buf(node));
    let (gx, fresh) = ctx.grad_overwrite_buf(x);
    be.max_pool2d_backward(&a.win, gy, arg, gx, fresh);
}

/// dx[i] += dy / count for every i in the window
pub(crate) fn backward_avg<T: Float>(ctx: &mut BackCtx<T>, x: Var, a: PoolArgs, gy: Buf<T>) {
    if ctx.needs(x) {
        let be = ctx.backend;
        be.avg_pool2d_backward(&a.win, gy, ctx.grad_buf(x));
    }
}
