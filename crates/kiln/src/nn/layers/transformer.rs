//! Attention layers over a sequence (steps, features): MultiHeadAttention (self-attention), position
//! embeddings (learned or sinusoidal) and the TransformerEncoder block (Vaswani et al. 2017), laid out as
//! PyTorch's `nn.MultiheadAttention` and `nn.TransformerEncoderLayer` compute them (tests/suite/transformer.rs
//! matches both on fixtures from tools/make_transformer_fixtures.py). Kernels are stored in Keras's layout
//! [in, out], PyTorch's transposed. A padding mask from an `Embedding(mask_zero)` hides the padded steps
//! as keys; their own outputs are computed but read by nothing mask-aware after them.
//!
//! Attention runs as the engine's fused op (`Graph::attention_dropout`), dropout on its weights included.

use crate::nn::spec::{BuildCx, Fwd, LayerSpec, MaskRule};
use crate::nn::{Activation, Initializer, Layer};
use crate::onnx::{Attention, OnnxGraph};
use kiln_core::ops::AttentionDropout;
use kiln_core::{Error, Graph, Result, UnaryOp, Var};
use serde::{Deserialize, Serialize};

fn default_dropout() -> f64 {
    0.1
}
fn torch_epsilon() -> f64 {
    1e-5
}
fn relu() -> Activation {
    Activation::Relu
}

/// Self-attention over a sequence (steps, features) in `heads` heads of `key_dim` values each (left out,
/// features / heads, as PyTorch's `nn.MultiheadAttention(embed_dim, num_heads)`): the query, key and value
/// projections, scaled dot-product attention, and the output projection back to `features`. Padded steps
/// (a mask from `Embedding(mask_zero)`) are not attended to; `causal` hides later steps; `dropout` drops
/// attention weights while training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiHeadAttention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropout: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub causal: bool,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl MultiHeadAttention {
    pub fn new(heads: usize) -> Self {
        MultiHeadAttention { name: None, heads, key_dim: None, dropout: 0.0, causal: false }
    }
    pub fn key_dim(mut self, d: usize) -> Self {
        self.key_dim = Some(d);
        self
    }
    pub fn dropout(mut self, rate: f64) -> Self {
        self.dropout = rate;
        self
    }
    pub fn causal(mut self, yes: bool) -> Self {
        self.causal = yes;
        self
    }
}

/// How PositionEmbedding makes its table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionEncoding {
    /// A trained vector per position (BERT's, Keras-hub's PositionEmbedding).
    #[default]
    Learned,
    /// The fixed sines and cosines of Vaswani et al.: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] =
    /// cos(the same); no parameters.
    Sinusoidal,
}

/// Adds a vector per position to a sequence (steps, features), so that attention, which is blind to order,
/// sees where each step is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionEmbedding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub encoding: PositionEncoding,
}

impl PositionEmbedding {
    pub fn new() -> Self {
        PositionEmbedding::default()
    }
    pub fn sinusoidal() -> Self {
        PositionEmbedding { name: None, encoding: PositionEncoding::Sinusoidal }
    }
}

/// One transformer encoder block over a sequence (steps, features), as PyTorch's
/// `nn.TransformerEncoderLayer(d_model = features, nhead = heads, dim_feedforward = units, batch_first)`:
/// post-norm (the default) x = LN₁(x + Drop(MHA(x))), x = LN₂(x + Drop(FF(x))); with `norm_first`,
/// x = x + Drop(MHA(LN₁ x)), x = x + Drop(FF(LN₂ x)); FF(x) = W₂·Drop(act(W₁·x + b₁)) + b₂. Dropout
/// (default 0.1, PyTorch's) applies to the attention weights too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerEncoder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub heads: usize,
    /// The feed-forward width (PyTorch's dim_feedforward).
    pub units: usize,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// `relu` (PyTorch's default) or `gelu`.
    #[serde(default = "relu")]
    pub activation: Activation,
    /// Normalize before each sub-block (pre-norm) instead of after the residual (post-norm).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub norm_first: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub causal: bool,
    #[serde(default = "torch_epsilon")]
    pub epsilon: f64,
}

impl TransformerEncoder {
    pub fn new(heads: usize, units: usize) -> Self {
        TransformerEncoder {
            name: None,
            heads,
            units,
            dropout: default_dropout(),
            activation: relu(),
            norm_first: false,
            causal: false,
            epsilon: torch_epsilon(),
        }
    }
    pub fn dropout(mut self, rate: f64) -> Self {
        self.dropout = rate;
        self
    }
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    pub fn norm_first(mut self, yes: bool) -> Self {
        self.norm_first = yes;
        self
    }
    pub fn causal(mut self, yes: bool) -> Self {
        self.causal = yes;
        self
    }
}

/// The (steps, features) of a sequence input, or the error naming what the layer got.
fn sequence(cx: &BuildCx) -> Result<(usize, usize)> {
    match *cx.input() {
        [steps, features] if steps > 0 && features > 0 => Ok((steps, features)),
        _ => Err(cx.misfit("a sequence (steps, features), e.g. an Embedding's output")),
    }
}

fn check_rate(cx: &BuildCx, rate: f64) -> Result<()> {
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::Config(format!("layer `{}`: dropout {rate} must be in [0, 1)", cx.name)));
    }
    Ok(())
}

/// A kernel [i, o] (Glorot uniform, as PyTorch's in_proj and Keras's) and a zero bias [o] named
/// `{prefix}kernel` and `{prefix}bias`.
fn linear_params(cx: &mut BuildCx, prefix: &str, i: usize, o: usize) -> Result<()> {
    let k = Initializer::GlorotUniform.fill(&[i, o], cx.rng)?;
    cx.param(&format!("{prefix}kernel"), &[i, o], k, true)?;
    cx.param(&format!("{prefix}bias"), &[o], vec![0.0; o], true)
}

/// The attention's parameters: query, key and value kernels [features, heads·key_dim], the output kernel
/// [heads·key_dim, features], each with its bias.
fn attention_params(cx: &mut BuildCx, prefix: &str, features: usize, heads: usize, key_dim: usize) -> Result<()> {
    let width = heads * key_dim;
    for part in ["query", "key", "value"] {
        linear_params(cx, &format!("{prefix}{part}_"), features, width)?;
    }
    linear_params(cx, &format!("{prefix}output_"), width, features)
}

/// x [rows, i] · `{prefix}kernel` + `{prefix}bias`, then `act`.
fn dense(g: &mut Graph<f32>, l: &Layer, prefix: &str, x: Var, act: Option<UnaryOp>) -> Result<Var> {
    let w = g.use_param(l.must(&format!("{prefix}kernel")));
    let b = g.use_param(l.must(&format!("{prefix}bias")));
    g.linear(x, w, Some(b), act)
}

/// What one self-attention needs besides its weights.
struct Attend<'a> {
    b: usize,
    t: usize,
    heads: usize,
    causal: bool,
    dropout: f64,
    training: bool,
    keep: Option<&'a [f32]>,
}

/// Self-attention of x [b·t, features] with the layer's `{prefix}` weights: [b·t, features].
fn self_attention(g: &mut Graph<f32>, l: &Layer, prefix: &str, x: Var, a: &Attend) -> Result<Var> {
    let q = dense(g, l, &format!("{prefix}query_"), x, None)?;
    let k = dense(g, l, &format!("{prefix}key_"), x, None)?;
    let v = dense(g, l, &format!("{prefix}value_"), x, None)?;
    let dropout =
        (a.training && a.dropout > 0.0).then(|| AttentionDropout { rate: a.dropout, seed: g.rng().next_u64() });
    let o = g.attention_dropout(q, k, v, a.b, a.t, a.heads, a.keep, a.causal, dropout)?;
    dense(g, l, &format!("{prefix}output_"), o, None)
}

/// The batch's x [b, t, f] as [b·t, f], with b and t.
fn rows(g: &mut Graph<f32>, x: Var, l: &Layer) -> Result<(Var, usize, usize, usize)> {
    let (t, f) = (l.input_shape()[0], l.input_shape()[1]);
    let b = g.shape(x).dim(0);
    Ok((g.reshape(x, &[b * t, f])?, b, t, f))
}

impl LayerSpec for MultiHeadAttention {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let (t, width) = (l.input_shape()[0], o.values(l, "query_kernel")?.0[1]);
        let shape = Attention { t, heads: self.heads, dh: width / self.heads, causal: self.causal };
        o.attention(l, &xs[0], ["query_", "key_", "value_", "output_"], shape)
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let (_, features) = sequence(cx)?;
        cx.positive(self.heads, "heads")?;
        check_rate(cx, self.dropout)?;
        let key_dim = match self.key_dim {
            Some(d) => d,
            None if features.is_multiple_of(self.heads) => features / self.heads,
            None => {
                return Err(Error::Config(format!(
                    "layer `{}` (MultiHeadAttention): {} features do not split into {} heads; choose heads that \
                     divide {features}, or set key_dim",
                    cx.name, features, self.heads
                )));
            }
        };
        cx.positive(key_dim, "key_dim")?;
        attention_params(cx, "", features, self.heads, key_dim)?;
        Ok(cx.input().to_vec())
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (x, b, t, feat) = rows(f.g, xs[0], l)?;
        let a = Attend {
            b,
            t,
            heads: self.heads,
            causal: self.causal,
            dropout: self.dropout,
            training: f.training,
            keep: f.mask,
        };
        let y = self_attention(f.g, l, "", x, &a)?;
        f.g.reshape(y, &[b, t, feat])
    }

    fn reads_mask(&self) -> bool {
        true
    }

    fn mask_rule(&self) -> MaskRule {
        MaskRule::Keeps
    }
}

/// The sinusoidal table [steps, features] (see `PositionEncoding::Sinusoidal`).
pub fn sinusoidal_table(steps: usize, features: usize) -> Vec<f32> {
    let mut table = vec![0f32; steps * features];
    for p in 0..steps {
        for i in 0..features {
            let angle = p as f64 / 10000f64.powf((i - i % 2) as f64 / features as f64);
            table[p * features + i] = if i % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    table
}

impl LayerSpec for PositionEmbedding {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let (steps, features) = (l.input_shape()[0], l.input_shape()[1]);
        let table = match self.encoding {
            PositionEncoding::Learned => o.param(l, "embeddings")?,
            PositionEncoding::Sinusoidal => o.floats(&[steps, features], &sinusoidal_table(steps, features)),
        };
        Ok(o.op("Add", &[&xs[0], &table], vec![]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let (steps, features) = sequence(cx)?;
        if self.encoding == PositionEncoding::Learned {
            let table = Initializer::GlorotUniform.fill(&[steps, features], cx.rng)?;
            cx.param("embeddings", &[steps, features], table, true)?;
        }
        Ok(cx.input().to_vec())
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (steps, features) = (l.input_shape()[0], l.input_shape()[1]);
        let table = match self.encoding {
            PositionEncoding::Learned => f.g.use_param(l.must("embeddings")),
            PositionEncoding::Sinusoidal => f.g.input(&[steps, features], &sinusoidal_table(steps, features))?,
        };
        f.g.add(xs[0], table)
    }

    fn mask_rule(&self) -> MaskRule {
        MaskRule::Keeps
    }
}

impl LayerSpec for TransformerEncoder {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let (t, f) = (l.input_shape()[0], l.input_shape()[1]);
        let shape = Attention { t, heads: self.heads, dh: f / self.heads, causal: self.causal };
        let names = ["attention_query_", "attention_key_", "attention_value_", "attention_output_"];
        let norm = |o: &mut OnnxGraph, x: &str, k: usize| -> Result<String> {
            let (gamma, beta) = (o.param(l, &format!("norm{k}_gamma"))?, o.param(l, &format!("norm{k}_beta"))?);
            Ok(o.layer_norm(x, &gamma, &beta, self.epsilon))
        };
        let feed = |o: &mut OnnxGraph, x: &str| -> Result<String> {
            let h = o.dense(l, x, "ff1_", self.activation)?;
            o.dense(l, &h, "ff2_", Activation::Linear)
        };
        let x = &xs[0];
        if self.norm_first {
            let n = norm(o, x, 1)?;
            let a = o.attention(l, &n, names, shape)?;
            let x = o.op("Add", &[x, &a], vec![]);
            let n = norm(o, &x, 2)?;
            let ff = feed(o, &n)?;
            Ok(o.op("Add", &[&x, &ff], vec![]))
        } else {
            let a = o.attention(l, x, names, shape)?;
            let s = o.op("Add", &[x, &a], vec![]);
            let x = norm(o, &s, 1)?;
            let ff = feed(o, &x)?;
            let s = o.op("Add", &[&x, &ff], vec![]);
            norm(o, &s, 2)
        }
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let (_, features) = sequence(cx)?;
        cx.positive(self.heads, "heads")?;
        cx.positive(self.units, "units")?;
        check_rate(cx, self.dropout)?;
        if !features.is_multiple_of(self.heads) {
            return Err(Error::Config(format!(
                "layer `{}` (TransformerEncoder): {features} features do not split into {} heads; choose heads \
                 that divide {features}",
                cx.name, self.heads
            )));
        }
        if !matches!(self.activation, Activation::Relu | Activation::Gelu) {
            return Err(Error::Config(format!(
                "layer `{}` (TransformerEncoder): activation must be relu or gelu, got {:?}",
                cx.name, self.activation
            )));
        }
        if self.epsilon.is_nan() || self.epsilon <= 0.0 {
            return Err(Error::Config(format!("layer `{}`: epsilon must be positive", cx.name)));
        }
        attention_params(cx, "attention_", features, self.heads, features / self.heads)?;
        cx.param("norm1_gamma", &[features], vec![1.0; features], true)?;
        cx.param("norm1_beta", &[features], vec![0.0; features], true)?;
        linear_params(cx, "ff1_", features, self.units)?;
        linear_params(cx, "ff2_", self.units, features)?;
        cx.param("norm2_gamma", &[features], vec![1.0; features], true)?;
        cx.param("norm2_beta", &[features], vec![0.0; features], true)?;
        Ok(cx.input().to_vec())
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (x, b, t, feat) = rows(f.g, xs[0], l)?;
        let training = f.training;
        let g = &mut *f.g;
        let drop = |g: &mut Graph<f32>, x: Var| {
            if training && self.dropout > 0.0 { g.dropout(x, self.dropout) } else { Ok(x) }
        };
        let norm = |g: &mut Graph<f32>, x: Var, k: usize| {
            let gamma = g.use_param(l.must(&format!("norm{k}_gamma")));
            let beta = g.use_param(l.must(&format!("norm{k}_beta")));
            g.layer_norm(x, gamma, beta, self.epsilon)
        };
        let a = Attend { b, t, heads: self.heads, causal: self.causal, dropout: self.dropout, training, keep: f.mask };
        let attend = |g: &mut Graph<f32>, x: Var| {
            let y = self_attention(g, l, "attention_", x, &a)?;
            drop(g, y)
        };
        let act = self.activation.unary();
        let feed = |g: &mut Graph<f32>, x: Var| {
            let h = dense(g, l, "ff1_", x, act)?;
            let h = drop(g, h)?;
            let y = dense(g, l, "ff2_", h, None)?;
            drop(g, y)
        };
        let y = if self.norm_first {
            let n = norm(g, x, 1)?;
            let a = attend(g, n)?;
            let x = g.add(x, a)?;
            let n = norm(g, x, 2)?;
            let ff = feed(g, n)?;
            g.add(x, ff)?
        } else {
            let a = attend(g, x)?;
            let s = g.add(x, a)?;
            let x = norm(g, s, 1)?;
            let ff = feed(g, x)?;
            let s = g.add(x, ff)?;
            norm(g, s, 2)?
        };
        g.reshape(y, &[b, t, feat])
    }

    fn reads_mask(&self) -> bool {
        true
    }

    fn mask_rule(&self) -> MaskRule {
        MaskRule::Keeps
    }
}
