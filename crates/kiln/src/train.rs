//! fit, evaluate, predict and train_on_batch: the loops around the graph. Every batch resets the graph,
//! so buffers are reused and a steady-state step does not touch the heap.

use crate::callbacks::{Callback, Signal};
use crate::checkpoint::{Progress, RngStates};
pub use crate::class_weight::{ClassWeight, WeightRule, balanced_class_weights};
use crate::data::augment::Augment;
use crate::history::progress_bar;
pub use crate::history::{EpochLog, Evaluation, History, epoch_line};
pub use crate::inputs::Inputs;
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::{Model, Sequential};
use crate::nn::fmt_shape;
use crate::step::{Scratch, Share, Totals};
use kiln_core::{Error, Result, Rng, Tensor};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static STOP: AtomicBool = AtomicBool::new(false);

/// Set it (from a signal handler, say) to make `fit` finish its current step, write its checkpoint and
/// return `Error::Stopped`. `fit` clears it when it starts.
pub fn stop_flag() -> &'static AtomicBool {
    &STOP
}

/// The seed of one epoch's random stream `which` (0 shuffling, 1 dropout, 2 augmentation).
fn epoch_seed(seed: u64, epoch: usize, which: u64) -> u64 {
    let mut r = Rng::new(seed ^ which.wrapping_mul(0xA076_1D64_78BD_642F));
    for _ in 0..epoch % 64 {
        r.next_u64();
    }
    r.next_u64() ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Keras's `fit` arguments.
#[derive(Clone, Debug)]
pub struct FitOptions<'a> {
    pub epochs: usize,
    pub batch_size: usize,
    /// Fraction of the samples, taken from the end before shuffling (as Keras), held out for validation.
    pub validation_split: f64,
    /// Explicit validation samples (x, and y: one array per output); wins over `validation_split`.
    pub validation_data: Option<(Inputs<'a>, Inputs<'a>)>,
    pub shuffle: bool,
    /// Seeds shuffling, dropout and augmentation; each epoch draws from streams of its own, derived from
    /// the seed and the epoch number, so a resumed run draws what the uninterrupted run would have.
    pub seed: u64,
    /// A progress bar per epoch and a line per epoch on stdout.
    pub verbose: bool,
    /// Random changes to each training image (rank-3 inputs, [height, width, channels]).
    pub augment: Option<Augment>,
    /// A training checkpoint (weights, optimizer state, where training is) written here, atomically, after
    /// every epoch and when training is interrupted (`stop_flag`).
    pub checkpoint: Option<PathBuf>,
    /// Continue a run from a checkpoint's progress (see `Sequential::load_checkpoint`).
    pub resume: Option<Progress>,
    /// Weights per class multiplying the training loss of their samples (Keras's `class_weight`). A
    /// sample's class is its label for sparse targets, the argmax of one-hot targets, t > 0.5 for a single
    /// sigmoid output. Validation losses are not weighted.
    pub class_weight: Option<ClassWeight>,
    /// Data-parallel training (see `dist`): this process is one rank of several, each taking its shard of
    /// every batch of `batch_size` (the global batch) and summing gradients with the others before each
    /// step, so the ranks step alike. Give every rank the same data, seed and options; rank 0 writes the
    /// checkpoint, and file-writing callbacks belong on rank 0 only. The validation samples are scored in
    /// shards too. Dropout and augmentation draw from streams of each rank's own; batch normalization's
    /// moving statistics are each rank's own (rank 0's are saved), as in PyTorch's DistributedDataParallel
    /// without SyncBatchNorm. `dist::from_env` gives the collective of an `mpirun` launch. An error that only
    /// one rank meets (its own file, a callback of its own) leaves the others waiting in their next sum:
    /// end the job then (`Collective::abort`), as the kiln command does. Errors from the sums' values (a
    /// NaN loss) and stops (`stop_flag`, early stopping) come to every rank after the same step.
    pub collective: Option<crate::dist::Shared>,
}

impl Default for FitOptions<'_> {
    fn default() -> Self {
        FitOptions {
            epochs: 1,
            batch_size: 32,
            validation_split: 0.0,
            validation_data: None,
            shuffle: true,
            seed: 0,
            verbose: false,
            augment: None,
            checkpoint: None,
            resume: None,
            class_weight: None,
            collective: None,
        }
    }
}

/// The targets of every output (one output's without a heap allocation, as `Inputs`).
pub(crate) enum TargetList<'a> {
    One([Targets<'a>; 1]),
    Many(Vec<Targets<'a>>),
}

impl<'a> std::ops::Deref for TargetList<'a> {
    type Target = [Targets<'a>];
    fn deref(&self) -> &[Targets<'a>] {
        match self {
            TargetList::One(t) => t,
            TargetList::Many(t) => t,
        }
    }
}

/// Targets checked against the loss: class indices for the sparse loss, else arrays shaped like the output.
pub(crate) enum Targets<'a> {
    Labels(Vec<u32>),
    Dense(&'a Tensor),
}

/// `what` and `name` ("fit", "x") are joined only when there is something to report.
fn check_finite(t: &Tensor, what: &str, name: &str) -> Result<()> {
    if let Some(i) = t.data().iter().position(|v| !v.is_finite()) {
        let w = t.row_len().max(1);
        let v = t.data()[i];
        return Err(Error::Data(format!("{what}: {name} holds {v} at sample {} (element {})", i / w, i % w)));
    }
    Ok(())
}

impl Sequential {
    /// One optimizer step on one batch (all of `x`); returns the batch's loss. Once a batch shape has been
    /// seen, a call with dense targets makes no heap allocation of kiln's own.
    pub fn train_on_batch<'a>(&mut self, x: impl Into<Inputs<'a>>, y: impl Into<Inputs<'a>>) -> Result<f64> {
        let (x, y) = (x.into(), y.into());
        in_pool(|| self.train_on_batch_inner(x, y))
    }

    /// Trains for `opts.epochs` passes over (x, y). Returns the per-epoch history. `y` is one array per
    /// output (a single `&Tensor` for a model with one output).
    pub fn fit<'a>(&mut self, x: impl Into<Inputs<'a>>, y: impl Into<Inputs<'a>>, opts: FitOptions) -> Result<History> {
        let (x, y) = (x.into(), y.into());
        in_pool(|| self.fit_inner(x, y, opts, &mut []))
    }

    /// `fit` with callbacks, called in order at each point of training.
    pub fn fit_with<'a>(
        &mut self,
        x: impl Into<Inputs<'a>>,
        y: impl Into<Inputs<'a>>,
        opts: FitOptions,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<History> {
        let (x, y) = (x.into(), y.into());
        in_pool(|| self.fit_inner(x, y, opts, callbacks))
    }

    /// Loss and metrics over (x, y), in batches of `batch_size`, without dropout and with batch-norm's moving
    /// statistics. Takes `&self`: several threads may evaluate one model at once.
    pub fn evaluate<'a>(
        &self,
        x: impl Into<Inputs<'a>>,
        y: impl Into<Inputs<'a>>,
        batch_size: usize,
    ) -> Result<Evaluation> {
        let (x, y) = (x.into(), y.into());
        in_pool(|| self.evaluate_inner(x, y, batch_size))
    }

    /// The model's output (probabilities where it ends in softmax or sigmoid) for every sample of `x`.
    /// Takes `&self`: one model can answer from several threads at once, each on a tape of its own, with
    /// results bit-identical to one thread's. A model with several outputs answers with `predict_outputs`.
    pub fn predict<'a>(&self, x: impl Into<Inputs<'a>>, batch_size: usize) -> Result<Tensor> {
        if self.net.outputs.len() > 1 {
            return Err(Error::Config(format!(
                "predict: the model has {} outputs ({}): use predict_outputs",
                self.net.outputs.len(),
                self.outputs().join(", ")
            )));
        }
        Ok(self.predict_outputs(x, batch_size)?.swap_remove(0))
    }

    /// `predict` for every output: one array per output, in the order of `outputs()`.
    pub fn predict_outputs<'a>(&self, x: impl Into<Inputs<'a>>, batch_size: usize) -> Result<Vec<Tensor>> {
        let x = x.into();
        // A handful of samples is faster on the calling thread than after a hop into the pool.
        if x.rows() < 16 {
            return self.predict_inner(x, batch_size);
        }
        in_pool(|| self.predict_inner(x, batch_size))
    }

    /// The (first output's) loss and each output's metrics.
    pub(crate) fn compiled_parts(&self, what: &str) -> Result<(Loss, Vec<Vec<Metric>>)> {
        let loss = self.compiled_loss(what)?;
        let c = &self.compiled.as_ref().expect("checked by compiled_loss").0;
        Ok((loss, (0..self.net.outputs.len()).map(|k| c.metrics_of(k).to_vec()).collect()))
    }

    /// Each output's name and width (values per sample), for naming scores.
    pub(crate) fn output_widths(&self) -> Vec<(String, usize)> {
        let shapes = self.output_shapes();
        self.outputs().into_iter().zip(shapes).map(|(n, s)| (n.to_string(), s.iter().product())).collect()
    }

    /// Slots of metric state (see `metrics::state_len`), for every output (after their losses when several).
    pub(crate) fn state_len(&self) -> usize {
        let metrics = |k: usize| self.compiled.as_ref().map(|c| c.0.metrics_of(k)).unwrap_or(&[]);
        // No `output_shapes()` here: a training step calls this, and must not allocate.
        let outs = &self.net.outputs;
        let width = |j: usize| self.net.layers[j].output_shape.iter().product();
        let per: usize = outs.iter().enumerate().map(|(k, &j)| crate::metrics::state_len(metrics(k), width(j))).sum();
        crate::step::loss_slots(outs.len()) + per
    }

    /// The loss of the (first) output.
    fn compiled_loss(&self, what: &str) -> Result<Loss> {
        match &self.compiled {
            Some((c, _)) => Ok(c.loss_of(0)),
            None => Err(Error::Config(format!("{what}: call compile(optimizer, loss, metrics) first"))),
        }
    }

    /// One tensor per model input, each shaped (samples, the input's shape), all with the same samples.
    pub(crate) fn check_x(&self, x: &Inputs, what: &str) -> Result<()> {
        let inputs = &self.net.inputs;
        if x.all().len() != inputs.len() {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(Error::Shape(format!(
                "{what}: {} arrays given for x, the model has {} inputs ({})",
                x.all().len(),
                inputs.len(),
                names.join(", ")
            )));
        }
        for (t, input) in x.all().iter().zip(inputs) {
            // Borrowed for one input: a training step with train_on_batch makes no allocation.
            let name: std::borrow::Cow<str> =
                if inputs.len() == 1 { "x".into() } else { format!("x for input `{}`", input.name).into() };
            if t.shape().get(1..) != Some(&input.shape[..]) {
                let mut want = vec![t.rows()];
                want.extend_from_slice(&input.shape);
                return Err(Error::Shape(format!(
                    "{what}: {name} has shape {} but the model takes {} (samples, {})",
                    fmt_shape(t.shape()),
                    fmt_shape(&want),
                    fmt_shape(&input.shape).trim_matches(|c| c == '(' || c == ')')
                )));
            }
            if t.rows() != x.rows() {
                return Err(Error::Shape(format!(
                    "{what}: {name} has {} samples but the first input has {}",
                    t.rows(),
                    x.rows()
                )));
            }
            check_finite(t, what, &name)?;
        }
        Ok(())
    }

    /// One target array per output, each checked against its output and loss. One output's make no heap
    /// allocation (dense targets), so that `train_on_batch` stays allocation-free.
    pub(crate) fn check_targets<'a>(&self, x: &Inputs, y: &Inputs<'a>, what: &str) -> Result<TargetList<'a>> {
        let config = &self.compiled.as_ref().ok_or_else(|| Error::Config(format!("{what}: call compile first")))?.0;
        let outs = &self.net.outputs;
        if y.all().len() != outs.len() {
            return Err(Error::Shape(format!(
                "{what}: {} arrays given for y, the model has {} output{} ({})",
                y.all().len(),
                outs.len(),
                if outs.len() == 1 { "" } else { "s" },
                self.outputs().join(", ")
            )));
        }
        let check = |k: usize| {
            let layer = &self.net.layers[outs[k]];
            let name: std::borrow::Cow<str> =
                if outs.len() == 1 { "y".into() } else { format!("y for output `{}`", layer.name()).into() };
            check_target(config.loss_of(k), x, y.all()[k], &layer.output_shape, what, &name)
        };
        if outs.len() == 1 {
            return Ok(TargetList::One([check(0)?]));
        }
        Ok(TargetList::Many((0..outs.len()).map(check).collect::<Result<_>>()?))
    }

    /// `run_batch` on the model's own tape with its optimizer (a training step).
    #[allow(clippy::too_many_arguments)]
    fn train_batch(
        &mut self,
        x: &Inputs,
        y: &[Targets],
        idx: &[usize],
        totals: &mut Totals,
        scratch: &mut Scratch,
        augment: Option<(&Augment, &mut Rng)>,
        sample_weights: Option<&[f32]>,
        share: Option<Share>,
    ) -> Result<f64> {
        let Some((config, opt)) = self.compiled.as_mut() else {
            return Err(Error::Config("fit: call compile(optimizer, loss, metrics) first".into()));
        };
        let (net, g) = (&self.net, &mut self.graph);
        Model::run_batch(net, g, config, Some(opt), x, y, idx, totals, scratch, augment, sample_weights, share)
    }

    /// The step of a rank with no samples in a (short, last) global batch: it adds zero gradients to the
    /// others' sums and takes the same step.
    fn idle_step(&mut self, scratch: &mut Scratch, share: Option<Share>) -> Result<f64> {
        let Some((config, opt)) = self.compiled.as_mut() else {
            return Err(Error::Config("fit: call compile(optimizer, loss, metrics) first".into()));
        };
        crate::step::apply_step(&mut self.graph, config, opt, scratch, share, 0, 0.0)
    }

    /// Quantized weights are for inference: training refuses them before its first step.
    fn check_trainable(&self, what: &str) -> Result<()> {
        match self.quantized_param() {
            Some((name, dtype)) => Err(Error::Config(format!(
                "{what}: `{name}` is quantized ({dtype}), for inference only: train the f32 model, then quantize it"
            ))),
            None => Ok(()),
        }
    }

    fn train_on_batch_inner(&mut self, x: Inputs, y: Inputs) -> Result<f64> {
        self.check_trainable("train_on_batch")?;
        self.compiled_loss("train_on_batch")?;
        self.check_x(&x, "train_on_batch")?;
        let targets = self.check_targets(&x, &y, "train_on_batch")?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut idx = std::mem::take(&mut scratch.idx);
        idx.clear();
        idx.extend(0..x.rows());
        let n_metrics = self.state_len();
        let mut totals = Totals::reusing(std::mem::take(&mut scratch.totals), n_metrics);
        let result = self.train_batch(&x, &targets, &idx, &mut totals, &mut scratch, None, None, None);
        let loss = totals.loss();
        scratch.idx = idx;
        scratch.totals = totals.metrics;
        self.scratch = scratch;
        result.map(|_| loss)
    }

    fn fit_inner(
        &mut self,
        x: Inputs,
        y: Inputs,
        opts: FitOptions,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<History> {
        let (loss, metrics) = self.compiled_parts("fit")?;
        self.check_trainable("fit")?;
        if opts.batch_size == 0 {
            return Err(Error::Config("fit: batch_size must be positive".into()));
        }
        let ranks = opts.collective.clone();
        let peers = ranks.as_deref();
        let (rank, size) = peers.map_or((0, 1), |p| (p.rank(), p.size()));
        if opts.batch_size < size {
            return Err(crate::dist::too_small(opts.batch_size, size));
        }
        if !(0.0..1.0).contains(&opts.validation_split) {
            return Err(Error::Config(format!("fit: validation_split {} must be in [0, 1)", opts.validation_split)));
        }
        let augment = opts.augment.as_ref().filter(|a| !a.is_identity());
        if let Some(a) = augment {
            a.validate()?;
            if self.net.inputs.len() != 1 || self.input_shape().len() != 3 {
                return Err(Error::Config(format!(
                    "augment: needs one image input [height, width, channels], the model takes {}",
                    self.net.inputs.iter().map(|i| fmt_shape(&i.shape)).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        self.check_x(&x, "fit")?;
        let targets = self.check_targets(&x, &y, "fit")?;
        // Each training sample's weight, from its class's.
        let sample_weights = match &opts.class_weight {
            Some(_) if targets.len() > 1 => {
                return Err(Error::Config(format!(
                    "fit: class_weight reads one output's classes, the model has {} outputs ({})",
                    targets.len(),
                    self.outputs().join(", ")
                )));
            }
            Some(cw) => {
                if !loss.classifies() {
                    return Err(Error::Config(format!(
                        "fit: class_weight needs a classification loss, not {}",
                        loss.name()
                    )));
                }
                let out = self.output_shape().iter().product::<usize>();
                let n_train = if opts.validation_data.is_some() {
                    x.rows()
                } else {
                    (x.rows() as f64 * (1.0 - opts.validation_split)).floor() as usize
                };
                let classes = row_classes(&targets[0], out, n_train);
                let per_class = cw.resolve(&classes, crate::metrics::class_count(out))?;
                Some(classes.iter().map(|&c| per_class[c]).collect::<Vec<f32>>())
            }
            None => None,
        };
        let n_val = if opts.validation_data.is_some() {
            0
        } else {
            x.rows() - (x.rows() as f64 * (1.0 - opts.validation_split)).floor() as usize
        };
        let n_train = x.rows() - n_val;
        if n_train == 0 {
            return Err(Error::Data("fit: no training samples".into()));
        }
        let val_targets;
        let val: Option<(Inputs, &[Targets], std::ops::Range<usize>)> = match opts.validation_data {
            Some((vx, vy)) => {
                self.check_x(&vx, "fit validation_data")?;
                val_targets = self.check_targets(&vx, &vy, "fit validation_data")?;
                Some((vx, &val_targets, 0..vx.rows()))
            }
            None if n_val > 0 => Some((x, &targets, n_train..x.rows())),
            None => None,
        };
        // The stop flag is not cleared here: a signal that came between two fits (cross-validation's folds)
        // stops the next one. It is cleared when a stop is carried out.
        let mut history = History::default();
        let mut first_epoch = 1;
        let mut last_checkpoint = None;
        if let Some(p) = &opts.resume {
            (history, first_epoch) = (p.history.clone(), p.epoch + 1);
            last_checkpoint = opts.checkpoint.as_ref().map(|c| (c.clone(), p.epoch));
            self.set_learning_rate(p.learning_rate);
            for cb in callbacks.iter_mut() {
                if let Some(state) = p.callbacks.get(&cb.name()) {
                    cb.load_state(state)?;
                }
                if let Some(arrays) = p.callback_tensors.get(&cb.name()) {
                    cb.load_tensors(arrays)?;
                }
            }
        }
        if let Some(p) = peers {
            self.take_weights_of_rank_0(p)?;
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_begin(self)?;
        }
        let mut order: Vec<usize> = Vec::with_capacity(n_train);
        let mut scratch = Scratch::default();
        let widths = self.output_widths();
        let steps = n_train.div_ceil(opts.batch_size);
        for epoch in first_epoch..=opts.epochs {
            let start = Instant::now();
            order.clear();
            order.extend(0..n_train);
            if opts.shuffle {
                Rng::new(epoch_seed(opts.seed, epoch, 0)).shuffle(&mut order);
            }
            // Each rank draws dropout and augmentation from streams of its own (rank 0 those of one process).
            let own = (rank as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
            self.graph.seed(epoch_seed(opts.seed, epoch, 1) ^ own);
            let mut aug_rng = Rng::new(epoch_seed(opts.seed, epoch, 2) ^ own);
            let mut totals = Totals::new(self.state_len());
            let mut skip = 0;
            if let Some(p) = opts.resume.as_ref().filter(|p| p.epoch + 1 == epoch && p.step_in_epoch > 0) {
                skip = p.step_in_epoch;
                if rank == 0 {
                    *self.graph.rng() = Rng::from_state(p.rng.dropout);
                    aug_rng = Rng::from_state(p.rng.augment);
                } else {
                    // The checkpoint holds rank 0's streams: the others draw the rest of this epoch from
                    // fresh streams of their own (not the uninterrupted run's).
                    let fresh = (skip as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25);
                    self.graph.seed(epoch_seed(opts.seed, epoch, 1) ^ own ^ fresh);
                    aug_rng = Rng::new(epoch_seed(opts.seed, epoch, 2) ^ own ^ fresh);
                }
                // The checkpoint's sums are every rank's (summed before it was written): counted once.
                if rank == 0 {
                    (totals.loss, totals.seen) = (p.partial_loss, p.partial_seen);
                    totals.metrics.clone_from(&p.partial_metrics);
                }
            }
            let bar = opts.verbose.then(|| progress_bar(epoch, opts.epochs, steps));
            for (step, batch) in order.chunks(opts.batch_size).enumerate().skip(skip) {
                let aug = augment.map(|a| (a, &mut aug_rng));
                let sw = sample_weights.as_deref();
                let idx = &batch[crate::dist::shard(batch.len(), rank, size)];
                let share = peers.map(|p| Share { peers: p, global: batch.len() });
                let result = if idx.is_empty() {
                    self.idle_step(&mut scratch, share)
                } else {
                    self.train_batch(&x, &targets, idx, &mut totals, &mut scratch, aug, sw, share)
                };
                let batch_loss = match result {
                    Ok(l) => l,
                    Err(Error::Stopped(m)) => {
                        let kept = match &last_checkpoint {
                            Some((path, e)) => {
                                format!("; the last good checkpoint is {} (end of epoch {e})", path.display())
                            }
                            None => String::new(),
                        };
                        return Err(Error::Stopped(format!("epoch {epoch}, batch {} of {steps}: {m}{kept}", step + 1)));
                    }
                    Err(e) => return Err(e),
                };
                let global = self.compiled.as_ref().map_or(0, |c| c.1.iterations());
                for cb in callbacks.iter_mut() {
                    cb.on_batch_end(self, global, batch_loss)?;
                }
                if let Some(bar) = &bar {
                    bar.set_position(step as u64 + 1);
                    if step % 20 == 0 || step + 1 == steps {
                        let rate = totals.seen as f64 / start.elapsed().as_secs_f64();
                        let mut msg = format!("loss: {:.4}", totals.loss());
                        for (n, v) in totals.named(&metrics, &widths) {
                            msg += &format!(" - {n}: {v:.4}");
                        }
                        bar.set_message(format!("{msg} - {rate:.0} samples/s"));
                    }
                }
                if step + 1 < steps && stop_asked(peers.is_some(), &scratch) {
                    if let Some(bar) = &bar {
                        bar.finish_and_clear();
                    }
                    if let Some(p) = peers {
                        totals.sum_over(p)?;
                    }
                    let mut p = self.progress(&opts, epoch - 1, &history, callbacks);
                    p.step_in_epoch = step + 1;
                    p.rng = RngStates { dropout: self.graph.rng().state(), augment: aug_rng.state() };
                    (p.partial_loss, p.partial_seen, p.partial_metrics) =
                        (totals.loss, totals.seen, totals.metrics.clone());
                    let kept = match &opts.checkpoint {
                        Some(path) => {
                            if rank == 0 {
                                self.save_checkpoint(path, &p)?;
                            }
                            if let Some(p) = peers {
                                // No rank returns (and exits) before rank 0's checkpoint is written.
                                p.barrier()?;
                            }
                            format!("; saved {} (resume from there)", path.display())
                        }
                        None => String::new(),
                    };
                    return Err(Error::Stopped(format!(
                        "interrupted at epoch {epoch}, batch {} of {steps}{kept}",
                        step + 1
                    )));
                }
            }
            if let Some(p) = peers {
                totals.sum_over(p)?;
            }
            let train_secs = start.elapsed().as_secs_f64();
            let (val_loss, val_metrics) = match &val {
                Some((vx, vt, range)) => {
                    let idx: Vec<usize> = range.clone().collect();
                    let e = self.evaluate_indices(vx, vt, &idx, 1000, &mut scratch, peers)?;
                    (Some(e.loss), e.metrics)
                }
                None => (None, Vec::new()),
            };
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let log = EpochLog {
                epoch,
                loss: totals.loss(),
                metrics: totals.named(&metrics, &widths),
                val_loss,
                val_metrics,
                learning_rate: self.learning_rate().unwrap_or(0.0),
                seconds: train_secs,
                samples_per_second: n_train as f64 / train_secs,
            };
            if opts.verbose {
                println!("{}", epoch_line(&log, opts.epochs));
            }
            history.epochs.push(log.clone());
            let mut stop = false;
            for cb in callbacks.iter_mut() {
                stop |= cb.on_epoch_end(self, &log)? == Signal::Stop;
            }
            if let Some(p) = peers {
                // The logs are the same on every rank, so their callbacks agree; a callback that reads
                // something else (the clock) stops every rank, not one. A signal that came since the last
                // step's sums (during validation, say) is counted here.
                let signal = STOP.load(Ordering::SeqCst);
                let mut any = [f64::from(u8::from(stop)), f64::from(u8::from(signal))];
                p.sum_f64(&mut any)?;
                stop = any[0] > 0.0;
                scratch.stop_all = any[1] > 0.0;
            }
            if let Some(path) = &opts.checkpoint {
                if rank == 0 {
                    let p = self.progress(&opts, epoch, &history, callbacks);
                    self.save_checkpoint(path, &p)?;
                }
                last_checkpoint = Some((path.clone(), epoch));
            }
            // A stop asked for during the epoch's last step is carried out here, after its checkpoint.
            if !stop && epoch < opts.epochs && stop_asked(peers.is_some(), &scratch) {
                let kept = match &opts.checkpoint {
                    Some(path) => format!("; saved {} (resume from there)", path.display()),
                    None => String::new(),
                };
                if let Some(p) = peers {
                    p.barrier()?;
                }
                return Err(Error::Stopped(format!("interrupted after epoch {epoch}{kept}")));
            }
            if stop {
                if opts.verbose {
                    println!("Epoch {epoch}: early stopping");
                }
                break;
            }
        }
        for cb in callbacks.iter_mut() {
            cb.on_train_end(self, &history)?;
        }
        self.graph.reset();
        Ok(history)
    }

    /// Every rank starts from rank 0's weights (moving statistics too), whatever made them differ (a
    /// multi-threaded pretraining, a file read on one machine): rank 0 adds its values to the others' zeros.
    fn take_weights_of_rank_0(&mut self, peers: &dyn crate::dist::Collective) -> Result<()> {
        let (params, _) = self.graph.params_and_grads_mut();
        let mut flat: Vec<f32> = Vec::with_capacity(params.iter().map(|p| p.value.len()).sum());
        for p in params.iter() {
            if peers.rank() == 0 {
                flat.extend_from_slice(&p.value);
            } else {
                flat.resize(flat.len() + p.value.len(), 0.0);
            }
        }
        peers.sum_f32(&mut flat)?;
        let mut at = 0;
        for p in params.iter_mut() {
            let n = p.value.len();
            p.value.copy_from_slice(&flat[at..at + n]);
            at += n;
        }
        Ok(())
    }

    /// Where training stands after `epochs_done` whole epochs.
    fn progress(
        &self,
        opts: &FitOptions,
        epochs_done: usize,
        history: &History,
        cbs: &[&mut dyn Callback],
    ) -> Progress {
        Progress {
            epoch: epochs_done,
            seed: opts.seed,
            learning_rate: self.learning_rate().unwrap_or(0.0),
            history: history.clone(),
            callbacks: cbs.iter().map(|c| (c.name(), c.state())).collect(),
            callback_tensors: cbs.iter().map(|c| (c.name(), c.tensors())).filter(|(_, t)| !t.is_empty()).collect(),
            ..Default::default()
        }
    }
}

/// Whether a stop was asked for (`stop_flag`), clearing it. With ranks, what the last step's sums said (a
/// flag up on any rank), so that every rank stops after the same step, whenever the signal came.
fn stop_asked(ranks: bool, scratch: &Scratch) -> bool {
    if !ranks {
        return STOP.swap(false, Ordering::SeqCst);
    }
    if scratch.stop_all {
        STOP.store(false, Ordering::SeqCst);
    }
    scratch.stop_all
}

/// The class of each of the first `n` samples (see `FitOptions::class_weight`).
fn row_classes(t: &Targets, cols: usize, n: usize) -> Vec<usize> {
    match t {
        Targets::Labels(l) => l[..n].iter().map(|&c| c as usize).collect(),
        Targets::Dense(y) if cols == 1 => y.data()[..n].iter().map(|&v| (v > 0.5) as usize).collect(),
        Targets::Dense(y) => y.data().chunks(cols).take(n).map(kiln_core::argmax).collect(),
    }
}

/// Runs `f` on a thread of rayon's pool, so that the joins inside ops go to that thread's own queue: from
/// outside the pool each join would go through the shared queue (slower, and it allocates as it grows).
fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static RESERVED: std::sync::Once = std::sync::Once::new();
    RESERVED.call_once(kiln_core::ops::reserve_thread_buffers);
    rayon::scope(|_| f())
}

/// Targets for one output of per-sample shape `out`, checked against its loss.
fn check_target<'a>(
    loss: Loss,
    x: &Inputs,
    y: &'a Tensor,
    out: &[usize],
    what: &str,
    name: &str,
) -> Result<Targets<'a>> {
    check_finite(y, what, name)?;
    if y.rows() != x.rows() {
        return Err(Error::Shape(format!("{what}: x has {} samples but {name} has {}", x.rows(), y.rows())));
    }
    if loss.sparse() {
        let classes = out.last().copied().unwrap_or(1);
        if !(y.shape().len() == 1 || y.shape() == [y.rows(), 1]) {
            return Err(Error::Shape(format!(
                "{what}: {} takes class indices of shape (samples,), got {name} of shape {}",
                loss.name(),
                fmt_shape(y.shape())
            )));
        }
        let mut labels = Vec::with_capacity(y.len());
        for (i, &v) in y.data().iter().enumerate() {
            if v < 0.0 || v.fract() != 0.0 || v as usize >= classes {
                return Err(Error::Data(format!("{what}: {name}[{i}] = {v} is not a class index in 0..{classes}")));
            }
            labels.push(v as u32);
        }
        return Ok(Targets::Labels(labels));
    }
    if y.shape().get(1..) != Some(out) {
        let mut want = vec![y.rows()];
        want.extend_from_slice(out);
        let hint = if loss == Loss::CategoricalCrossentropy && y.shape().len() == 1 {
            "; for class indices use sparse_categorical_crossentropy, or one-hot encode y"
        } else {
            ""
        };
        return Err(Error::Shape(format!(
            "{what}: {name} has shape {} but {} needs targets shaped like the output, {}{hint}",
            fmt_shape(y.shape()),
            loss.name(),
            fmt_shape(&want)
        )));
    }
    Ok(Targets::Dense(y))
}
