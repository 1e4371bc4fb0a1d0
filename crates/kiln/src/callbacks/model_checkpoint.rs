//! Save the model (weights and architecture, loadable by `Sequential::load`) every `every` epochs, or only
//! when the monitored value improves (Keras's ModelCheckpoint). Files are written atomically.

use super::{Callback, Mode, Signal, monitored};
use crate::model::Sequential;
use crate::train::EpochLog;
use kiln_core::Result;
use std::path::PathBuf;

pub struct ModelCheckpoint {
    pub path: PathBuf,
    pub monitor: String,
    pub mode: Mode,
    pub save_best_only: bool,
    pub every: usize,
    best: Option<f64>,
}

impl ModelCheckpoint {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelCheckpoint {
            path: path.into(),
            monitor: "val_loss".into(),
            mode: Mode::Auto,
            save_best_only: false,
            every: 1,
            best: None,
        }
    }
    pub fn monitor(mut self, m: &str) -> Self {
        self.monitor = m.into();
        self
    }
    pub fn mode(mut self, m: Mode) -> Self {
        self.mode = m;
        self
    }
    pub fn save_best_only(mut self, on: bool) -> Self {
        self.save_best_only = on;
        self
    }
    pub fn every(mut self, n: usize) -> Self {
        self.every = n.max(1);
        self
    }
}

impl Callback for ModelCheckpoint {
    fn name(&self) -> String {
        format!("model_checkpoint({})", self.path.display())
    }

    fn on_epoch_end(&mut self, model: &mut Sequential, log: &EpochLog) -> Result<Signal> {
        if self.save_best_only {
            let v = monitored(log, &self.monitor, "model_checkpoint")?;
            let better = match self.best {
                None => true,
                Some(b) if self.mode.maximizes(&self.monitor) => v > b,
                Some(b) => v < b,
            };
            if better {
                self.best = Some(v);
                model.save(&self.path)?;
            }
        } else if log.epoch.is_multiple_of(self.every) {
            model.save(&self.path)?;
        }
        Ok(Signal::Continue)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "best": self.best })
    }
    fn load_state(&mut self, s: &serde_json::Value) -> Result<()> {
        self.best = s.get("best").and_then(|b| b.as_f64());
        Ok(())
    }
}
