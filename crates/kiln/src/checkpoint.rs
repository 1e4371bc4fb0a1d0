//! Training checkpoints: everything needed to continue a run as if it had never stopped. A checkpoint is a
//! model file (`Sequential::load` and `kiln evaluate` read it) with, in addition, the optimizer's state per
//! parameter (`optimizer.slot1.<param>`, `optimizer.slot2.<param>`) and, in the metadata, where training
//! stands (`kiln.progress`: epochs done, step count, learning rate, history, callbacks' state, and for a
//! checkpoint taken mid-epoch the random streams and partial sums). Written to a temporary file and renamed,
//! so a crash while writing leaves the previous checkpoint whole.

use crate::io::write_atomic;
use crate::model::Sequential;
use crate::train::History;
use kiln_core::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const PROGRESS_KEY: &str = "kiln.progress";

/// The states of the random streams of an epoch in progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RngStates {
    pub dropout: [u64; 4],
    pub augment: [u64; 4],
}

/// Where a run stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Whole epochs done.
    pub epoch: usize,
    /// Batches of the next epoch already done (only for a checkpoint taken on interrupt).
    pub step_in_epoch: usize,
    pub seed: u64,
    pub learning_rate: f32,
    pub history: History,
    /// Each callback's state, by its name.
    pub callbacks: BTreeMap<String, serde_json::Value>,
    /// Mid-epoch only: the random streams and the sums over the epoch's batches so far.
    pub rng: RngStates,
    pub partial_loss: f64,
    pub partial_seen: usize,
    pub partial_metrics: Vec<f64>,
    /// Arrays callbacks keep (early stopping's best weights), by callback name: stored as the checkpoint's
    /// tensors `callback.<i>`, listed in `callback_tensor_names`.
    #[serde(skip)]
    pub callback_tensors: BTreeMap<String, Vec<(String, Vec<f32>)>>,
    /// (callback, array) for each `callback.<i>` tensor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callback_tensor_names: Vec<(String, String)>,
}

impl Sequential {
    /// Writes a training checkpoint (atomically).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>, progress: &Progress) -> Result<()> {
        let path = path.as_ref();
        let names: Vec<String> = self.graph.params().iter().map(|p| p.name.clone()).collect();
        let state = self.compiled.as_ref().map(|(_, opt)| opt.state());
        let mut extra: Vec<(String, &[f32])> = Vec::new();
        if let Some((s1, s2, _)) = &state {
            for (slot, vals) in [("slot1", s1), ("slot2", s2)] {
                for (name, v) in names.iter().zip(vals.iter()) {
                    extra.push((format!("optimizer.{slot}.{name}"), v));
                }
            }
        }
        let mut progress = progress.clone();
        progress.callback_tensor_names.clear();
        for (cb, arrays) in &progress.callback_tensors {
            for (name, v) in arrays {
                extra.push((format!("callback.{}", progress.callback_tensor_names.len()), &v[..]));
                progress.callback_tensor_names.push((cb.clone(), name.clone()));
            }
        }
        let steps = self.compiled.as_ref().map_or(0, |c| c.1.iterations());
        let json = serde_json::to_string(&(&progress, steps))
            .map_err(|e| Error::Invalid(format!("cannot describe the training state: {e}")))?;
        let bytes = self.to_safetensors(path, &extra, vec![(PROGRESS_KEY.to_string(), json)])?;
        write_atomic(path, &bytes)
    }

    /// Reads a training checkpoint: the model with its weights and optimizer state, and where training
    /// stood, to pass as `FitOptions::resume`.
    pub fn load_checkpoint(path: impl AsRef<Path>) -> Result<(Sequential, Progress)> {
        let path = path.as_ref();
        let mut model = Sequential::load(path)?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
        let bad = |m: String| Error::format(path, format!("not a training checkpoint: {m}"));
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let json =
            meta.metadata().as_ref().and_then(|m| m.get(PROGRESS_KEY)).ok_or_else(|| {
                bad("a model file without training state (saved by `save`, not by a checkpoint)".into())
            })?;
        let (mut progress, steps): (Progress, u64) =
            serde_json::from_str(json).map_err(|e| bad(format!("unreadable training state ({e})")))?;
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("corrupt tensor data ({e})")))?;
        for (i, (cb, name)) in progress.callback_tensor_names.iter().enumerate() {
            let key = format!("callback.{i}");
            let v =
                f32_tensor(&tensors, &key).ok_or_else(|| bad(format!("no callback array `{key}` ({cb}: {name})")))?;
            progress.callback_tensors.entry(cb.clone()).or_default().push((name.clone(), v));
        }
        let params: Vec<(String, usize, bool)> =
            model.graph().params().iter().map(|p| (p.name.clone(), p.value.len(), p.trainable)).collect();
        let mut slots = [Vec::new(), Vec::new()];
        if steps > 0 {
            for (k, slot) in ["slot1", "slot2"].iter().enumerate() {
                for (name, len, trainable) in &params {
                    let key = format!("optimizer.{slot}.{name}");
                    let v = f32_tensor(&tensors, &key).ok_or_else(|| bad(format!("no optimizer state `{key}`")))?;
                    if v.len() != if *trainable { *len } else { 0 } {
                        return Err(bad(format!("optimizer state `{key}` has {} values for {len} weights", v.len())));
                    }
                    slots[k].push(v);
                }
            }
        }
        let [s1, s2] = slots;
        match &mut model.compiled {
            Some((_, opt)) => opt.set_state(s1, s2, steps),
            None => return Err(bad("the model was saved without an optimizer".into())),
        }
        model.set_learning_rate(progress.learning_rate);
        Ok((model, progress))
    }
}

/// The values of the f32 tensor `key`, if the file has one.
pub(crate) fn f32_tensor(tensors: &SafeTensors, key: &str) -> Option<Vec<f32>> {
    let t = tensors.tensor(key).ok().filter(|t| t.dtype() == Dtype::F32)?;
    Some(crate::io::f32s_le(t.data()))
}
