//! Inverted dropout: kept values are scaled by 1/(1 − rate) during training, so inference is the identity.

use super::BinaryOp;
use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result};

impl<T: Float> Graph<T> {
    /// y = x ⊙ mask, mask = 0 with probability `rate`, else 1/(1 − rate). Draws from the graph's generator.
    pub fn dropout(&mut self, x: Var, rate: f64) -> Result<Var> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::Invalid(format!("dropout: rate {rate} must be in [0, 1)")));
        }
        let s = self.shape(x);
        let keep = T::from_f64(1.0 / (1.0 - rate));
        let mut mask = self.pool.scratch(s.numel());
        for m in mask.iter_mut() {
            *m = if self.rng.uniform() < rate { T::ZERO } else { keep };
        }
        // The mask is drawn on the host, from the graph's generator, whatever the backend.
        let mask = self.put_on_backend(mask);
        let mut y = self.out(s.numel());
        self.backend.binary(BinaryOp::Mul, s, self.buf(x), s, mask.view(), s, y.view_mut());
        let rg = self.requires_grad(x);
        let node = self.push(Op::Dropout(x), s, y, rg);
        self.keep_aux_f(node, mask);
        Ok(node)
    }
}

/// dx += dy ⊙ mask
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, node: usize, x: Var, gy: Buf<T>) {
    if !ctx.needs(x) {
        return;
    }
    let (s, be, mask) = (ctx.shape(x), ctx.backend, ctx.aux_buf(node));
    be.binary_backward(BinaryOp::Mul, false, s, gy, ctx.buf(x), s, mask, s, ctx.grad_buf(x));
}
