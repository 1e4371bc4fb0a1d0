//! Multiply the learning rate by `factor` when the monitored value has not improved (by more than
//! `min_delta`) for `patience` epochs, then wait `cooldown` epochs; never below `min_lr` (Keras's
//! ReduceLROnPlateau).

use super::{Callback, Mode, Signal, monitored};
use crate::model::Sequential;
use crate::train::EpochLog;
use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

pub struct ReduceLrOnPlateau {
    pub monitor: String,
    pub mode: Mode,
    pub factor: f32,
    pub patience: usize,
    pub min_delta: f64,
    pub cooldown: usize,
    pub min_lr: f32,
    state: State,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    best: Option<f64>,
    wait: usize,
    cooldown_left: usize,
}

impl ReduceLrOnPlateau {
    /// Keras's defaults: factor 0.1, patience 10, min_delta 1e-4, no cooldown, min_lr 0.
    pub fn new(monitor: &str) -> Self {
        ReduceLrOnPlateau {
            monitor: monitor.into(),
            mode: Mode::Auto,
            factor: 0.1,
            patience: 10,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            state: State::default(),
        }
    }
    pub fn factor(mut self, f: f32) -> Self {
        self.factor = f;
        self
    }
    pub fn patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    pub fn min_delta(mut self, d: f64) -> Self {
        self.min_delta = d;
        self
    }
    pub fn cooldown(mut self, c: usize) -> Self {
        self.cooldown = c;
        self
    }
    pub fn min_lr(mut self, lr: f32) -> Self {
        self.min_lr = lr;
        self
    }
}

impl Callback for ReduceLrOnPlateau {
    fn name(&self) -> String {
        format!("reduce_lr_on_plateau({})", self.monitor)
    }

    fn on_train_begin(&mut self, model: &mut Sequential) -> Result<()> {
        if model.compile_config().is_some_and(|c| c.schedule.is_some()) {
            return Err(Error::Config(
                "reduce_lr_on_plateau cannot be used with a learning-rate schedule: the schedule sets the rate at \
                 every step"
                    .into(),
            ));
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, model: &mut Sequential, log: &EpochLog) -> Result<Signal> {
        let v = monitored(log, &self.monitor, "reduce_lr_on_plateau")?;
        let s = &mut self.state;
        if s.cooldown_left > 0 {
            s.cooldown_left -= 1;
            s.wait = 0;
        }
        let better = match s.best {
            None => true,
            Some(b) if self.mode.maximizes(&self.monitor) => v > b + self.min_delta,
            Some(b) => v < b - self.min_delta,
        };
        if better {
            (s.best, s.wait) = (Some(v), 0);
        } else if s.cooldown_left == 0 {
            s.wait += 1;
            if s.wait >= self.patience {
                let lr = model.learning_rate().unwrap_or(0.0);
                if lr > self.min_lr {
                    model.set_learning_rate((lr * self.factor).max(self.min_lr));
                    (s.cooldown_left, s.wait) = (self.cooldown, 0);
                }
            }
        }
        Ok(Signal::Continue)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(&self.state).unwrap_or_default()
    }
    fn load_state(&mut self, s: &serde_json::Value) -> Result<()> {
        self.state = serde_json::from_value(s.clone()).unwrap_or_default();
        Ok(())
    }
}
