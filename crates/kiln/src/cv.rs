//! Cross-validation of an image config (`kiln cv run.toml`): k folds of the training images, stratified by
//! class, each scored by a model trained on the other k − 1 as the config trains (tables have theirs in
//! tabular.rs, scored with table metrics).

use crate::config::{DataFormat, RunConfig};
use crate::data::mnist;
use crate::train::{Evaluation, FitOptions};
use kiln_core::{Error, Result};

impl RunConfig {
    /// Each fold's evaluation (loss and the configured metrics) by a model trained on the other folds.
    pub fn cross_validate(&self, k: usize) -> Result<Vec<Evaluation>> {
        if k < 2 {
            return Err(Error::Config(format!("cross-validation needs at least 2 folds, got {k}")));
        }
        let train = match self.data.format {
            DataFormat::Mnist => mnist::load_split(&self.data.path, "train")?,
        };
        if train.labels.len() < k {
            return Err(Error::Data(format!("{} training images cannot make {k} folds", train.labels.len())));
        }
        let y = self.targets(&train)?;
        let folds = crate::tabular::stratify(&train.labels, k, self.train.seed);
        let mut scores = Vec::with_capacity(k);
        for held in &folds {
            let mut keep = vec![true; train.labels.len()];
            held.iter().for_each(|&i| keep[i] = false);
            let rest: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
            let mut model = self.build_model()?;
            let opts = FitOptions {
                epochs: self.train.epochs,
                batch_size: self.train.batch_size,
                shuffle: self.train.shuffle,
                seed: self.train.seed,
                augment: self.train.augment.clone(),
                class_weight: self.train.class_weight.clone(),
                ..Default::default()
            };
            model.fit(&train.x.select_rows(&rest), &y.select_rows(&rest), opts)?;
            scores.push(model.evaluate(&train.x.select_rows(held), &y.select_rows(held), 1000)?);
        }
        Ok(scores)
    }
}

/// "loss: 0.0812 ± 0.0040 - accuracy: 0.9751 ± 0.0020": the mean and standard deviation over folds.
pub fn summarize(folds: &[Evaluation]) -> String {
    let stat = |v: Vec<f64>| {
        let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
        (m, (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt())
    };
    let mut parts = vec![("loss".to_string(), stat(folds.iter().map(|f| f.loss).collect()))];
    if let Some(first) = folds.first() {
        for (name, _) in &first.metrics {
            parts.push((name.clone(), stat(folds.iter().filter_map(|f| f.get(name)).collect())));
        }
    }
    parts.iter().map(|(n, (m, sd))| format!("{n}: {m:.4} ± {sd:.4}")).collect::<Vec<_>>().join(" - ")
}
