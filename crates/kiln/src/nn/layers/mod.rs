//! One file per layer family: each holds its configs (serde, shared by TOML and Rust, with Keras's names and
//! defaults), their builders, and their `LayerSpec` (shape checks, parameters by name, forward).

pub(crate) mod bert;
mod column_tokens;
mod conv;
mod core;
mod dense;
mod embedding;
mod merge;
mod norm;
mod pool;
mod recurrent;
mod transformer;

pub use self::core::{ActivationLayer, Dropout, Flatten};
pub use bert::{BertEncoder, TokenPooling};
pub use column_tokens::{ColumnTokens, SelectToken};
pub use conv::{Conv1D, Conv2D};
pub use dense::Dense;
pub use embedding::{CategoryEmbedding, Embedding};
pub use merge::{Add, Concatenate, Dot, Multiply};
pub use norm::{BatchNormalization, LayerNormalization};
pub use pool::{AveragePooling2D, GlobalAveragePooling1D, GlobalMaxPooling1D, MaxPooling2D};
pub use recurrent::{Bidirectional, Gru, Lstm, RnnKind, SimpleRnn};
pub use transformer::{MultiHeadAttention, PositionEmbedding, PositionEncoding, TransformerEncoder, sinusoidal_table};
