//! Losses, each one op that returns the mean loss as a scalar. Where softmax or sigmoid meets
//! cross-entropy they are fused: computed from logits, stable for any input, with the simple gradient.
//! The weighted forms scale each row's loss by its weight and still divide by the row (or element) count,
//! as Keras does with sample and class weights.

use crate::backend::{Buf, BufMut};
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result, Shape};

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
        // aux_f: the probabilities (softmax kinds), then the row weights if any.
        let n_probs = if kind == LossKind::SoftmaxCrossEntropy { sx.numel() } else { 0 };
        let mut saved = self.pool.scratch(n_probs + w.len());
        saved[n_probs..].copy_from_slice(w);
        let (probs, wv) = saved.split_at_mut(n_probs);
        let probs = (n_probs > 0).then_some(BufMut::Host(probs));
        let wv = (!w.is_empty()).then_some(Buf::Host(&wv[..]));
        let t_buf = Some(self.buf(t));
        let mean = self.backend.loss(kind, self.buf(x), t_buf, None, wv, (n, c), probs);
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
        let mut saved = self.pool.scratch(sx.numel() + w.len());
        saved[sx.numel()..].copy_from_slice(w);
        let lab = self.ipool.copied(labels);
        let (probs, wv) = saved.split_at_mut(sx.numel());
        let wv = (!w.is_empty()).then_some(Buf::Host(&wv[..]));
        let kind = LossKind::SparseSoftmaxCrossEntropy;
        let labs = Some(Buf::Host(&lab[..]));
        let mean = self.backend.loss(kind, self.buf(x), None, labs, wv, (n, c), Some(BufMut::Host(probs)));
        self.finish_loss(kind, x, None, mean, saved, lab)
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

/// Gradients with respect to the predictions; targets get none. Each kind's derivative is written beside
/// its loss in the backend (CPU: backend/cpu/loss.rs). `gy` is the loss's own gradient, a scalar.
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, kind: LossKind, x: Var, t: Option<Var>, gy: &[T]) {
    if !ctx.needs(x) {
        return;
    }
    let sx = ctx.shape(x);
    let n_probs = if matches!(kind, LossKind::SoftmaxCrossEntropy | LossKind::SparseSoftmaxCrossEntropy) {
        sx.numel()
    } else {
        0
    };
    let aux = ctx.aux_buf(node);
    let all = aux.len();
    let (probs, w) = (aux.slice(0..n_probs), (all > n_probs).then(|| aux.slice(n_probs..all)));
    let labels = (kind == LossKind::SparseSoftmaxCrossEntropy).then(|| ctx.aux_i_buf(node));
    let (be, xv, tv) = (ctx.backend, ctx.buf(x), t.map(|t| ctx.buf(t)));
    be.loss_backward(kind, gy[0], xv, tv, labels, probs, w, rows_cols(sx), ctx.grad_buf(x));
}
