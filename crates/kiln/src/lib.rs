//! kiln: Keras-style deep learning in Rust.
//!
//! ```no_run
//! use kiln::prelude::*;
//! # fn main() -> kiln::Result<()> {
//! let (train, test) = kiln::data::mnist::load("data/mnist")?;
//! let mut model = Sequential::new(&[28, 28, 1]);
//! model.add(Conv2D::new(32, 3).activation(Activation::Relu))?;
//! model.add(MaxPooling2D::new(2))?;
//! model.add(Flatten::new())?;
//! model.add(Dense::new(10).activation(Activation::Softmax))?;
//! model.compile(Adam::default(), Loss::CategoricalCrossentropy, &[Metric::Accuracy])?;
//! model.fit(&train.x, &train.y, FitOptions { epochs: 1, batch_size: 64, ..Default::default() })?;
//! println!("{}", model.evaluate(&test.x, &test.y, 1000)?);
//! model.save("mnist_model.safetensors")?;
//! # Ok(()) }
//! ```

pub mod callbacks;
pub mod checkpoint;
pub mod class_weight;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod explain;
pub mod history;
pub mod index;
pub mod infer;
pub mod inputs;
pub mod io;
pub mod keras;
pub mod llm;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod onnx;
pub mod optim;
pub mod pretrained;
pub mod quantize;
pub mod recipe;
pub mod recommend;
pub mod schedule;
pub mod search;
pub mod step;
pub mod tabular;
pub mod threads;
pub mod train;
pub mod weights;

pub use kiln_core as core;
pub use kiln_core::{Error, Result, Tensor};

pub mod prelude {
    pub use crate::loss::Loss;
    pub use crate::metrics::{Average, ClassificationReport, Metric};
    pub use crate::model::CompileConfig;
    pub use crate::model::{Model, Sequential};
    pub use crate::nn::{
        Activation, ActivationLayer, Add, AveragePooling2D, BatchNormalization, Bidirectional, CategoryEmbedding,
        ColumnTokens, Concatenate, Conv1D, Conv2D, Dense, Dot, Dropout, Embedding, Flatten, GlobalAveragePooling1D,
        GlobalMaxPooling1D, Gru, Initializer, LayerNormalization, Lstm, MaxPooling2D, MultiHeadAttention, Multiply,
        PaddingConfig, PositionEmbedding, Regularizer, RnnKind, SelectToken, SimpleRnn, TransformerEncoder,
    };
    pub use crate::optim::{Adagrad, Adam, AdamW, RmsProp, Sgd};
    pub use crate::schedule::{Clip, Schedule};
    pub use crate::train::{ClassWeight, Evaluation, FitOptions, History, Inputs, balanced_class_weights};
    pub use crate::weights::{NameMap, Transform};
    pub use kiln_core::Tensor;
}
