//! Losses, each one op that returns the mean loss as a scalar. Where softmax or sigmoid meets
//! cross-entropy they are fused: computed from logits, stable for any input, with the simple gradient.
//! The weighted forms scale each row's loss by its weight and still divide by the row (or element) count,
//! as Keras does with sample and class weights.

use super::softmax::softmax_lanes;
use super::unary::sigmoid;
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result, Shape};

/// Keras's clipping constant for losses on probabilities.
const EPS: f64 = 1e-7;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossKind {
    /// −Σ t·log softmax(z), averaged over rows; targets are distributions (one-hot).
    SoftmaxCrossEntropy,
    /// The same with targets given as class indices.
    SparseSoftmaxCrossEntropy,
    /// max(z, 0) − z·t + log(1 + e^−|z|), averaged over elements.
    SigmoidBinaryCrossEntropy,
    /// −(t·log p + (1 − t)·log(1 − p)) on probabilities clipped to [ε, 1 − ε], averaged over elements.
    BinaryCrossEntropy,
    /// −Σ t·log p on probabilities renormalized and clipped (Keras's semantics), averaged over rows.
    CategoricalCrossEntropy,
    /// (p − t)², averaged over elements.
    MeanSquaredError,
}

fn rows_cols(s: Shape) -> (usize, usize) {
    let c = s.dims().last().copied().unwrap_or(1);
    (s.numel() / c.max(1), c)
}

impl<T: Float> Graph<T> {
    /// A loss between predictions `x` and targets `t` of the same shape.
    pub fn loss(&mut self, kind: LossKind, x: Var, t: Var) -> Result<Var> {
        self.weighted_loss(kind, x, t, &[])
    }

    /// `loss` with each row's loss times `w[row]` (empty `w`: all 1).
    pub fn weighted_loss(&mut self, kind: LossKind, x: Var, t: Var, w: &[T]) -> Result<Var> {
        let (sx, st) = (self.shape(x), self.shape(t));
        if kind == LossKind::SparseSoftmaxCrossEntropy {
            return Err(Error::Invalid(
                "sparse cross-entropy takes class indices: use sparse_softmax_cross_entropy".into(),
            ));
        }
        if sx != st {
            return Err(Error::Shape(format!("{kind:?}: predictions {sx} and targets {st} differ in shape")));
        }
        let (n, c) = rows_cols(sx);
        check_weights(w, n)?;
        let wt = |r: usize| if w.is_empty() { T::ONE } else { w[r] };
        let mut saved = if kind == LossKind::SoftmaxCrossEntropy { self.pool.zeroed(sx.numel()) } else { Vec::new() };
        let (xv, tv) = (self.value(x), self.value(t));
        // Sum of each row's loss times its weight.
        let mut total = T::ZERO;
        let rows = xv.chunks(c).zip(tv.chunks(c)).enumerate();
        match kind {
            LossKind::SoftmaxCrossEntropy => {
                softmax_lanes(xv, &mut saved, n, c, 1, true);
                for (r, (lp, tr)) in saved.chunks(c).zip(tv.chunks(c)).enumerate() {
                    total += wt(r) * lp.iter().zip(tr).map(|(&lp, &t)| -t * lp).sum::<T>();
                }
                // Backward wants the probabilities, so exponentiate the log-probabilities in place.
                saved.iter_mut().for_each(|v| *v = v.exp());
            }
            LossKind::SigmoidBinaryCrossEntropy => {
                for (r, (zr, tr)) in rows {
                    let s: T = zr
                        .iter()
                        .zip(tr)
                        .map(|(&z, &t)| z.max(T::ZERO) - z * t + (T::ONE + (-z.abs()).exp()).ln())
                        .sum();
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
            LossKind::SparseSoftmaxCrossEntropy => unreachable!(),
        }
        let per_row = matches!(kind, LossKind::SoftmaxCrossEntropy | LossKind::CategoricalCrossEntropy);
        let mean = total / T::from_usize(if per_row { n } else { sx.numel() });
        saved.extend_from_slice(w);
        self.finish_loss(kind, x, Some(t), mean, saved, Vec::new())
    }

    /// Softmax cross-entropy from logits [n, c] against class indices (one per row).
    pub fn sparse_softmax_cross_entropy(&mut self, x: Var, labels: &[u32]) -> Result<Var> {
        self.weighted_sparse_softmax_cross_entropy(x, labels, &[])
    }

    /// `sparse_softmax_cross_entropy` with each row's loss times `w[row]` (empty `w`: all 1).
    pub fn weighted_sparse_softmax_cross_entropy(&mut self, x: Var, labels: &[u32], w: &[T]) -> Result<Var> {
        let sx = self.shape(x);
        let (n, c) = rows_cols(sx);
        if labels.len() != n {
            return Err(Error::Shape(format!("sparse cross-entropy: {} labels for {n} rows of {sx}", labels.len())));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= c) {
            return Err(Error::Data(format!("label {bad} is out of range for {c} classes")));
        }
        check_weights(w, n)?;
        let mut saved = self.pool.zeroed(sx.numel());
        softmax_lanes(self.value(x), &mut saved, n, c, 1, true);
        let total: T = labels
            .iter()
            .enumerate()
            .map(|(r, &l)| -saved[r * c + l as usize] * if w.is_empty() { T::ONE } else { w[r] })
            .sum();
        saved.iter_mut().for_each(|v| *v = v.exp());
        saved.extend_from_slice(w);
        let lab = self.ipool.copied(labels);
        self.finish_loss(LossKind::SparseSoftmaxCrossEntropy, x, None, total / T::from_usize(n), saved, lab)
    }

    fn finish_loss(
        &mut self,
        kind: LossKind,
        x: Var,
        t: Option<Var>,
        value: T,
        saved: Vec<T>,
        lab: Vec<u32>,
    ) -> Result<Var> {
        let mut y = self.pool.zeroed(1);
        y[0] = value;
        let rg = self.requires_grad(x);
        let node = self.push(Op::Loss(kind, x, t), Shape::scalar(), y, rg);
        self.keep_aux_f(node, saved);
        self.keep_aux_i(node, lab);
        Ok(node)
    }
}

fn check_weights<T: Float>(w: &[T], n: usize) -> Result<()> {
    if !w.is_empty() && w.len() != n {
        return Err(Error::Shape(format!("loss: {} weights for {n} rows", w.len())));
    }
    Ok(())
}

#[inline]
fn clip<T: Float>(p: T) -> T {
    p.max(T::from_f64(EPS)).min(T::from_f64(1.0 - EPS))
}

/// Gradients with respect to the predictions; targets get none.
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, kind: LossKind, x: Var, t: Option<Var>, gy: &[T]) {
    if !ctx.needs(x) {
        return;
    }
    let sx = ctx.shape(x);
    let (n, c) = rows_cols(sx);
    let g0 = gy[0];
    let xv = ctx.value(x);
    let tv = t.map(|t| ctx.value(t)).unwrap_or(&[]);
    // aux_f: the probabilities (softmax kinds), then the row weights if any.
    let labels = ctx.aux_i[node].as_slice();
    let n_probs = if matches!(kind, LossKind::SoftmaxCrossEntropy | LossKind::SparseSoftmaxCrossEntropy) {
        sx.numel()
    } else {
        0
    };
    let (probs, w) = ctx.aux_f[node].split_at(n_probs);
    let wt = |r: usize| if w.is_empty() { T::ONE } else { w[r] };
    let gx = ctx.grad(x);
    let per_row = |r: usize| g0 / T::from_usize(n) * wt(r);
    let per_elem = |i: usize| g0 / T::from_usize(sx.numel()) * wt(i / c);
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
