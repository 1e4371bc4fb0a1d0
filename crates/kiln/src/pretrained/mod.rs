//! Models others trained, read from the files they publish: BERT-family text encoders from Hugging Face
//! folders (`bert`), with the attention they run on (`attention`).

pub mod attention;
pub mod bert;

pub use bert::{Encoder, Pooling};
