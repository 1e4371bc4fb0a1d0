//! The losses on the CPU: each kind's mean loss and its derivative, side by side. Where softmax or sigmoid
//! meets cross-entropy they are fused: computed from logits, stable for any input, with the simple gradient.
//! The weighted forms scale each row's loss by its weight and still divide by the row (or element) count,
//! as Keras does with sample and class weights.

use super::softmax_lanes;
use crate::Float;
use crate::ops::LossKind;
use crate::ops::unary::sigmoid;

/// Keras's clipping constant for losses on probabilities.
const EPS: f64 = 1e-7;

#[inline]
fn clip<T: Float>(p: T) -> T {
    p.max(T::from_f64(EPS)).min(T::from_f64(1.0 - EPS))
}

/// The mean loss (see `Backend::loss`); `tv` is empty for the sparse kind, `labels` for the others.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward<T: Float>(
    kind: LossKind,
    xv: &[T],
    tv: &[T],
    labels: &[u32],
    w: &[T],
    (n, c): (usize, usize),
    probs: Option<&mut [T]>,
) -> T {
    let wt = |r: usize| if w.is_empty() { T::ONE } else { w[r] };
    // Sum of each row's loss times its weight.
    let mut total = T::ZERO;
    let rows = xv.chunks(c).zip(tv.chunks(c)).enumerate();
    match kind {
        LossKind::SoftmaxCrossEntropy => {
            let saved = probs.expect("softmax cross-entropy keeps its probabilities");
            softmax_lanes(xv, saved, n, c, 1, true);
            for (r, (lp, tr)) in saved.chunks(c).zip(tv.chunks(c)).enumerate() {
                total += wt(r) * lp.iter().zip(tr).map(|(&lp, &t)| -t * lp).sum::<T>();
            }
            // Backward wants the probabilities, so exponentiate the log-probabilities in place.
            saved.iter_mut().for_each(|v| *v = v.exp());
        }
        LossKind::SigmoidBinaryCrossEntropy => {
            for (r, (zr, tr)) in rows {
                let s: T =
                    zr.iter().zip(tr).map(|(&z, &t)| z.max(T::ZERO) - z * t + (T::ONE + (-z.abs()).exp()).ln()).sum();
                total += wt(r) * s;
            }
        }
        LossKind::BinaryCrossEntropy => {
            for (r, (pr, tr)) in rows {
                let s: T = pr
                    .iter()
                    .zip(tr)
                    .map(|(&p, &t)| {
                        let p = clip(p);
                        -(t * p.ln() + (T::ONE - t) * (T::ONE - p).ln())
                    })
                    .sum();
                total += wt(r) * s;
            }
        }
        LossKind::CategoricalCrossEntropy => {
            for (r, (pr, tr)) in rows {
                let sum: T = pr.iter().copied().sum();
                let s: T = pr.iter().zip(tr).map(|(&p, &t)| -t * clip(p / sum).ln()).sum();
                total += wt(r) * s;
            }
        }
        LossKind::MeanSquaredError => {
            for (r, (pr, tr)) in rows {
                total += wt(r) * pr.iter().zip(tr).map(|(&p, &t)| (p - t) * (p - t)).sum::<T>();
            }
        }
        LossKind::SparseSoftmaxCrossEntropy => {
            let (saved, labels) = (probs.expect("sparse cross-entropy keeps its probabilities"), labels);
            softmax_lanes(xv, saved, n, c, 1, true);
            total = labels.iter().enumerate().map(|(r, &l)| -wt(r) * saved[r * c + l as usize]).sum();
            saved.iter_mut().for_each(|v| *v = v.exp());
        }
    }
    let per_row = matches!(
        kind,
        LossKind::SoftmaxCrossEntropy | LossKind::CategoricalCrossEntropy | LossKind::SparseSoftmaxCrossEntropy
    );
    total / T::from_usize(if per_row { n } else { xv.len() })
}

/// gx += g0 · ∂loss/∂x (see `Backend::loss_backward`).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Float>(
    kind: LossKind,
    g0: T,
    xv: &[T],
    tv: &[T],
    labels: &[u32],
    probs: &[T],
    w: &[T],
    (n, c): (usize, usize),
    gx: &mut [T],
) {
    let numel = xv.len();
    let wt = |r: usize| if w.is_empty() { T::ONE } else { w[r] };
    let per_row = |r: usize| g0 / T::from_usize(n) * wt(r);
    let per_elem = |i: usize| g0 / T::from_usize(numel) * wt(i / c);
    let lo = T::from_f64(EPS);
    let hi = T::from_f64(1.0 - EPS);
    match kind {
        // d/dz = softmax(z)·Σt − t
        LossKind::SoftmaxCrossEntropy => {
            for (r, ((gr, pr), tr)) in gx.chunks_mut(c).zip(probs.chunks(c)).zip(tv.chunks(c)).enumerate() {
                let ts: T = tr.iter().copied().sum();
                for j in 0..c {
                    gr[j] += per_row(r) * (pr[j] * ts - tr[j]);
                }
            }
        }
        LossKind::SparseSoftmaxCrossEntropy => {
            for (r, (gr, pr)) in gx.chunks_mut(c).zip(probs.chunks(c)).enumerate() {
                for j in 0..c {
                    let t = if j == labels[r] as usize { T::ONE } else { T::ZERO };
                    gr[j] += per_row(r) * (pr[j] - t);
                }
            }
        }
        // d/dz = σ(z) − t
        LossKind::SigmoidBinaryCrossEntropy => {
            for i in 0..gx.len() {
                gx[i] += per_elem(i) * (sigmoid(xv[i]) - tv[i]);
            }
        }
        // d/dp = (p − t) / (p(1 − p)) where p is not clipped
        LossKind::BinaryCrossEntropy => {
            for i in 0..gx.len() {
                let p = xv[i];
                if p > lo && p < hi {
                    gx[i] += per_elem(i) * (p - tv[i]) / (p * (T::ONE - p));
                }
            }
        }
        // q = p / Σp; L = −Σ t·log q; dL/dp_j = (Σ_unclipped t − t_j/q_j·[j unclipped]) / Σp
        LossKind::CategoricalCrossEntropy => {
            for (r, ((gr, pr), tr)) in gx.chunks_mut(c).zip(xv.chunks(c)).zip(tv.chunks(c)).enumerate() {
                let sum: T = pr.iter().copied().sum();
                let inside = |q: T| q > lo && q < hi;
                let tin: T = pr.iter().zip(tr).filter(|(p, _)| inside(**p / sum)).map(|(_, &t)| t).sum();
                for j in 0..c {
                    let q = pr[j] / sum;
                    let own = if inside(q) { tr[j] / q } else { T::ZERO };
                    gr[j] += per_row(r) * (tin - own) / sum;
                }
            }
        }
        LossKind::MeanSquaredError => {
            for i in 0..gx.len() {
                gx[i] += per_elem(i) * T::from_f64(2.0) * (xv[i] - tv[i]);
            }
        }
    }
}
