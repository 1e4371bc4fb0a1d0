//! What training reports: each epoch's log, the history of a run, an evaluation's scores, and the lines
//! and progress bar `fit` prints.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    pub metrics: Vec<(String, f64)>,
    pub val_loss: Option<f64>,
    pub val_metrics: Vec<(String, f64)>,
    /// The learning rate at the end of the epoch.
    #[serde(default)]
    pub learning_rate: f32,
    pub seconds: f64,
    pub samples_per_second: f64,
}

impl EpochLog {
    /// A logged value by its Keras name: "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate".
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "loss" => Some(self.loss),
            "val_loss" => self.val_loss,
            "learning_rate" => Some(self.learning_rate as f64),
            _ => match name.strip_prefix("val_") {
                Some(m) => self.val_metrics.iter().find(|(n, _)| n == m).map(|p| p.1),
                None => self.metrics.iter().find(|(n, _)| n == name).map(|p| p.1),
            },
        }
    }

    /// The names `get` answers, in Keras's order.
    pub fn names(&self) -> Vec<String> {
        let mut n = vec!["loss".to_string()];
        n.extend(self.metrics.iter().map(|m| m.0.clone()));
        if self.val_loss.is_some() {
            n.push("val_loss".into());
            n.extend(self.val_metrics.iter().map(|m| format!("val_{}", m.0)));
        }
        n.push("learning_rate".into());
        n
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub epochs: Vec<EpochLog>,
}

impl History {
    pub fn last(&self) -> Option<&EpochLog> {
        self.epochs.last()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub metrics: Vec<(String, f64)>,
}

impl Evaluation {
    pub fn get(&self, name: &str) -> Option<f64> {
        if name == "loss" {
            return Some(self.loss);
        }
        self.metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loss: {:.4}", self.loss)?;
        for (n, v) in &self.metrics {
            write!(f, " - {n}: {v:.4}")?;
        }
        Ok(())
    }
}

pub(crate) fn progress_bar(epoch: usize, epochs: usize, steps: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps as u64);
    let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
        .expect("valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("Epoch {epoch}/{epochs}"));
    bar
}

/// "Epoch 3/10 - 2.1s - 25714 samples/s - loss: 0.0432 - accuracy: 0.9866 - val_loss: ..."
pub fn epoch_line(log: &EpochLog, epochs: usize) -> String {
    let mut s = format!(
        "Epoch {}/{epochs} - {:.1}s - {:.0} samples/s - loss: {:.4}",
        log.epoch, log.seconds, log.samples_per_second, log.loss
    );
    for (n, v) in &log.metrics {
        s += &format!(" - {n}: {v:.4}");
    }
    if let Some(vl) = log.val_loss {
        s += &format!(" - val_loss: {vl:.4}");
    }
    for (n, v) in &log.val_metrics {
        s += &format!(" - val_{n}: {v:.4}");
    }
    s
}
