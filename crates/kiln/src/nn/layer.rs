//! A built layer: its config (name filled in), where its inputs come from, the per-sample shapes it maps
//! between, and its parameters by name in the model's store. Building checks that the inputs fit, naming
//! both layers and shapes when not; what each type checks and computes is in its file under layers/.

use super::spec::{BuildCx, Fwd, MaskRule};
use super::{LayerConfig, Regularizer};
use kiln_core::{Error, Graph, ParamId, Rng, Shape, Var};

/// Where a layer's input comes from: one of the model's inputs, or an earlier layer's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    Input(usize),
    Layer(usize),
}

pub struct Layer {
    pub(crate) config: LayerConfig,
    pub(crate) inputs: Vec<Src>,
    /// The per-sample shape of each input.
    pub(crate) input_shapes: Vec<Vec<usize>>,
    pub(crate) output_shape: Vec<usize>,
    /// Each parameter under its name within the layer (`kernel`, `bias`, `moving_mean`, ...); the store
    /// holds it as `{layer}.{name}`.
    pub(crate) params: Vec<(String, ParamId)>,
    pub(crate) regularizer: Option<Regularizer>,
}

pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    Shape::new(shape).map(|s| s.to_string()).unwrap_or_else(|_| format!("{shape:?}"))
}

impl Layer {
    pub fn name(&self) -> &str {
        self.config.name().unwrap_or("")
    }

    pub fn config(&self) -> &LayerConfig {
        &self.config
    }

    /// The per-sample shape of the (first) input.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shapes[0]
    }

    pub fn input_shapes(&self) -> &[Vec<usize>] {
        &self.input_shapes
    }

    pub fn inputs(&self) -> &[Src] {
        &self.inputs
    }

    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// Every parameter's id, in the order they were made.
    pub fn params(&self) -> impl Iterator<Item = ParamId> + '_ {
        self.params.iter().map(|p| p.1)
    }

    /// The parameter called `name` within this layer (`kernel`, `bias`, `embeddings`, ...).
    pub fn param(&self, name: &str) -> Option<ParamId> {
        self.params.iter().find(|p| p.0 == name).map(|p| p.1)
    }

    /// `param`, for parameters the layer always has once built.
    pub(crate) fn must(&self, name: &str) -> ParamId {
        self.param(name).unwrap_or_else(|| panic!("layer `{}` was built without `{name}`", self.name()))
    }

    /// Builds `config` (already named) on inputs `srcs` of per-sample shapes `inputs`, described for error
    /// messages by `sources` ("`conv2d` (Conv2D) outputs (26, 26, 32)", "the model input is ...").
    pub(crate) fn build(
        config: LayerConfig,
        srcs: Vec<Src>,
        inputs: &[Vec<usize>],
        sources: &[String],
        g: &mut Graph<f32>,
        rng: &mut Rng,
        source: Option<&mut (dyn crate::weights::ParamSource + 'static)>,
    ) -> kiln_core::Result<Layer> {
        let name = config.name().unwrap_or("").to_string();
        let class = config.class_name();
        let spec = config.spec();
        if !spec.merges() && inputs.len() != 1 {
            return Err(Error::Config(format!(
                "layer `{name}` ({class}) takes one input, got {}: {}",
                inputs.len(),
                sources.join("; ")
            )));
        }
        let mut cx = BuildCx {
            name: &name,
            class,
            inputs,
            sources,
            g,
            rng,
            params: Vec::new(),
            regularizer: None,
            layer: &config,
            source,
        };
        let named = |e: Error| match e {
            Error::Config(m) if !m.contains(&format!("`{name}`")) => {
                Error::Config(format!("layer `{name}` ({class}): {m}"))
            }
            e => e,
        };
        let output_shape = spec.build(&mut cx).map_err(named)?;
        // Training keeps a value and a gradient of each layer's output per sample.
        let per_sample = output_shape.iter().fold(1u128, |n, &d| n.saturating_mul(d as u128));
        kiln_core::mem::check(per_sample, 8, &format!("one sample's output {output_shape:?} (value and gradient)"))
            .map_err(named)?;
        let (params, regularizer) = (cx.params, cx.regularizer);
        Ok(Layer { config, inputs: srcs, input_shapes: inputs.to_vec(), output_shape, params, regularizer })
    }

    /// Runs the layer on a batch; `xs` holds one value per input (one, but for merges). `logits`: leave out
    /// a final softmax/sigmoid, because the loss applies it (fused, from logits). `mask`: the padding mask of
    /// a sequence ([batch, steps], 1 for real steps), for layers that read it.
    pub(crate) fn forward(
        &self,
        g: &mut Graph<f32>,
        xs: &[Var],
        training: bool,
        logits: bool,
        mask: Option<&[f32]>,
    ) -> kiln_core::Result<Var> {
        let mut f = Fwd { g, training, logits, mask };
        self.config.spec().forward(self, &mut f, xs)
    }

    /// Runs this layer and `next` (which reads only this one) as one fused op, when the pair qualifies.
    pub(crate) fn fuse_next(&self, next: &Layer, g: &mut Graph<f32>, x: Var) -> Option<kiln_core::Result<Var>> {
        self.config.spec().fuse_next(self, next, g, x)
    }

    pub(crate) fn reads_mask(&self) -> bool {
        self.config.spec().reads_mask()
    }

    pub(crate) fn mask_rule(&self) -> MaskRule {
        self.config.spec().mask_rule()
    }
}
