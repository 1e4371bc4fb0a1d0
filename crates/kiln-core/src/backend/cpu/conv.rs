//! 2-D convolution on the CPU, NHWC with kernels [kh, kw, c_in, c_out] (geometry in ops/conv.rs). Lowered
//! to matrix products over im2col patches, done in tiles of output rows small enough to stay in cache: per
//! tile, the patches are gathered, multiplied, and bias + activation applied before moving on, so the
//! full-size output is written once. Images are split across threads. Backward gathers each tile's patches
//! again from the (small) input rather than keeping them all from the forward pass.

use super::gemm::{Mat, gemm_serial};
use super::{act_backward, add_column_sums, bias_act};
use crate::Float;
use crate::backend::Workspace;
use crate::ops::{UnaryOp, Window};
use crate::par::{for_parts, parts_for};

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

/// y = act(conv(x, w) + b) (see `Backend::conv2d`).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward<T: Float>(
    win: &Window,
    xv: &[T],
    wv: &[T],
    bv: Option<&[T]>,
    act: Option<UnaryOp>,
    y: &mut [T],
    ws: &mut Workspace<T>,
) {
    let win = *win;
    let f = wv.len() / win.patch();
    let (k, per_image, tile) = (win.patch(), win.oh * win.ow, tile_rows(&win, f));
    let parts = parts_for(win.n, per_image * k * f);
    let mut scratch = ws.scratch(parts * tile * k);
    for_parts(win.n, parts, y, per_image * f, &mut scratch, tile * k, &|images, y, cols| {
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
    ws.put(scratch);
}

/// Per tile: cols = im2col(x); z = cols · w + b only when the activation needs it; dz = dy ⊙ act'(z);
/// db += Σ dz; dw += colsᵀ · dz; dx += col2im(dz · wᵀ). Each thread sums db and dw privately first.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Float>(
    g: &Window,
    xv: &[T],
    wv: &[T],
    bv: Option<&[T]>,
    act: Option<UnaryOp>,
    yv: &[T],
    gy: &[T],
    gx: Option<&mut [T]>,
    dwb: &mut [T],
    (need_w, need_b): (bool, bool),
    ws: &mut Workspace<T>,
) {
    let g = *g;
    let (k, per_image) = (g.patch(), g.oh * g.ow);
    let f = wv.len() / g.patch();
    let tile = tile_rows(&g, f);
    let need_x = gx.is_some();
    let need_z = act.is_some_and(|act| act.needs_input());
    // Scratch per part: cols, z, dz and dcols tiles.
    backward_by_images(&g, f, gx, dwb, tile * (2 * k + 2 * f), ws, &|images, gx, dw, db, scratch| {
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
            let dzt: &[T] = match act {
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
/// scratch; the partials are then added into `dwb` ([dw, db]).
pub(super) fn backward_by_images<T: Float>(
    g: &Window,
    f: usize,
    gx: Option<&mut [T]>,
    dwb: &mut [T],
    scratch_len: usize,
    ws: &mut Workspace<T>,
    body: &TileBody<'_, T>,
) {
    let g = *g;
    let kf = g.patch() * f;
    let parts = parts_for(g.n, g.oh * g.ow * kf * 2);
    let acc_len = kf + f + scratch_len;
    let mut acc = ws.zeroed(parts * acc_len);
    let need_x = gx.is_some();
    let mut no_dx: Vec<T> = Vec::new();
    let gx: &mut [T] = gx.unwrap_or(&mut no_dx);
    let img_len = if need_x { g.h * g.w * g.c } else { 0 };
    for_parts(g.n, parts, gx, img_len, &mut acc, acc_len, &|images, gx, acc| {
        let (dw, rest) = acc.split_at_mut(kf);
        let (db, scratch) = rest.split_at_mut(f);
        body(images, gx, dw, db, scratch)
    });
    for part in acc.chunks(acc_len) {
        for (d, &s) in dwb.iter_mut().zip(&part[..kf + f]) {
            *d += s;
        }
    }
    ws.put(acc);
}
