//! The recurrent cells' elementwise step, forward and backward (equations in ops/recurrent.rs), one row at
//! a time over its units, compiled for AVX2 + FMA where the processor has them. The sigmoid and tanh are
//! `Float::sigmoid_fast`/`tanh_fast`: for f32 a polynomial exp that vectorizes (the libm call did not), for
//! f64 the exact ones. Each row is a few short loops of at most three inputs and one output (`map`): one
//! loop over all of an LSTM's gates read and wrote a dozen slices, too many for the compiler's alias
//! checks, and stayed scalar (a third of textbench's LSTM epoch, measured with perf).

use crate::Float;
use crate::ops::{RnnCell, RnnDims, RnnStep, RnnStepGrad, RnnStepOut};

pub(super) fn step<T: Float>(d: RnnDims, a: RnnStep<T>, out: RnnStepOut<T>) {
    crate::simd::vectorized(
        #[inline(always)]
        || step_rows(d, a, out),
    )
}

pub(super) fn step_backward<T: Float>(d: RnnDims, g: RnnStepGrad<T>) {
    crate::simd::vectorized(
        #[inline(always)]
        || step_backward_rows(d, g),
    )
}

#[inline(always)]
fn step_rows<T: Float>(d: RnnDims, a: RnnStep<T>, out: RnnStepOut<T>) {
    let RnnDims { cell, n, steps, units: u, t } = d;
    let gu = cell.gates() * u;
    let (xw, zh, h_prev) = (a.xw.host(), a.zh.host(), a.h_prev.host());
    let mask = a.mask.map(|m| m.host());
    let b_rec = a.b_rec.map(|b| b.host());
    let c_prev = a.c_prev.map(|c| c.host());
    let (h, saved) = (out.h.host(), out.saved.host());
    let mut c = out.c.map(|c| c.host());
    let sw = cell.saved() * u;
    for row in 0..n {
        let (hp, hn) = (&h_prev[row * u..][..u], &mut h[row * u..][..u]);
        if mask.is_some_and(|m| m[row * steps + t] == T::ZERO) {
            // A padded step keeps the state.
            hn.copy_from_slice(hp);
            if let (Some(c), Some(cp)) = (c.as_deref_mut(), c_prev) {
                c[row * u..][..u].copy_from_slice(&cp[row * u..][..u]);
            }
            continue;
        }
        let zx = &xw[(row * steps + t) * gu..][..gu];
        let zr = &zh[row * gu..][..gu];
        let sv = &mut saved[row * sw..][..sw];
        match cell {
            RnnCell::Lstm => {
                let cp = &c_prev.expect("an LSTM step has a cell state")[row * u..][..u];
                let cn = &mut c.as_deref_mut().expect("an LSTM step has a cell state")[row * u..][..u];
                let [xi, xf, xg, xo] = split::<T, 4>(zx, u);
                let [ri, rf, rg, ro] = split::<T, 4>(zr, u);
                let [si, sf, sg, so, stc] = split_mut::<T, 5>(sv, u);
                map2(si, xi, ri, |a, b| (a + b).sigmoid_fast());
                map2(sf, xf, rf, |a, b| (a + b).sigmoid_fast());
                map2(sg, xg, rg, |a, b| (a + b).tanh_fast());
                map2(so, xo, ro, |a, b| (a + b).sigmoid_fast());
                // c' = f·c + i·g; h' = o·tanh(c')
                map2(cn, sf, cp, |f, c| f * c);
                upd2(cn, si, sg, |c, i, g| c + i * g);
                map1(stc, cn, |c| c.tanh_fast());
                map2(hn, so, stc, |o, tc| o * tc);
            }
            RnnCell::Gru => {
                let b = b_rec.expect("a GRU step has a recurrent bias");
                let ([xz, xr, xh], [rz, rr, rh], [bz, br, bh]) = (split(zx, u), split(zr, u), split(b, u));
                let [sz, sr, shh, szh] = split_mut::<T, 4>(sv, u);
                map2(sz, xz, rz, |a, b| a + b);
                upd1(sz, bz, |z, b| (z + b).sigmoid_fast());
                map2(sr, xr, rr, |a, b| a + b);
                upd1(sr, br, |r, b| (r + b).sigmoid_fast());
                map2(szh, rh, bh, |a, b| a + b);
                map3(shh, xh, sr, szh, |x, r, zh| (x + r * zh).tanh_fast());
                // h' = ĥ + z·(h − ĥ)
                map3(hn, shh, sz, hp, |hh, z, h| hh + z * (h - hh));
            }
            RnnCell::Simple => map2(hn, &zx[..u], &zr[..u], |a, b| (a + b).tanh_fast()),
        }
    }
}

#[inline(always)]
fn step_backward_rows<T: Float>(d: RnnDims, g: RnnStepGrad<T>) {
    let RnnDims { cell, n, steps, units: u, t } = d;
    let gu = cell.gates() * u;
    let (saved, h_prev, h) = (g.saved.host(), g.h_prev.host(), g.h.host());
    let mask = g.mask.map(|m| m.host());
    let c_prev = g.c_prev.map(|c| c.host());
    let (dh, dzx, dzh) = (g.dh.host(), g.dzx.host(), g.dzh.host());
    let mut dc = g.dc.map(|c| c.host());
    let sw = cell.saved() * u;
    for row in 0..n {
        let dzr = &mut dzh[row * gu..][..gu];
        let dx = &mut dzx[(row * steps + t) * gu..][..gu];
        if mask.is_some_and(|m| m[row * steps + t] == T::ZERO) {
            // The state passed through unchanged: so do its gradients; no gate had a part.
            dzr.fill(T::ZERO);
            dx.fill(T::ZERO);
            continue;
        }
        let sv = &saved[row * sw..][..sw];
        let dhr = &mut dh[row * u..][..u];
        match cell {
            RnnCell::Lstm => {
                let cp = &c_prev.expect("an LSTM step has a cell state")[row * u..][..u];
                let dcr = &mut dc.as_deref_mut().expect("an LSTM step has a cell state")[row * u..][..u];
                let [si, sf, sg, so, stc] = split::<T, 5>(sv, u);
                let [xi, xf, xg, xo] = split_mut::<T, 4>(dx, u);
                // dc' += dh·o·(1 − tanh²c'); the gates' pre-activations from dh and dc'.
                map3(xo, so, stc, dhr, |o, tc, dh| dh * o * (T::ONE - tc * tc));
                upd1(dcr, xo, |dc, t| dc + t);
                map3(xo, so, stc, dhr, |o, tc, dh| dh * tc * o * (T::ONE - o));
                map3(xi, si, sg, dcr, |i, g, dc| dc * g * i * (T::ONE - i));
                map3(xf, sf, cp, dcr, |f, c, dc| dc * c * f * (T::ONE - f));
                map3(xg, si, sg, dcr, |i, g, dc| dc * i * (T::ONE - g * g));
                // The recurrent projection's gradients are the same; dc before the step is dc'·f.
                dzr.copy_from_slice(dx);
                upd1(dcr, sf, |dc, f| dc * f);
                dhr.fill(T::ZERO);
            }
            RnnCell::Gru => {
                let hp = &h_prev[row * u..][..u];
                let [sz, sr, shh, szh] = split::<T, 4>(sv, u);
                let [xz, xr, xh] = split_mut::<T, 3>(dx, u);
                map3(xh, sz, shh, dhr, |z, hh, dh| dh * (T::ONE - z) * (T::ONE - hh * hh));
                map3(xr, sr, szh, xh, |r, zh, dhh| dhh * zh * r * (T::ONE - r));
                map3(xz, sz, shh, hp, |z, hh, h| (h - hh) * z * (T::ONE - z));
                upd1(xz, dhr, |v, dh| v * dh);
                // The recurrent projection: the same gradients, but the candidate's scaled by r.
                dzr[..2 * u].copy_from_slice(&dx[..2 * u]);
                map2(&mut dzr[2 * u..], &dx[2 * u..], sr, |d, r| d * r);
                upd1(dhr, sz, |dh, z| dh * z);
            }
            RnnCell::Simple => {
                let hn = &h[row * u..][..u];
                map2(&mut dx[..u], dhr, hn, |dh, h| dh * (T::ONE - h * h));
                dzr.copy_from_slice(&dx[..u]);
                dhr.fill(T::ZERO);
            }
        }
    }
}

/// out = f(a), elementwise.
#[inline(always)]
fn map1<T: Copy>(out: &mut [T], a: &[T], f: impl Fn(T) -> T) {
    out.iter_mut().zip(a).for_each(|(o, &a)| *o = f(a));
}

/// out = f(a, b).
#[inline(always)]
fn map2<T: Copy>(out: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T) -> T) {
    out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o = f(a, b));
}

/// out = f(a, b, c).
#[inline(always)]
fn map3<T: Copy>(out: &mut [T], a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T) {
    out.iter_mut().zip(a.iter().zip(b).zip(c)).for_each(|(o, ((&a, &b), &c))| *o = f(a, b, c));
}

/// out = f(out, a).
#[inline(always)]
fn upd1<T: Copy>(out: &mut [T], a: &[T], f: impl Fn(T, T) -> T) {
    out.iter_mut().zip(a).for_each(|(o, &a)| *o = f(*o, a));
}

/// out = f(out, a, b).
#[inline(always)]
fn upd2<T: Copy>(out: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T, T) -> T) {
    out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&a, &b))| *o = f(*o, a, b));
}

/// The first K runs of `u` values of `s`, each exactly `u` long.
#[inline(always)]
fn split<T, const K: usize>(s: &[T], u: usize) -> [&[T]; K] {
    std::array::from_fn(|k| &s[k * u..(k + 1) * u])
}

/// `split`, mutable.
#[inline(always)]
fn split_mut<T, const K: usize>(mut s: &mut [T], u: usize) -> [&mut [T]; K] {
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut s).split_at_mut(u);
        s = tail;
        head
    })
}
