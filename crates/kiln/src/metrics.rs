//! Metrics reported by fit and evaluate, accumulated batch by batch over a whole epoch or data set.

use crate::loss::Loss;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Categorical, sparse or binary accuracy, chosen by the loss as Keras does.
    #[serde(alias = "acc")]
    Accuracy,
    #[serde(alias = "mae")]
    MeanAbsoluteError,
    #[serde(alias = "mse")]
    MeanSquaredError,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::MeanAbsoluteError => "mae",
            Metric::MeanSquaredError => "mse",
        }
    }

    /// Sum of this metric over the rows of one batch. `out` holds the model's outputs as probabilities,
    /// except when `logits` (then a positive logit means p > 0.5 and the row argmax is unchanged).
    pub(crate) fn batch_sum(
        self,
        loss: Loss,
        out: &[f32],
        cols: usize,
        targets: &[f32],
        labels: &[u32],
        logits: bool,
    ) -> f64 {
        let rows = out.len() / cols.max(1);
        match self {
            Metric::Accuracy if loss.sparse() => (0..rows)
                .filter(|&r| kiln_core::argmax(&out[r * cols..(r + 1) * cols]) == labels[r] as usize)
                .count() as f64,
            Metric::Accuracy if cols == 1 || loss == Loss::BinaryCrossentropy => {
                let cut = if logits { 0.0 } else { 0.5 };
                let hits = out.iter().zip(targets).filter(|&(&o, &t)| (o > cut) == (t > 0.5)).count();
                hits as f64 / cols as f64
            }
            Metric::Accuracy => (0..rows)
                .filter(|&r| {
                    let row = r * cols..(r + 1) * cols;
                    kiln_core::argmax(&out[row.clone()]) == kiln_core::argmax(&targets[row])
                })
                .count() as f64,
            Metric::MeanAbsoluteError | Metric::MeanSquaredError => {
                let sq = self == Metric::MeanSquaredError;
                let s: f64 = out
                    .iter()
                    .zip(targets)
                    .map(|(&o, &t)| {
                        let d = (o - t) as f64;
                        if sq { d * d } else { d.abs() }
                    })
                    .sum();
                s / cols as f64
            }
        }
    }

    /// Whether the metric reads probabilities (so logits must be converted first).
    pub(crate) fn needs_probabilities(self) -> bool {
        self != Metric::Accuracy
    }
}
