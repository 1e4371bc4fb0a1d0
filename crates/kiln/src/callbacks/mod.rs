//! Callbacks: code that runs at the start and end of training, after every step and after every epoch,
//! with the model at hand (Keras's `keras.callbacks`). Write your own by implementing `Callback`; the ones
//! here cover what Keras ships: early stopping, model checkpoints, reducing the learning rate on a plateau,
//! CSV and JSON-lines logs, and TensorBoard event files. (Stopping on a NaN loss is built into `fit`.)

mod early_stopping;
mod logger;
mod model_checkpoint;
mod reduce_lr;
mod tensorboard;

pub use early_stopping::EarlyStopping;
pub use logger::{CsvLogger, JsonLogger};
pub use model_checkpoint::ModelCheckpoint;
pub use reduce_lr::ReduceLrOnPlateau;
pub use tensorboard::{EventWriter, TensorBoard, event_file, masked_crc};

use crate::model::Sequential;
use crate::train::{EpochLog, History};
use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a callback asks of the training loop after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Continue,
    /// Finish after this epoch (as Keras's `model.stop_training = True`).
    Stop,
}

pub trait Callback: Send {
    /// A name for messages and for the callback's state in checkpoints; unique among a run's callbacks.
    fn name(&self) -> String;
    fn on_train_begin(&mut self, _model: &mut Sequential) -> Result<()> {
        Ok(())
    }
    /// After each optimizer step; `step` counts steps from the start of training (1 for the first).
    fn on_batch_end(&mut self, _model: &mut Sequential, _step: u64, _loss: f64) -> Result<()> {
        Ok(())
    }
    fn on_epoch_end(&mut self, _model: &mut Sequential, _log: &EpochLog) -> Result<Signal> {
        Ok(Signal::Continue)
    }
    fn on_train_end(&mut self, _model: &mut Sequential, _history: &History) -> Result<()> {
        Ok(())
    }
    /// What the callback must remember across a resumed run (saved in training checkpoints).
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Arrays to keep in a checkpoint beside `state`, by name (early stopping's best weights).
    fn tensors(&self) -> Vec<(String, Vec<f32>)> {
        Vec::new()
    }
    /// What `tensors` returned, when a run resumes.
    fn load_tensors(&mut self, _arrays: &[(String, Vec<f32>)]) -> Result<()> {
        Ok(())
    }
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// Whether a smaller or a larger monitored value is better. `Auto` means larger for accuracies (and
/// other names with "acc", "auc", "precision", "recall" or "f1"), smaller otherwise, as Keras decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Auto,
    Min,
    Max,
}

impl Mode {
    /// True when larger is better for `monitor`.
    pub fn maximizes(self, monitor: &str) -> bool {
        match self {
            Mode::Min => false,
            Mode::Max => true,
            Mode::Auto => ["acc", "auc", "precision", "recall", "f1"].iter().any(|k| monitor.contains(k)),
        }
    }
}

/// The monitored value from an epoch's log, or an error naming the values there are.
pub(crate) fn monitored(log: &EpochLog, monitor: &str, who: &str) -> Result<f64> {
    log.get(monitor).ok_or_else(|| {
        Error::Config(format!(
            "{who}: monitor `{monitor}` is not in the epoch's log, which has {}",
            log.names().join(", ")
        ))
    })
}

/// A callback as a config file describes it (`[[callbacks]]` tables with a `type`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CallbackConfig {
    EarlyStopping {
        #[serde(default = "val_loss")]
        monitor: String,
        #[serde(default)]
        mode: Mode,
        #[serde(default)]
        patience: usize,
        #[serde(default)]
        min_delta: f64,
        #[serde(default)]
        restore_best_weights: bool,
    },
    ReduceLrOnPlateau {
        #[serde(default = "val_loss")]
        monitor: String,
        #[serde(default)]
        mode: Mode,
        #[serde(default = "tenth")]
        factor: f32,
        #[serde(default = "ten")]
        patience: usize,
        #[serde(default = "min_delta_default")]
        min_delta: f64,
        #[serde(default)]
        cooldown: usize,
        #[serde(default)]
        min_lr: f32,
    },
    /// Saves the model (weights and architecture) to `path` in the run folder: after every `every`
    /// epochs, or when `monitor` improves with `save_best_only`.
    ModelCheckpoint {
        #[serde(default = "best_model")]
        path: String,
        #[serde(default = "val_loss")]
        monitor: String,
        #[serde(default)]
        mode: Mode,
        #[serde(default)]
        save_best_only: bool,
        #[serde(default = "one")]
        every: usize,
    },
    #[serde(rename = "tensorboard")]
    TensorBoard {
        /// Scalars every this many steps besides every epoch (0: per epoch only).
        #[serde(default = "hundred")]
        every_n_steps: u64,
        /// Weight histograms every epoch.
        #[serde(default = "yes")]
        histograms: bool,
    },
}

fn val_loss() -> String {
    "val_loss".into()
}
fn tenth() -> f32 {
    0.1
}
fn ten() -> usize {
    10
}
fn min_delta_default() -> f64 {
    1e-4
}
fn best_model() -> String {
    "best.safetensors".into()
}
fn one() -> usize {
    1
}
fn hundred() -> u64 {
    100
}
fn yes() -> bool {
    true
}

impl CallbackConfig {
    /// Whether the callback changes training (early stopping, the learning rate), rather than only writing
    /// files: the ranks of a data-parallel run other than rank 0 run these and no others.
    pub fn steers_training(&self) -> bool {
        match self {
            CallbackConfig::EarlyStopping { .. } | CallbackConfig::ReduceLrOnPlateau { .. } => true,
            CallbackConfig::ModelCheckpoint { .. } | CallbackConfig::TensorBoard { .. } => false,
        }
    }

    /// The callback, writing its files (if any) under `run_dir`.
    pub fn build(&self, run_dir: &Path) -> Result<Box<dyn Callback>> {
        Ok(match self.clone() {
            CallbackConfig::EarlyStopping { monitor, mode, patience, min_delta, restore_best_weights } => Box::new(
                EarlyStopping::new(&monitor)
                    .mode(mode)
                    .patience(patience)
                    .min_delta(min_delta)
                    .restore_best_weights(restore_best_weights),
            ),
            CallbackConfig::ReduceLrOnPlateau { monitor, mode, factor, patience, min_delta, cooldown, min_lr } => {
                if !(factor > 0.0 && factor < 1.0) {
                    return Err(Error::Config(format!("reduce_lr_on_plateau: factor must be in (0, 1), got {factor}")));
                }
                let mut r = ReduceLrOnPlateau::new(&monitor)
                    .factor(factor)
                    .patience(patience)
                    .min_delta(min_delta)
                    .cooldown(cooldown)
                    .min_lr(min_lr);
                r.mode = mode;
                Box::new(r)
            }
            CallbackConfig::ModelCheckpoint { path, monitor, mode, save_best_only, every } => {
                if every == 0 {
                    return Err(Error::Config("model_checkpoint: every must be at least 1".into()));
                }
                Box::new(
                    ModelCheckpoint::new(run_dir.join(path))
                        .monitor(&monitor)
                        .mode(mode)
                        .save_best_only(save_best_only)
                        .every(every),
                )
            }
            CallbackConfig::TensorBoard { every_n_steps, histograms } => Box::new(
                TensorBoard::new(run_dir.join("tensorboard")).every_n_steps(every_n_steps).histograms(histograms),
            ),
        })
    }
}
