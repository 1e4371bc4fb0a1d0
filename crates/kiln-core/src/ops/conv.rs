//! 2-D convolution, channels last (NHWC, Keras's default) with Keras's kernel layout [kh, kw, c_in, c_out].
//! Lowered to one matrix product over im2col patches; bias and activation are fused into its output.

use super::gemm::{Mat, gemm};
use super::linear::{act_backward, bias_act};
use super::unary::UnaryOp;
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

/// Window geometry shared by convolution and pooling.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
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
    pub fn new(
        x: Shape,
        k: (usize, usize),
        s: (usize, usize),
        padding: Padding,
        op: &str,
    ) -> Result<Window> {
        if x.rank() != 4 {
            return Err(Error::Shape(format!(
                "{op}: input must be [batch, height, width, channels], got {x}"
            )));
        }
        if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 {
            return Err(Error::Invalid(format!(
                "{op}: window {k:?} and strides {s:?} must be positive"
            )));
        }
        let (n, h, w, c) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3));
        let bad = || {
            Error::Shape(format!(
                "{op}: window {}x{} does not fit input {x} with valid padding",
                k.0, k.1
            ))
        };
        let (oh, pt) = out_size(h, k.0, s.0, padding).ok_or_else(bad)?;
        let (ow, pl) = out_size(w, k.1, s.1, padding).ok_or_else(bad)?;
        Ok(Window {
            n,
            h,
            w,
            c,
            kh: k.0,
            kw: k.1,
            sh: s.0,
            sw: s.1,
            pt,
            pl,
            oh,
            ow,
        })
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

/// cols[(n, oh, ow), (kh, kw, c)] = x[n, oh·sh + kh − pt, ow·sw + kw − pl, c], zero in the padding.
fn im2col<T: Float>(x: &[T], g: &Window, cols: &mut [T]) {
    let patch = g.patch();
    for n in 0..g.n {
        for oh in 0..g.oh {
            for ow in 0..g.ow {
                let row = &mut cols[((n * g.oh + oh) * g.ow + ow) * patch..][..patch];
                for kh in 0..g.kh {
                    let ih = Window::src(oh, kh, g.sh, g.pt, g.h);
                    for kw in 0..g.kw {
                        let dst = &mut row[(kh * g.kw + kw) * g.c..][..g.c];
                        match (ih, Window::src(ow, kw, g.sw, g.pl, g.w)) {
                            (Some(ih), Some(iw)) => {
                                dst.copy_from_slice(&x[((n * g.h + ih) * g.w + iw) * g.c..][..g.c])
                            }
                            _ => dst.fill(T::ZERO),
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of im2col: dx[...] += dcols[...] over every patch that read that input.
fn col2im<T: Float>(dcols: &[T], g: &Window, dx: &mut [T]) {
    let patch = g.patch();
    for n in 0..g.n {
        for oh in 0..g.oh {
            for ow in 0..g.ow {
                let row = &dcols[((n * g.oh + oh) * g.ow + ow) * patch..][..patch];
                for kh in 0..g.kh {
                    let Some(ih) = Window::src(oh, kh, g.sh, g.pt, g.h) else {
                        continue;
                    };
                    for kw in 0..g.kw {
                        let Some(iw) = Window::src(ow, kw, g.sw, g.pl, g.w) else {
                            continue;
                        };
                        let dst = &mut dx[((n * g.h + ih) * g.w + iw) * g.c..][..g.c];
                        for (d, &s) in dst.iter_mut().zip(&row[(kh * g.kw + kw) * g.c..][..g.c]) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

impl<T: Float> Graph<T> {
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
        let (sx, sw) = (self.shape(x), self.shape(w));
        if sw.rank() != 4 {
            return Err(Error::Shape(format!(
                "conv2d: kernel must be [kh, kw, c_in, c_out], got {sw}"
            )));
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
            return Err(Error::Shape(format!(
                "conv2d: bias {} does not fit {f} filters",
                self.shape(b)
            )));
        }
        let (m, k) = (win.rows(), win.patch());
        let mut cols = self.pool.zeroed(m * k);
        im2col(self.value(x), &win, &mut cols);
        let mut y = self.pool.zeroed(m * f);
        gemm(
            m,
            f,
            k,
            &mut y,
            Mat::rows(&cols, k),
            Mat::rows(self.value(w), f),
            false,
        );
        let rg = self.requires_grad(x)
            || self.requires_grad(w)
            || b.is_some_and(|b| self.requires_grad(b));
        let recording = rg && self.is_recording();
        // Saved for backward: the patches (for dw), then z when the activation's derivative needs it.
        let keep_cols = recording && self.requires_grad(w);
        let keep_z = recording && act.is_some_and(|a| a.needs_input());
        let mut saved = if keep_cols || keep_z {
            Some(std::mem::take(&mut cols))
        } else {
            None
        };
        if let Some(s) = saved.as_mut()
            && !keep_cols
        {
            s.clear();
        }
        bias_act(
            &mut y,
            f,
            b.map(|b| self.value(b)),
            act,
            if keep_z { saved.as_mut() } else { None },
        );
        self.pool.put(cols);
        let out = Shape::new(&[win.n, win.oh, win.ow, f])?;
        let v = self.push(Op::Conv2d(Conv2dArgs { x, w, b, act, win }), out, y, rg);
        if let Some(s) = saved {
            self.keep_aux_f(v, s);
        }
        Ok(v)
    }
}

/// dz = dy ⊙ act'(z); db += Σ dz; dw += colsᵀ · dz; dx += col2im(dz · wᵀ)
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Conv2dArgs, gy: &[T]) {
    let win = a.win;
    let (m, k) = (win.rows(), win.patch());
    let f = ctx.shape(a.w).dim(3);
    let saved = ctx.aux_f[node].as_slice();
    let has_cols = ctx.needs(a.w);
    let (cols, z) = if has_cols {
        saved.split_at(m * k)
    } else {
        (&saved[..0], saved)
    };
    let mut tmp = Vec::new();
    let dz: &[T] = match a.act {
        None => gy,
        Some(act) => {
            tmp = ctx.pool.zeroed(gy.len());
            act_backward(&mut tmp, gy, ctx.out(node), z, act);
            &tmp
        }
    };
    if let Some(b) = a.b
        && ctx.needs(b)
    {
        let gb = ctx.grad(b);
        for row in dz.chunks(f) {
            for (g, &d) in gb.iter_mut().zip(row) {
                *g += d;
            }
        }
    }
    if has_cols {
        gemm(
            k,
            f,
            m,
            ctx.grad(a.w),
            Mat::rows_t(cols, k),
            Mat::rows(dz, f),
            true,
        );
    }
    if ctx.needs(a.x) {
        let mut dcols = ctx.pool.zeroed(m * k);
        gemm(
            m,
            k,
            f,
            &mut dcols,
            Mat::rows(dz, f),
            Mat::rows_t(ctx.value(a.w), f),
            false,
        );
        col2im(&dcols, &win, ctx.grad(a.x));
        ctx.pool.put(dcols);
    }
    ctx.pool.put(tmp);
}
