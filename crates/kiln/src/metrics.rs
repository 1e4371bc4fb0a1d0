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

/// Average precision (area under the precision-recall curve, as scikit-learn's average_precision_score):
/// the mean of the precision at each positive, ranked by score. None without positives.
pub fn pr_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let pos = labels.iter().filter(|&&l| l).count();
    if pos == 0 {
        return None;
    }
    let (mut tp, mut ap, mut i) = (0usize, 0.0, 0);
    // Tied scores form one threshold: precision is taken after the whole tie.
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let new_tp = (i..=j).filter(|&k| labels[idx[k]]).count();
        tp += new_tp;
        ap += new_tp as f64 / pos as f64 * (tp as f64 / (j + 1) as f64);
        i = j + 1;
    }
    Some(ap)
}

/// Per-class precision, recall, F1 and support, their macro, micro and weighted averages, and the confusion
/// matrix (rows: true class, columns: predicted), as scikit-learn's classification_report and
/// confusion_matrix compute them (a class with no predictions has precision 0).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassificationReport {
    pub classes: Vec<String>,
    /// (precision, recall, f1, support) per class.
    pub per_class: Vec<(f64, f64, f64, usize)>,
    pub confusion: Vec<Vec<usize>>,
    pub accuracy: f64,
    pub macro_avg: (f64, f64, f64),
    pub weighted_avg: (f64, f64, f64),
    /// Micro-averaged precision = recall = F1 = accuracy for single-label classes.
    pub micro_f1: f64,
}

impl ClassificationReport {
    pub fn new(pred: &[usize], truth: &[usize], classes: &[String]) -> Self {
        let k = classes.len();
        let mut cm = vec![vec![0usize; k]; k];
        for (&p, &t) in pred.iter().zip(truth) {
            cm[t][p] += 1;
        }
        let n = truth.len().max(1) as f64;
        let per_class: Vec<(f64, f64, f64, usize)> = (0..k)
            .map(|c| {
                let tp = cm[c][c] as f64;
                let predicted: usize = (0..k).map(|t| cm[t][c]).sum();
                let support: usize = cm[c].iter().sum();
                let p = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
                let r = if support > 0 { tp / support as f64 } else { 0.0 };
                let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
                (p, r, f, support)
            })
            .collect();
        let avg = |w: &dyn Fn(usize) -> f64| {
            let total: f64 = (0..k).map(w).sum::<f64>().max(1e-300);
            let s = |f: &dyn Fn(&(f64, f64, f64, usize)) -> f64| {
                (0..k).map(|c| w(c) * f(&per_class[c])).sum::<f64>() / total
            };
            (s(&|x| x.0), s(&|x| x.1), s(&|x| x.2))
        };
        let accuracy = (0..k).map(|c| cm[c][c]).sum::<usize>() as f64 / n;
        ClassificationReport {
            classes: classes.to_vec(),
            macro_avg: avg(&|_| 1.0),
            weighted_avg: avg(&|c| per_class[c].3 as f64),
            per_class,
            confusion: cm,
            accuracy,
            micro_f1: accuracy,
        }
    }

    /// The table scikit-learn's classification_report prints.
    pub fn render(&self) -> String {
        let w = self.classes.iter().map(|c| c.len()).max().unwrap_or(0).max(12);
        let support: usize = self.per_class.iter().map(|c| c.3).sum();
        let mut s = format!("{:>w$}  {:>9}  {:>9}  {:>9}  {:>9}\n\n", "", "precision", "recall", "f1-score", "support");
        for (c, (p, r, f, n)) in self.classes.iter().zip(&self.per_class) {
            s += &format!("{c:>w$}  {p:>9.4}  {r:>9.4}  {f:>9.4}  {n:>9}\n");
        }
        s += &format!("\n{:>w$}  {:>9}  {:>9}  {:>9.4}  {support:>9}\n", "accuracy", "", "", self.accuracy);
        for (name, (p, r, f)) in [("macro avg", self.macro_avg), ("weighted avg", self.weighted_avg)] {
            s += &format!("{name:>w$}  {p:>9.4}  {r:>9.4}  {f:>9.4}  {support:>9}\n");
        }
        s += "\nconfusion matrix (rows: true, columns: predicted):\n";
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            s += &format!("{c:>w$}  {}\n", row.iter().map(|v| format!("{v:>7}")).collect::<String>());
        }
        s
    }
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn report_and_average_precision_match_scikit_learn() {
        // sklearn: classification_report([0,0,1,1,2,2], [0,1,1,1,2,0]) -> class 0 p=.5 r=.5, class 1 p=.667
        // r=1, class 2 p=1 r=.5; macro f1 = (0.5 + 0.8 + 0.6667)/3.
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = ClassificationReport::new(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 2], &names);
        assert!((r.per_class[1].0 - 2.0 / 3.0).abs() < 1e-12 && r.per_class[1].1 == 1.0);
        assert!((r.macro_avg.2 - (0.5 + 0.8 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(r.confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]);
        // average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8333...
        let ap = pr_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((ap - 0.8333333333333333).abs() < 1e-12, "{ap}");
    }
}
