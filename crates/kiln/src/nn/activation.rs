//! Activation names as Keras spells them, and how each maps onto the engine.

use kiln_core::UnaryOp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
    Gelu,
    /// Slope 0.2 below zero, Keras's default.
    LeakyRelu,
}

impl Activation {
    /// The elementwise op, for activations that are one (softmax is not: it mixes a row).
    pub fn unary(self) -> Option<UnaryOp> {
        match self {
            Activation::Linear | Activation::Softmax => None,
            Activation::Relu => Some(UnaryOp::Relu),
            Activation::Sigmoid => Some(UnaryOp::Sigmoid),
            Activation::Tanh => Some(UnaryOp::Tanh),
            Activation::Gelu => Some(UnaryOp::Gelu),
            Activation::LeakyRelu => Some(UnaryOp::LeakyRelu(0.2)),
        }
    }
}
