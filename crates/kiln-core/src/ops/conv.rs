//! 2-D convolution, channels last (NHWC, Keras's default) with Keras's kernel layout [kh, kw, c_in, c_out].
//! Lowered to matrix products over im2col patches, done in tiles of output rows small enough to stay in
//! cache: per tile, the patches are gathered, multiplied, and bias + activation applied before moving on,
//! so the full-size output is written once. Images are split across threads. Backward gathers each tile's
//! patches again from the (small) input rather than keeping them all from the forward pass.

use super::gemm::{Mat, gemm_serial};
use super::linear::{act_backward, add_column_sums, bias_act};
use super::unary::UnaryOp;
use crate::graph::{BackCtx, Op, Var};
use crate::par::{for_parts, parts_for};
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

/// Output rows per tile: the tile's patches and outputs take about 256 KiB.
pub(crate) fn tile_rows(g: &Window, f: usize) -> usize {
    (65_536 / (g.patch() + f)).max(1)
}

/// cols[r − r0, (kh, kw, c)] for output rows r in r0..r1, row r = (n, oh, ow), reading x[n, oh·sh + kh − pt,
/// ow·sw + kw − pl, c], zero in the padding. `x` starts at image `n0`.
pub(crate) fn im2col<T: Float>(x: &[T], g: &Window, n0: usize, r0: usize, r1: usize, cols: &mut [T]) {
    let patch = g.patch();
    let run = g.kw * g.c;
    let per_image = g.oh * g.ow;
    for r in r0..r1 {
        let (n, rem) = (r / per_image - n0, r % per_image);
        let (oh, ow) = (rem / g.ow, rem % g.ow);
        let row = &mut cols[(r - r0) * patch..][..patch];
        // In NHWC one kernel row (kw pixels × c channels) is contiguous in the input.
        let iw0 = (ow * g.sw).checked_sub(g.pl).filter(|&i| i + g.kw <= g.w);
        for kh in 0..g.kh {
            let ih = Window::src(oh, kh, g.sh, g.pt, g.h);
            if let (Some(ih), Some(iw0)) = (ih, iw0) {
                copy_short(&mut row[kh * run..][..run], &x[((n * g.h + ih) * g.w + iw0) * g.c..][..run]);
                continue;
            }
            for kw in 0..g.kw {
                let dst = &mut row[(kh * g.kw + kw) * g.c..][..g.c];
                match (ih, Window::src(ow, kw, g.sw, g.pl, g.w)) {
                    (Some(ih), Some(iw)) => copy_short(dst, &x[((n * g.h + ih) * g.w + iw) * g.c..][..g.c]),
                    _ => dst.fill(T::ZERO),
                }
            }
        }
    }
}

/// The adjoint of im2col: dx[...] += dcols[...] for output rows r0..r1. `dx` starts at image `n0`.
pub(crate) fn col2im<T: Float>(dcols: &[T], g: &Window, n0: usize, r0: usize, r1: usize, dx: &mut [T]) {
    let patch = g.patch();
    let per_image = g.oh * g.ow;
    for r in r0..r1 {
        let (n, rem) = (r / per_image - n0, r % per_image);
        let (oh, ow) = (rem / g.ow, rem % g.ow);
        let row = &dcols[(r - r0) * patch..][..patch];
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

/// copy_from_slice, without a memcpy call for the few-element runs of one-channel images.
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    if dst.len() <= 16 {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    } else {
        dst.copy_from_slice(src);
    }
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
        let (k, per_image, tile) = (win.patch(), win.oh * win.ow, tile_rows(&win, f));
        let parts = parts_for(win.n, per_image * k * f);
        let mut y = self.pool.scratch(win.rows() * f);
        let mut scratch = self.pool.scratch(parts * tile * k);
        let (xv, wv, bv) = (self.value(x), self.value(w), b.map(|b| self.value(b)));
        for_parts(win.n, parts, &mut y, per_image * f, &mut scratch, tile * k, &|images, y, cols| {
            let (r_start, r_end) = (images.start * per_image, images.end * per_image);
            let xs = &xv[images.start * win.h * win.w * win.c..];
            for r0 in (r_start..r_end).step_by(tile) {
                let r1 = (r0 + tile).min(r_end);
                im2col(xs, &win, images.start, r0, r1, cols);
                let yt = &mut y[(r0 - r_start) * f..(r1 - r_start) * f];
                gemm_serial(r1 - r0, f, k, yt, Mat::rows(cols, k), Mat::rows(wv, f), false);
                bias_act(yt, f, bv, act, None);
            }
        });
        self.pool.put(scratch);
        let rg = self.requires_grad(x) || self.requires_grad(w) || b.is_some_and(|b| self.requires_grad(b));
        let out = Shape::new(&[win.n, win.oh, win.ow, f])?;
        Ok(self.push(Op::Conv2d(Conv2dArgs { x, w, b, act, win }), out, y, rg))
    }
}

/// Per tile: cols = im2col(x); z = cols · w + b only when the activation needs it; dz = dy ⊙ act'(z);
/// db += Σ dz; dw += colsᵀ · dz; dx += col2im(dz · wᵀ). Each thread sums db and dw privately first.
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, a: Conv2dArgs, gy: &[T]) {
    let g = a.win;
    let (k, per_image) = (g.patch(), g.oh * g.ow);
    let f = ctx.shape(a.w).dim(3);
    let tile = tile_rows(&g, f);
    let (need_x, need_w) = (ctx.needs(a.x), ctx.needs(a.w));
    let need_b = a.b.is_some_and(|b| ctx.needs(b));
    let need_z = a.act.is_some_and(|act| act.needs_input());
    let (xv, wv, yv) = (ctx.value(a.x), ctx.value(a.w), ctx.out(node));
    let bv = a.b.map(|b| ctx.value(b));
    // Scratch per part: cols, z, dz and dcols tiles.
    backward_by_images(ctx, &a, f, tile * (2 * k + 2 * f), &|images, gx, dw, db, scratch| {
        let (cols, rest) = scratch.split_at_mut(tile * k);
        let (z, rest) = rest.split_at_mut(tile * f);
        let (dz, dcols) = rest.split_at_mut(tile * f);
        let xs = &xv[images.start * g.h * g.w * g.c..];
        for r0 in (images.start * per_image..images.end * per_image).step_by(tile) {
            let r1 = (r0 + tile).min(images.end * per_image);
            let rows = r1 - r0;
            let gyt = &gy[r0 * f..r1 * f];
            if need_w || need_z {
                im2col(xs, &g, images.start, r0, r1, cols);
            }
            let dzt: &[T] = match a.act {
                None => gyt,
                Some(act) => {
                    let zt = &mut z[..rows * f];
                    if need_z {
                        gemm_serial(rows, f, k, zt, Mat::rows(cols, k), Mat::rows(wv, f), false);
                        bias_act(zt, f, bv, None, None);
                    }
                    act_backward(&mut dz[..rows * f], gyt, &yv[r0 * f..r1 * f], zt, act);
                    &dz[..rows * f]
                }
            };
            if need_b {
                add_column_sums(db, dzt, f);
            }
            let dx = need_x.then_some(&mut *gx);
            tile_grads(&g, images.start, r0, r1, dzt, cols, wv, need_w.then_some(&mut *dw), dx, dcols);
        }
    });
}

/// The weight and input gradients of one tile of output rows r0..r1 from its dz [rows, f] and patches:
/// dw += colsᵀ · dz; dx += col2im(dz · wᵀ) (dx starts at image `n0`; `dcols` is scratch).
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_grads<T: Float>(
    g: &Window,
    n0: usize,
    r0: usize,
    r1: usize,
    dz: &[T],
    cols: &[T],
    w: &[T],
    dw: Option<&mut [T]>,
    dx: Option<&mut [T]>,
    dcols: &mut [T],
) {
    let (rows, k) = (r1 - r0, g.patch());
    let f = dz.len() / rows;
    if let Some(dw) = dw {
        gemm_serial(k, f, rows, dw, Mat::rows_t(&cols[..rows * k], k), Mat::rows(dz, f), true);
    }
    if let Some(dx) = dx {
        let dc = &mut dcols[..rows * k];
        gemm_serial(rows, k, f, dc, Mat::rows(dz, f), Mat::rows_t(w, f), false);
        col2im(dc, g, n0, r0, r1, dx);
    }
}

/// One part's work in `backward_by_images`: (images, dx, partial dw, partial db, scratch).
pub(crate) type TileBody<'a, T> = dyn Fn(std::ops::Range<usize>, &mut [T], &mut [T], &mut [T], &mut [T]) + Sync + 'a;

/// The skeleton both convolution backwards share: images split across threads; each part gets its images'
/// slice of dx (empty when x needs no gradient), private partial dw (k·f) and db (f), and `scratch_len` of
/// scratch; the partials are then added into the parameters' gradients.
pub(crate) fn backward_by_images<T: Float>(
    ctx: &mut BackCtx<T>,
    a: &Conv2dArgs,
    f: usize,
    scratch_len: usize,
    body: &TileBody<'_, T>,
) {
    let g = a.win;
    let kf = g.patch() * f;
    let parts = parts_for(g.n, g.oh * g.ow * kf * 2);
    let acc_len = kf + f + scratch_len;
    let mut acc = ctx.pool.zeroed(parts * acc_len);
    let need_x = ctx.needs(a.x);
    let mut no_dx: Vec<T> = Vec::new();
    let gx: &mut [T] = if need_x { ctx.grad(a.x) } else { &mut no_dx };
    let img_len = if need_x { g.h * g.w * g.c } else { 0 };
    for_parts(g.n, parts, gx, img_len, &mut acc, acc_len, &|images, gx, acc| {
        let (dw, rest) = acc.split_at_mut(kf);
        let (db, scratch) = rest.split_at_mut(f);
        body(images, gx, dw, db, scratch)
    });
    for part in acc.chunks(acc_len) {
        if ctx.needs(a.w) {
            for (d, &s) in ctx.grad(a.w).iter_mut().zip(&part[..kf]) {
                *d += s;
            }
        }
        if let Some(b) = a.b.filter(|&b| ctx.needs(b)) {
            for (d, &s) in ctx.grad(b).iter_mut().zip(&part[kf..kf + f]) {
                *d += s;
            }
        }
    }
    ctx.pool.put(acc);
}
