//! `Sequential`: layers in a line, built as they are added (so a misfit is reported at once), with
//! Keras's `compile` / `fit` / `evaluate` / `predict` / `save` (the last four in train.rs and io.rs).

use crate::loss::Loss;
use crate::metrics::Metric;
use crate::nn::{Activation, Layer, LayerConfig, fmt_shape};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::schedule::{Clip, Schedule};
use kiln_core::{Error, Graph, Result, Rng, Var};
use serde::{Deserialize, Serialize};

/// What `compile` was given; saved with the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompileConfig {
    pub optimizer: OptimizerConfig,
    pub loss: Loss,
    #[serde(default)]
    pub metrics: Vec<Metric>,
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
            metrics: metrics.to_vec(),
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
}

pub struct Sequential {
    pub(crate) name: String,
    pub(crate) input_shape: Vec<usize>,
    pub(crate) layers: Vec<Layer>,
    pub(crate) graph: Graph<f32>,
    rng: Rng,
    pub(crate) compiled: Option<(CompileConfig, Optimizer)>,
    pub(crate) scratch: crate::train::Scratch,
    fuse: bool,
    /// How raw table rows become inputs (saved with the model; `predict_table` applies it).
    pub(crate) preparation: Option<crate::data::prepare::Preparation>,
}

impl Sequential {
    /// An empty model taking samples of `input_shape` (without the batch axis), e.g. `&[28, 28, 1]`.
    /// Weights are initialized from seed 0 unless `seed` is called before the first `add`.
    pub fn new(input_shape: &[usize]) -> Self {
        Sequential {
            name: "sequential".into(),
            input_shape: input_shape.to_vec(),
            layers: Vec::new(),
            graph: Graph::new(),
            rng: Rng::new(0),
            compiled: None,
            scratch: Default::default(),
            fuse: true,
            preparation: None,
        }
    }

    /// Seeds the weight initializers of the layers added after this call.
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

    /// Appends a layer, building it on the current output shape.
    pub fn add(&mut self, layer: impl Into<LayerConfig>) -> Result<&mut Self> {
        let mut config = layer.into();
        if self.input_shape.is_empty() || self.input_shape.contains(&0) {
            return Err(Error::Config(format!("input_shape {:?} must list positive sizes", self.input_shape)));
        }
        let name = match config.name() {
            Some(n) => n.to_string(),
            None => {
                let base = config.base_name();
                let taken = self.layers.iter().filter(|l| l.config.base_name() == base).count();
                if taken == 0 { base.to_string() } else { format!("{base}_{taken}") }
            }
        };
        if self.layers.iter().any(|l| l.name() == name) {
            return Err(Error::Config(format!("two layers are named `{name}`: layer names must be unique")));
        }
        config.set_name(name);
        let input = self.output_shape().to_vec();
        let layer = Layer::build(config, &input, self.layers.last(), &mut self.graph, &mut self.rng)?;
        self.layers.push(layer);
        Ok(self)
    }

    /// Whether layer pairs with a fused op run as one (Conv2D followed by a non-overlapping MaxPooling2D).
    /// On by default; the results are the same within float rounding, and off is the reference.
    pub fn set_fusion(&mut self, on: bool) {
        self.fuse = on;
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        self.layers.last().map_or(&self.input_shape, |l| &l.output_shape)
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
            if p.trainable { t.0 += p.value.len() } else { t.1 += p.value.len() }
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
        if self.layers.is_empty() {
            return Err(Error::Config("compile: the model has no layers".into()));
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

    /// The last layer's activation, which the loss may take over.
    pub(crate) fn last_activation(&self) -> Activation {
        self.layers.last().map_or(Activation::Linear, |l| l.config.activation())
    }

    /// Runs every layer on the batch `x`. `logits`: the last layer leaves out its softmax/sigmoid.
    pub(crate) fn forward(&mut self, x: Var, training: bool, logits: bool) -> Result<Var> {
        let n = self.layers.len();
        let (mut h, mut i) = (x, 0);
        // Padding steps of an Embedding(mask_zero), for the recurrent layer that reads its output.
        let mut mask: Option<Vec<f32>> = None;
        while i < n {
            if let LayerConfig::Embedding(e) = &self.layers[i].config
                && e.mask_zero
            {
                mask = Some(self.graph.value(h).iter().map(|&id| (id != 0.0) as u8 as f32).collect());
            }
            if self.fuse
                && i + 1 < n
                && let Some(y) = crate::nn::conv_pool_forward(&self.layers[i], &self.layers[i + 1], &mut self.graph, h)
            {
                (h, i) = (y?, i + 2);
                continue;
            }
            h = self.layers[i].forward(&mut self.graph, h, training, logits && i + 1 == n, mask.as_deref())?;
            // The mask holds while the steps are the embedding's: through dropout and sequence outputs.
            let c = &self.layers[i].config;
            if !(matches!(c, LayerConfig::Embedding(_) | LayerConfig::Dropout(_)) || c.returns_sequences()) {
                mask = None;
            }
            i += 1;
        }
        Ok(h)
    }

    /// A Keras-style table: layer (type), output shape, parameter count; then the totals.
    pub fn summary(&self) -> String {
        let mut rows = vec![("Layer (type)".to_string(), "Output Shape".to_string(), "Param #".to_string())];
        for l in &self.layers {
            let n: usize = l.params.iter().map(|&p| self.graph.param(p).value.len()).sum();
            let mut shape = vec![0];
            shape.extend_from_slice(&l.output_shape);
            let shape = fmt_shape(&shape).replacen('0', "None", 1);
            rows.push((format!("{} ({})", l.name(), l.config.class_name()), shape, group(n)));
        }
        let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(28);
        let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(22);
        let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(10);
        let line = |c: char| c.to_string().repeat(w0 + w1 + w2 + 6) + "\n";
        let mut s = format!("Model: \"{}\"\n", self.name);
        s += &line('━');
        for (i, r) in rows.iter().enumerate() {
            s += &format!(" {:<w0$}  {:<w1$}  {:>w2$}\n", r.0, r.1, r.2);
            s += &line(if i == 0 { '━' } else { '─' });
        }
        let (t, nt) = self.param_counts();
        let mib = |n: usize| n as f64 * 4.0 / 1024.0 / 1024.0;
        s += &format!(" Total params: {} ({:.2} MiB)\n", group(t + nt), mib(t + nt));
        s += &format!(" Trainable params: {} ({:.2} MiB)\n", group(t), mib(t));
        s += &format!(" Non-trainable params: {} ({:.2} MiB)\n", group(nt), mib(nt));
        s
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
