//! Weights by name from a safetensors file (kiln's, PyTorch's, Hugging Face's): a `NameMap` says which file
//! tensor fills which kiln parameter and how its layout differs. One lookup (`WeightFile`, a `ParamSource`)
//! serves both ways in: while a model is built (`Model::weights_from`: each parameter comes from the file
//! when it holds it, else from its initializer, the way fresh and pretrained weights take one path) and
//! into a built model (`Model::load_weights`, where every parameter must be found).
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
    /// PyTorch modules to kiln layers whose layouts are decided when a layer of that name is built
    /// (`pytorch_modules`).
    modules: Vec<(String, String)>,
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
            for &(from, to, t) in pytorch_parts(l.config(), layer)? {
                if l.param(to).is_some() {
                    map = map.rename(&format!("{module}.{from}"), &format!("{layer}.{to}"), t);
                }
            }
        }
        Ok(map)
    }

    /// `pytorch` for a model not built yet (`Model::weights_from`): each module's tensors are mapped when
    /// the layer of that name is built, by its type.
    pub fn pytorch_modules(mut self, modules: &[(&str, &str)]) -> Self {
        self.modules.extend(modules.iter().map(|&(m, l)| (m.to_string(), l.to_string())));
        self
    }

    /// The file tensor and layout for kiln's `param` of a layer configured as `layer`.
    fn rule_for(&self, layer: &LayerConfig, param: &str) -> Result<(String, Transform)> {
        if let Some(r) = self.rules.iter().find(|r| r.to == param) {
            return Ok((r.from.clone(), r.transform));
        }
        let (layer_name, suffix) = param.split_once('.').unwrap_or((param, ""));
        if let Some((module, _)) = self.modules.iter().find(|(_, l)| l == layer_name)
            && let Some(&(from, _, t)) = pytorch_parts(layer, layer_name)?.iter().find(|p| p.1 == suffix)
        {
            return Ok((format!("{module}.{from}"), t));
        }
        Ok((param.to_string(), Transform::None))
    }
}

/// PyTorch's tensors of a layer type, kiln's parameters they fill, and their layouts.
fn pytorch_parts(cfg: &LayerConfig, layer: &str) -> Result<&'static [(&'static str, &'static str, Transform)]> {
    Ok(match cfg {
        LayerConfig::Dense(_) => &[("weight", "kernel", Transform::Transpose), ("bias", "bias", Transform::None)],
        LayerConfig::Conv2d(_) => &[("weight", "kernel", Transform::OihwToHwio), ("bias", "bias", Transform::None)],
        LayerConfig::Embedding(_) => &[("weight", "embeddings", Transform::None)],
        LayerConfig::BatchNormalization(_) => &[
            ("weight", "gamma", Transform::None),
            ("bias", "beta", Transform::None),
            ("running_mean", "moving_mean", Transform::None),
            ("running_var", "moving_variance", Transform::None),
        ],
        other => {
            return Err(Error::Config(format!(
                "NameMap::pytorch: layer `{layer}` is a {}, whose PyTorch layout is not mapped yet; map its \
                 tensors with `rename`",
                other.class_name()
            )));
        }
    })
}

/// Where a model's parameters come from as it is built, before their initializers (candle's VarBuilder,
/// Burn's record): `take` gives a parameter's values in kiln's layout, or `None` to let the initializer
/// choose them.
pub trait ParamSource: Send + Sync {
    /// The values of `name` (`dense_1.kernel`) of a layer configured as `layer`, of `shape`, given what its
    /// initializer drew (`init`, which a source may keep in part); None when the source does not hold it; an
    /// error when it holds it with another shape.
    fn take(&mut self, layer: &LayerConfig, name: &str, shape: &[usize], init: &[f32]) -> Result<Option<Vec<f32>>>;

    /// The parameters asked for that the source did not hold (they kept their initializers' values).
    fn missing(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A safetensors file read through a `NameMap`, remembering which of its tensors were used.
pub struct WeightFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    map: NameMap,
    used: std::collections::BTreeSet<String>,
    /// kiln parameters filled from the file, and those it did not hold.
    pub loaded: Vec<String>,
    pub missing: Vec<String>,
}

impl WeightFile {
    pub fn open(path: impl AsRef<Path>, map: NameMap) -> Result<WeightFile> {
        let path = path.as_ref();
        let bytes = read_safetensors(path)?;
        Ok(WeightFile {
            path: path.to_path_buf(),
            bytes,
            map,
            used: Default::default(),
            loaded: Vec::new(),
            missing: Vec::new(),
        })
    }

    /// The file's tensors that no parameter used, sorted.
    pub fn unused(&self) -> Vec<String> {
        let st = SafeTensors::deserialize(&self.bytes).expect("checked by open");
        let mut names: Vec<String> =
            st.names().into_iter().filter(|n| !self.used.contains(*n)).map(str::to_string).collect();
        names.sort();
        names
    }
}

impl ParamSource for WeightFile {
    fn take(&mut self, layer: &LayerConfig, name: &str, shape: &[usize], _init: &[f32]) -> Result<Option<Vec<f32>>> {
        let (from, t) = self.map.rule_for(layer, name)?;
        let st = SafeTensors::deserialize(&self.bytes).expect("checked by open");
        let Ok(tensor) = st.tensor(&from) else {
            self.missing.push(if from == name { format!("`{from}`") } else { format!("`{from}` (for `{name}`)") });
            return Ok(None);
        };
        let file_shape = tensor.shape().to_vec();
        if transformed_shape(&file_shape, t).as_deref() != Some(shape) {
            let hint = match (t, file_shape.len()) {
                (Transform::None, 2) if file_shape.iter().rev().eq(shape.iter()) => ": add a transpose",
                (Transform::None, 4) => ": a PyTorch convolution needs Transform::OihwToHwio",
                _ => "",
            };
            let after = if t == Transform::None { String::new() } else { format!(" ({t:?})") };
            return Err(Error::format(
                &self.path,
                format!("`{name}` wants {shape:?}, the file's `{from}` is {file_shape:?}{after}{hint}"),
            ));
        }
        let values = apply(floats(&tensor, &from, &self.path)?, &file_shape, t);
        self.used.insert(from);
        self.loaded.push(name.to_string());
        Ok(Some(values))
    }

    fn missing(&self) -> Vec<String> {
        self.missing.clone()
    }
}

/// One text column's vectors: its table's index among a CategoryEmbedding's tables, the vector width, and
/// (vocabulary position, vector) pairs.
pub type TableVectors = (usize, usize, Vec<(usize, Vec<f32>)>);

/// Word vectors for the rows of text embedding tables (GloVe's, or skip-gram's trained on the texts), as a
/// source the tables are built from: term k of a text column's vocabulary is row k + 2 of its table (0 is
/// padding, 1 out of vocabulary); rows without a vector keep what the initializer drew.
#[derive(Debug, Default)]
pub struct TermVectors {
    /// Per text column: its table's index among a CategoryEmbedding's tables, the vector width, and
    /// (vocabulary position, vector) pairs.
    pub tables: Vec<TableVectors>,
    /// An Embedding layer (sequence models read one text column) takes the first column's vectors, once.
    embedded: bool,
}

impl TermVectors {
    /// Per text column: (its table's index among a CategoryEmbedding's tables, vector width, pairs).
    pub fn new(tables: Vec<TableVectors>) -> Self {
        TermVectors { tables, embedded: false }
    }
}

impl ParamSource for TermVectors {
    fn take(&mut self, layer: &LayerConfig, name: &str, shape: &[usize], init: &[f32]) -> Result<Option<Vec<f32>>> {
        let table = match layer {
            LayerConfig::CategoryEmbedding(_) => self.tables.iter().find(|(j, ..)| {
                name.strip_suffix(&crate::nn::CategoryEmbedding::table_name(*j)).is_some_and(|n| n.ends_with('.'))
            }),
            LayerConfig::Embedding(_) if !self.embedded && name.ends_with(".embeddings") => {
                self.embedded = true;
                self.tables.first()
            }
            _ => None,
        };
        let Some((_, dim, rows)) = table else { return Ok(None) };
        if shape.len() != 2 || shape[1] != *dim {
            return Err(Error::Config(format!(
                "word vectors of width {dim} do not fit `{name}` of shape {shape:?} (set the text column's dim to {})",
                shape.last().copied().unwrap_or(0)
            )));
        }
        let mut values = init.to_vec();
        for (k, v) in rows {
            if let Some(row) = values.get_mut((k + 2) * dim..(k + 3) * dim) {
                row.copy_from_slice(v);
            }
        }
        Ok(Some(values))
    }
}

/// The file's shape as kiln will see it after `t`.
/// A safetensors file's bytes, checked to parse as one (each later `SafeTensors::deserialize` of them cannot
/// fail).
pub(crate) fn read_safetensors(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
    SafeTensors::deserialize(&bytes).map_err(|e| Error::format(path, format!("not a safetensors file ({e})")))?;
    Ok(bytes)
}

/// The tensor `name` of a safetensors file in kiln's layout (after `t`), which must have `shape` there: for
/// models read straight from their own files (pretrained::bert), where every tensor is required.
pub(crate) fn read_tensor(
    st: &SafeTensors,
    name: &str,
    shape: &[usize],
    t: Transform,
    path: &Path,
) -> Result<Vec<f32>> {
    let tensor = st
        .tensor(name)
        .map_err(|_| Error::format(path, format!("has no tensor `{name}`, which the model's config.json implies")))?;
    let file_shape = tensor.shape().to_vec();
    if transformed_shape(&file_shape, t).as_deref() != Some(shape) {
        let want: Vec<usize> = match (t, shape) {
            (Transform::Transpose, &[a, b]) => vec![b, a],
            _ => shape.to_vec(),
        };
        return Err(Error::format(
            path,
            format!("`{name}` is {file_shape:?}, the model's config.json implies {want:?}"),
        ));
    }
    Ok(apply(floats(&tensor, name, path)?, &file_shape, t))
}

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
        Dtype::F32 => crate::io::f32s_le(d),
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
        let mut file = WeightFile::open(path, map.clone())?;
        let mut values = Vec::new();
        for layer in self.layers() {
            for id in layer.params() {
                let p = self.graph.param(id);
                if let Some(v) = file.take(layer.config(), &p.name, p.shape.dims(), &p.value)? {
                    values.push((id, v));
                }
            }
        }
        if !file.missing.is_empty() {
            return Err(Error::format(&file.path, format!("no tensor {} in the file", file.missing.join(", "))));
        }
        for (id, v) in values {
            self.graph.param_mut(id).value = v;
        }
        Ok(file.unused())
    }

    /// Builds the layers added from now on with their parameters from `source` where it holds them (a
    /// pretrained file: `WeightFile`), else from their initializers; `finish_weights` ends it.
    pub fn weights_from(mut self, source: impl ParamSource + 'static) -> Self {
        self.set_weights_source(Box::new(source));
        self
    }

    /// The weight source set by `weights_from`, taken back once the layers are built (to report what it
    /// filled).
    pub fn finish_weights(&mut self) -> Option<Box<dyn ParamSource>> {
        self.take_weights_source()
    }
}
