//! Every op: its forward (a method on `Graph`) and its backward, side by side in one file each.

pub(crate) mod attention;
mod batchnorm;
mod binary;
mod conv;
mod conv_pool;
mod dropout;
mod embedding_bag;
mod layer_norm;
mod linear;
mod loss;
mod matmul;
mod pool;
pub(crate) mod recurrent;
mod reduce;
mod shape_ops;
mod softmax;
pub(crate) mod unary;

pub use crate::backend::cpu::gemm::{in_matmul_kernel, set_num_threads};
pub use attention::{AttentionDims, AttentionDropout, MASKED, dropout_hash};
pub use binary::BinaryOp;
pub use conv::{Conv2dArgs, Padding, Window, out_size};
pub use loss::LossKind;
pub use pool::PoolArgs;
pub use recurrent::{RnnArgs, RnnCell, RnnDims, RnnStep, RnnStepGrad, RnnStepOut};
pub use reduce::ReduceOp;
pub use unary::UnaryOp;

use crate::Float;
use crate::backend::Buf;
use crate::graph::{BackCtx, Op};
use crate::tape_mem::Mem;

/// Adds the input gradients of node `i`, whose output gradient is `gy`. Every op computes through the
/// graph's `Backend` (see backend/mod.rs); the loss reads its own gradient, a scalar, on the host.
pub(crate) fn backward_node<T: Float>(ctx: &mut BackCtx<T>, i: usize, gy: &Mem<T>) {
    let g = gy.view();
    match ctx.nodes[i].op {
        Op::Leaf | Op::Param(_) => {}
        Op::Unary(a, op) => unary::backward(ctx, i, a, op, g),
        Op::Binary(a, b, op) => binary::backward(ctx, i, a, b, op, g),
        Op::MatMul(a, b) => matmul::backward(ctx, a, b, g),
        Op::Reduce(a, op, axis) => reduce::backward(ctx, i, a, op, axis, g),
        Op::Reshape(a) => shape_ops::backward_reshape(ctx, a, g),
        Op::Permute(a, perm) => shape_ops::backward_permute(ctx, a, perm, g),
        Op::Concat(axis) => shape_ops::backward_concat(ctx, i, axis, g),
        Op::Slice(a, axis, start) => shape_ops::backward_slice(ctx, i, a, axis, start, g),
        Op::IndexSelect(a, axis) => shape_ops::backward_index_select(ctx, i, a, axis, g),
        Op::Softmax(a, axis) => softmax::backward(ctx, i, a, axis, false, g),
        Op::LogSoftmax(a, axis) => softmax::backward(ctx, i, a, axis, true, g),
        Op::Linear(x, w, b, act) => linear::backward(ctx, i, x, w, b, act, g),
        Op::Conv2d(args) => conv::backward(ctx, i, args, g),
        Op::Conv2dMaxPool(args, pool) => conv_pool::backward(ctx, i, args, pool, g),
        Op::MaxPool2d(x, args) => pool::backward_max(ctx, i, x, args, g),
        Op::AvgPool2d(x, args) => pool::backward_avg(ctx, x, args, g),
        Op::Dropout(x) => dropout::backward(ctx, i, x, g),
        Op::BatchNorm(x, gm, b, stats, eps) => batchnorm::backward(ctx, i, x, gm, b, stats, eps, g),
        Op::Loss(kind, x, t) => loss::backward(ctx, i, kind, x, t, gy.host()),
        // Its backward walks the time steps on the host.
        Op::Rnn(args) => recurrent::backward(ctx, i, args, Buf::Host(gy.host())),
        Op::EmbeddingBag(table, len) => embedding_bag::backward(ctx, i, table, len, g),
        Op::LayerNorm(x, gm, b) => layer_norm::backward(ctx, i, x, gm, b, g),
        Op::Attention(q, k, v, dims) => attention::backward(ctx, i, (q, k, v), dims, g),
    }
}

/// Reserves every thread's working buffers of rayon's pool (the matrix kernel's packing space), so that
/// training and inference steps never allocate them later, whichever thread a product lands on. Call once
/// before work starts; later calls cost a broadcast.
pub fn reserve_thread_buffers() {
    rayon::broadcast(|_| crate::backend::cpu::sgemm::reserve());
}
