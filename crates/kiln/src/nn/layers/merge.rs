//! Merge layers, the joints of a graph model: `Add`, `Multiply`, `Concatenate`, `Dot` (Keras's names and
//! defaults). Each takes two or more earlier outputs and has no parameters; this file holds their configs,
//! their shape rule and their forward (the engine's add, mul, concat and sum supply the backward).

use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec};
use crate::onnx::{Attr, OnnxGraph};
use kiln_core::{Error, Graph, Result, Var};
use serde::{Deserialize, Serialize};

/// Elementwise sum of inputs of one shape (a residual connection: `add(x, f(x))`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Add {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Elementwise product of inputs of one shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Multiply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn last_axis() -> i64 {
    -1
}

/// Joins inputs along `axis` (Keras's count: 1 is the first axis after the batch, -1 the last); the other
/// axes must agree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concatenate {
    #[serde(default = "last_axis")]
    pub axis: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The dot product of two flat inputs of one width, per sample: output (1,). With `normalize`, of their
/// L2-normalized forms (the cosine similarity), as Keras's `Dot(axes=1, normalize=True)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dot {
    #[serde(default = "last_axis")]
    pub axes: i64,
    #[serde(default)]
    pub normalize: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Add {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Multiply {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Default for Concatenate {
    fn default() -> Self {
        Concatenate { axis: -1, name: None }
    }
}

impl Concatenate {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }
}

impl Default for Dot {
    fn default() -> Self {
        Dot { axes: -1, normalize: false, name: None }
    }
}

impl Dot {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn normalize(mut self, on: bool) -> Self {
        self.normalize = on;
        self
    }
}

/// A per-sample axis from Keras's count (which includes the batch axis).
fn sample_axis(axis: i64, rank: usize, layer: &str) -> Result<usize> {
    if axis == 0 {
        return Err(Error::Config(format!(
            "layer `{layer}`: axis 0 is the batch axis; count from 1 (a sample's first axis) or from the end (-1)"
        )));
    }
    let a = if axis < 0 { rank as i64 + 1 + axis } else { axis };
    if a < 1 || a > rank as i64 {
        return Err(Error::Config(format!(
            "layer `{layer}`: axis {axis} is outside inputs of rank {} (with the batch axis)",
            rank + 1
        )));
    }
    Ok(a as usize - 1)
}

/// The inputs for a message: "(4,) from `dense` (Dense), (3,) from input `item`".
fn listed(cx: &BuildCx) -> String {
    let from = |s: &str| {
        // The sources read "`dense` (Dense) outputs (4,)" or "input `item` is (3,)": keep who, not the shape.
        let who = s.rsplit_once(" outputs ").or_else(|| s.rsplit_once(" is ")).map_or(s, |(w, _)| w);
        who.trim_start_matches("the ").to_string()
    };
    let parts: Vec<String> = cx
        .inputs
        .iter()
        .zip(cx.sources)
        .map(|(shape, s)| format!("{} from {}", crate::nn::fmt_shape(shape), from(s)))
        .collect();
    parts.join(", ")
}

/// Two or more inputs, and for Add and Multiply all of one shape.
fn check_merge(cx: &BuildCx, same_shape: bool) -> Result<Vec<usize>> {
    if cx.inputs.len() < 2 {
        return Err(Error::Config(format!(
            "layer `{}` ({}) merges two or more inputs, got {}: name them in its `inputs` (a [[model.nodes]] \
             table; in Rust, Model::apply)",
            cx.name,
            cx.class,
            cx.inputs.len()
        )));
    }
    if same_shape && cx.inputs.iter().any(|s| s != &cx.inputs[0]) {
        return Err(Error::Shape(format!(
            "layer `{}` ({}) needs inputs of one shape, got {}",
            cx.name,
            cx.class,
            listed(cx)
        )));
    }
    Ok(cx.inputs[0].clone())
}

impl LayerSpec for Add {
    fn onnx(&self, _l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let mut acc = xs[0].clone();
        for x in &xs[1..] {
            acc = o.op("Add", &[&acc, x], vec![]);
        }
        Ok(acc)
    }

    fn merges(&self) -> bool {
        true
    }
    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        check_merge(cx, true)
    }
    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        xs[1..].iter().try_fold(xs[0], |acc, &x| f.g.add(acc, x))
    }
}

impl LayerSpec for Multiply {
    fn onnx(&self, _l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let mut acc = xs[0].clone();
        for x in &xs[1..] {
            acc = o.op("Mul", &[&acc, x], vec![]);
        }
        Ok(acc)
    }

    fn merges(&self) -> bool {
        true
    }
    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        check_merge(cx, true)
    }
    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        xs[1..].iter().try_fold(xs[0], |acc, &x| f.g.mul(acc, x))
    }
}

impl LayerSpec for Concatenate {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let ax = sample_axis(self.axis, l.output_shape().len(), l.name())? + 1;
        let xs: Vec<&str> = xs.iter().map(|s| s.as_str()).collect();
        Ok(o.op("Concat", &xs, vec![Attr::i("axis", ax as i64)]))
    }

    fn merges(&self) -> bool {
        true
    }
    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let first = check_merge(cx, false)?;
        let rank = first.len();
        let ax = sample_axis(self.axis, rank, cx.name)?;
        let fits =
            |s: &Vec<usize>| s.len() == rank && s.iter().zip(&first).enumerate().all(|(i, (a, b))| i == ax || a == b);
        if !cx.inputs.iter().all(fits) {
            return Err(Error::Shape(format!(
                "layer `{}` (Concatenate) on axis {}: the other axes must agree, got {}",
                cx.name,
                self.axis,
                listed(cx)
            )));
        }
        let mut out = first;
        out[ax] = cx.inputs.iter().map(|s| s[ax]).sum();
        Ok(out)
    }
    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        // The engine's axes count the batch axis, as Keras's do.
        let ax = sample_axis(self.axis, l.output_shape().len(), l.name())? + 1;
        f.g.concat(xs, ax)
    }
}

impl LayerSpec for Dot {
    fn onnx(&self, _l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        let (mut a, mut b) = (xs[0].clone(), xs[1].clone());
        if self.normalize {
            // x / √(Σ x² + 1e-12), as `l2_normalize`.
            for v in [&mut a, &mut b] {
                let sq = o.op("Mul", &[v, v], vec![]);
                let s = o.sum(&sq, 1, true);
                let eps = o.floats(&[], &[1e-12]);
                let s = o.op("Add", &[&s, &eps], vec![]);
                let norm = o.op("Sqrt", &[&s], vec![]);
                *v = o.op("Div", &[v, &norm], vec![]);
            }
        }
        let p = o.op("Mul", &[&a, &b], vec![]);
        Ok(o.sum(&p, 1, true))
    }

    fn merges(&self) -> bool {
        true
    }
    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        let first = check_merge(cx, false)?;
        if cx.inputs.len() != 2 || first.len() != 1 || cx.inputs[1] != first {
            return Err(Error::Shape(format!(
                "layer `{}` (Dot) takes two flat inputs of one width, got {}",
                cx.name,
                listed(cx)
            )));
        }
        if !matches!(self.axes, -1 | 1) {
            return Err(Error::Config(format!(
                "layer `{}` (Dot): axes = {} is not supported, only the feature axis (1 or -1)",
                cx.name, self.axes
            )));
        }
        Ok(vec![1])
    }
    fn forward(&self, _l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let (mut a, mut b) = (xs[0], xs[1]);
        if self.normalize {
            a = l2_normalize(f.g, a)?;
            b = l2_normalize(f.g, b)?;
        }
        let p = f.g.mul(a, b)?;
        f.g.sum(p, Some(1), true)
    }
}

/// x / sqrt(Σx² + 1e-12) per row (Keras's `l2_normalize` takes max(Σx², 1e-12): equal but at zero).
fn l2_normalize(g: &mut Graph<f32>, x: Var) -> Result<Var> {
    let sq = g.mul(x, x)?;
    let s = g.sum(sq, Some(1), true)?;
    let eps = g.input(&[1, 1], &[1e-12])?;
    let s = g.add(s, eps)?;
    let norm = g.sqrt(s)?;
    g.div(x, norm)
}
