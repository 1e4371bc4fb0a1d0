//! `Model`: named inputs and layers that each read inputs or earlier layers (Keras's functional API), built
//! as they are added so a misfit is reported at once; `Sequential` is the same type grown with `add`.
//! Keras's `compile` here; `fit` / `evaluate` / `predict` in train.rs, `save` / `load` in io.rs.

use crate::loss::Loss;
use crate::metrics::Metric;
use crate::nn::spec::MaskRule;
use crate::nn::{Layer, LayerConfig, Src, fmt_shape};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::schedule::{Clip, Schedule};
use kiln_core::{Error, Graph, Result, Rng, Var};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// What `compile` was given; saved with the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompileConfig {
    pub optimizer: OptimizerConfig,
    /// The loss of the output, or of every output when `losses` is empty.
    pub loss: Loss,
    /// One loss per output, in the order of `Model::outputs` (several outputs only; empty: `loss` for each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<Loss>,
    /// Each output's loss is multiplied by its weight before they are added (Keras's `loss_weights`; empty:
    /// all 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loss_weights: Vec<f32>,
    /// The metrics of the output, or of every output when `output_metrics` is empty.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// One list of metrics per output, in the order of `Model::outputs` (Keras's `metrics=[[...], [...]]`):
    /// an output predicting a number and one predicting classes need different ones. Empty: `metrics` for
    /// each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_metrics: Vec<Vec<Metric>>,
    /// A learning-rate schedule over the optimizer's steps; the optimizer's rate is its starting point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(default, skip_serializing_if = "Clip::is_none")]
    pub clip: Clip,
}

impl CompileConfig {
    pub fn new(optimizer: impl Into<OptimizerConfig>, loss: Loss, metrics: &[Metric]) -> Self {
        CompileConfig {
            optimizer: optimizer.into(),
            loss,
            losses: Vec::new(),
            loss_weights: Vec::new(),
            metrics: metrics.to_vec(),
            output_metrics: Vec::new(),
            schedule: None,
            clip: Clip::default(),
        }
    }

    pub fn schedule(mut self, s: Schedule) -> Self {
        self.schedule = Some(s);
        self
    }

    pub fn clip(mut self, c: Clip) -> Self {
        self.clip = c;
        self
    }

    /// One loss per output (a model with several outputs), in the order of `Model::outputs`.
    pub fn losses(mut self, losses: &[Loss]) -> Self {
        self.losses = losses.to_vec();
        self
    }

    /// Weights of the outputs' losses in the total that is minimized.
    pub fn loss_weights(mut self, weights: &[f32]) -> Self {
        self.loss_weights = weights.to_vec();
        self
    }

    /// One list of metrics per output (several outputs), in the order of `Model::outputs`.
    pub fn output_metrics(mut self, metrics: &[&[Metric]]) -> Self {
        self.output_metrics = metrics.iter().map(|m| m.to_vec()).collect();
        self
    }

    /// The metrics of output `k`.
    pub(crate) fn metrics_of(&self, k: usize) -> &[Metric] {
        self.output_metrics.get(k).unwrap_or(&self.metrics)
    }

    /// The loss of output `k`.
    pub(crate) fn loss_of(&self, k: usize) -> Loss {
        self.losses.get(k).copied().unwrap_or(self.loss)
    }

    /// The weight of output `k`'s loss.
    pub(crate) fn weight_of(&self, k: usize) -> f32 {
        self.loss_weights.get(k).copied().unwrap_or(1.0)
    }
}

/// One named input of a model and its per-sample shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// One layer of a graph model and the names of what it reads (model inputs or earlier layers); no `inputs`
/// means the layer before it (or the only model input), as in a `Sequential` model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(flatten)]
    pub layer: LayerConfig,
}

/// Buffers one forward pass reuses: every node's value (model inputs first, then each layer's output) with
/// the ids its padding mask comes from, and the values a merge reads.
#[derive(Default)]
pub(crate) struct Flows {
    pub(crate) outs: Vec<(Var, Option<Var>)>,
    ins: Vec<Var>,
}

/// An inference tape: lent to one `predict` or `evaluate` call at a time, reading the model's parameters.
#[derive(Default)]
pub(crate) struct Tape {
    pub(crate) graph: Graph<f32>,
    pub(crate) flows: Flows,
}

/// A model: named inputs, then layers in order, each reading model inputs or earlier layers (a graph, as
/// Keras's functional API); the last layer is the output. `Sequential` is the same type, built by `add`.
pub struct Model {
    pub(crate) name: String,
    pub(crate) net: Net,
    /// The training tape; it owns the parameter store, which inference tapes share.
    pub(crate) graph: Graph<f32>,
    rng: Rng,
    pub(crate) compiled: Option<(CompileConfig, Optimizer)>,
    pub(crate) scratch: crate::step::Scratch,
    /// How raw table rows become inputs (saved with the model; `predict_table` applies it).
    pub(crate) preparation: Option<crate::data::prepare::Preparation>,
    /// Warm inference tapes, so `predict(&self)` can run on several threads at once without allocating anew.
    tapes: Mutex<Vec<Tape>>,
    /// While the model is built: where parameters come from before their initializers (`weights_from`).
    source: Option<Box<dyn crate::weights::ParamSource>>,
    /// The backend set by `set_backend`, for inference tapes too (None: the CPU).
    backend: Option<std::sync::Arc<dyn kiln_core::Backend<f32>>>,
}

/// The architecture: inputs and layers, apart from the parameters and training state, so that a forward pass
/// can borrow it while the model's tape is borrowed mutably.
pub(crate) struct Net {
    pub(crate) inputs: Vec<InputSpec>,
    pub(crate) layers: Vec<Layer>,
    /// How many later layers read each layer's output (a conv feeding only the pool after it may fuse).
    pub(crate) readers: Vec<usize>,
    fuse: bool,
    /// The layers whose outputs are the model's, in order: the last layer unless `set_outputs` said otherwise.
    pub(crate) outputs: Vec<usize>,
    outputs_set: bool,
}

/// The Keras name for a model built layer by layer with `add`.
pub type Sequential = Model;

impl Model {
    /// An empty model taking samples of `input_shape` (without the batch axis), e.g. `&[28, 28, 1]`.
    /// Weights are initialized from seed 0 unless `seed` is called before the first `add`.
    pub fn new(input_shape: &[usize]) -> Self {
        Model::with_inputs(&[("input", input_shape)])
    }

    /// An empty graph model with named inputs (name, per-sample shape); layers join it with `apply`.
    pub fn with_inputs(inputs: &[(&str, &[usize])]) -> Self {
        Model {
            name: if inputs.len() == 1 { "sequential".into() } else { "model".into() },
            net: Net {
                inputs: inputs.iter().map(|(n, s)| InputSpec { name: n.to_string(), shape: s.to_vec() }).collect(),
                layers: Vec::new(),
                readers: Vec::new(),
                fuse: true,
                outputs: Vec::new(),
                outputs_set: false,
            },
            graph: Graph::new(),
            rng: Rng::new(0),
            compiled: None,
            scratch: Default::default(),
            preparation: None,
            tapes: Mutex::new(Vec::new()),
            source: None,
            backend: None,
        }
    }

    /// Seeds the weight initializers of the layers added after this call.
    pub(crate) fn set_weights_source(&mut self, s: Box<dyn crate::weights::ParamSource>) {
        self.source = Some(s);
    }

    pub(crate) fn take_weights_source(&mut self) -> Option<Box<dyn crate::weights::ParamSource>> {
        self.source.take()
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = Rng::new(seed);
        self
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// A model from a list of layer configs (what a TOML file holds).
    pub fn from_configs(input_shape: &[usize], layers: &[LayerConfig], seed: u64) -> Result<Self> {
        let mut m = Sequential::new(input_shape).seed(seed);
        for l in layers {
            m.add(l.clone())?;
        }
        Ok(m)
    }

    /// A graph model from its inputs and nodes (what a TOML file's `[model] inputs` and `nodes` hold).
    pub fn from_spec(inputs: &[InputSpec], nodes: &[NodeSpec], seed: u64) -> Result<Self> {
        if inputs.is_empty() {
            return Err(Error::Config("a model needs at least one input".into()));
        }
        let named: Vec<(&str, &[usize])> = inputs.iter().map(|i| (i.name.as_str(), &i.shape[..])).collect();
        let mut m = Model::with_inputs(&named).seed(seed);
        for n in nodes {
            let from: Vec<&str> = n.inputs.iter().map(String::as_str).collect();
            m.apply(n.layer.clone(), &from)?;
        }
        Ok(m)
    }

    /// Appends a layer reading the last layer's output (or the model's only input), as Keras's
    /// `Sequential.add`.
    pub fn add(&mut self, layer: impl Into<LayerConfig>) -> Result<&mut Self> {
        self.apply(layer, &[])?;
        Ok(self)
    }

    /// Adds a layer reading the outputs named in `from` (model inputs or earlier layers; empty: the last
    /// layer, as `add`), and returns the new layer's name: Keras's `layer(x)` in the functional API.
    pub fn apply(&mut self, layer: impl Into<LayerConfig>, from: &[&str]) -> Result<String> {
        let mut config = layer.into();
        for i in &self.net.inputs {
            if i.shape.is_empty() || i.shape.contains(&0) {
                return Err(Error::Config(format!("input `{}`: shape {:?} must list positive sizes", i.name, i.shape)));
            }
        }
        let name = match config.name() {
            Some(n) => n.to_string(),
            None => {
                let base = config.base_name();
                let taken = self.net.layers.iter().filter(|l| l.config.base_name() == base).count();
                if taken == 0 { base.to_string() } else { format!("{base}_{taken}") }
            }
        };
        if self.net.layers.iter().any(|l| l.name() == name) || self.net.inputs.iter().any(|i| i.name == name) {
            return Err(Error::Config(format!("two layers or inputs are named `{name}`: names must be unique")));
        }
        let srcs: Vec<Src> = if from.is_empty() {
            match (self.net.layers.len(), self.net.inputs.len()) {
                (0, 1) => vec![Src::Input(0)],
                (0, _) => {
                    return Err(Error::Config(format!(
                        "layer `{name}`: the model has {} inputs; name the ones it reads",
                        self.net.inputs.len()
                    )));
                }
                (n, _) => vec![Src::Layer(n - 1)],
            }
        } else {
            from.iter().map(|f| self.source(f, &name)).collect::<Result<_>>()?
        };
        config.set_name(name);
        let shapes: Vec<Vec<usize>> = srcs.iter().map(|&s| self.src_shape(s).to_vec()).collect();
        let sources: Vec<String> = srcs.iter().map(|&s| self.describe(s)).collect();
        let source = self.source.as_deref_mut();
        let layer = Layer::build(config, srcs, &shapes, &sources, &mut self.graph, &mut self.rng, source)?;
        for s in &layer.inputs {
            if let Src::Layer(j) = s {
                self.net.readers[*j] += 1;
            }
        }
        let name = layer.name().to_string();
        self.net.layers.push(layer);
        self.net.readers.push(0);
        if !self.net.outputs_set {
            self.net.outputs = vec![self.net.layers.len() - 1];
        }
        Ok(name)
    }

    /// Makes the layers `names` the model's outputs, in that order (Keras's `Model(inputs, outputs)`):
    /// `fit` and `evaluate` then take one target array per output, `predict_outputs` returns one array per
    /// output, and `compile` may give each its own loss (`CompileConfig::losses`).
    pub fn set_outputs(&mut self, names: &[&str]) -> Result<()> {
        if names.is_empty() {
            return Err(Error::Config("set_outputs: name at least one layer".into()));
        }
        let mut outputs = Vec::with_capacity(names.len());
        for &n in names {
            let Some(j) = self.net.layers.iter().position(|l| l.name() == n) else {
                let known: Vec<&str> = self.net.layers.iter().map(|l| l.name()).collect();
                return Err(Error::Config(format!(
                    "set_outputs: `{n}` is no layer of the model (there are: {})",
                    known.join(", ")
                )));
            };
            if outputs.contains(&j) {
                return Err(Error::Config(format!("set_outputs: `{n}` is named twice")));
            }
            outputs.push(j);
        }
        self.net.outputs = outputs;
        self.net.outputs_set = true;
        Ok(())
    }

    /// The outputs `set_outputs` chose (empty when the model's output is its last layer), as saved.
    pub(crate) fn outputs_set(&self) -> Vec<String> {
        if self.net.outputs_set { self.outputs().iter().map(|n| n.to_string()).collect() } else { Vec::new() }
    }

    /// The names of the layers whose outputs are the model's.
    pub fn outputs(&self) -> Vec<&str> {
        self.net.outputs.iter().map(|&j| self.net.layers[j].name()).collect()
    }

    /// Per-sample shape of each output.
    pub fn output_shapes(&self) -> Vec<&[usize]> {
        self.net.outputs.iter().map(|&j| &self.net.layers[j].output_shape[..]).collect()
    }

    /// The input or layer called `name`, for the layer `reader`.
    fn source(&self, name: &str, reader: &str) -> Result<Src> {
        if let Some(i) = self.net.inputs.iter().position(|i| i.name == name) {
            return Ok(Src::Input(i));
        }
        if let Some(j) = self.net.layers.iter().position(|l| l.name() == name) {
            return Ok(Src::Layer(j));
        }
        let known: Vec<&str> =
            self.net.inputs.iter().map(|i| i.name.as_str()).chain(self.net.layers.iter().map(|l| l.name())).collect();
        Err(Error::Config(format!(
            "layer `{reader}` reads `{name}`, which is no input or earlier layer (there are: {})",
            known.join(", ")
        )))
    }

    fn src_shape(&self, s: Src) -> &[usize] {
        match s {
            Src::Input(i) => &self.net.inputs[i].shape,
            Src::Layer(j) => &self.net.layers[j].output_shape,
        }
    }

    /// "`conv2d` (Conv2D) outputs (26, 26, 32)" or "the model input is (28, 28, 1)", for error messages.
    fn describe(&self, s: Src) -> String {
        let shape = fmt_shape(self.src_shape(s));
        match s {
            Src::Input(_) if self.net.inputs.len() == 1 => format!("the model input is {shape}"),
            Src::Input(i) => format!("input `{}` is {shape}", self.net.inputs[i].name),
            Src::Layer(j) => {
                let l = &self.net.layers[j];
                format!("`{}` ({}) outputs {shape}", l.name(), l.config.class_name())
            }
        }
    }

    /// The inputs and nodes that rebuild this model (`from_spec`).
    pub fn spec(&self) -> (Vec<InputSpec>, Vec<NodeSpec>) {
        let nodes = self
            .net
            .layers
            .iter()
            .enumerate()
            .map(|(j, l)| {
                let chain = match l.inputs[..] {
                    [Src::Input(0)] => j == 0 && self.net.inputs.len() == 1,
                    [Src::Layer(p)] => p + 1 == j,
                    _ => false,
                };
                let inputs = if chain {
                    Vec::new()
                } else {
                    l.inputs
                        .iter()
                        .map(|&s| match s {
                            Src::Input(i) => self.net.inputs[i].name.clone(),
                            Src::Layer(p) => self.net.layers[p].name().to_string(),
                        })
                        .collect()
                };
                NodeSpec { inputs, layer: l.config.clone() }
            })
            .collect();
        (self.net.inputs.clone(), nodes)
    }

    /// Whether layer pairs with a fused op run as one (Conv2D followed by a non-overlapping MaxPooling2D).
    /// On by default; the results are the same within float rounding, and off is the reference.
    pub fn set_fusion(&mut self, on: bool) {
        self.net.fuse = on;
    }

    pub fn layers(&self) -> &[Layer] {
        &self.net.layers
    }

    /// The per-sample shape of the (first) input.
    pub fn input_shape(&self) -> &[usize] {
        &self.net.inputs[0].shape
    }

    pub fn inputs(&self) -> &[InputSpec] {
        &self.net.inputs
    }

    /// Per-sample output shape (of the first output, when there are several).
    pub fn output_shape(&self) -> &[usize] {
        self.net.outputs.first().map_or(&self.net.inputs[0].shape, |&j| &self.net.layers[j].output_shape)
    }

    pub fn graph(&self) -> &Graph<f32> {
        &self.graph
    }

    pub fn graph_mut(&mut self) -> &mut Graph<f32> {
        &mut self.graph
    }

    pub fn compile_config(&self) -> Option<&CompileConfig> {
        self.compiled.as_ref().map(|c| &c.0)
    }

    /// (trainable, non-trainable) parameter counts.
    pub fn param_counts(&self) -> (usize, usize) {
        let mut t = (0, 0);
        for p in self.graph.params() {
            // A quantized kernel is not trainable but is counted with the weights it stands for.
            if p.trainable || p.quant.is_some() { t.0 += p.shape.numel() } else { t.1 += p.shape.numel() }
        }
        t
    }

    /// Sets the optimizer, loss and metrics for `fit` and `evaluate`.
    pub fn compile(&mut self, optimizer: impl Into<OptimizerConfig>, loss: Loss, metrics: &[Metric]) -> Result<()> {
        self.compile_with(CompileConfig::new(optimizer, loss, metrics))
    }

    /// `compile` with every setting, including a learning-rate schedule and gradient clipping.
    pub fn compile_with(&mut self, config: CompileConfig) -> Result<()> {
        config.optimizer.validate()?;
        if let Some(s) = &config.schedule {
            s.validate()?;
        }
        config.clip.validate()?;
        if self.net.layers.is_empty() {
            return Err(Error::Config("compile: the model has no layers".into()));
        }
        // A layer whose output no later layer reads, and that is not one of the model's outputs, would train
        // nothing.
        let outs = &self.net.outputs;
        if let Some(j) = (0..self.net.layers.len()).find(|&j| self.net.readers[j] == 0 && !outs.contains(&j)) {
            let names = self.outputs().iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
            let (what, how) = if outs.len() == 1 {
                (format!("the model's output (the last layer, {names})"), "connect it (a merge) or remove it")
            } else {
                (format!("one of the model's outputs ({names})"), "connect it, remove it or make it an output")
            };
            return Err(Error::Config(format!(
                "compile: the output of layer `{}` is read by no later layer and is not {what}: {how}",
                self.net.layers[j].name()
            )));
        }
        let n = outs.len();
        for (key, len) in [
            ("losses", config.losses.len()),
            ("loss_weights", config.loss_weights.len()),
            ("output_metrics", config.output_metrics.len()),
        ] {
            if len != 0 && len != n {
                return Err(Error::Config(format!(
                    "compile: {len} {key} given for {n} output{} ({})",
                    if n == 1 { "" } else { "s" },
                    self.outputs().join(", ")
                )));
            }
        }
        if let Some(w) = config.loss_weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(Error::Config(format!("compile: loss weight {w} must be a number >= 0")));
        }
        self.compiled = Some((config.clone(), Optimizer::new(config.optimizer)));
        Ok(())
    }

    /// The table preparation saved with the model, if it was trained on a table.
    pub fn preparation(&self) -> Option<&crate::data::prepare::Preparation> {
        self.preparation.as_ref()
    }

    pub fn set_preparation(&mut self, p: crate::data::prepare::Preparation) {
        self.preparation = Some(p);
    }

    /// The learning rate the optimizer uses now (after any schedule or plateau reduction).
    pub fn learning_rate(&self) -> Option<f32> {
        self.compiled.as_ref().map(|c| c.1.config.learning_rate())
    }

    /// Sets the learning rate for the next steps (a schedule, if compiled with one, sets it again each step).
    pub fn set_learning_rate(&mut self, lr: f32) {
        if let Some(c) = &mut self.compiled {
            c.1.config.set_learning_rate(lr);
        }
    }

    /// Every parameter's values, in the order of `graph().params()`.
    pub fn get_weights(&self) -> Vec<Vec<f32>> {
        self.graph.params().iter().map(|p| p.value.clone()).collect()
    }

    /// Sets every parameter from what `get_weights` returned.
    pub fn set_weights(&mut self, weights: &[Vec<f32>]) -> Result<()> {
        let params = self.graph.params();
        if weights.len() != params.len() || weights.iter().zip(params).any(|(w, p)| w.len() != p.value.len()) {
            return Err(Error::Shape(format!(
                "set_weights: {} arrays given, the model has {} parameters of other sizes",
                weights.len(),
                params.len()
            )));
        }
        for (i, w) in weights.iter().enumerate() {
            self.graph.param_mut(kiln_core::ParamId(i)).value.copy_from_slice(w);
        }
        Ok(())
    }

    /// Runs training and inference on `backend` (the CPU by default; `kiln_core::backend::cuda::Cuda` with
    /// feature `cuda`). Parameters stay where they are and saved models say nothing of it.
    pub fn set_backend(&mut self, backend: std::sync::Arc<dyn kiln_core::Backend<f32>>) {
        self.graph.set_backend(backend.clone());
        self.backend = Some(backend);
    }

    /// Lends a warm inference tape reading this model's parameters to `f`, then takes it back.
    pub(crate) fn with_tape<R>(&self, f: impl FnOnce(&mut Tape) -> R) -> R {
        let mut tape = self.tapes.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        if let Some(b) = &self.backend {
            tape.graph.set_backend(b.clone());
        }
        tape.graph.attach(self.graph.shared_params());
        tape.graph.set_recording(false);
        let r = f(&mut tape);
        tape.graph.detach();
        self.tapes.lock().unwrap_or_else(|e| e.into_inner()).push(tape);
        r
    }

    /// A Keras-style table: layer (type), output shape, parameter count, and for graph models what each
    /// layer reads ("Connected to"); then the totals.
    pub fn summary(&self) -> String {
        let (inputs, nodes) = self.spec();
        let graph = inputs.len() > 1 || nodes.iter().any(|n| !n.inputs.is_empty());
        let mut rows =
            vec![["Layer (type)".to_string(), "Output Shape".into(), "Param #".into(), "Connected to".into()]];
        for (l, node) in self.net.layers.iter().zip(&nodes) {
            let n: usize = l.params().map(|p| self.graph.param(p).shape.numel()).sum();
            let mut shape = vec![0];
            shape.extend_from_slice(&l.output_shape);
            let shape = fmt_shape(&shape).replacen('0', "None", 1);
            let from = if node.inputs.is_empty() {
                match l.inputs[0] {
                    Src::Input(i) => self.net.inputs[i].name.clone(),
                    Src::Layer(j) => self.net.layers[j].name().to_string(),
                }
            } else {
                node.inputs.join(", ")
            };
            rows.push([format!("{} ({})", l.name(), l.config.class_name()), shape, group(n), from]);
        }
        let cols = if graph { 4 } else { 3 };
        let mins = [28, 22, 10, 16];
        let w: Vec<usize> =
            (0..cols).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0).max(mins[c])).collect();
        let line = |c: char| c.to_string().repeat(w.iter().sum::<usize>() + 2 * cols) + "\n";
        let mut s = format!("Model: \"{}\"\n", self.name);
        s += &line('━');
        for (i, r) in rows.iter().enumerate() {
            s += &format!(" {:<w0$}  {:<w1$}  {:>w2$}", r[0], r[1], r[2], w0 = w[0], w1 = w[1], w2 = w[2]);
            if graph {
                s += &format!("  {}", r[3]);
            }
            s += "\n";
            s += &line(if i == 0 { '━' } else { '─' });
        }
        if self.net.outputs.len() > 1 {
            s += &format!(" Outputs: {}\n", self.outputs().join(", "));
        }
        let (t, nt) = self.param_counts();
        let mib = |n: usize| n as f64 * 4.0 / 1024.0 / 1024.0;
        s += &format!(" Total params: {} ({:.2} MiB)\n", group(t + nt), mib(t + nt));
        s += &format!(" Trainable params: {} ({:.2} MiB)\n", group(t), mib(t));
        s += &format!(" Non-trainable params: {} ({:.2} MiB)\n", group(nt), mib(nt));
        if let Some((_, dtype)) = self.quantized_param() {
            let bytes: usize = self.graph.params().iter().map(|p| p.bytes()).sum();
            s += &format!(" Stored in {:.2} MiB: Dense kernels stored as {dtype}\n", bytes as f64 / 1024.0 / 1024.0);
        }
        s
    }
}

impl Net {
    /// Runs every layer on a batch whose model inputs are already in `flows.outs` (one per input, in order)
    /// and appends each layer's output there (`output` reads the model's outputs from it). The layers in
    /// `logits` leave out their softmax/sigmoid (outputs whose loss takes logits). Takes `&self`: the tape `g`
    /// is the caller's (the model's own when training, a lent one when predicting).
    pub(crate) fn forward(
        &self,
        g: &mut Graph<f32>,
        flows: &mut Flows,
        training: bool,
        logits: &[usize],
    ) -> Result<()> {
        self.forward_with(g, flows, training, logits, None, None)
    }

    /// `forward`, with layer `keep` kept unfused (its own output in `flows`, not a fused pair's) and, with
    /// `value`, its output taken to be that instead of computed (the layer's padding mask still comes from
    /// its input): attributions at a layer, such as a text's term vectors, interpolate that value.
    pub(crate) fn forward_with(
        &self,
        g: &mut Graph<f32>,
        flows: &mut Flows,
        training: bool,
        logits: &[usize],
        keep: Option<usize>,
        value: Option<Var>,
    ) -> Result<()> {
        let (n, base) = (self.layers.len(), self.inputs.len());
        debug_assert_eq!(flows.outs.len(), base);
        let at = |s: Src| match s {
            Src::Input(i) => i,
            Src::Layer(j) => base + j,
        };
        let mut i = 0;
        while i < n {
            let layer = &self.layers[i];
            let (x, mask_ids) = flows.outs[at(layer.inputs[0])];
            // Conv2D feeding only the MaxPooling2D right after it runs as one fused op.
            if self.fuse
                && keep.is_none_or(|r| r != i && r != i + 1)
                && i + 1 < n
                && self.readers[i] == 1
                && !self.outputs.contains(&i)
                && self.layers[i + 1].inputs[..] == [Src::Layer(i)]
                && let Some(y) = layer.fuse_next(&self.layers[i + 1], g, x)
            {
                let y = y?;
                flows.outs.push((y, None));
                flows.outs.push((y, None));
                i += 2;
                continue;
            }
            flows.ins.clear();
            flows.ins.extend(layer.inputs.iter().map(|&s| flows.outs[at(s)].0));
            // The padding mask of an Embedding(mask_zero)'s ids, for the layers that read its steps.
            let mask: Option<Vec<f32>> = mask_ids
                .filter(|_| layer.reads_mask())
                .map(|ids| g.value(ids).iter().map(|&id| (id != 0.0) as u8 as f32).collect());
            let y = match (keep, value) {
                (Some(r), Some(y)) if r == i => y,
                _ => layer.forward(g, &flows.ins, training, logits.contains(&i), mask.as_deref())?,
            };
            // The mask holds while the steps are the embedding's: through dropout and sequence outputs.
            let mask_ids = match layer.mask_rule() {
                MaskRule::Starts => Some(x),
                MaskRule::Keeps => mask_ids,
                MaskRule::Drops => None,
            };
            flows.outs.push((y, mask_ids));
            i += 1;
        }
        if n == 0 {
            return Err(Error::Config("the model has no layers".into()));
        }
        Ok(())
    }

    /// The value of output `k` after `forward`.
    pub(crate) fn output(&self, flows: &Flows, k: usize) -> Var {
        flows.outs[self.inputs.len() + self.outputs[k]].0
    }
}

/// 693962 -> "693,962"
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
