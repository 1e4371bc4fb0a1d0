//! What every layer type implements (`LayerSpec`), the contexts its build and forward receive, and the
//! config pieces several layer files share (`Pair`, `PaddingConfig`, defaults).
//!
//! A layer type is its config struct (serde: what TOML and the Rust builders produce) plus this trait:
//! `build` checks the input shapes and asks `BuildCx` for named parameters; `forward` reads them back by
//! name from the built `Layer`. The dispatch over the closed set of types is generated in registry.rs.

use super::{Activation, Initializer, Layer, Regularizer};
use crate::onnx::OnnxGraph;
use kiln_core::{Error, Graph, Padding, ParamId, Result, Rng, UnaryOp, Var};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a padding mask (from an `Embedding(mask_zero)`) passes through a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MaskRule {
    /// The layer's input ids make a new mask (0 is padding).
    Starts,
    /// The output keeps the input's steps, so the mask still applies after it.
    Keeps,
    /// The steps are gone (pooled, flattened, last state only).
    Drops,
}

pub(crate) trait LayerSpec {
    /// Whether the layer merges two or more inputs (every other layer takes exactly one).
    fn merges(&self) -> bool {
        false
    }

    /// Checks the inputs (`cx.inputs`), creates the parameters (`cx.param`), returns the per-sample output
    /// shape.
    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>>;

    /// Runs the built layer `l` on a batch: `xs` holds one value per input.
    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var>;

    /// The activation applied last, which the loss may take over (fused cross-entropy from logits).
    fn activation(&self) -> Activation {
        Activation::Linear
    }

    /// Whether a recurrent layer outputs every step.
    fn returns_sequences(&self) -> bool {
        false
    }

    /// Whether `forward` reads `Fwd::mask`.
    fn reads_mask(&self) -> bool {
        false
    }

    fn mask_rule(&self) -> MaskRule {
        if self.returns_sequences() { MaskRule::Keeps } else { MaskRule::Drops }
    }

    /// Writes the built layer's inference forward as ONNX nodes reading `xs` (one name per input) and
    /// returns the name of its output: the same values `forward` computes with `training` off, in kiln's
    /// layouts (onnx/mod.rs).
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String>;

    /// Runs `l` and the layer after it (`next`, which reads only `l`) as one fused op, when the pair
    /// qualifies; the unfused path stays the reference.
    fn fuse_next(&self, _l: &Layer, _next: &Layer, _g: &mut Graph<f32>, _x: Var) -> Option<Result<Var>> {
        None
    }
}

/// What a layer's `build` gets: its name and inputs, and the model's parameter store to add to.
pub(crate) struct BuildCx<'a> {
    pub name: &'a str,
    pub class: &'static str,
    /// Per-sample shape of each input.
    pub inputs: &'a [Vec<usize>],
    /// Each input described for messages: "`conv2d` (Conv2D) outputs (26, 26, 32)".
    pub sources: &'a [String],
    pub(crate) g: &'a mut Graph<f32>,
    pub rng: &'a mut Rng,
    pub(crate) params: Vec<(String, ParamId)>,
    /// The penalty on the layer's `kernel`, if any.
    pub regularizer: Option<Regularizer>,
    /// The layer's config (what a weight source needs to know its layouts).
    pub(crate) layer: &'a crate::nn::LayerConfig,
    /// Where parameters come from before their initializers: a pretrained file (`Model::weights_from`).
    pub(crate) source: Option<&'a mut (dyn crate::weights::ParamSource + 'static)>,
}

impl BuildCx<'_> {
    /// The (only) input's per-sample shape.
    pub fn input(&self) -> &[usize] {
        &self.inputs[0]
    }

    /// "layer `dense` (Dense) expects a flat input (features,), but `conv2d` (Conv2D) outputs (26, 26, 32)".
    pub fn misfit(&self, want: &str) -> Error {
        let flatten = self.class == "Dense" && self.input().len() > 1;
        Error::Shape(format!(
            "layer `{}` ({}) expects {want}, but {}{}",
            self.name,
            self.class,
            self.sources[0],
            if flatten { "; add a Flatten layer before it" } else { "" }
        ))
    }

    pub fn positive(&self, n: usize, what: &str) -> Result<()> {
        if n == 0 {
            return Err(Error::Config(format!("layer `{}`: {what} must be positive", self.name)));
        }
        Ok(())
    }

    /// The usual weights of a layer: `kernel` of shape `ks` from `kernel`, with `bias` a `bias` the size of
    /// the kernel's last axis from its initializer, and `regularizer` on the kernel (Dense, Conv1D, Conv2D).
    pub fn kernel_and_bias(
        &mut self,
        ks: &[usize],
        kernel: Initializer,
        bias: Option<Initializer>,
        regularizer: Option<Regularizer>,
    ) -> Result<()> {
        let values = kernel.fill(ks, self.rng)?;
        self.param("kernel", ks, values, true)?;
        if let Some(b) = bias {
            let n = ks.last().copied().unwrap_or(1);
            let values = b.fill(&[n], self.rng)?;
            self.param("bias", &[n], values, true)?;
        }
        self.regularizer = regularizer;
        Ok(())
    }

    /// Adds the parameter `{layer}.{suffix}`: from the model's weight source when it holds it (a pretrained
    /// file, layouts converted and the shape checked), else with `value`, its initializer's. Fresh and
    /// pretrained parameters take this one path.
    pub fn param(&mut self, suffix: &str, shape: &[usize], value: Vec<f32>, trainable: bool) -> Result<()> {
        let name = format!("{}.{suffix}", self.name);
        let value = match self.source.as_deref_mut().map(|s| s.take(self.layer, &name, shape, &value)).transpose()? {
            Some(Some(v)) => v,
            _ => value,
        };
        let id = self.g.add_param(&name, shape, value, trainable)?;
        self.params.push((suffix.to_string(), id));
        Ok(())
    }
}

/// What a layer's `forward` gets: the tape, the mode and the padding mask of its input.
pub(crate) struct Fwd<'a> {
    pub g: &'a mut Graph<f32>,
    pub training: bool,
    /// Leave out a final softmax/sigmoid, because the loss applies it (fused, from logits).
    pub logits: bool,
    /// The padding mask of a sequence ([batch, steps], 1 for real steps), for layers that read it.
    pub mask: Option<&'a [f32]>,
}

impl Fwd<'_> {
    /// The elementwise activation to fuse into the layer's op, unless it is the sigmoid the loss applies.
    pub fn fused(&self, act: Activation) -> Option<UnaryOp> {
        if self.logits && act == Activation::Sigmoid { None } else { act.unary() }
    }

    /// A softmax over the last axis (of `rank` per-sample axes) when `act` is one and the loss does not
    /// take it.
    pub fn finish(&mut self, y: Var, act: Activation, rank: usize) -> Result<Var> {
        match act {
            Activation::Softmax if !self.logits => self.g.softmax(y, rank),
            _ => Ok(y),
        }
    }
}

/// Output length of a window sliding over `input` (None when it does not fit).
pub(crate) fn window_out(input: usize, k: usize, s: usize, p: PaddingConfig) -> Option<usize> {
    match p {
        PaddingConfig::Valid => (input >= k).then(|| (input - k) / s + 1),
        PaddingConfig::Same => Some(input.div_ceil(s)),
    }
}

/// Two sizes (height, width); a single number in a config means the same for both, as in Keras.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair(pub usize, pub usize);

impl From<usize> for Pair {
    fn from(n: usize) -> Self {
        Pair(n, n)
    }
}

impl From<(usize, usize)> for Pair {
    fn from(p: (usize, usize)) -> Self {
        Pair(p.0, p.1)
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        [self.0, self.1].serialize(s)
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            One(usize),
            Two([usize; 2]),
        }
        match Repr::deserialize(d) {
            Ok(Repr::One(n)) => Ok(Pair(n, n)),
            Ok(Repr::Two([a, b])) => Ok(Pair(a, b)),
            Err(_) => Err(serde::de::Error::custom("expected a positive integer or a pair like [3, 3]")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingConfig {
    #[default]
    Valid,
    Same,
}

impl From<PaddingConfig> for Padding {
    fn from(p: PaddingConfig) -> Padding {
        match p {
            PaddingConfig::Valid => Padding::Valid,
            PaddingConfig::Same => Padding::Same,
        }
    }
}

pub(crate) fn yes() -> bool {
    true
}
pub(crate) fn glorot() -> super::Initializer {
    super::Initializer::GlorotUniform
}
pub(crate) fn zeros() -> super::Initializer {
    super::Initializer::Zeros
}
pub(crate) fn one_one() -> Pair {
    Pair(1, 1)
}
pub(crate) fn two_two() -> Pair {
    Pair(2, 2)
}
