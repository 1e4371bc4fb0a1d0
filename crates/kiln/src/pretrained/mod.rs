//! Models others trained, read from the files they publish: BERT-family text encoders from Hugging Face
//! folders (`bert`).

pub mod bert;

pub use bert::{Encoder, Folder, HfBertSource, Pooling};
