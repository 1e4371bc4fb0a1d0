//! Layers: one file per family under layers/, the registry that lists them (registry.rs), the trait they
//! implement (spec.rs), the built form (layer.rs), and initializers, regularizers and activations.

mod activation;
mod init;
mod layer;
pub mod layers;
mod registry;
pub(crate) mod spec;

pub use activation::Activation;
pub use init::{Initializer, Regularizer, fans};
pub(crate) use layer::fmt_shape;
pub use layer::{Layer, Src};
pub use layers::*;
pub use registry::LayerConfig;
pub use spec::{PaddingConfig, Pair};

/// The configs under their former path (`kiln::nn::config::Dense`).
pub mod config {
    pub use super::layers::*;
    pub use super::registry::LayerConfig;
    pub use super::spec::{PaddingConfig, Pair};
}
