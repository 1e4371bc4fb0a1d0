//! One batch on a tape: the model's forward pass, each output's loss (weighted and summed), backward, the
//! optimizer step, and the batch's metrics. `fit` (train.rs) runs it on the model's own tape; `evaluate`
//! (infer.rs) on a lent one, without the optimizer. Buffers live in `Scratch`, so a steady-state step does
//! not allocate. With several ranks (dist.rs), `apply_step` sums the gradients over them before the step.

use crate::data::augment::Augment;
use crate::dist::Collective;
use crate::metrics::Metric;
use crate::model::{CompileConfig, Flows, Net, Sequential};
use crate::optim::Optimizer;
use crate::train::{Inputs, Targets};
use kiln_core::{Error, Graph, MAX_RANK, Result, Rng, Var};

/// Buffers reused from batch to batch (kept in the model, so steady-state steps do not allocate).
#[derive(Default)]
pub(crate) struct Scratch {
    /// Class indices of the batch, per output.
    pub(crate) labels: Vec<Vec<u32>>,
    /// The output layers that hand their loss logits.
    pub(crate) logits: Vec<usize>,
    /// Each output's value and dense target on the tape.
    pub(crate) outs: Vec<(Var, Option<Var>)>,
    pub(crate) probs: Vec<f32>,
    pub(crate) idx: Vec<usize>,
    pub(crate) totals: Vec<f64>,
    pub(crate) weights: Vec<f32>,
    pub(crate) augment: Vec<f32>,
    pub(crate) trainable: Vec<bool>,
    pub(crate) flows: Flows,
    /// The buffers of the gradients' sums over the ranks (data-parallel training).
    pub(crate) sums: crate::dist::GradSums,
    /// Whether any rank's stop flag was up when the last step's sums were taken.
    pub(crate) stop_all: bool,
}

/// A training step that is one rank's share of a global batch.
#[derive(Clone, Copy)]
pub(crate) struct Share<'a> {
    pub(crate) peers: &'a dyn Collective,
    /// Samples in the global batch (every rank's together).
    pub(crate) global: usize,
}

/// Sums over the samples seen so far.
pub(crate) struct Totals {
    pub(crate) loss: f64,
    pub(crate) metrics: Vec<f64>,
    pub(crate) seen: usize,
}

impl Totals {
    pub(crate) fn new(n: usize) -> Self {
        Totals::reusing(Vec::new(), n)
    }
    /// Sums the totals of every rank into each: the epoch's loss and metrics over all ranks' samples (every
    /// slot is a sum, confusion matrices too).
    pub(crate) fn sum_over(&mut self, peers: &dyn Collective) -> Result<()> {
        let mut buf = Vec::with_capacity(2 + self.metrics.len());
        buf.extend([self.loss, self.seen as f64]);
        buf.extend_from_slice(&self.metrics);
        peers.sum_f64(&mut buf)?;
        (self.loss, self.seen) = (buf[0], buf[1] as usize);
        self.metrics.copy_from_slice(&buf[2..]);
        Ok(())
    }
    /// Starts from zero in a buffer from an earlier batch.
    pub(crate) fn reusing(mut buf: Vec<f64>, n: usize) -> Self {
        buf.clear();
        buf.resize(n, 0.0);
        Totals { loss: 0.0, metrics: buf, seen: 0 }
    }
    pub(crate) fn loss(&self) -> f64 {
        self.loss / self.seen.max(1) as f64
    }
    /// Each metric's value: a mean over samples, or read from the confusion matrix kept after the sums.
    /// With several outputs the slots hold each output's loss first, then each output's metrics, and the
    /// names are prefixed with the output's (`age_loss`, `age_mae`), as Keras names them.
    /// `metrics` holds each output's list.
    pub(crate) fn named(&self, metrics: &[Vec<Metric>], outputs: &[(String, usize)]) -> Vec<(String, f64)> {
        let seen = self.seen.max(1) as f64;
        if outputs.len() <= 1 {
            return named_metrics(metrics.first().map_or(&[], |m| &m[..]), &self.metrics, seen, "");
        }
        let mut out: Vec<(String, f64)> =
            outputs.iter().zip(&self.metrics).map(|((name, _), s)| (format!("{name}_loss"), s / seen)).collect();
        let mut at = loss_slots(outputs.len());
        for ((name, cols), metrics) in outputs.iter().zip(metrics) {
            let len = crate::metrics::state_len(metrics, *cols);
            out.extend(named_metrics(metrics, &self.metrics[at..at + len], seen, &format!("{name}_")));
            at += len;
        }
        out
    }
}

/// Slots before the metrics' (see `Totals::named`): with several outputs, each output's loss first; with one,
/// none (the loss is `Totals::loss`).
pub(crate) fn loss_slots(outputs: usize) -> usize {
    if outputs > 1 { outputs } else { 0 }
}

/// The metrics of one output from its slots (sums, then a confusion matrix if any metric reads one).
fn named_metrics(metrics: &[Metric], slots: &[f64], seen: f64, prefix: &str) -> Vec<(String, f64)> {
    let cm = &slots[metrics.len().min(slots.len())..];
    let k = (cm.len() as f64).sqrt().round() as usize;
    metrics
        .iter()
        .zip(slots)
        .map(|(m, s)| {
            let v = if m.needs_confusion() { m.of_confusion(cm, k) } else { s / seen };
            (format!("{prefix}{}", m.name()), v)
        })
        .collect()
}

impl Sequential {
    /// One batch on the tape `g`: forward, loss, and with an optimizer, backward and a step. Adds to
    /// `totals` and returns the batch's loss (the global batch's, with a `share`: see `apply_step`).
    /// `augment` changes the gathered images first. Takes the
    /// model's parts rather than the model, so that training runs on the model's own tape and evaluation
    /// on a lent one through the same code.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_batch(
        net: &Net,
        g: &mut Graph<f32>,
        config: &CompileConfig,
        opt: Option<&mut Optimizer>,
        x: &Inputs,
        y: &[Targets],
        idx: &[usize],
        totals: &mut Totals,
        scratch: &mut Scratch,
        augment: Option<(&Augment, &mut Rng)>,
        sample_weights: Option<&[f32]>,
        share: Option<Share>,
    ) -> Result<f64> {
        let train = opt.is_some();
        let n = idx.len();
        let several = net.outputs.len() > 1;
        // An output hands its loss logits when the loss fuses its activation and no layer reads it.
        scratch.logits.clear();
        for (k, &l) in net.outputs.iter().enumerate() {
            if config.loss_of(k).fuses(net.layers[l].config.activation()) && net.readers[l] == 0 {
                scratch.logits.push(l);
            }
        }
        if scratch.labels.len() < net.outputs.len() {
            scratch.labels.resize_with(net.outputs.len(), Vec::new);
        }
        g.reset();
        g.set_recording(train);
        scratch.flows.outs.clear();
        let mut augment = augment;
        for (t, input) in x.all().iter().zip(&net.inputs) {
            let shape = &input.shape;
            let mut dims = [0usize; MAX_RANK];
            dims[0] = n;
            dims[1..=shape.len()].copy_from_slice(shape);
            let hwc = (shape[0], shape.get(1).copied().unwrap_or(1), shape.get(2).copied().unwrap_or(1));
            let w = t.row_len();
            let xv = g.input_with(&dims[..=shape.len()], |buf| {
                gather(t.data(), w, idx, buf);
                if let Some((a, rng)) = augment.as_mut() {
                    a.apply(buf, hwc, rng, &mut scratch.augment);
                }
            })?;
            scratch.flows.outs.push((xv, None));
        }
        net.forward(g, &mut scratch.flows, train, &scratch.logits)?;
        scratch.weights.clear();
        if let (true, Some(sw)) = (train, sample_weights) {
            scratch.weights.extend(idx.iter().map(|&i| sw[i]));
        }
        // The loss minimized: each output's loss times its weight, summed (one output: its loss).
        let mut total = None;
        let mut loss_value = 0.0;
        scratch.outs.clear();
        for (k, t) in y.iter().enumerate() {
            let out = net.output(&scratch.flows, k);
            let fused = scratch.logits.contains(&net.outputs[k]);
            let labels = &mut scratch.labels[k];
            labels.clear();
            let target = match t {
                Targets::Labels(l) => {
                    labels.extend(idx.iter().map(|&i| l[i]));
                    None
                }
                Targets::Dense(t) => {
                    let tw = t.row_len();
                    Some(g.input_with(g.shape(out).dims(), |buf| gather(t.data(), tw, idx, buf))?)
                }
            };
            let loss = config.loss_of(k).compute(g, out, fused, target, labels, &scratch.weights)?;
            let (value, w) = (g.scalar(loss) as f64, config.weight_of(k));
            loss_value += w as f64 * value;
            if several {
                totals.metrics[k] += value * n as f64;
            }
            if train {
                let weighted = if w == 1.0 {
                    loss
                } else {
                    let w = g.input(&[], &[w])?;
                    g.mul(loss, w)?
                };
                total = Some(match total {
                    None => weighted,
                    Some(sum) => g.add(sum, weighted)?,
                });
            }
            scratch.outs.push((out, target));
        }
        if let Some(total) = total {
            // Gradients start at zero: each step ends with zero_grads.
            g.backward(total)?;
        }
        // Kernel penalties count in every loss, evaluation and validation included, as in Keras's test_step.
        for layer in &net.layers {
            if let (Some(r), Some(pid)) = (layer.regularizer, layer.param("kernel")) {
                loss_value += r.penalty(&g.param(pid).value);
                if train {
                    let (params, grads) = g.params_and_grads_mut();
                    r.add_gradient(&params[pid.0].value, &mut grads[pid.0]);
                }
            }
        }
        let mut step_loss = loss_value;
        if let Some(opt) = opt {
            step_loss = apply_step(g, config, opt, scratch, share, n, loss_value)?;
        }
        // Each output's metrics, in slots after the outputs' losses (several outputs).
        let mut at = loss_slots(net.outputs.len());
        for (k, &(out, target)) in scratch.outs.iter().enumerate() {
            let metrics = config.metrics_of(k);
            let l = net.outputs[k];
            let (fused, act, loss_kind) =
                (scratch.logits.contains(&l), net.layers[l].config.activation(), config.loss_of(k));
            let (cols, ov) = (g.shape(out).dims()[1..].iter().product::<usize>(), g.value(out));
            let tv = target.map(|t| g.value(t)).unwrap_or(&[]);
            let labels = &scratch.labels[k];
            for (j, m) in metrics.iter().enumerate() {
                let vals = if fused && m.needs_probabilities() {
                    to_probabilities(ov, cols, Some(act), &mut scratch.probs);
                    &scratch.probs[..]
                } else {
                    ov
                };
                totals.metrics[at + j] += m.batch_sum(loss_kind, vals, cols, tv, labels, fused);
            }
            let len = crate::metrics::state_len(metrics, cols);
            if len > metrics.len() {
                let cm = &mut totals.metrics[at + metrics.len()..at + len];
                crate::metrics::add_to_confusion(cm, ov, cols, tv, labels, fused);
            }
            at += len;
        }
        totals.loss += loss_value * n as f64;
        totals.seen += n;
        Ok(step_loss)
    }
}

/// The optimizer's step once backward has run: the learning rate's schedule, clipping and the step. With a
/// `share`, the gradients and the loss are first summed over the ranks, each rank's weighted by its share
/// of the global batch (n / global: its gradients are means over its n samples), so every rank steps as
/// one process would on the whole batch, and clipping sees the global gradients. The sums also carry each
/// rank's stop flag (`Scratch::stop_all`), so that all stop after the same step; an embedding table whose
/// batch used few rows is summed as those rows (`dist::GradSums`). `n` may be 0: a rank with
/// no samples in a short last batch still takes part in the sums. Returns the (global) batch loss.
pub(crate) fn apply_step(
    g: &mut Graph<f32>,
    config: &CompileConfig,
    opt: &mut Optimizer,
    scratch: &mut Scratch,
    share: Option<Share>,
    n: usize,
    loss: f64,
) -> Result<f64> {
    let mut loss = loss;
    if let Some(s) = share {
        let (params, grads) = g.params_and_grads_mut();
        let stop = crate::train::stop_flag().load(std::sync::atomic::Ordering::SeqCst);
        let mut small = [loss * n as f64, f64::from(u8::from(stop))];
        scratch.sums.sum(s.peers, params, grads, n as f32 / s.global as f32, &mut small)?;
        loss = small[0] / s.global as f64;
        scratch.stop_all = small[1] > 0.0;
    }
    if !loss.is_finite() {
        g.zero_grads();
        return Err(Error::Stopped(format!(
            "the loss became {loss} at step {} (not applied): lower the learning rate or check the data",
            opt.iterations() + 1
        )));
    }
    if let Some(s) = &config.schedule {
        opt.config.set_learning_rate(s.at(config.optimizer.learning_rate(), opt.iterations()));
    }
    // On a GPU the step is taken there, where the gradients are (clipping and the sums over ranks read
    // them on the host, so they keep the host's step).
    if share.is_none() && config.clip.is_none() && opt.step_on_backend(g) {
        return Ok(loss);
    }
    let (params, grads) = g.params_and_grads_mut();
    if !config.clip.is_none() {
        let trainable: &mut Vec<bool> = &mut scratch.trainable;
        trainable.clear();
        trainable.extend(params.iter().map(|p| p.trainable));
        config.clip.apply(grads, trainable);
    }
    opt.step(params, grads);
    g.zero_grads();
    Ok(loss)
}

/// buf[k] = rows idx[k] of `src` (rows of `w` values).
pub(crate) fn gather(src: &[f32], w: usize, idx: &[usize], buf: &mut [f32]) {
    for (k, &i) in idx.iter().enumerate() {
        buf[k * w..(k + 1) * w].copy_from_slice(&src[i * w..(i + 1) * w]);
    }
}

/// Logits to probabilities for metrics that read probabilities.
pub(crate) fn to_probabilities(logits: &[f32], cols: usize, act: Option<crate::nn::Activation>, out: &mut Vec<f32>) {
    out.clear();
    out.extend_from_slice(logits);
    match act {
        Some(crate::nn::Activation::Sigmoid) => out.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        _ => {
            for row in out.chunks_mut(cols.max(1)) {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let s: f32 = row
                    .iter_mut()
                    .map(|v| {
                        *v = (*v - m).exp();
                        *v
                    })
                    .sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
        }
    }
}
