//! Metrics reported by fit and evaluate, accumulated batch by batch over a whole epoch or data set.

use crate::loss::Loss;
use serde::{Deserialize, Serialize};

/// How precision, recall and F1 combine the classes (scikit-learn's `average`): `Binary` is the positive
/// class's (a model with one sigmoid output; with several outputs it is read as `Macro`), `Macro` the plain
/// mean over classes, `Micro` from the pooled counts (equal to accuracy for single-label classes),
/// `Weighted` the mean weighted by each class's support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Average {
    Binary,
    Macro,
    Micro,
    Weighted,
}

/// A metric by its name in configs: `accuracy` (`acc`), `mae`, `mse`, and `precision`, `recall`, `f1`
/// with an optional `macro_`, `micro_` or `weighted_` prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Metric {
    /// Categorical, sparse or binary accuracy, chosen by the loss as Keras does.
    Accuracy,
    MeanAbsoluteError,
    MeanSquaredError,
    Precision(Average),
    Recall(Average),
    F1(Average),
}

const AVERAGES: [Average; 4] = [Average::Binary, Average::Macro, Average::Micro, Average::Weighted];

impl Metric {
    /// Every metric, for parsing and for messages.
    pub fn all() -> Vec<Metric> {
        let mut v = vec![Metric::Accuracy, Metric::MeanAbsoluteError, Metric::MeanSquaredError];
        for a in AVERAGES {
            v.extend([Metric::Precision(a), Metric::Recall(a), Metric::F1(a)]);
        }
        v
    }

    pub fn name(self) -> &'static str {
        let pick = |a: Average, names: [&'static str; 4]| names[AVERAGES.iter().position(|&x| x == a).unwrap_or(0)];
        match self {
            Metric::Accuracy => "accuracy",
            Metric::MeanAbsoluteError => "mae",
            Metric::MeanSquaredError => "mse",
            Metric::Precision(a) => pick(a, ["precision", "macro_precision", "micro_precision", "weighted_precision"]),
            Metric::Recall(a) => pick(a, ["recall", "macro_recall", "micro_recall", "weighted_recall"]),
            Metric::F1(a) => pick(a, ["f1", "macro_f1", "micro_f1", "weighted_f1"]),
        }
    }

    /// Whether the metric is computed from the confusion matrix of the whole epoch (not a mean of rows).
    pub(crate) fn needs_confusion(self) -> bool {
        matches!(self, Metric::Precision(_) | Metric::Recall(_) | Metric::F1(_))
    }

    /// The metric from a k × k confusion matrix (rows true, columns predicted), zero where undefined (as
    /// scikit-learn with zero_division=0).
    pub(crate) fn of_confusion(self, cm: &[f64], k: usize) -> f64 {
        let per = per_class(cm, k);
        type Pick = fn(&(f64, f64, f64, f64)) -> f64;
        let (avg, pick): (Average, Pick) = match self {
            Metric::Precision(a) => (a, |c| c.0),
            Metric::Recall(a) => (a, |c| c.1),
            Metric::F1(a) => (a, |c| c.2),
            _ => return f64::NAN,
        };
        let mean = |w: &dyn Fn(usize) -> f64| {
            let total: f64 = (0..k).map(w).sum();
            if total > 0.0 { (0..k).map(|c| w(c) * pick(&per[c])).sum::<f64>() / total } else { 0.0 }
        };
        match avg {
            Average::Binary if k == 2 => pick(&per[1]),
            Average::Binary | Average::Macro => mean(&|_| 1.0),
            Average::Weighted => mean(&|c| per[c].3),
            Average::Micro => {
                // Single-label: every wrong prediction is a false positive of one class and a false negative
                // of another, so micro precision = recall = F1 = accuracy.
                let total: f64 = cm.iter().sum();
                if total > 0.0 { (0..k).map(|c| cm[c * k + c]).sum::<f64>() / total } else { 0.0 }
            }
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
            Metric::Precision(_) | Metric::Recall(_) | Metric::F1(_) => 0.0,
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
        matches!(self, Metric::MeanAbsoluteError | Metric::MeanSquaredError)
    }
}

impl TryFrom<String> for Metric {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let s = match s.as_str() {
            "acc" => "accuracy",
            "mean_absolute_error" => "mae",
            "mean_squared_error" => "mse",
            "f1_score" => "f1",
            other => other,
        };
        Metric::all().into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Metric::all().iter().map(|m| m.name()).collect();
            format!("unknown metric `{s}`; the metrics are: {}", names.join(", "))
        })
    }
}

impl From<Metric> for String {
    fn from(m: Metric) -> String {
        m.name().to_string()
    }
}

/// Classes of a model with `cols` outputs: 2 for one sigmoid output.
pub(crate) fn class_count(cols: usize) -> usize {
    if cols == 1 { 2 } else { cols }
}

/// Slots a fit or evaluation keeps for `metrics`: one sum per metric, then a confusion matrix when any
/// metric reads one.
pub(crate) fn state_len(metrics: &[Metric], cols: usize) -> usize {
    let k = class_count(cols);
    metrics.len() + if metrics.iter().any(|m| m.needs_confusion()) { k * k } else { 0 }
}

/// Adds one batch to the confusion matrix `cm` (k × k): the true class from `labels` (sparse) or `targets`,
/// the predicted one from `out` (a positive logit or p > 0.5 for one output, else the row argmax).
pub(crate) fn add_to_confusion(
    cm: &mut [f64],
    out: &[f32],
    cols: usize,
    targets: &[f32],
    labels: &[u32],
    logits: bool,
) {
    let k = class_count(cols);
    let cut = if logits { 0.0 } else { 0.5 };
    for r in 0..out.len() / cols.max(1) {
        let row = r * cols..(r + 1) * cols;
        let (t, p) = if cols == 1 {
            let t = labels.get(r).map_or(targets[r] > 0.5, |&l| l == 1);
            (t as usize, (out[r] > cut) as usize)
        } else {
            let t = labels.get(r).map_or_else(|| kiln_core::argmax(&targets[row.clone()]), |&l| l as usize);
            (t, kiln_core::argmax(&out[row]))
        };
        cm[t * k + p] += 1.0;
    }
}

/// (precision, recall, F1, support) of each class of a k × k confusion matrix.
fn per_class(cm: &[f64], k: usize) -> Vec<(f64, f64, f64, f64)> {
    (0..k)
        .map(|c| {
            let tp = cm[c * k + c];
            let predicted: f64 = (0..k).map(|t| cm[t * k + c]).sum();
            let support: f64 = cm[c * k..(c + 1) * k].iter().sum();
            let p = if predicted > 0.0 { tp / predicted } else { 0.0 };
            let r = if support > 0.0 { tp / support } else { 0.0 };
            let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
            (p, r, f, support)
        })
        .collect()
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
        let flat: Vec<f64> = cm.iter().flatten().map(|&v| v as f64).collect();
        let per_class: Vec<(f64, f64, f64, usize)> =
            per_class(&flat, k).into_iter().map(|(p, r, f, s)| (p, r, f, s as usize)).collect();
        let avg = |w: &dyn Fn(usize) -> f64| {
            let total: f64 = (0..k).map(w).sum::<f64>().max(1e-300);
            type Stat = dyn Fn(&(f64, f64, f64, usize)) -> f64;
            let s = |f: &Stat| (0..k).map(|c| w(c) * f(&per_class[c])).sum::<f64>() / total;
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
        // precision/recall/f1_score(t, p, average=...) from scikit-learn 1.8 on these labels.
        let (t, p) = ([0u32, 0, 0, 0, 1, 1, 2, 2, 2, 1], [0usize, 1, 0, 2, 2, 1, 2, 0, 2, 2]);
        let out: Vec<f32> = p.iter().flat_map(|&c| (0..3).map(move |j| (j == c) as u8 as f32)).collect();
        let mut cm = vec![0.0; 9];
        add_to_confusion(&mut cm, &out, 3, &[], &t, false);
        let want = [
            (Average::Macro, 0.5222222222222221, 0.5, 0.4904761904761905),
            (Average::Micro, 0.5, 0.5, 0.5),
            (Average::Weighted, 0.5366666666666666, 0.5, 0.49857142857142855),
        ];
        for (a, wp, wr, wf) in want {
            let got = [Metric::Precision(a), Metric::Recall(a), Metric::F1(a)].map(|m| m.of_confusion(&cm, 3));
            for (g, w) in got.iter().zip([wp, wr, wf]) {
                assert!((g - w).abs() < 1e-12, "{a:?}: {got:?} vs {wp} {wr} {wf}");
            }
        }
        // Binary, one sigmoid output given as logits: precision 0.75, recall 0.6, F1 2/3.
        let (tb, zb) = ([0., 1., 1., 0., 1., 1., 0., 1.], [-1f32, 2., -3., -0.5, -0.1, 0.3, 4., 1.]);
        let mut cm = vec![0.0; 4];
        add_to_confusion(&mut cm, &zb, 1, &tb, &[], true);
        let got = [Metric::Precision(Average::Binary), Metric::Recall(Average::Binary), Metric::F1(Average::Binary)]
            .map(|m| m.of_confusion(&cm, 2));
        assert!((got[0] - 0.75).abs() < 1e-12 && (got[1] - 0.6).abs() < 1e-12 && (got[2] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(Metric::try_from("weighted_f1".to_string()), Ok(Metric::F1(Average::Weighted)));
        assert!(Metric::try_from("f2".to_string()).unwrap_err().contains("micro_recall"));
        // average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8333...
        let ap = pr_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert!((ap - 0.8333333333333333).abs() < 1e-12, "{ap}");
    }
}
