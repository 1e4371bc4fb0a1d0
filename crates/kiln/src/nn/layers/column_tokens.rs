//! The two ends of a transformer over a table's columns (FT-Transformer, Gorishniy et al. 2021):
//! `ColumnTokens` turns a prepared row into one token per column plus a trained [CLS] token, and
//! `SelectToken` reads one token (the [CLS]) back out after the blocks.
//!
//! A column's token is its slice of the prepared row times its own kernel, plus its own bias. That one rule
//! covers every column kind the preparation makes: a one-hot category times the kernel is the level's row
//! (an embedding lookup, plus the bias that the paper adds per column); a number with its missing indicator
//! and quantile bins is a linear map of them (the paper's linear numeric embedding; with piecewise-linear
//! bins, its PLE embedding, Gorishniy et al. 2022). Numbers may instead be encoded periodically first
//! (that paper's PLR): v = [sin(2πc·x), cos(2πc·x)] with trained frequencies c ~ N(0, σ²), then the linear
//! map and a ReLU. tests/suite/transformer.rs matches a PyTorch transcription on fixtures
//! (tools/make_transformer_fixtures.py).

use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec};
use crate::onnx::{Attr, OnnxGraph};
use kiln_core::{Error, Result, UnaryOp, Var};
use serde::{Deserialize, Serialize};

fn default_frequencies() -> usize {
    16
}
fn default_sigma() -> f64 {
    0.1
}
fn yes() -> bool {
    true
}

/// Every column of a prepared row as a token `dim` wide: (features,) → (columns + 1, dim), the [CLS]
/// token first. `widths` are the columns' spans of the row, in order; `periodic` marks the numbers whose
/// first value (the scaled number) is encoded periodically with `frequencies` sines and cosines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnTokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub dim: usize,
    pub widths: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periodic: Vec<bool>,
    #[serde(default = "default_frequencies")]
    pub frequencies: usize,
    /// The standard deviation the frequencies start from (the paper tunes it; 0.1 suits standardized
    /// numbers, whose useful periods are a few standard deviations).
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    #[serde(default = "yes")]
    pub cls: bool,
}

impl ColumnTokens {
    pub fn new(dim: usize, widths: &[usize]) -> Self {
        ColumnTokens {
            name: None,
            dim,
            widths: widths.to_vec(),
            periodic: Vec::new(),
            frequencies: default_frequencies(),
            sigma: default_sigma(),
            cls: true,
        }
    }
    /// Which columns are numbers encoded periodically (one flag per column).
    pub fn periodic(mut self, flags: &[bool]) -> Self {
        self.periodic = flags.to_vec();
        self
    }
    pub fn frequencies(mut self, k: usize, sigma: f64) -> Self {
        self.frequencies = k;
        self.sigma = sigma;
        self
    }
    pub fn cls(mut self, yes: bool) -> Self {
        self.cls = yes;
        self
    }

    fn is_periodic(&self, j: usize) -> bool {
        self.periodic.get(j).copied().unwrap_or(false)
    }

    /// What column `j`'s kernel reads: its slice, with a periodic number's value replaced by 2k features.
    fn kernel_rows(&self, j: usize) -> usize {
        if self.is_periodic(j) { self.widths[j] - 1 + 2 * self.frequencies } else { self.widths[j] }
    }
}

/// U(±1/√n), the tokenizer's init in the FT-Transformer reference (and nn.Linear's, n = fan-in).
fn uniform(cx: &mut BuildCx, len: usize, n: usize) -> Vec<f32> {
    let a = 1.0 / (n as f64).sqrt();
    (0..len).map(|_| cx.rng.uniform_range(-a, a) as f32).collect()
}

impl LayerSpec for ColumnTokens {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let (x, d) = (&xs[0], self.dim);
        let mut tokens = Vec::with_capacity(self.widths.len() + 1);
        if self.cls {
            // cls [d] broadcast to [batch, 1, d]: the batch size read from x.
            let shape = o.op("Shape", &[x], vec![]);
            let batch = o.slice(&shape, 0, 0, 1);
            let rest = o.ints(&[1, d as i64]);
            let shape = o.op("Concat", &[&batch, &rest], vec![Attr::i("axis", 0)]);
            let cls = o.param(l, "cls")?;
            tokens.push(o.op("Expand", &[&cls, &shape], vec![]));
        }
        let mut off = 0;
        for (j, &w) in self.widths.iter().enumerate() {
            let kernel = o.param(l, &format!("kernel_{j}"))?;
            let bias = o.param(l, &format!("bias_{j}"))?;
            let v = if self.is_periodic(j) {
                // [sin 2πc·x, cos 2πc·x, the rest of the slice], as `forward`.
                let value = o.columns(x, off, off + 1);
                let c = o.param(l, &format!("frequencies_{j}"))?;
                let two_pi = o.floats(&[], &[std::f32::consts::TAU]);
                let cx = o.op("Mul", &[&value, &c], vec![]);
                let angle = o.op("Mul", &[&cx, &two_pi], vec![]);
                let mut parts = vec![o.op("Sin", &[&angle], vec![]), o.op("Cos", &[&angle], vec![])];
                if w > 1 {
                    parts.push(o.columns(x, off + 1, off + w));
                }
                let parts: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
                o.op("Concat", &parts, vec![Attr::i("axis", 1)])
            } else {
                o.columns(x, off, off + w)
            };
            off += w;
            let y = o.op("MatMul", &[&v, &kernel], vec![]);
            let mut y = o.op("Add", &[&y, &bias], vec![]);
            if self.is_periodic(j) {
                y = o.op("Relu", &[&y], vec![]);
            }
            tokens.push(o.reshape(&y, &[1, d]));
        }
        let tokens: Vec<&str> = tokens.iter().map(|s| s.as_str()).collect();
        Ok(o.op("Concat", &tokens, vec![Attr::i("axis", 1)]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let &[width] = cx.input() else {
            return Err(cx.misfit("a flat input (features,), a prepared table row"));
        };
        let total: usize = self.widths.iter().sum();
        if total != width || self.widths.contains(&0) {
            return Err(cx.misfit(&format!("{total} features in {} non-empty columns", self.widths.len())));
        }
        cx.positive(self.dim, "dim")?;
        if !self.periodic.is_empty() && self.periodic.len() != self.widths.len() {
            return Err(Error::Config(format!(
                "layer `{}`: periodic has {} flags for {} columns",
                cx.name,
                self.periodic.len(),
                self.widths.len()
            )));
        }
        if self.periodic.iter().any(|&p| p) {
            cx.positive(self.frequencies, "frequencies")?;
            if self.sigma.is_nan() || self.sigma <= 0.0 {
                return Err(Error::Config(format!("layer `{}`: sigma {} must be positive", cx.name, self.sigma)));
            }
        }
        let d = self.dim;
        for j in 0..self.widths.len() {
            if self.is_periodic(j) {
                let k = self.frequencies;
                let c: Vec<f32> = (0..k).map(|_| (cx.rng.normal() * self.sigma) as f32).collect();
                cx.param(&format!("frequencies_{j}"), &[k], c, true)?;
                let rows = self.kernel_rows(j);
                let w = uniform(cx, rows * d, rows);
                cx.param(&format!("kernel_{j}"), &[rows, d], w, true)?;
                let b = uniform(cx, d, rows);
                cx.param(&format!("bias_{j}"), &[d], b, true)?;
            } else {
                let w = uniform(cx, self.widths[j] * d, d);
                cx.param(&format!("kernel_{j}"), &[self.widths[j], d], w, true)?;
                let b = uniform(cx, d, d);
                cx.param(&format!("bias_{j}"), &[d], b, true)?;
            }
        }
        if self.cls {
            let c = uniform(cx, d, d);
            cx.param("cls", &[d], c, true)?;
        }
        Ok(vec![self.widths.len() + self.cls as usize, d])
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (g, x) = (&mut *f.g, xs[0]);
        let (n, d) = (g.shape(x).dim(0), self.dim);
        let mut tokens = Vec::with_capacity(self.widths.len() + 1);
        if self.cls {
            // [n, 1, 1] zeros + cls [d] broadcasts to [n, 1, d].
            let zeros = g.input(&[n, 1, 1], &vec![0.0; n])?;
            let c = g.use_param(l.must("cls"));
            tokens.push(g.add(zeros, c)?);
        }
        let two_pi = g.input(&[1], &[std::f32::consts::TAU])?;
        let mut off = 0;
        for (j, &w) in self.widths.iter().enumerate() {
            let part = g.slice(x, 1, off, off + w)?;
            off += w;
            let kernel = g.use_param(l.must(&format!("kernel_{j}")));
            let bias = g.use_param(l.must(&format!("bias_{j}")));
            let t = if self.is_periodic(j) {
                // [n, 1] · c [k] → 2π·c·x [n, k]; [sin, cos, the rest of the slice] → linear → ReLU.
                let value = g.slice(part, 1, 0, 1)?;
                let c = g.use_param(l.must(&format!("frequencies_{j}")));
                let cx = g.mul(value, c)?;
                let angle = g.mul(cx, two_pi)?;
                let mut parts = vec![g.unary(angle, UnaryOp::Sin)?, g.unary(angle, UnaryOp::Cos)?];
                if w > 1 {
                    parts.push(g.slice(part, 1, 1, w)?);
                }
                let v = g.concat(&parts, 1)?;
                g.linear(v, kernel, Some(bias), Some(UnaryOp::Relu))?
            } else {
                g.linear(part, kernel, Some(bias), None)?
            };
            tokens.push(g.reshape(t, &[n, 1, d])?);
        }
        g.concat(&tokens, 1)
    }
}

/// One token of a sequence (steps, features) → (features,): PyTorch's `x[:, index]`, the [CLS] token
/// (index 0) after a transformer's blocks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectToken {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub index: usize,
}

impl SelectToken {
    pub fn new(index: usize) -> Self {
        SelectToken { name: None, index }
    }
}

impl LayerSpec for SelectToken {
    fn onnx(&self, _l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let i = o.scalar(self.index as i64);
        Ok(o.op("Gather", &[&xs[0], &i], vec![Attr::i("axis", 1)]))
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        match *cx.input() {
            [steps, features] if self.index < steps => Ok(vec![features]),
            [steps, _] => Err(Error::Config(format!(
                "layer `{}`: index {} is past the sequence's {steps} steps",
                cx.name, self.index
            ))),
            _ => Err(cx.misfit("a sequence (steps, features)")),
        }
    }

    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (g, x) = (&mut *f.g, xs[0]);
        let s = g.shape(x);
        let (n, d) = (s.dim(0), s.dim(2));
        let t = g.slice(x, 1, self.index, self.index + 1)?;
        g.reshape(t, &[n, d])
    }
}
