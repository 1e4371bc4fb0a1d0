//! conv2d → activation → max pooling in one pass on the CPU, for non-overlapping pooling windows. Each tile
//! of whole pooling rows is convolved and pooled while in cache, so the convolution's full output is never
//! written to memory. Backward rebuilds each tile's patches and routes every pooled gradient to its
//! maximum's position. With AVX2 + FMA and small kernels, `conv_pool_direct.rs` does both without patches.

use super::bias_act;
use super::conv::{backward_by_images, im2col, tile_grads, tile_rows};
use super::conv_pool_direct as direct;
use super::gemm::{Mat, gemm_serial};
use crate::Float;
use crate::backend::Workspace;
use crate::ops::{UnaryOp, Window};
use crate::par::{Disjoint, for_parts, parts_for};

/// y = max over each window of act(conv + b), arg = where, zs = z there (see `Backend::conv2d_max_pool`).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward<T: Float>(
    win: &Window,
    (ph, pw): (usize, usize),
    xv: &[T],
    wv: &[T],
    bv: Option<&[T]>,
    act: Option<UnaryOp>,
    y: &mut [T],
    arg: &mut [u32],
    zs: Option<&mut [T]>,
    ws: &mut Workspace<T>,
) {
    let win = *win;
    let pool = (ph, pw);
    let f = wv.len() / win.patch();
    let (poh, pow) = (win.oh / ph, win.ow / pw);
    let k = win.patch();
    // A tile is `band` pooled rows of one image: band·ph whole conv rows, contiguous in (n, oh, ow).
    let band = (tile_rows(&win, f) / (ph * win.ow)).max(1);
    let tile = band * ph * win.ow;
    let out_img = poh * pow * f;
    // The patches buffer doubles as the activation buffer when z is kept, so it holds max(k, f) per row.
    let cols_len = tile * k.max(f);
    let parts = parts_for(win.n, win.oh * win.ow * k * f);
    let mut no_zs: Vec<T> = Vec::new();
    let keep_z = zs.is_some();
    let zs: &mut [T] = zs.unwrap_or(&mut no_zs);
    let direct = direct::applies::<T>(&win, f, pool);
    // Patch tiles are for the tiled path only.
    let mut scratch = if direct { Vec::new() } else { ws.scratch(parts * (cols_len + tile * f)) };
    let (args, zsd) = (Disjoint::new(arg), Disjoint::new(zs));
    if direct {
        let img = win.h * win.w * win.c;
        for_parts(win.n, parts, y, out_img, &mut [0u8], 0, &|imgs, y, _| {
            let outs = imgs.start * out_img..imgs.end * out_img;
            // SAFETY: each part writes the entries of its own images only.
            let a = unsafe { args.part(outs.clone()) };
            let zk = if keep_z { unsafe { zsd.part(outs) } } else { &mut [][..] };
            let xs = &xv[imgs.start * img..imgs.end * img];
            direct::forward(&win, pool, imgs.start, imgs.end, xs, wv, bv, act, y, a, zk);
        });
    } else {
        for_parts(win.n, parts, y, out_img, &mut scratch, cols_len + tile * f, &|imgs, y, buf| {
            let (cols, z) = buf.split_at_mut(cols_len);
            let xs = &xv[imgs.start * win.h * win.w * win.c..];
            // SAFETY: each part writes the entries of its own images only.
            let a = unsafe { args.part(imgs.start * out_img..imgs.end * out_img) };
            let zk = if keep_z { unsafe { zsd.part(imgs.start * out_img..imgs.end * out_img) } } else { &mut [][..] };
            for n in imgs.clone() {
                for p0 in (0..poh).step_by(band) {
                    let p1 = (p0 + band).min(poh);
                    let r0 = (n * win.oh + p0 * ph) * win.ow;
                    let r1 = (n * win.oh + p1 * ph) * win.ow;
                    let rows = r1 - r0;
                    im2col(xs, &win, imgs.start, r0, r1, cols);
                    let zt = &mut z[..rows * f];
                    gemm_serial(rows, f, k, zt, Mat::rows(cols, k), Mat::rows(wv, f), false);
                    bias_act(zt, f, bv, None, None);
                    // y = act(z) over the tile; z itself survives (in `yt`'s place) only when needed.
                    let yt: &mut [T] = match act {
                        Some(op) if keep_z => {
                            let yt = &mut cols[..rows * f];
                            op.apply_slice(zt, yt);
                            yt
                        }
                        Some(op) => {
                            op.apply_in_place(zt);
                            zt
                        }
                        None => zt,
                    };
                    let yt: &[T] = yt;
                    pool_tile(yt, &win, (ph, pw), pow, n, imgs.start, p0, p1, r0, y, a);
                    if keep_z {
                        for o in (((n - imgs.start) * poh + p0) * pow * f)..(((n - imgs.start) * poh + p1) * pow * f) {
                            zk[o] = z[a[o] as usize - r0 * f];
                        }
                    }
                }
            }
        });
    }
    ws.put(scratch);
}

/// Max over each window of the tile `yt` (conv rows r0.., channels last) into `y` and `arg` (which start at
/// image `n0`), for pooled rows p0..p1 of image `n`. Channels are the inner loop, so it vectorizes.
#[allow(clippy::too_many_arguments)]
fn pool_tile<T: Float>(
    yt: &[T],
    g: &Window,
    (ph, pw): (usize, usize),
    pow: usize,
    n: usize,
    n0: usize,
    p0: usize,
    p1: usize,
    r0: usize,
    y: &mut [T],
    arg: &mut [u32],
) {
    let f = yt.len() / (((p1 - p0) * ph) * g.ow);
    let poh = g.oh / ph;
    crate::simd::vectorized(
        #[inline(always)]
        || {
            for pr in p0..p1 {
                for pc in 0..pow {
                    let o = (((n - n0) * poh + pr) * pow + pc) * f;
                    let (ys, args) = (&mut y[o..o + f], &mut arg[o..o + f]);
                    for i in 0..ph {
                        for j in 0..pw {
                            let r = (n * g.oh + pr * ph + i) * g.ow + pc * pw + j;
                            let src = &yt[(r - r0) * f..(r - r0) * f + f];
                            let base = (r * f) as u32;
                            if i == 0 && j == 0 {
                                ys.copy_from_slice(src);
                                for (ch, a) in args.iter_mut().enumerate() {
                                    *a = base + ch as u32;
                                }
                                continue;
                            }
                            for (ch, ((b, a), &v)) in ys.iter_mut().zip(args.iter_mut()).zip(src).enumerate() {
                                let take = v > *b;
                                *b = if take { v } else { *b };
                                *a = if take { base + ch as u32 } else { *a };
                            }
                        }
                    }
                }
            }
        },
    )
}

/// dz is zero except at each window's maximum, where it is dy ⊙ act'(z); then per tile, as in conv2d:
/// db += Σ dz; dw += colsᵀ · dz; dx += col2im(dz · wᵀ).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Float>(
    g: &Window,
    pool: (usize, usize),
    xv: &[T],
    wv: &[T],
    act: Option<UnaryOp>,
    yv: &[T],
    arg: &[u32],
    zs: &[T],
    gy: &[T],
    gx: Option<&mut [T]>,
    dwb: &mut [T],
    (need_w, need_b): (bool, bool),
    ws: &mut Workspace<T>,
) {
    let g = *g;
    let (ph, pw) = pool;
    let (poh, pow) = (g.oh / ph, g.ow / pw);
    let k = g.patch();
    let f = wv.len() / k;
    let band = (tile_rows(&g, f) / (ph * g.ow)).max(1);
    let tile = band * ph * g.ow;
    let need_x = gx.is_some();
    if !need_x && direct::applies::<T>(&g, f, pool) {
        let (img, out_img) = (g.h * g.w * g.c, poh * pow * f);
        backward_by_images(&g, f, gx, dwb, out_img + direct::q_len(&g), ws, &|imgs, _, dw, db, scratch| {
            let (d, q) = scratch.split_at_mut(out_img);
            for n in imgs {
                let outs = n * out_img..(n + 1) * out_img;
                match act {
                    None => d.copy_from_slice(&gy[outs.clone()]),
                    Some(op) => {
                        let at = if op.needs_input() { &zs[outs.clone()] } else { &yv[outs.clone()] };
                        op.deriv_slice(&gy[outs.clone()], at, &yv[outs.clone()], d, false);
                    }
                }
                if need_b {
                    for px in d.chunks_exact(f) {
                        for (s, &v) in db.iter_mut().zip(px) {
                            *s += v;
                        }
                    }
                }
                if need_w {
                    direct::weight_grad(&g, pool, n, n + 1, &xv[n * img..(n + 1) * img], d, &arg[outs], dw, q);
                }
            }
        });
        return;
    }
    // Scratch per part: cols, dz and dcols tiles.
    backward_by_images(&g, f, gx, dwb, tile * (2 * k + f), ws, &|imgs, gx, dw, db, scratch| {
        let (cols, rest) = scratch.split_at_mut(tile * k);
        let (dz, dcols) = rest.split_at_mut(tile * f);
        let xs = &xv[imgs.start * g.h * g.w * g.c..];
        for n in imgs.clone() {
            for p0 in (0..poh).step_by(band) {
                let p1 = (p0 + band).min(poh);
                let r0 = (n * g.oh + p0 * ph) * g.ow;
                let r1 = (n * g.oh + p1 * ph) * g.ow;
                let rows = r1 - r0;
                let dzt = &mut dz[..rows * f];
                dzt.fill(T::ZERO);
                let (o0, o1) = ((n * poh + p0) * pow * f, (n * poh + p1) * pow * f);
                for o in o0..o1 {
                    let yo = yv[o];
                    let d = match act {
                        None => gy[o],
                        Some(op) => gy[o] * op.deriv(if op.needs_input() { zs[o] } else { yo }, yo),
                    };
                    dzt[arg[o] as usize - r0 * f] += d;
                    if need_b {
                        db[o % f] += d;
                    }
                }
                if need_w || need_x {
                    im2col(xs, &g, imgs.start, r0, r1, cols);
                }
                let dx = need_x.then_some(&mut *gx);
                tile_grads(&g, imgs.start, r0, r1, dzt, cols, wv, need_w.then_some(&mut *dw), dx, dcols);
            }
        }
    });
}
