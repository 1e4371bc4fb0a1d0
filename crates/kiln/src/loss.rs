//! Loss names as Keras spells them. Where the model's last activation is the one the loss expects
//! (softmax for cross-entropy, sigmoid for binary cross-entropy) the two are fused: the model hands over
//! logits and the engine computes the loss from them, stable for any input.

use crate::nn::Activation;
use kiln_core::{Graph, LossKind, Result, Var};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Targets one-hot (or any distribution), shape (n, classes).
    CategoricalCrossentropy,
    /// Targets class indices, shape (n,) or (n, 1).
    SparseCategoricalCrossentropy,
    /// Targets 0/1, same shape as the output.
    BinaryCrossentropy,
    #[serde(alias = "mse")]
    MeanSquaredError,
    #[serde(alias = "mae")]
    MeanAbsoluteError,
    /// Squared error below 1, absolute error above (Keras's Huber with delta 1): robust to outliers.
    Huber,
}

impl Loss {
    pub fn name(self) -> &'static str {
        match self {
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
            Loss::Huber => "huber",
        }
    }

    /// Whether a model ending in `last` hands this loss logits instead of probabilities.
    pub fn fuses(self, last: Activation) -> bool {
        matches!(
            (self, last),
            (Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy, Activation::Softmax)
                | (Loss::BinaryCrossentropy, Activation::Sigmoid)
        )
    }

    /// Whether targets are class indices rather than arrays shaped like the output.
    pub fn sparse(self) -> bool {
        self == Loss::SparseCategoricalCrossentropy
    }

    /// Whether class weights apply: the loss reads classes.
    pub fn classifies(self) -> bool {
        matches!(self, Loss::CategoricalCrossentropy | Loss::SparseCategoricalCrossentropy | Loss::BinaryCrossentropy)
    }

    /// The mean loss of a batch. `out` is logits when `fused`, else the model's output; `targets` is shaped
    /// like the output, except for the sparse loss, which reads `labels`. `weights`: one per row, multiplying
    /// its loss (empty: all 1); only for losses that `classifies`.
    pub(crate) fn compute(
        self,
        g: &mut Graph<f32>,
        out: Var,
        fused: bool,
        targets: Option<Var>,
        labels: &[u32],
        weights: &[f32],
    ) -> Result<Var> {
        let t = || targets.expect("dense targets for a dense loss");
        match (self, fused) {
            (Loss::CategoricalCrossentropy, true) => g.weighted_loss(LossKind::SoftmaxCrossEntropy, out, t(), weights),
            (Loss::CategoricalCrossentropy, false) => {
                g.weighted_loss(LossKind::CategoricalCrossEntropy, out, t(), weights)
            }
            (Loss::SparseCategoricalCrossentropy, true) => {
                g.weighted_sparse_softmax_cross_entropy(out, labels, weights)
            }
            (Loss::SparseCategoricalCrossentropy, false) => {
                let shape = g.shape(out);
                let c = shape.dims().last().copied().unwrap_or(1);
                let one_hot = g.input_with(shape.dims(), |buf| {
                    for (r, &l) in labels.iter().enumerate() {
                        buf[r * c + l as usize] = 1.0;
                    }
                })?;
                g.weighted_loss(LossKind::CategoricalCrossEntropy, out, one_hot, weights)
            }
            (Loss::BinaryCrossentropy, true) => g.weighted_loss(LossKind::SigmoidBinaryCrossEntropy, out, t(), weights),
            (Loss::BinaryCrossentropy, false) => g.weighted_loss(LossKind::BinaryCrossEntropy, out, t(), weights),
            (Loss::MeanSquaredError, _) => g.loss(LossKind::MeanSquaredError, out, t()),
            (Loss::MeanAbsoluteError, _) => {
                let d = g.sub(out, t())?;
                let a = g.abs(d)?;
                g.mean(a, None, false)
            }
            (Loss::Huber, _) => {
                // With a = |d| and e = max(a − 1, 0): ½(a − e)² + e, which is ½d² for |d| ≤ 1 and |d| − ½ above.
                let d = g.sub(out, t())?;
                let a = g.abs(d)?;
                let one = g.input(&[1], &[1.0])?;
                let over = g.sub(a, one)?;
                let e = g.relu(over)?;
                let q = g.sub(a, e)?;
                let q2 = g.mul(q, q)?;
                let half = g.input(&[1], &[0.5])?;
                let sq = g.mul(q2, half)?;
                let h = g.add(sq, e)?;
                g.mean(h, None, false)
            }
        }
    }
}
