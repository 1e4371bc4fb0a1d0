//! Every op: its forward (a method on `Graph`) and its backward, side by side in one file each.

mod batchnorm;
mod binary;
mod conv;
mod conv_pool;
mod conv_pool_direct;
mod dropout;
pub(crate) mod gemm;
mod linear;
mod loss;
mod matmul;
mod pool;
mod reduce;
mod sgemm;
mod shape_ops;
mod softmax;
mod unary;

pub use binary::BinaryOp;
pub use conv::{Conv2dArgs, Padding};
pub use gemm::{in_matmul_kernel, set_num_threads};
pub use loss::LossKind;
pub use pool::PoolArgs;
pub use reduce::ReduceOp;
pub use unary::UnaryOp;

use crate::Float;
use crate::graph::{BackCtx, Op};

/// Adds the input gradients of node `i`, whose output gradient is `gy`.
pub(crate) fn backward_node<T: Float>(ctx: &mut BackCtx<T>, i: usize, gy: &[T]) {
    match ctx.nodes[i].op {
        Op::Leaf | Op::Param(_) => {}
        Op::Unary(a, op) => unary::backward(ctx, i, a, op, gy),
        Op::Binary(a, b, op) => binary::backward(ctx, i, a, b, op, gy),
        Op::MatMul(a, b) => matmul::backward(ctx, a, b, gy),
        Op::Reduce(a, op, axis) => reduce::backward(ctx, i, a, op, axis, gy),
        Op::Reshape(a) => shape_ops::backward_reshape(ctx, a, gy),
        Op::Permute(a, perm) => shape_ops::backward_permute(ctx, i, a, perm, gy),
        Op::Concat(axis) => shape_ops::backward_concat(ctx, i, axis, gy),
        Op::Slice(a, axis, start) => shape_ops::backward_slice(ctx, i, a, axis, start, gy),
        Op::IndexSelect(a, axis) => shape_ops::backward_index_select(ctx, i, a, axis, gy),
        Op::Softmax(a, axis) => softmax::backward_softmax(ctx, i, a, axis, gy),
        Op::LogSoftmax(a, axis) => softmax::backward_log_softmax(ctx, i, a, axis, gy),
        Op::Linear(x, w, b, act) => linear::backward(ctx, i, x, w, b, act, gy),
        Op::Conv2d(args) => conv::backward(ctx, i, args, gy),
        Op::Conv2dMaxPool(args, pool) => conv_pool::backward(ctx, i, args, pool, gy),
        Op::MaxPool2d(x, args) => pool::backward_max(ctx, i, x, args, gy),
        Op::AvgPool2d(x, args) => pool::backward_avg(ctx, x, args, gy),
        Op::Dropout(x) => dropout::backward(ctx, i, x, gy),
        Op::BatchNorm(x, g, b, stats, eps) => batchnorm::backward(ctx, i, x, g, b, stats, eps, gy),
        Op::Loss(kind, x, t) => loss::backward(ctx, i, kind, x, t, gy),
    }
}

/// Reserves every thread's working buffers of rayon's pool (the matrix kernel's packing space), so that
/// training and inference steps never allocate them later, whichever thread a product lands on. Call once
/// before work starts; later calls cost a broadcast.
pub fn reserve_thread_buffers() {
    rayon::broadcast(|_| sgemm::reserve());
}
