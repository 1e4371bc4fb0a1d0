//! Permutation importance (Breiman 2001; scikit-learn's `permutation_importance`): how much a score drops
//! when one column's values are shuffled among the rows, breaking its link to the target while keeping its
//! distribution. As scikit-learn does it: every column gets the same `repeats` shuffles, each repeat
//! shuffling the previous order again; the importance of a repeat is score(data) − score(shuffled). The mean,
//! the standard deviation over repeats (ddof 0, scikit-learn's), and a 95% interval for the mean (Student's
//! t on the sample deviation) are reported per column. On a table the raw column is shuffled before
//! preparation, so a one-hot or embedded category counts once, as the column it is.

use crate::data::prepare::Task;
use crate::data::table::Table;
use crate::metrics::{regression_scores, roc_auc};
use crate::model::Model;
use kiln_core::{Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

/// What the importances are a drop of (scikit-learn's `scoring`; greater is better for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    Accuracy,
    RocAuc,
    /// The mean log-likelihood of the true class (minus the log loss).
    NegLogLoss,
    R2,
}

impl Scoring {
    pub fn parse(s: &str) -> Result<Scoring> {
        Ok(match s {
            "accuracy" => Scoring::Accuracy,
            "roc_auc" => Scoring::RocAuc,
            "neg_log_loss" => Scoring::NegLogLoss,
            "r2" => Scoring::R2,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown scoring `{s}`: accuracy, roc_auc, neg_log_loss (classification) or r2 (regression)"
                )));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Scoring::Accuracy => "accuracy",
            Scoring::RocAuc => "roc_auc",
            Scoring::NegLogLoss => "neg_log_loss",
            Scoring::R2 => "r2",
        }
    }

    /// scikit-learn's default: the estimator's `score`, accuracy for a classifier and R² for a regressor.
    pub fn default_for(task: &Task) -> Scoring {
        match task {
            Task::Regression => Scoring::R2,
            _ => Scoring::Accuracy,
        }
    }

    /// The score of a model's output (`[rows, width]`: a sigmoid's probability, class probabilities, or
    /// values) against targets as `Target::values` gives them (0/1, a class index, or a value).
    pub fn score(self, task: &Task, output: &[f32], target: &[f32]) -> Result<f64> {
        let n = target.len();
        let width = output.len() / n.max(1);
        let class_of = |r: &[f32]| -> usize { if width == 1 { (r[0] > 0.5) as usize } else { kiln_core::argmax(r) } };
        let p_true = |r: &[f32], t: f32| -> f64 {
            let p = if width == 1 { if t > 0.5 { r[0] } else { 1.0 - r[0] } } else { r[t as usize] };
            // scikit-learn clips probabilities at the dtype's epsilon before the log.
            (p as f64).clamp(f32::EPSILON as f64, 1.0 - f32::EPSILON as f64)
        };
        let regression = matches!(task, Task::Regression);
        let bad = |what: &str| Err(Error::Invalid(format!("scoring `{}` is for {what}", self.name())));
        Ok(match self {
            Scoring::R2 if regression => regression_scores(output, target).2,
            Scoring::R2 => return bad("regression"),
            _ if regression => return bad("classification"),
            Scoring::Accuracy => {
                output.chunks_exact(width).zip(target).filter(|(r, t)| class_of(r) == **t as usize).count() as f64
                    / n as f64
            }
            Scoring::NegLogLoss => {
                output.chunks_exact(width).zip(target).map(|(r, &t)| p_true(r, t).ln()).sum::<f64>() / n as f64
            }
            Scoring::RocAuc if width == 1 => {
                let labels: Vec<bool> = target.iter().map(|&t| t > 0.5).collect();
                roc_auc(output, &labels)
                    .ok_or_else(|| Error::Data("roc_auc needs rows of both classes in the data".into()))?
            }
            Scoring::RocAuc => return bad("a binary target"),
        })
    }
}

/// One column's importance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Importance {
    pub column: String,
    pub mean: f64,
    /// Over the repeats, ddof 0 (scikit-learn's `importances_std`).
    pub std: f64,
    /// A 95% confidence interval for the mean (Student's t, sample deviation); the mean itself with one repeat.
    pub low: f64,
    pub high: f64,
    /// score(data) − score(shuffled), per repeat.
    pub importances: Vec<f64>,
}

/// Importances from the scores the shuffles gave: `baseline` on the data, `shuffled[c][r]` with column c
/// shuffled by repeat r.
pub fn importances(columns: &[String], baseline: f64, shuffled: &[Vec<f64>]) -> Vec<Importance> {
    columns
        .iter()
        .zip(shuffled)
        .map(|(name, scores)| {
            let imp: Vec<f64> = scores.iter().map(|s| baseline - s).collect();
            let n = imp.len() as f64;
            let mean = imp.iter().sum::<f64>() / n;
            let ss = imp.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
            let half = if imp.len() > 1 { t975(imp.len() - 1) * (ss / (n - 1.0)).sqrt() / n.sqrt() } else { 0.0 };
            Importance {
                column: name.clone(),
                mean,
                std: (ss / n).sqrt(),
                low: mean - half,
                high: mean + half,
                importances: imp,
            }
        })
        .collect()
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom: tabled to 30, then the Cornish-Fisher
/// expansion around the normal's 1.959964 (within 1e-4 past 30).
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    if (1..=30).contains(&df) {
        return T[df - 1];
    }
    let (z, v) = (1.959964f64, df as f64);
    z + (z.powi(3) + z) / (4.0 * v) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
}

/// The row orders of the repeats: scikit-learn's scheme (one order shuffled again for each repeat, the same
/// orders for every column), from kiln's generator seeded with `seed`.
pub fn shuffles(rows: usize, repeats: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..rows).collect();
    (0..repeats)
        .map(|_| {
            rng.shuffle(&mut order);
            order.clone()
        })
        .collect()
}

/// Permutation importance of every feature column of a table model on `table` (which holds the target
/// column), the first target scored by `scoring`, each column's raw cells reordered by each of `orders`.
pub fn table_importance(
    model: &Model,
    table: &Table,
    scoring: Scoring,
    orders: &[Vec<usize>],
) -> Result<(f64, Vec<Importance>)> {
    let prep = model.preparation().ok_or_else(|| {
        Error::Invalid("permutation importance is for models trained on a table (this one has no preparation)".into())
    })?;
    let rows: Vec<usize> = (0..table.rows()).collect();
    if let Some(o) = orders.iter().find(|o| o.len() != rows.len()) {
        return Err(Error::Shape(format!("a shuffle of {} rows for a table of {}", o.len(), rows.len())));
    }
    let target = &prep.targets[0];
    let y = target.values(table, &rows)?;
    let score = |t: &Table| -> Result<f64> {
        let x = prep.transform_inputs(t, &rows)?;
        let x: Vec<&Tensor> = x.iter().collect();
        let out = model.predict_outputs(&x, 1024)?;
        scoring.score(&target.task, out[0].data(), y.data())
    };
    let baseline = score(table)?;
    let mut shuffled = Vec::with_capacity(prep.features.len());
    let mut t = table.clone();
    for f in &prep.features {
        let c = t.columns.iter().position(|c| c.name == f.name).ok_or_else(|| t.column(&f.name).err().unwrap())?;
        let original = t.columns[c].cells.clone();
        let mut scores = Vec::with_capacity(orders.len());
        for order in orders {
            t.columns[c].cells = order.iter().map(|&r| original[r].clone()).collect();
            scores.push(score(&t)?);
        }
        t.columns[c].cells = original;
        shuffled.push(scores);
    }
    let names: Vec<String> = prep.features.iter().map(|f| f.name.clone()).collect();
    Ok((baseline, importances(&names, baseline, &shuffled)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_and_intervals() {
        assert!((t975(4) - 2.776).abs() < 1e-9);
        assert!((t975(31) - 2.0395).abs() < 1e-3 && (t975(1000) - 1.9623).abs() < 1e-3);
        let imp = importances(&["a".into()], 1.0, &[vec![0.9, 0.8, 0.7]]);
        let i = &imp[0];
        assert!((i.mean - 0.2).abs() < 1e-12);
        assert!((i.std - (0.02f64 / 3.0).sqrt()).abs() < 1e-12, "ddof 0");
        let half = 4.303 * 0.1 / 3f64.sqrt();
        assert!((i.low - (0.2 - half)).abs() < 1e-12 && (i.high - (0.2 + half)).abs() < 1e-12);
    }

    #[test]
    fn scores_as_scikit_learn_defines_them() {
        let task = Task::Multiclass { classes: vec!["a".into(), "b".into()] };
        let out = [0.9, 0.1, 0.3, 0.7, 0.6, 0.4];
        assert_eq!(Scoring::Accuracy.score(&task, &out, &[0.0, 1.0, 1.0]).unwrap(), 2.0 / 3.0);
        let ll = (0.9f64.ln() + 0.7f64.ln() + 0.4f64.ln()) / 3.0;
        assert!((Scoring::NegLogLoss.score(&task, &out, &[0.0, 1.0, 1.0]).unwrap() - ll).abs() < 1e-6);
        let bin = Task::Binary { classes: vec!["n".into(), "y".into()] };
        assert_eq!(Scoring::RocAuc.score(&bin, &[0.1, 0.4, 0.35, 0.8], &[0.0, 0.0, 1.0, 1.0]).unwrap(), 0.75);
        assert!(Scoring::R2.score(&bin, &[0.1], &[0.0]).unwrap_err().to_string().contains("regression"));
        assert!(Scoring::RocAuc.score(&task, &out, &[0.0, 1.0, 1.0]).is_err());
    }

    #[test]
    fn shuffles_reshuffle_one_order() {
        let s = shuffles(10, 3, 7);
        assert_eq!(s.len(), 3);
        for o in &s {
            let mut sorted = o.clone();
            sorted.sort();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(s[0], s[1]);
        assert_eq!(s, shuffles(10, 3, 7));
    }
}
