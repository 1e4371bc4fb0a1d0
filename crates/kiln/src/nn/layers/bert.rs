//! BertEncoder: a BERT-family text encoder as a layer (Devlin et al. 2019), so that a pretrained one
//! (`[model] pretrained = "models/all-MiniLM-L6-v2"`) is fine-tuned, saved and predicted like any other
//! kiln model. Input: token ids (steps,), 0 for padding, as the folder's tokenizer makes them (the
//! preparation's `tokens` feature). Output: one vector (hidden,) per text, the mean over its tokens or its
//! [CLS] vector, optionally scaled to unit length.
//!
//! Parameters carry Hugging Face's names in kiln's layouts (`embeddings.word_embeddings.weight`,
//! `encoder.layer.0.attention.self.query.kernel` = the transposed `...query.weight`), so that the folder's
//! model.safetensors fills them through the one loading path (`pretrained::HfBertSource`), and
//! `pretrained::Encoder` runs the same forward (`forward_tokens`) for `kiln embed`.

use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec};
use crate::onnx::proto::INT64;
use crate::onnx::{Attention, Attr, OnnxGraph};
use kiln_core::ops::AttentionDropout;
use kiln_core::{Error, Graph, ParamId, Result, UnaryOp, Var};
use serde::{Deserialize, Serialize};

/// How token vectors become one vector per text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPooling {
    /// The mean over the text's tokens (padding excluded): sentence-transformers' default.
    #[default]
    Mean,
    /// The first token's vector ([CLS]).
    Cls,
}

fn bert_dropout() -> f64 {
    0.1
}
fn bert_eps() -> f64 {
    1e-12
}
fn two() -> usize {
    2
}

/// A BERT encoder over token ids (see the header). The architecture keys are config.json's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BertEncoder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    #[serde(default = "bert_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pooling: TokenPooling,
    /// Scale each text's vector to unit length (sentence-transformers' Normalize module).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub normalize: bool,
    /// Dropout while training on the hidden states and on the attention weights (BERT's 0.1).
    #[serde(default = "bert_dropout")]
    pub dropout: f64,
    /// Keep the lowest parts fixed while training: 1 the embeddings, 2 the embeddings and the first encoder
    /// layer, and so on (0: train everything).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freeze: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl BertEncoder {
    /// A fresh encoder of this shape (usually filled from a pretrained folder instead:
    /// `pretrained::bert_layer`).
    pub fn new(vocab_size: usize, hidden_size: usize, layers: usize, heads: usize, intermediate: usize) -> Self {
        BertEncoder {
            name: None,
            vocab_size,
            hidden_size,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: intermediate,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: bert_eps(),
            pooling: TokenPooling::Mean,
            normalize: false,
            dropout: bert_dropout(),
            freeze: 0,
        }
    }
    pub fn freeze(mut self, parts: usize) -> Self {
        self.freeze = parts;
        self
    }
    pub fn dropout(mut self, rate: f64) -> Self {
        self.dropout = rate;
        self
    }

    /// Every parameter's name and shape, in the order they are made, and whether it is in a frozen part.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>, bool)> {
        let (h, f) = (self.hidden_size, self.intermediate_size);
        let frozen = |part: usize| part < self.freeze;
        let mut out = vec![
            ("embeddings.word_embeddings.weight".to_string(), vec![self.vocab_size, h], frozen(0)),
            ("embeddings.position_embeddings.weight".to_string(), vec![self.max_position_embeddings, h], frozen(0)),
            ("embeddings.token_type_embeddings.weight".to_string(), vec![self.type_vocab_size, h], frozen(0)),
            ("embeddings.LayerNorm.weight".to_string(), vec![h], frozen(0)),
            ("embeddings.LayerNorm.bias".to_string(), vec![h], frozen(0)),
        ];
        for l in 0..self.num_hidden_layers {
            let fz = frozen(l + 1);
            // A linear layer's kernel [i, o] and bias [o]; with i = 0, a LayerNorm's weight (γ) and bias [o].
            let mut lin = |name: &str, i: usize, o: usize| {
                let (w, shape) = if i == 0 { ("weight", vec![o]) } else { ("kernel", vec![i, o]) };
                out.push((format!("encoder.layer.{l}.{name}.{w}"), shape, fz));
                out.push((format!("encoder.layer.{l}.{name}.bias"), vec![o], fz));
            };
            lin("attention.self.query", h, h);
            lin("attention.self.key", h, h);
            lin("attention.self.value", h, h);
            lin("attention.output.dense", h, h);
            lin("attention.output.LayerNorm", 0, h);
            lin("intermediate.dense", h, f);
            lin("output.dense", f, h);
            lin("output.LayerNorm", 0, h);
        }
        out
    }
}

/// The encoder's hidden states [b·t, hidden] for `ids` (b texts of t tokens, row-major; `keep` 1 for a
/// token, 0 for padding), parameters looked up by name; `dropout` (hidden, attention) while training.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_tokens(
    g: &mut Graph<f32>,
    arch: &BertEncoder,
    param: &dyn Fn(&str) -> ParamId,
    ids: &[u32],
    keep: &[f32],
    b: usize,
    t: usize,
    dropout: Option<f64>,
) -> Result<Var> {
    let eps = arch.layer_norm_eps;
    let heads = arch.num_attention_heads;
    let positions: Vec<u32> = (0..b * t).map(|i| (i % t) as u32).collect();
    let p = |g: &mut Graph<f32>, name: &str| g.use_param(param(name));
    let drop = |g: &mut Graph<f32>, x: Var| match dropout {
        Some(r) if r > 0.0 => g.dropout(x, r),
        _ => Ok(x),
    };
    // Embeddings: [b·t, h] each; every text is segment 0.
    let (wt, pt, tt) = (
        p(g, "embeddings.word_embeddings.weight"),
        p(g, "embeddings.position_embeddings.weight"),
        p(g, "embeddings.token_type_embeddings.weight"),
    );
    let words = g.index_select(wt, 0, ids)?;
    let pos = g.index_select(pt, 0, &positions)?;
    let seg = g.slice(tt, 0, 0, 1)?;
    let x = g.add(words, pos)?;
    let x = g.add(x, seg)?;
    let norm = |g: &mut Graph<f32>, x: Var, name: &str| {
        let (gamma, beta) = (p(g, &format!("{name}.weight")), p(g, &format!("{name}.bias")));
        g.layer_norm(x, gamma, beta, eps)
    };
    let x = norm(g, x, "embeddings.LayerNorm")?;
    let mut x = drop(g, x)?;
    for l in 0..arch.num_hidden_layers {
        let n = |s: &str| format!("encoder.layer.{l}.{s}");
        let dense = |g: &mut Graph<f32>, x, name: &str, act| {
            let (w, bb) = (p(g, &format!("{name}.kernel")), p(g, &format!("{name}.bias")));
            g.linear(x, w, Some(bb), act)
        };
        let q = dense(g, x, &n("attention.self.query"), None)?;
        let k = dense(g, x, &n("attention.self.key"), None)?;
        let v = dense(g, x, &n("attention.self.value"), None)?;
        let ad = dropout.filter(|&r| r > 0.0).map(|rate| AttentionDropout { rate, seed: g.rng().next_u64() });
        let a = g.attention_dropout(q, k, v, b, t, heads, Some(keep), false, ad)?;
        let a = dense(g, a, &n("attention.output.dense"), None)?;
        let a = drop(g, a)?;
        let a = g.add(a, x)?;
        x = norm(g, a, &n("attention.output.LayerNorm"))?;
        let f = dense(g, x, &n("intermediate.dense"), Some(UnaryOp::Gelu))?;
        let f = dense(g, f, &n("output.dense"), None)?;
        let f = drop(g, f)?;
        let f = g.add(f, x)?;
        x = norm(g, f, &n("output.LayerNorm"))?;
    }
    Ok(x)
}

impl LayerSpec for BertEncoder {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let (t, h) = (l.input_shape()[0], self.hidden_size);
        let eps = self.layer_norm_eps;
        let ids = o.op("Cast", &[&xs[0]], vec![Attr::i("to", INT64 as i64)]);
        // Words, positions 0..t and segment 0, summed: [batch, t, h].
        let words = o.param(l, "embeddings.word_embeddings.weight")?;
        let words = o.op("Gather", &[&words, &ids], vec![Attr::i("axis", 0)]);
        let positions = o.param(l, "embeddings.position_embeddings.weight")?;
        let steps = o.ints(&(0..t as i64).collect::<Vec<_>>());
        let positions = o.op("Gather", &[&positions, &steps], vec![Attr::i("axis", 0)]);
        let segments = o.param(l, "embeddings.token_type_embeddings.weight")?;
        let zero = o.scalar(0);
        let segment = o.op("Gather", &[&segments, &zero], vec![Attr::i("axis", 0)]);
        let x = o.op("Add", &[&words, &positions], vec![]);
        let x = o.op("Add", &[&x, &segment], vec![]);
        let norm = |o: &mut OnnxGraph, x: &str, name: &str| -> Result<String> {
            let (gamma, beta) = (o.param(l, &format!("{name}.weight"))?, o.param(l, &format!("{name}.bias"))?);
            Ok(o.layer_norm(x, &gamma, &beta, eps))
        };
        let mut x = norm(o, &x, "embeddings.LayerNorm")?;
        // Padding (id 0) is hidden as a key, as `forward_tokens` does.
        let keep = o.keep(&xs[0]);
        o.mask = Some(keep.clone());
        let shape = Attention { t, heads: self.num_attention_heads, dh: h / self.num_attention_heads, causal: false };
        for k in 0..self.num_hidden_layers {
            let n = |s: &str| format!("encoder.layer.{k}.{s}.");
            let names = [
                n("attention.self.query"),
                n("attention.self.key"),
                n("attention.self.value"),
                n("attention.output.dense"),
            ];
            let a = o.attention(l, &x, [&names[0], &names[1], &names[2], &names[3]], shape)?;
            let a = o.op("Add", &[&a, &x], vec![]);
            x = norm(o, &a, &format!("encoder.layer.{k}.attention.output.LayerNorm"))?;
            let f = o.dense(l, &x, &n("intermediate.dense"), crate::nn::Activation::Gelu)?;
            let f = o.dense(l, &f, &n("output.dense"), crate::nn::Activation::Linear)?;
            let f = o.op("Add", &[&f, &x], vec![]);
            x = norm(o, &f, &format!("encoder.layer.{k}.output.LayerNorm"))?;
        }
        let pooled = match self.pooling {
            TokenPooling::Cls => {
                let first = o.scalar(0);
                o.op("Gather", &[&x, &first], vec![Attr::i("axis", 1)])
            }
            TokenPooling::Mean => {
                // Σ h·keep / max(Σ keep, 1e-9) over the steps.
                let k3 = o.reshape(&keep, &[t, 1]);
                let masked = o.op("Mul", &[&x, &k3], vec![]);
                let sum = o.sum(&masked, 1, false);
                let n = o.sum(&keep, 1, true);
                let tiny = o.floats(&[], &[1e-9]);
                let n = o.op("Max", &[&n, &tiny], vec![]);
                o.op("Div", &[&sum, &n], vec![])
            }
        };
        if !self.normalize {
            return Ok(pooled);
        }
        let sq = o.op("Mul", &[&pooled, &pooled], vec![]);
        let ss = o.sum(&sq, 1, true);
        let tiny = o.floats(&[], &[1e-24]);
        let ss = o.op("Add", &[&ss, &tiny], vec![]);
        let norm = o.op("Sqrt", &[&ss], vec![]);
        Ok(o.op("Div", &[&pooled, &norm], vec![]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let &[steps] = cx.input() else {
            return Err(cx.misfit("token ids (steps,)"));
        };
        cx.positive(steps, "the token ids per text")?;
        cx.positive(self.hidden_size, "hidden_size")?;
        cx.positive(self.type_vocab_size, "type_vocab_size")?;
        cx.positive(self.max_position_embeddings, "max_position_embeddings")?;
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(Error::Config(format!("layer `{}`: layer_norm_eps must be positive", cx.name)));
        }
        let heads_fit = self.num_attention_heads > 0 && self.hidden_size.is_multiple_of(self.num_attention_heads);
        if !heads_fit || self.num_hidden_layers == 0 || self.vocab_size == 0 || self.intermediate_size == 0 {
            return Err(Error::Config(format!(
                "layer `{}` (BertEncoder): hidden_size {} in {} heads, {} layers, vocab {}: want a width that splits \
                 into the heads and none zero",
                cx.name, self.hidden_size, self.num_attention_heads, self.num_hidden_layers, self.vocab_size
            )));
        }
        if steps > self.max_position_embeddings {
            return Err(Error::Config(format!(
                "layer `{}` (BertEncoder): {steps} tokens per text, but the model has {} positions; lower the \
                 text length to {} or less",
                cx.name, self.max_position_embeddings, self.max_position_embeddings
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!("layer `{}`: dropout {} must be in [0, 1)", cx.name, self.dropout)));
        }
        if self.freeze > self.num_hidden_layers + 1 {
            return Err(Error::Config(format!(
                "layer `{}`: freeze = {} parts, but the encoder has {} (the embeddings and {} layers)",
                cx.name,
                self.freeze,
                self.num_hidden_layers + 1,
                self.num_hidden_layers
            )));
        }
        for (name, shape, frozen) in self.param_shapes() {
            // BERT's initialization: N(0, 0.02) for matrices, LayerNorm γ = 1, β and biases 0.
            let n: usize = shape.iter().product();
            let value = if name.ends_with("LayerNorm.weight") {
                vec![1.0; n]
            } else if shape.len() == 2 {
                (0..n).map(|_| (cx.rng.normal() * 0.02) as f32).collect()
            } else {
                vec![0.0; n]
            };
            cx.param(&name, &shape, value, !frozen)?;
        }
        Ok(vec![self.hidden_size])
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (b, steps) = (f.g.shape(xs[0]).dim(0), l.input_shape()[0]);
        let raw = f.g.value(xs[0]);
        if let Some(&x) = raw.iter().find(|&&x| !(x >= 0.0 && (x as usize) < self.vocab_size && x.fract() == 0.0)) {
            return Err(Error::Invalid(format!(
                "layer `{}` (BertEncoder): token id {x} is outside the model's {} words",
                l.name(),
                self.vocab_size
            )));
        }
        // Only as many steps as the batch's longest text: the padding after it changes nothing (it is
        // masked as keys and pooled over by nothing), and texts are often far shorter than the limit.
        let t = raw.chunks_exact(steps).map(|r| r.iter().rposition(|&x| x != 0.0).map_or(0, |p| p + 1)).max();
        let t = t.unwrap_or(0).max(1);
        let ids: Vec<u32> = raw.chunks_exact(steps).flat_map(|r| r[..t].iter().map(|&x| x as u32)).collect();
        let keep: Vec<f32> = ids.iter().map(|&i| (i != 0) as u8 as f32).collect();
        let lookup = |name: &str| l.must(name);
        let dropout = f.training.then_some(self.dropout);
        let h = forward_tokens(f.g, self, &lookup, &ids, &keep, b, t, dropout)?;
        // Pooling as one product: [b, b·t] weights (1/n over a text's tokens, or 1 on its [CLS]) · [b·t, d].
        let mut w = vec![0f32; b * b * t];
        for r in 0..b {
            let row = &keep[r * t..(r + 1) * t];
            match self.pooling {
                TokenPooling::Cls => w[r * b * t + r * t] = 1.0,
                TokenPooling::Mean => {
                    let n = row.iter().sum::<f32>().max(1e-9);
                    for (j, &k) in row.iter().enumerate() {
                        w[r * b * t + r * t + j] = k / n;
                    }
                }
            }
        }
        let w = f.g.input(&[b, b * t], &w)?;
        let pooled = f.g.matmul(w, h)?;
        if !self.normalize {
            return Ok(pooled);
        }
        // v / ‖v‖ per row.
        let sq = f.g.mul(pooled, pooled)?;
        let ss = f.g.sum(sq, Some(1), true)?;
        let tiny = f.g.input(&[1], &[1e-24])?;
        let ss = f.g.add(ss, tiny)?;
        let norm = f.g.sqrt(ss)?;
        f.g.div(pooled, norm)
    }
}
