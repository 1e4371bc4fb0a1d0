//! Shapes live inline (no heap), so building a graph node never allocates for its shape.

use crate::{Error, Result};
use std::fmt;

pub const MAX_RANK: usize = 6;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    dims: [usize; MAX_RANK],
    rank: u8,
}

impl Shape {
    pub fn new(dims: &[usize]) -> Result<Shape> {
        if dims.len() > MAX_RANK {
            return Err(Error::Shape(format!(
                "rank {} is more than the {MAX_RANK} dimensions kiln supports: {dims:?}",
                dims.len()
            )));
        }
        let mut d = [0; MAX_RANK];
        d[..dims.len()].copy_from_slice(dims);
        Ok(Shape { dims: d, rank: dims.len() as u8 })
    }

    pub fn scalar() -> Shape {
        Shape::default()
    }

    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank as usize]
    }

    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    pub fn dim(&self, axis: usize) -> usize {
        self.dims()[axis]
    }

    /// The same shape with `dims[axis] = n`.
    pub fn with_dim(&self, axis: usize, n: usize) -> Shape {
        let mut s = *self;
        s.dims[axis] = n;
        s
    }

    /// Splits the shape around `axis` into (product before, size at, product after).
    pub fn split_at_axis(&self, axis: usize) -> (usize, usize, usize) {
        let d = self.dims();
        (d[..axis].iter().product(), d[axis], d[axis + 1..].iter().product())
    }

    /// Checks an axis index against the rank, naming the op on failure.
    pub fn axis(&self, axis: usize, op: &str) -> Result<usize> {
        if axis >= self.rank() {
            return Err(Error::Shape(format!("{op}: axis {axis} is out of range for shape {self}")));
        }
        Ok(axis)
    }

    /// Row-major strides.
    pub fn strides(&self) -> [usize; MAX_RANK] {
        let mut s = [0; MAX_RANK];
        let mut acc = 1;
        for i in (0..self.rank()).rev() {
            s[i] = acc;
            acc *= self.dims[i];
        }
        s
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(")?;
        for (i, d) in self.dims().iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        if self.rank() == 1 {
            write!(f, ",")?;
        }
        write!(f, ")")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
