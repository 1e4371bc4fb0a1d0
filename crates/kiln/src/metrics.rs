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

/// Area under the ROC curve of `scores` for binary `labels` (1 positive): the probability that a random
/// positive scores above a random negative, ties counting half (the Mann-Whitney statistic, as
/// scikit-learn's `roc_auc_score`). None when only one class is present.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| labels[idx[k]]).count() as f64 * avg_rank;
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    (pos > 0.0 && neg > 0.0).then(|| (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// (RMSE, MAE, R²) of predictions against targets.
pub fn regression_scores(pred: &[f32], target: &[f32]) -> (f64, f64, f64) {
    let n = target.len().max(1) as f64;
    let mean = target.iter().map(|&t| t as f64).sum::<f64>() / n;
    let (mut se, mut ae, mut tot) = (0.0, 0.0, 0.0);
    for (&p, &t) in pred.iter().zip(target) {
        let d = p as f64 - t as f64;
        (se, ae, tot) = (se + d * d, ae + d.abs(), tot + (t as f64 - mean).powi(2));
    }
    ((se / n).sqrt(), ae / n, if tot > 0.0 { 1.0 - se / tot } else { 0.0 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn roc_auc_matches_scikit_learn_on_a_small_case() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75; ties count half.
        assert_eq!(super::roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
        assert_eq!(super::roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(super::roc_auc(&[0.5, 0.6], &[true, true]), None);
        let (rmse, mae, r2) = super::regression_scores(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]);
        assert!((rmse - (1.0f64 / 3.0).sqrt()).abs() < 1e-12 && (mae - 1.0 / 3.0).abs() < 1e-12);
        assert!((r2 - (1.0 - 1.0 / (14.0 / 3.0))).abs() < 1e-12);
    }
}
