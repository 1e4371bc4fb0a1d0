//! Data sets and their readers.

pub mod audit;
pub mod augment;
pub mod csv;
pub mod idx;
pub mod mnist;
pub mod prepare;
pub mod table;
pub mod target;
pub mod text;
pub mod word_vectors;

use kiln_core::{Result, Tensor};

/// Labels 0..classes as one-hot rows.
pub fn one_hot(labels: &[u8], classes: usize) -> Result<Tensor> {
    let mut data = vec![0.0; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        if l as usize >= classes {
            return Err(kiln_core::Error::Data(format!("label {l} at sample {i} is not below {classes} classes")));
        }
        data[i * classes + l as usize] = 1.0;
    }
    Tensor::new(&[labels.len(), classes], data)
}
