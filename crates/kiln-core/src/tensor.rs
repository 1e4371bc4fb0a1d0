//! A plain n-d array on the host: what goes into a graph and what comes out of it.

use crate::{Error, Float, Result, Shape};

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T = f32> {
    shape: Shape,
    data: Vec<T>,
}

impl<T: Float> Tensor<T> {
    pub fn new(shape: &[usize], data: Vec<T>) -> Result<Self> {
        let shape = Shape::new(shape)?;
        if shape.numel() != data.len() {
            return Err(Error::Shape(format!(
                "tensor of shape {shape} needs {} values, got {}",
                shape.numel(),
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    pub fn zeros(shape: &[usize]) -> Result<Self> {
        let s = Shape::new(shape)?;
        Ok(Tensor { shape: s, data: vec![T::ZERO; s.numel()] })
    }

    pub fn shape(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn data(&self) -> &[T] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Number of samples (size of the first axis).
    pub fn rows(&self) -> usize {
        self.shape.dims().first().copied().unwrap_or(1)
    }

    /// Elements per sample.
    pub fn row_len(&self) -> usize {
        self.shape.dims().iter().skip(1).product()
    }

    /// Samples `idx` (along the first axis), gathered into a new tensor.
    pub fn select_rows(&self, idx: &[usize]) -> Tensor<T> {
        let w = self.row_len();
        let mut data = Vec::with_capacity(idx.len() * w);
        for &i in idx {
            data.extend_from_slice(&self.data[i * w..(i + 1) * w]);
        }
        let mut dims = self.shape.dims().to_vec();
        dims[0] = idx.len();
        Tensor::new(&dims, data).expect("rows keep their shape")
    }

    /// Samples `start..end`.
    pub fn slice_rows(&self, start: usize, end: usize) -> Tensor<T> {
        let w = self.row_len();
        let mut dims = self.shape.dims().to_vec();
        dims[0] = end - start;
        Tensor::new(&dims, self.data[start * w..end * w].to_vec()).expect("rows keep their shape")
    }

    /// Index of the largest value in each row.
    pub fn argmax_rows(&self) -> Vec<usize> {
        let w = self.row_len();
        self.data.chunks(w.max(1)).map(argmax).collect()
    }
}

pub fn argmax<T: Float>(xs: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}
