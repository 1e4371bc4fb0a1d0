//! Stop when the monitored value has not improved for `patience` epochs, as Keras's EarlyStopping: an
//! epoch improves when it beats the best so far by more than `min_delta`; with `restore_best_weights`, the
//! model ends with the weights of its best epoch.

use super::{Callback, Mode, Signal, monitored};
use crate::model::Sequential;
use crate::train::{EpochLog, History};
use kiln_core::Result;
use serde::{Deserialize, Serialize};

pub struct EarlyStopping {
    pub monitor: String,
    pub mode: Mode,
    pub patience: usize,
    pub min_delta: f64,
    pub restore_best_weights: bool,
    state: State,
    best_weights: Option<Vec<Vec<f32>>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    best: Option<f64>,
    best_epoch: usize,
    wait: usize,
    stopped_epoch: usize,
}

impl EarlyStopping {
    pub fn new(monitor: &str) -> Self {
        EarlyStopping {
            monitor: monitor.into(),
            mode: Mode::Auto,
            patience: 0,
            min_delta: 0.0,
            restore_best_weights: false,
            state: State::default(),
            best_weights: None,
        }
    }
    pub fn mode(mut self, m: Mode) -> Self {
        self.mode = m;
        self
    }
    pub fn patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    pub fn min_delta(mut self, d: f64) -> Self {
        self.min_delta = d.abs();
        self
    }
    pub fn restore_best_weights(mut self, on: bool) -> Self {
        self.restore_best_weights = on;
        self
    }

    /// The epoch (1-based) training stopped after, if it stopped early.
    pub fn stopped_epoch(&self) -> Option<usize> {
        (self.state.stopped_epoch > 0).then_some(self.state.stopped_epoch)
    }

    /// The best epoch so far (1-based) and its value.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.state.best.map(|b| (self.state.best_epoch, b))
    }

    fn improves(&self, v: f64, reference: Option<f64>) -> bool {
        match reference {
            None => true,
            Some(r) if self.mode.maximizes(&self.monitor) => v - self.min_delta > r,
            Some(r) => v + self.min_delta < r,
        }
    }
}

impl Callback for EarlyStopping {
    fn name(&self) -> String {
        format!("early_stopping({})", self.monitor)
    }

    fn on_epoch_end(&mut self, model: &mut Sequential, log: &EpochLog) -> Result<Signal> {
        let v = monitored(log, &self.monitor, "early_stopping")?;
        if self.restore_best_weights && self.best_weights.is_none() {
            self.best_weights = Some(model.get_weights());
        }
        self.state.wait += 1;
        if self.improves(v, self.state.best) {
            (self.state.best, self.state.best_epoch, self.state.wait) = (Some(v), log.epoch, 0);
            if self.restore_best_weights {
                self.best_weights = Some(model.get_weights());
            }
            return Ok(Signal::Continue);
        }
        // Keras never stops after the very first epoch.
        if self.state.wait >= self.patience && log.epoch > 1 {
            self.state.stopped_epoch = log.epoch;
            return Ok(Signal::Stop);
        }
        Ok(Signal::Continue)
    }

    fn on_train_end(&mut self, model: &mut Sequential, _history: &History) -> Result<()> {
        if self.restore_best_weights
            && let Some(w) = &self.best_weights
        {
            model.set_weights(w)?;
        }
        Ok(())
    }

    // The best weights go in the checkpoint as arrays, so a resumed run restores the same weights as an
    // uninterrupted one.
    fn tensors(&self) -> Vec<(String, Vec<f32>)> {
        let weights = self.best_weights.iter().flatten();
        weights.enumerate().map(|(i, w)| (format!("best_weights.{i}"), w.clone())).collect()
    }
    fn load_tensors(&mut self, arrays: &[(String, Vec<f32>)]) -> Result<()> {
        if self.restore_best_weights && !arrays.is_empty() {
            self.best_weights = Some(arrays.iter().map(|(_, v)| v.clone()).collect());
        }
        Ok(())
    }
    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or_default()
    }
    fn load_state(&mut self, s: &serde_json::Value) -> Result<()> {
        self.state = serde_json::from_value(s.clone()).unwrap_or_default();
        Ok(())
    }
}
