//! Layers: configs (shared by TOML and Rust), initializers, regularizers, and the built form.

mod activation;
pub mod config;
mod init;
mod layer;

pub use activation::Activation;
pub use config::{
    ActivationLayer, AveragePooling2D, BatchNormalization, Bidirectional, CategoryEmbedding, Conv1D, Conv2D, Dense,
    Dropout, Embedding, Flatten, GlobalAveragePooling1D, GlobalMaxPooling1D, Gru, LayerConfig, Lstm, MaxPooling2D,
    PaddingConfig, Pair, RnnKind, SimpleRnn,
};
pub use init::{Initializer, Regularizer, fans};
pub use layer::Layer;
pub(crate) use layer::{conv_pool_forward, fmt_shape};
