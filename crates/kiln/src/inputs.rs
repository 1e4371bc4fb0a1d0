//! `Inputs`: what `fit`, `evaluate` and `predict` take as x, one tensor per model input.

use kiln_core::Tensor;

/// The x of `fit`, `evaluate` and `predict`: one tensor per model input, in the order of the inputs. A
/// single `&Tensor` converts into it, as does a slice or array of them.
#[derive(Clone, Copy, Debug)]
pub enum Inputs<'a> {
    One([&'a Tensor; 1]),
    Many(&'a [&'a Tensor]),
}

impl<'a> Inputs<'a> {
    pub fn all(&self) -> &[&'a Tensor] {
        match self {
            Inputs::One(a) => a,
            Inputs::Many(s) => s,
        }
    }

    /// Samples (rows of the first tensor; `check_inputs` makes sure the others agree).
    pub(crate) fn rows(&self) -> usize {
        self.all().first().map_or(0, |t| t.rows())
    }
}

impl<'a> From<&'a Tensor> for Inputs<'a> {
    fn from(t: &'a Tensor) -> Self {
        Inputs::One([t])
    }
}

impl<'a> From<&'a [&'a Tensor]> for Inputs<'a> {
    fn from(t: &'a [&'a Tensor]) -> Self {
        Inputs::Many(t)
    }
}

impl<'a, const N: usize> From<&'a [&'a Tensor; N]> for Inputs<'a> {
    fn from(t: &'a [&'a Tensor; N]) -> Self {
        Inputs::Many(t)
    }
}

impl<'a> From<&'a Vec<&'a Tensor>> for Inputs<'a> {
    fn from(t: &'a Vec<&'a Tensor>) -> Self {
        Inputs::Many(t)
    }
}
