//! Weights by name from another framework's safetensors file (PyTorch's, Hugging Face's): a `NameMap`
//! says which file tensor fills which kiln parameter and how its layout differs, and `Model::load_weights`
//! reads them, checking every shape.
//!
//! PyTorch keeps a linear weight as [out, in] (kiln and Keras: [in, out]) and a convolution's as
//! [out, in, kh, kw] (kiln: [kh, kw, in, out]); `NameMap::pytorch` knows this per kiln layer type, so a
//! user lists only which module is which layer. Every kiln parameter must be found (a half-loaded model
//! would answer without saying so); file tensors nobody asked for are returned, for the caller to report.

use crate::model::Model;
use crate::nn::LayerConfig;
use kiln_core::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use std::path::Path;

/// How a file tensor's layout becomes kiln's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// The same layout.
    None,
    /// A matrix [a, b] stored as [b, a] (PyTorch's `nn.Linear.weight`).
    Transpose,
    /// A convolution kernel stored [out, in, kh, kw] (PyTorch's `nn.Conv2d.weight`), kiln's [kh, kw, in, out].
    OihwToHwio,
}

/// One mapping: the file tensor `from` fills kiln's parameter `to` (`layer.param`) after `transform`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub from: String,
    pub to: String,
    pub transform: Transform,
}

/// Which file tensors fill which parameters. Parameters no rule names are looked up under their own name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NameMap {
    rules: Vec<Rule>,
}

impl NameMap {
    /// No renaming: the file uses kiln's names and layouts (a file `Model::save` wrote).
    pub fn new() -> Self {
        Self::default()
    }

    /// The file tensor `from` fills kiln's `to` (`dense_1.kernel`) after `transform`; replaces an earlier
    /// rule for `to` (so a rule after `pytorch` overrides what it chose).
    pub fn rename(mut self, from: &str, to: &str, transform: Transform) -> Self {
        self.rules.retain(|r| r.to != to);
        self.rules.push(Rule { from: from.to_string(), to: to.to_string(), transform });
        self
    }

    /// PyTorch module names to kiln layer names (`("fc1", "dense")`); each module's `weight`, `bias` (and
    /// batch norm's `running_mean`, `running_var`) go to the layer's parameters with the layout its type
    /// needs. Built against `model`, whose layer types decide the layouts.
    pub fn pytorch(model: &Model, modules: &[(&str, &str)]) -> Result<Self> {
        let mut map = NameMap::new();
        for &(module, layer) in modules {
            let l = model.layers().iter().find(|l| l.name() == layer).ok_or_else(|| {
                let names: Vec<&str> = model.layers().iter().map(|l| l.name()).collect();
                Error::Config(format!("NameMap::pytorch: no layer `{layer}` (the model has {})", names.join(", ")))
            })?;
            let parts: &[(&str, &str, Transform)] = match l.config() {
                LayerConfig::Dense(_) => {
                    &[("weight", "kernel", Transform::Transpose), ("bias", "bias", Transform::None)]
                }
                LayerConfig::Conv2d(_) => {
                    &[("weight", "kernel", Transform::OihwToHwio), ("bias", "bias", Transform::None)]
                }
                LayerConfig::Embedding(_) => &[("weight", "embeddings", Transform::None)],
                LayerConfig::BatchNormalization(_) => &[
                    ("weight", "gamma", Transform::None),
                    ("bias", "beta", Transform::None),
                    ("running_mean", "moving_mean", Transform::None),
                    ("running_var", "moving_variance", Transform::None),
                ],
                other => {
                    return Err(Error::Config(format!(
                        "NameMap::pytorch: layer `{layer}` is a {}, whose PyTorch layout is not mapped yet; \
                         map its tensors with `rename`",
                        other.class_name()
                    )));
                }
            };
            for &(from, to, t) in parts {
                if l.param(to).is_some() {
                    map = map.rename(&format!("{module}.{from}"), &format!("{layer}.{to}"), t);
                }
            }
        }
        Ok(map)
    }

    fn rule_for(&self, param: &str) -> (String, Transform) {
        match self.rules.iter().find(|r| r.to == param) {
            Some(r) => (r.from.clone(), r.transform),
            None => (param.to_string(), Transform::None),
        }
    }
}

/// The file's shape as kiln will see it after `t`.
fn transformed_shape(shape: &[usize], t: Transform) -> Option<Vec<usize>> {
    match (t, shape) {
        (Transform::None, s) => Some(s.to_vec()),
        (Transform::Transpose, [a, b]) => Some(vec![*b, *a]),
        (Transform::OihwToHwio, [o, i, h, w]) => Some(vec![*h, *w, *i, *o]),
        _ => None,
    }
}

/// `values` (the file's layout, `shape`) rearranged by `t`.
fn apply(values: Vec<f32>, shape: &[usize], t: Transform) -> Vec<f32> {
    match (t, shape) {
        (Transform::Transpose, &[a, b]) => {
            let mut out = vec![0.0; a * b];
            for r in 0..a {
                for c in 0..b {
                    out[c * a + r] = values[r * b + c];
                }
            }
            out
        }
        (Transform::OihwToHwio, &[o, i, h, w]) => {
            let mut out = vec![0.0; o * i * h * w];
            for oo in 0..o {
                for ii in 0..i {
                    for hh in 0..h {
                        for ww in 0..w {
                            out[((hh * w + ww) * i + ii) * o + oo] = values[((oo * i + ii) * h + hh) * w + ww];
                        }
                    }
                }
            }
            out
        }
        _ => values,
    }
}

/// A tensor's values as f32, from any float type safetensors holds.
fn floats(t: &safetensors::tensor::TensorView, name: &str, path: &Path) -> Result<Vec<f32>> {
    let d = t.data();
    Ok(match t.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
        Dtype::F16 => d.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => d.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => {
            return Err(Error::format(
                path,
                format!("tensor `{name}` is {other:?}; kiln reads F32, F64, F16 and BF16"),
            ));
        }
    })
}

impl Model {
    /// Sets every parameter from the safetensors file at `path`, found through `map`; returns the file's
    /// tensors that no parameter used. Nothing changes unless every parameter is found with its shape.
    pub fn load_weights(&mut self, path: impl AsRef<Path>, map: &NameMap) -> Result<Vec<String>> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::format(path, format!("not a safetensors file ({e})")))?;
        let mut used = std::collections::HashSet::new();
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for p in self.graph.params() {
            let (from, t) = map.rule_for(&p.name);
            let Ok(tensor) = st.tensor(&from) else {
                missing.push(if from == p.name { format!("`{from}`") } else { format!("`{from}` (for `{}`)", p.name) });
                continue;
            };
            let file_shape = tensor.shape().to_vec();
            let want = p.shape.dims();
            if transformed_shape(&file_shape, t).as_deref() != Some(want) {
                let hint = match (t, file_shape.len()) {
                    (Transform::None, 2) if file_shape.iter().rev().eq(want.iter()) => ": add a transpose",
                    (Transform::None, 4) => ": a PyTorch convolution needs Transform::OihwToHwio",
                    _ => "",
                };
                return Err(Error::format(
                    path,
                    format!("`{}` wants {want:?}, the file's `{from}` is {file_shape:?} ({t:?}){hint}", p.name),
                ));
            }
            values.push(apply(floats(&tensor, &from, path)?, &file_shape, t));
            used.insert(from);
        }
        if !missing.is_empty() {
            return Err(Error::format(path, format!("no tensor {} in the file", missing.join(", "))));
        }
        for (i, v) in values.into_iter().enumerate() {
            self.graph.param_mut(kiln_core::ParamId(i)).value = v;
        }
        let mut unused: Vec<String> =
            st.names().into_iter().filter(|n| !used.contains(*n)).map(str::to_string).collect();
        unused.sort();
        Ok(unused)
    }
}
