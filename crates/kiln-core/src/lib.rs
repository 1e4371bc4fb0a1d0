//! kiln-core: n-d tensors, CPU kernels and reverse-mode autodiff.
//!
//! A [`Graph`] is a tape: each op method computes its result at once and appends a node; [`Graph::backward`]
//! walks the tape in reverse. Buffers come from a pool that is refilled by [`Graph::reset`], so a training
//! loop that builds the same graph every step stops allocating after its first step.

pub mod backend;
pub mod dtype;
mod error;
mod float;
mod graph;
pub mod hot;
pub mod mem;
pub mod ops;
pub mod par;
mod params;
mod pool;
pub mod qdot;
pub mod quant;
mod rng;
mod shape;
pub mod simd;
mod tape_mem;
mod tensor;
pub mod testing;

pub use backend::{Backend, Cpu};
pub use dtype::DType;
pub use error::{Error, Result};
pub use float::Float;
pub use graph::{Graph, Profile, Var, set_default_backend};
pub use ops::{BinaryOp, LossKind, Padding, ReduceOp, UnaryOp};
pub use params::{Param, ParamId, ParamStore};
pub use rng::Rng;
pub use shape::{MAX_RANK, Shape};
pub use tensor::{Tensor, argmax};
