//! Keras models in kiln: a Keras model's config (the JSON both of its file formats hold) becomes kiln
//! layers, and its weights, per layer in Keras's order, become kiln's parameters through the one loading
//! path (`KerasWeights`, a `ParamSource`). The way back is export.rs; reading and writing the files (HDF5)
//! is h5.rs, behind the `keras` feature. This part needs no library and decides which Keras layer is which
//! kiln layer.
//!
//! kiln's layers were made to Keras's conventions, so most layouts are the same: kernels [in, out],
//! channels-last images with kernels [kh, kw, in, out], LSTM gates (i, f, c, o), GRU's (z, r, h) with
//! reset_after and a [2, 3·units] bias. Conv1D's kernel [k, in, out] gains kiln's leading 1.
//!
//! What kiln cannot run the same way is refused, naming the layer and the setting (a dilated convolution,
//! a GRU without reset_after, a batch norm without its scale, ...), rather than imported to answer
//! differently.

mod export;
#[cfg(feature = "keras")]
pub mod h5;

pub use export::{KerasExport, KerasLayer, to_keras};

use crate::model::Model;
use crate::nn::{
    Activation, ActivationLayer, Add, AveragePooling2D, BatchNormalization, Bidirectional, Concatenate, Conv1D, Conv2D,
    Dense, Dot, Dropout, Embedding, Flatten, GlobalAveragePooling1D, GlobalMaxPooling1D, Gru, LayerConfig,
    LayerNormalization, Lstm, MaxPooling2D, Multiply, PaddingConfig, Pair, RnnKind, SimpleRnn,
};
use crate::weights::ParamSource;
use kiln_core::{Error, Result};
use serde_json::Value;
use std::collections::HashMap;

/// One weight as the file holds it: its shape and values (row-major).
pub type Weight = (Vec<usize>, Vec<f32>);

/// A Keras model's weights in kiln's names and layouts (with the file's shapes), for the model being built.
struct KerasWeights {
    values: HashMap<String, Weight>,
    missing: Vec<String>,
}

impl ParamSource for KerasWeights {
    fn take(&mut self, _layer: &LayerConfig, name: &str, shape: &[usize], _init: &[f32]) -> Result<Option<Vec<f32>>> {
        // Shapes agree but for leading 1s (a Conv1D kernel [k, in, out] is kiln's [1, k, in, out]).
        let core = |s: &[usize]| s.iter().skip_while(|&&d| d == 1).copied().collect::<Vec<_>>();
        match self.values.remove(name) {
            Some((file, v)) if core(&file) == core(shape) => Ok(Some(v)),
            Some((file, _)) => Err(Error::Shape(format!("`{name}`: kiln wants {shape:?}, the file has {file:?}"))),
            None => {
                self.missing.push(name.to_string());
                Ok(None)
            }
        }
    }

    fn missing(&self) -> Vec<String> {
        self.missing.clone()
    }
}

/// The model a Keras config describes (`{"class_name": "Sequential", "config": {...}}`, or a functional
/// one), with `weights` giving each layer's weights in Keras's order by the layer's name. `source` names the
/// file in errors.
pub fn model_from_config(
    source: &str,
    config: &Value,
    weights: &mut dyn FnMut(&str) -> Result<Vec<Weight>>,
) -> Result<Model> {
    let bad = |m: String| Error::Format { path: source.to_string(), message: m };
    let class = config["class_name"].as_str().unwrap_or("");
    match class {
        "Sequential" => {}
        "Functional" | "Model" => return functional(source, config, weights),
        other => return Err(bad(format!("a Keras `{other}` model; kiln imports Sequential and functional models"))),
    }
    let cfg = &config["config"];
    let layers = cfg["layers"].as_array().ok_or_else(|| bad("the model config has no `layers`".into()))?;
    let mut input_shape: Option<Vec<usize>> = shape_of(&cfg["build_input_shape"]);
    let mut kiln_layers = Vec::new();
    let mut values = HashMap::new();
    for layer in layers {
        let c = &layer["config"];
        if layer["class_name"] == "InputLayer" {
            input_shape = shape_of(&c["batch_shape"]).or_else(|| shape_of(&c["batch_input_shape"]));
            continue;
        }
        if input_shape.is_none() {
            input_shape = shape_of(&c["batch_input_shape"]).or_else(|| shape_of(&layer["build_config"]["input_shape"]));
        }
        kiln_layers.push(layer_of(layer, weights, &mut values, &bad)?);
    }
    let shape = input_shape.ok_or_else(|| bad("the model config gives no input shape".into()))?;
    let mut m = Model::new(&shape).weights_from(KerasWeights { values, missing: Vec::new() });
    for l in kiln_layers {
        m.add(l).map_err(|e| bad(e.to_string()))?;
    }
    finish(m, cfg, &bad)
}

/// A functional (graph) model: its inputs, each layer applied once to the layers it names, its outputs.
fn functional(source: &str, config: &Value, weights: &mut dyn FnMut(&str) -> Result<Vec<Weight>>) -> Result<Model> {
    let bad = |m: String| Error::Format { path: source.to_string(), message: m };
    let cfg = &config["config"];
    let layers = cfg["layers"].as_array().ok_or_else(|| bad("the model config has no `layers`".into()))?;
    let mut inputs: Vec<(String, Vec<usize>)> = Vec::new();
    for l in layers.iter().filter(|l| l["class_name"] == "InputLayer") {
        let c = &l["config"];
        let shape = shape_of(&c["batch_shape"]).or_else(|| shape_of(&c["batch_input_shape"]));
        inputs.push((name_of(l), shape.ok_or_else(|| bad(format!("input `{}` has no shape", name_of(l))))?));
    }
    // The model's inputs in the order it takes them.
    let order = tensor_names(&cfg["input_layers"]);
    inputs.sort_by_key(|(n, _)| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
    let specs: Vec<(&str, &[usize])> = inputs.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    let mut values = HashMap::new();
    let mut plan = Vec::new();
    for l in layers.iter().filter(|l| l["class_name"] != "InputLayer") {
        let srcs = inbound(&l["inbound_nodes"])
            .map_err(|m| bad(format!("layer `{}` ({}): {m}", name_of(l), l["class_name"].as_str().unwrap_or(""))))?;
        plan.push((layer_of(l, weights, &mut values, &bad)?, srcs));
    }
    let mut m = Model::with_inputs(&specs).weights_from(KerasWeights { values, missing: Vec::new() });
    for (layer, srcs) in plan {
        let srcs: Vec<&str> = srcs.iter().map(String::as_str).collect();
        m.apply(layer, &srcs).map_err(|e| bad(e.to_string()))?;
    }
    let outputs = tensor_names(&cfg["output_layers"]);
    if !outputs.is_empty() {
        let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
        m.set_outputs(&outputs).map_err(|e| bad(e.to_string()))?;
    }
    finish(m, cfg, &bad)
}

/// A layer's name: beside its config in a functional model, inside it in a Sequential one.
fn name_of(l: &Value) -> String {
    l["name"].as_str().or(l["config"]["name"].as_str()).unwrap_or("").to_string()
}

/// The layer names of `[[name, node, index], ...]` (a functional model's `input_layers`, `output_layers`).
fn tensor_names(v: &Value) -> Vec<String> {
    v.as_array()
        .map_or(Vec::new(), |a| a.iter().filter_map(|t| t.get(0).and_then(Value::as_str).map(str::to_string)).collect())
}

/// One Keras layer as the kiln layer of its name, its weights (from `weights`) put into `values` under
/// kiln's parameter names; `bad` makes an error naming the file.
fn layer_of(
    layer: &Value,
    weights: &mut dyn FnMut(&str) -> Result<Vec<Weight>>,
    values: &mut HashMap<String, Weight>,
    bad: &dyn Fn(String) -> Error,
) -> Result<LayerConfig> {
    let (class, name) = (layer["class_name"].as_str().unwrap_or(""), name_of(layer));
    let (kiln, params) =
        convert(class, &layer["config"], weights(&name)?).map_err(|m| bad(format!("layer `{name}` ({class}): {m}")))?;
    for (suffix, v) in params {
        values.insert(format!("{name}.{suffix}"), v);
    }
    Ok(kiln.named(&name))
}

/// The built model checked for parameters the file did not fill, and named as the config names it.
fn finish(mut m: Model, cfg: &Value, bad: &dyn Fn(String) -> Error) -> Result<Model> {
    let missing = m.finish_weights().map(|s| s.missing()).unwrap_or_default();
    if !missing.is_empty() {
        return Err(bad(format!("no weights in the file for {}", missing.join(", "))));
    }
    if let Some(name) = cfg["name"].as_str() {
        m.name = name.to_string();
    }
    Ok(m)
}

/// The layers a functional layer reads, from its one call: Keras 3's `{"args": [tensor or [tensors]]}` (each
/// tensor's `keras_history` names its layer) or Keras 2's `[[name, node, index, kwargs], ...]`.
fn inbound(nodes: &Value) -> std::result::Result<Vec<String>, String> {
    let nodes = nodes.as_array().ok_or("no inbound_nodes")?;
    let [node] = &nodes[..] else {
        return Err(format!("called {} times; kiln imports layers called once (not shared)", nodes.len()));
    };
    let mut out = Vec::new();
    let mut add = |history: &Value| -> std::result::Result<(), String> {
        let name = history.get(0).and_then(Value::as_str).ok_or("an input without a layer name")?;
        if history.get(1).and_then(Value::as_u64).unwrap_or(0) != 0
            || history.get(2).and_then(Value::as_u64).unwrap_or(0) != 0
        {
            return Err(format!("reads a shared layer's second call or output (`{name}`); kiln imports single calls"));
        }
        out.push(name.to_string());
        Ok(())
    };
    if let Some(args) = node.get("args").and_then(Value::as_array) {
        let first = args.first().ok_or("a call without arguments")?;
        let tensors: Vec<&Value> = match first {
            Value::Array(a) => a.iter().collect(),
            t => vec![t],
        };
        for t in tensors {
            add(&t["config"]["keras_history"])?;
        }
    } else if let Some(list) = node.as_array() {
        for entry in list {
            add(entry)?;
        }
    }
    if out.is_empty() {
        return Err("reads no layer".into());
    }
    Ok(out)
}

/// [null, 28, 28, 1] -> [28, 28, 1].
fn shape_of(v: &Value) -> Option<Vec<usize>> {
    let a = v.as_array()?;
    a.iter().skip(1).map(|d| d.as_u64().map(|d| d as usize)).collect()
}

trait Named {
    fn named(self, name: &str) -> LayerConfig;
}

impl Named for LayerConfig {
    fn named(mut self, name: &str) -> LayerConfig {
        self.set_name(name.to_string());
        self
    }
}

fn activation(v: &Value) -> std::result::Result<Activation, String> {
    let name = match v {
        Value::String(s) => s.as_str(),
        Value::Null => "linear",
        // Keras 3 may write {"class_name": ..., "config": {"name": ...}} or a registered function.
        Value::Object(o) => o
            .get("config")
            .and_then(|c| c.get("name").or(c.as_str().map(|_| c)))
            .and_then(Value::as_str)
            .or_else(|| o.get("class_name").and_then(Value::as_str))
            .unwrap_or(""),
        _ => "",
    };
    Ok(match name {
        "linear" | "" => Activation::Linear,
        "relu" => Activation::Relu,
        "sigmoid" => Activation::Sigmoid,
        "tanh" => Activation::Tanh,
        "softmax" => Activation::Softmax,
        "gelu" => Activation::Gelu,
        "leaky_relu" => Activation::LeakyRelu,
        other => {
            return Err(format!(
                "activation `{other}` is not one kiln has (relu, sigmoid, tanh, softmax, gelu, leaky_relu)"
            ));
        }
    })
}

fn pair(v: &Value) -> Option<Pair> {
    match v {
        Value::Array(a) if a.len() == 2 => Some(Pair(a[0].as_u64()? as usize, a[1].as_u64()? as usize)),
        Value::Array(a) if a.len() == 1 => Some(Pair::from(a[0].as_u64()? as usize)),
        Value::Number(n) => Some(Pair::from(n.as_u64()? as usize)),
        _ => None,
    }
}

fn padding(v: &Value) -> std::result::Result<PaddingConfig, String> {
    match v.as_str().unwrap_or("valid") {
        "valid" => Ok(PaddingConfig::Valid),
        "same" => Ok(PaddingConfig::Same),
        other => Err(format!("padding `{other}`: kiln has valid and same")),
    }
}

/// A setting that must have Keras's default for kiln to compute the same thing.
fn require(c: &Value, key: &str, ok: &[Value]) -> std::result::Result<(), String> {
    match c.get(key) {
        None => Ok(()),
        Some(v) if ok.contains(v) => Ok(()),
        Some(v) => Err(format!("{key} = {v} is not supported (kiln computes {})", ok[0])),
    }
}

fn units(c: &Value) -> std::result::Result<usize, String> {
    c["units"].as_u64().map(|u| u as usize).ok_or_else(|| "no `units`".to_string())
}

/// The weights a layer must have, by count.
fn expect(w: &[Weight], n: usize) -> std::result::Result<(), String> {
    if w.len() != n {
        return Err(format!("the file holds {} weights for it, kiln expects {n}", w.len()));
    }
    Ok(())
}

type Converted = (LayerConfig, Vec<(String, Weight)>);

/// One Keras layer as a kiln layer, with its weights under kiln's parameter names.
fn convert(class: &str, c: &Value, mut w: Vec<Weight>) -> std::result::Result<Converted, String> {
    let named = |names: &[&str], w: Vec<Weight>| -> Vec<(String, Weight)> {
        names.iter().map(|n| n.to_string()).zip(w).collect()
    };
    let channels_last = || require(c, "data_format", &[Value::from("channels_last"), Value::Null]);
    Ok(match class {
        "Dense" => {
            let use_bias = c["use_bias"].as_bool().unwrap_or(true);
            expect(&w, 1 + use_bias as usize)?;
            let d = Dense::new(units(c)?).activation(activation(&c["activation"])?).use_bias(use_bias);
            (d.into(), named(&["kernel", "bias"], w))
        }
        "Conv2D" => {
            channels_last()?;
            require(c, "dilation_rate", &[serde_json::json!([1, 1]), Value::from(1)])?;
            require(c, "groups", &[Value::from(1)])?;
            let use_bias = c["use_bias"].as_bool().unwrap_or(true);
            expect(&w, 1 + use_bias as usize)?;
            let filters = c["filters"].as_u64().ok_or("no `filters`")? as usize;
            let k = pair(&c["kernel_size"]).ok_or("no `kernel_size`")?;
            let conv = Conv2D::new(filters, k)
                .strides(pair(&c["strides"]).unwrap_or(Pair(1, 1)))
                .padding(padding(&c["padding"])?)
                .activation(activation(&c["activation"])?)
                .use_bias(use_bias);
            (conv.into(), named(&["kernel", "bias"], w))
        }
        "Conv1D" => {
            channels_last()?;
            require(c, "strides", &[serde_json::json!([1]), Value::from(1)])?;
            require(c, "padding", &[Value::from("valid")])?;
            require(c, "dilation_rate", &[serde_json::json!([1]), Value::from(1)])?;
            require(c, "groups", &[Value::from(1)])?;
            require(c, "use_bias", &[Value::from(true)])?;
            expect(&w, 2)?;
            let filters = c["filters"].as_u64().ok_or("no `filters`")? as usize;
            let k = pair(&c["kernel_size"]).ok_or("no `kernel_size`")?.0;
            // [k, in, out] is kiln's [1, k, in, out]: the same values.
            (Conv1D::new(filters, k).activation(activation(&c["activation"])?).into(), named(&["kernel", "bias"], w))
        }
        "MaxPooling2D" | "AveragePooling2D" => {
            channels_last()?;
            expect(&w, 0)?;
            let size = pair(&c["pool_size"]).unwrap_or(Pair(2, 2));
            let strides = pair(&c["strides"]);
            let pad = padding(&c["padding"])?;
            let l: LayerConfig = if class == "MaxPooling2D" {
                let mut p = MaxPooling2D::new(size).padding(pad);
                p.strides = strides;
                p.into()
            } else {
                let mut p = AveragePooling2D::new(size).padding(pad);
                p.strides = strides;
                p.into()
            };
            (l, vec![])
        }
        "GlobalMaxPooling1D" | "GlobalAveragePooling1D" => {
            channels_last()?;
            require(c, "keepdims", &[Value::from(false)])?;
            let l: LayerConfig = if class == "GlobalMaxPooling1D" {
                GlobalMaxPooling1D::new().into()
            } else {
                GlobalAveragePooling1D::new().into()
            };
            (l, vec![])
        }
        "Flatten" => {
            channels_last()?;
            (Flatten::new().into(), vec![])
        }
        "Dropout" => (Dropout::new(c["rate"].as_f64().unwrap_or(0.0)).into(), vec![]),
        "Add" => (Add::new().into(), vec![]),
        "Multiply" => (Multiply::new().into(), vec![]),
        "Concatenate" => (Concatenate::new().axis(c["axis"].as_i64().unwrap_or(-1)).into(), vec![]),
        "Dot" => {
            let axes = match &c["axes"] {
                Value::Array(a) if a.len() == 2 && a[0] == a[1] => a[0].as_i64(),
                v => v.as_i64(),
            };
            let Some(axes @ (1 | -1)) = axes else {
                return Err(format!("axes = {}: kiln's Dot takes the feature axis (1) of two flat inputs", c["axes"]));
            };
            let mut d = Dot::new().normalize(c["normalize"].as_bool().unwrap_or(false));
            d.axes = axes;
            (d.into(), vec![])
        }
        "Activation" => (ActivationLayer::new(activation(&c["activation"])?).into(), vec![]),
        "BatchNormalization" => {
            require(c, "axis", &[Value::from(-1), serde_json::json!([-1])])?;
            require(c, "center", &[Value::from(true)])?;
            require(c, "scale", &[Value::from(true)])?;
            expect(&w, 4)?;
            let mut b = BatchNormalization::new();
            b.momentum = c["momentum"].as_f64().unwrap_or(0.99);
            b.epsilon = c["epsilon"].as_f64().unwrap_or(1e-3);
            (b.into(), named(&["gamma", "beta", "moving_mean", "moving_variance"], w))
        }
        "LayerNormalization" => {
            require(c, "axis", &[Value::from(-1), serde_json::json!([-1])])?;
            require(c, "center", &[Value::from(true)])?;
            require(c, "scale", &[Value::from(true)])?;
            require(c, "rms_scaling", &[Value::from(false)])?;
            expect(&w, 2)?;
            let l = LayerNormalization::new().epsilon(c["epsilon"].as_f64().unwrap_or(1e-3));
            (l.into(), named(&["gamma", "beta"], w))
        }
        "Embedding" => {
            expect(&w, 1)?;
            let &[input_dim, output_dim] = &w[0].0[..] else {
                return Err(format!("embeddings of shape {:?}, want [input_dim, output_dim]", w[0].0));
            };
            let e = Embedding::new(input_dim, output_dim).mask_zero(c["mask_zero"].as_bool().unwrap_or(false));
            (e.into(), named(&["embeddings"], w))
        }
        "LSTM" | "GRU" | "SimpleRNN" => {
            let (kind, seq) = recurrent(class, c)?;
            expect(&w, 3)?;
            let u = units(c)?;
            let l: LayerConfig = match kind {
                RnnKind::Lstm => Lstm::new(u).return_sequences(seq).into(),
                RnnKind::Gru => Gru::new(u).return_sequences(seq).into(),
                RnnKind::SimpleRnn => SimpleRnn::new(u).return_sequences(seq).into(),
            };
            (l, named(&["kernel", "recurrent_kernel", "bias"], w))
        }
        "Bidirectional" => {
            require(c, "merge_mode", &[Value::from("concat")])?;
            let inner = &c["layer"];
            let (kind, seq) = recurrent(inner["class_name"].as_str().unwrap_or(""), &inner["config"])?;
            expect(&w, 6)?;
            let back = w.split_off(3);
            let mut params = named(&["forward_kernel", "forward_recurrent_kernel", "forward_bias"], w);
            params.extend(named(&["backward_kernel", "backward_recurrent_kernel", "backward_bias"], back));
            (Bidirectional::new(kind, units(&inner["config"])?).return_sequences(seq).into(), params)
        }
        other => {
            return Err(format!(
                "kiln has no layer like it (it imports Dense, Conv1D, Conv2D, MaxPooling2D, AveragePooling2D, \
                 GlobalMaxPooling1D, GlobalAveragePooling1D, Flatten, Dropout, Activation, BatchNormalization, \
                 LayerNormalization, Embedding, LSTM, GRU, SimpleRNN, Bidirectional, Add, Multiply, Concatenate, \
                 Dot); `{other}` is not one"
            ));
        }
    })
}

/// A recurrent layer's kind and return_sequences, with every setting kiln's cell does not share refused.
fn recurrent(class: &str, c: &Value) -> std::result::Result<(RnnKind, bool), String> {
    let kind = match class {
        "LSTM" => RnnKind::Lstm,
        "GRU" => RnnKind::Gru,
        "SimpleRNN" => RnnKind::SimpleRnn,
        other => return Err(format!("a Bidirectional of {other}: kiln's wraps LSTM, GRU or SimpleRNN")),
    };
    require(c, "activation", &[Value::from("tanh")])?;
    if kind != RnnKind::SimpleRnn {
        require(c, "recurrent_activation", &[Value::from("sigmoid")])?;
    }
    require(c, "use_bias", &[Value::from(true)])?;
    require(c, "go_backwards", &[Value::from(false)])?;
    require(c, "return_state", &[Value::from(false)])?;
    require(c, "stateful", &[Value::from(false)])?;
    if kind == RnnKind::Gru {
        require(c, "reset_after", &[Value::from(true)])?;
    }
    Ok((kind, c["return_sequences"].as_bool().unwrap_or(false)))
}
