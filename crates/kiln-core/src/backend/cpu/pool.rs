//! Max and average pooling on the CPU, NHWC.

use crate::Float;
use crate::ops::Window;
use crate::par::{Disjoint, for_parts, parts_for};

/// Calls f(output index, input index) for every input position inside output window `o`'s bounds.
#[inline]
fn window<F: FnMut(usize)>(g: &Window, n: usize, oh: usize, ow: usize, c: usize, mut f: F) {
    for kh in 0..g.kh {
        let Some(ih) = Window::src(oh, kh, g.sh, g.pt, g.h) else {
            continue;
        };
        for kw in 0..g.kw {
            let Some(iw) = Window::src(ow, kw, g.sw, g.pl, g.w) else {
                continue;
            };
            f(((n * g.h + ih) * g.w + iw) * g.c + c);
        }
    }
}

fn out_index(g: &Window, n: usize, oh: usize, ow: usize, c: usize) -> usize {
    ((n * g.oh + oh) * g.ow + ow) * g.c + c
}

/// y = max of each window, arg = where it was (see `Backend::max_pool2d`).
pub(super) fn max_forward<T: Float>(g: &Window, v: &[T], y: &mut [T], arg: &mut [u32]) {
    let g = *g;
    if g.pt == 0 && g.pl == 0 && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 {
        let out_img = g.oh * g.ow * g.c;
        let args = Disjoint::new(arg);
        for_parts(g.n, parts_for(g.n, g.h * g.w * g.c), y, out_img, &mut [0u8; 0], 0, &|imgs, y, _| {
            // SAFETY: each part writes the argmax entries of its own images only.
            let a = unsafe { args.part(imgs.start * out_img..imgs.end * out_img) };
            max_pool_2x2(v, &g, imgs, y, a);
        });
    } else {
        for n in 0..g.n {
            for oh in 0..g.oh {
                for ow in 0..g.ow {
                    for c in 0..g.c {
                        let (mut best, mut at, mut first) = (T::NEG_INFINITY, 0, true);
                        window(&g, n, oh, ow, c, |i| {
                            if first || v[i] > best {
                                (best, at, first) = (v[i], i, false);
                            }
                        });
                        let o = out_index(&g, n, oh, ow, c);
                        y[o] = best;
                        arg[o] = at as u32;
                    }
                }
            }
        }
    }
}

/// gx[arg[o]] += gy[o], gx written whole when `fresh`.
pub(super) fn max_backward<T: Float>(g: &Window, gy: &[T], arg: &[u32], gx: &mut [T], fresh: bool) {
    let g = *g;
    let (in_img, out_img) = (g.h * g.w * g.c, g.oh * g.ow * g.c);
    // Windows never reach across images, so images split across threads write disjoint parts of dx.
    for_parts(g.n, parts_for(g.n, in_img), gx, in_img, &mut [0u8; 0], 0, &|imgs, gx, _| {
        if fresh {
            gx.fill(T::ZERO);
        }
        let base = imgs.start * in_img;
        let range = imgs.start * out_img..imgs.end * out_img;
        for (&i, &d) in arg[range.clone()].iter().zip(&gy[range]) {
            gx[i as usize - base] += d;
        }
    });
}

/// y = the mean of each window over the positions inside the input.
pub(super) fn avg_forward<T: Float>(g: &Window, v: &[T], y: &mut [T]) {
    let g = *g;
    for n in 0..g.n {
        for oh in 0..g.oh {
            for ow in 0..g.ow {
                for c in 0..g.c {
                    let (mut s, mut cnt) = (T::ZERO, 0usize);
                    window(&g, n, oh, ow, c, |i| {
                        s += v[i];
                        cnt += 1;
                    });
                    y[out_index(&g, n, oh, ow, c)] = s / T::from_usize(cnt.max(1));
                }
            }
        }
    }
}

/// gx[i] += gy[o] / count for every i in window o.
pub(super) fn avg_backward<T: Float>(g: &Window, gy: &[T], gx: &mut [T]) {
    let g = *g;
    for n in 0..g.n {
        for oh in 0..g.oh {
            for ow in 0..g.ow {
                for c in 0..g.c {
                    let mut cnt = 0usize;
                    window(&g, n, oh, ow, c, |_| cnt += 1);
                    let d = gy[out_index(&g, n, oh, ow, c)] / T::from_usize(cnt.max(1));
                    window(&g, n, oh, ow, c, |i| gx[i] += d);
                }
            }
        }
    }
}

/// The common case (2x2, stride 2, valid), written over whole channel rows so the compare-and-select
/// vectorizes.
/// Images `imgs` only; `y` and `arg` start at the first of them.
fn max_pool_2x2<T: Float>(v: &[T], g: &Window, imgs: std::ops::Range<usize>, y: &mut [T], arg: &mut [u32]) {
    let (w, c) = (g.w, g.c);
    crate::simd::vectorized(
        #[inline(always)]
        || {
            for n in imgs.clone() {
                for oh in 0..g.oh {
                    let r0 = (n * g.h + 2 * oh) * w * c;
                    let r1 = r0 + w * c;
                    for ow in 0..g.ow {
                        let o = (((n - imgs.start) * g.oh + oh) * g.ow + ow) * c;
                        let starts = [r0 + 2 * ow * c, r0 + (2 * ow + 1) * c, r1 + 2 * ow * c, r1 + (2 * ow + 1) * c];
                        let (ys, args) = (&mut y[o..o + c], &mut arg[o..o + c]);
                        let [a, b, cc, d] = starts.map(|s| &v[s..s + c]);
                        for ch in 0..c {
                            let (mut best, mut at) = (a[ch], starts[0] + ch);
                            for (src, start) in [(b, starts[1]), (cc, starts[2]), (d, starts[3])] {
                                let val = src[ch];
                                let take = val > best;
                                best = if take { val } else { best };
                                at = if take { start + ch } else { at };
                            }
                            ys[ch] = best;
                            args[ch] = at as u32;
                        }
                    }
                }
            }
        },
    )
}
