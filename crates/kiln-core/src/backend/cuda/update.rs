//! The CUDA backend's optimizer steps (`Backend::update`): one kernel launch per parameter, on the tape's
//! device memory, so a training step on the GPU moves no gradient down and no parameter up (graph/update.rs).

use super::Cuda;
use super::device::{CudaFloat, launch};
use crate::backend::{Buf, BufMut, Update};

impl Cuda {
    /// `Backend::update`: one optimizer step on a parameter, its gradient and its two slots, by the kernel of
    /// `u`'s optimizer (kernels.cu, "optimizer steps").
    pub(super) fn optimizer_step<T: CudaFloat>(
        &self,
        u: Update,
        w: BufMut<T>,
        g: Buf<T>,
        s1: BufMut<T>,
        s2: BufMut<T>,
    ) {
        self.count("update");
        let (dw, dg, d1, d2) = (self.inout(&w), self.up(g), self.inout(&s1), self.inout(&s2));
        let len = w.len() as i64;
        match u {
            Update::Sgd { lr, momentum, nesterov } => {
                launch!(self, T, "sgd_step", w.len(); self.ptr(&dw), self.ptr(&dg), self.ptr(&d1), len, lr, momentum, nesterov as i32)
            }
            Update::Adam { alpha, c1, c2, eps, decay } => {
                launch!(self, T, "adam_step", w.len(); self.ptr(&dw), self.ptr(&dg), self.ptr(&d1), self.ptr(&d2), len, alpha, c1, c2, eps, decay)
            }
            Update::AdamRows { alpha, c1, c2, eps, cols } => {
                let (rows, cols) = (w.len() / cols.max(1), cols.max(1));
                launch!(self, T, "adam_rows_step", rows; self.ptr(&dw), self.ptr(&dg), self.ptr(&d1), self.ptr(&d2), rows as i64, cols as i64, alpha, c1, c2, eps)
            }
            Update::RmsProp { lr, rho, one_minus_rho, momentum, eps } => {
                launch!(self, T, "rmsprop_step", w.len(); self.ptr(&dw), self.ptr(&dg), self.ptr(&d1), self.ptr(&d2), len, lr, rho, one_minus_rho, momentum, eps)
            }
            Update::Adagrad { lr, eps } => {
                launch!(self, T, "adagrad_step", w.len(); self.ptr(&dw), self.ptr(&dg), self.ptr(&d1), len, lr, eps)
            }
        }
        self.down(&dw, w);
        self.down(&d1, s1);
        self.down(&d2, s2);
    }
}
