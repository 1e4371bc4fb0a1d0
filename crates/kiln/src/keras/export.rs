//! kiln models as Keras 3 describes them (`to_keras`): the config of a .keras file and each layer's weights
//! in the order and groups of its model.weights.h5 (written by h5.rs). Sequential models of the layers both
//! have; anything else is refused, naming the layer, with ONNX suggested.

use super::Weight;
use crate::model::Model;
use crate::nn::{Activation, LayerConfig, PaddingConfig, RnnKind};
use kiln_core::{Error, Result};
use serde_json::Value;
use std::collections::HashMap;

/// A kiln model as Keras 3 describes one: its config (`config.json` of a .keras file) and, per layer, the
/// weights file's groups (`layers/{key}` and below) with their weights in Keras's order.
pub struct KerasExport {
    pub config: Value,
    pub layers: Vec<KerasLayer>,
}

/// One layer's place in model.weights.h5: `layers/{key}`, its name, and its weights by sub-group ("" for
/// its own `vars`, "cell" for a recurrent layer's, "forward_layer/cell" and "backward_layer/cell").
pub struct KerasLayer {
    pub key: String,
    pub name: String,
    pub vars: Vec<(String, Vec<Weight>)>,
}

/// Keras's key for a layer class: its snake-case name (`Conv2D` -> conv2d, `SimpleRNN` -> simple_rnn),
/// numbered from the second of a class on (conv2d, conv2d_1).
fn snake(class: &str) -> String {
    let c: Vec<char> = class.chars().collect();
    let mut out = String::new();
    for (i, &ch) in c.iter().enumerate() {
        let next_lower = c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        let prev = if i > 0 { Some(c[i - 1]) } else { None };
        if ch.is_ascii_uppercase() && i > 0 && (prev.is_some_and(|p| p.is_ascii_lowercase()) || next_lower) {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn layer_json(class: &str, name: &str, mut config: Value, input: &[usize]) -> Value {
    config["name"] = Value::from(name);
    config["trainable"] = Value::from(true);
    config["dtype"] = Value::from("float32");
    let shape: Vec<Value> = std::iter::once(Value::Null).chain(input.iter().map(|&d| Value::from(d))).collect();
    serde_json::json!({
        "module": "keras.layers", "class_name": class, "config": config, "registered_name": null,
        "build_config": {"input_shape": shape},
    })
}

fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::Linear => "linear",
        Activation::Relu => "relu",
        Activation::Sigmoid => "sigmoid",
        Activation::Tanh => "tanh",
        Activation::Softmax => "softmax",
        Activation::Gelu => "gelu",
        Activation::LeakyRelu => "leaky_relu",
    }
}

fn rnn_class(kind: RnnKind) -> &'static str {
    match kind {
        RnnKind::Lstm => "LSTM",
        RnnKind::Gru => "GRU",
        RnnKind::SimpleRnn => "SimpleRNN",
    }
}

/// The Keras form of `model`: a chain of layers Keras has (a Sequential), else an error naming the layer.
pub fn to_keras(model: &Model) -> Result<KerasExport> {
    use serde_json::json;
    let net = &model.net;
    let chain =
        net.inputs.len() == 1
            && net.outputs == [net.layers.len().saturating_sub(1)]
            && net.layers.iter().enumerate().all(|(i, l)| {
                l.inputs() == [if i == 0 { crate::nn::Src::Input(0) } else { crate::nn::Src::Layer(i - 1) }]
            });
    if !chain {
        return Err(Error::Config(
            "Keras export writes Sequential models (one input, each layer reading the one before); export this \
             graph model to ONNX instead"
                .into(),
        ));
    }
    let g = &model.graph;
    let value = |l: &crate::nn::Layer, n: &str| -> Result<Weight> {
        let p = g.param(l.must(n));
        if p.quant.is_some() {
            return Err(Error::Invalid(format!("`{}` is quantized; export the f32 model", p.name)));
        }
        Ok((p.shape.dims().to_vec(), p.value.clone()))
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut layers_json = vec![json!({
        "module": "keras.layers", "class_name": "InputLayer", "registered_name": null,
        "config": {"batch_shape": std::iter::once(Value::Null).chain(net.inputs[0].shape.iter().map(|&d| Value::from(d))).collect::<Vec<_>>(),
                   "dtype": "float32", "sparse": false, "name": "input_layer"},
    })];
    let mut out = Vec::new();
    for l in &net.layers {
        let name = l.name();
        let own = |names: &[&str]| -> Result<Vec<(String, Vec<Weight>)>> {
            Ok(vec![(
                String::new(),
                names.iter().filter(|n| l.param(n).is_some()).map(|n| value(l, n)).collect::<Result<_>>()?,
            )])
        };
        let (class, config, vars): (&str, Value, Vec<(String, Vec<Weight>)>) = match l.config() {
            LayerConfig::Dense(d) => (
                "Dense",
                json!({"units": d.units, "activation": act_name(d.activation), "use_bias": d.use_bias}),
                own(&["kernel", "bias"])?,
            ),
            LayerConfig::Conv2d(c) => (
                "Conv2D",
                json!({"filters": c.filters, "kernel_size": [c.kernel_size.0, c.kernel_size.1],
                       "strides": [c.strides.0, c.strides.1], "padding": padding_name(c.padding),
                       "activation": act_name(c.activation), "use_bias": c.use_bias}),
                own(&["kernel", "bias"])?,
            ),
            LayerConfig::Conv1d(c) => {
                let (mut k, b) = (value(l, "kernel")?, value(l, "bias")?);
                k.0.remove(0);
                (
                    "Conv1D",
                    json!({"filters": c.filters, "kernel_size": [c.kernel_size], "activation": act_name(c.activation)}),
                    vec![(String::new(), vec![k, b])],
                )
            }
            LayerConfig::MaxPooling2d(p) => (
                "MaxPooling2D",
                json!({"pool_size": [p.pool_size.0, p.pool_size.1], "strides": p.strides.map(|s| vec![s.0, s.1]),
                       "padding": padding_name(p.padding)}),
                own(&[])?,
            ),
            LayerConfig::AveragePooling2d(p) => (
                "AveragePooling2D",
                json!({"pool_size": [p.pool_size.0, p.pool_size.1], "strides": p.strides.map(|s| vec![s.0, s.1]),
                       "padding": padding_name(p.padding)}),
                own(&[])?,
            ),
            LayerConfig::GlobalMaxPooling1d(_) => ("GlobalMaxPooling1D", json!({}), own(&[])?),
            LayerConfig::GlobalAveragePooling1d(_) => ("GlobalAveragePooling1D", json!({}), own(&[])?),
            LayerConfig::Flatten(_) => ("Flatten", json!({}), own(&[])?),
            LayerConfig::Dropout(d) => ("Dropout", json!({"rate": d.rate}), own(&[])?),
            LayerConfig::Activation(a) => ("Activation", json!({"activation": act_name(a.activation)}), own(&[])?),
            LayerConfig::BatchNormalization(b) => (
                "BatchNormalization",
                json!({"axis": -1, "momentum": b.momentum, "epsilon": b.epsilon}),
                own(&["gamma", "beta", "moving_mean", "moving_variance"])?,
            ),
            LayerConfig::LayerNormalization(n) => {
                ("LayerNormalization", json!({"axis": -1, "epsilon": n.epsilon}), own(&["gamma", "beta"])?)
            }
            LayerConfig::Embedding(e) => (
                "Embedding",
                json!({"input_dim": e.input_dim, "output_dim": e.output_dim, "mask_zero": e.mask_zero}),
                own(&["embeddings"])?,
            ),
            LayerConfig::Lstm(r) => rnn_json(RnnKind::Lstm, r.units, r.return_sequences, l, &value)?,
            LayerConfig::Gru(r) => rnn_json(RnnKind::Gru, r.units, r.return_sequences, l, &value)?,
            LayerConfig::SimpleRnn(r) => rnn_json(RnnKind::SimpleRnn, r.units, r.return_sequences, l, &value)?,
            LayerConfig::Bidirectional(b) => {
                let mut inner = json!({"module": "keras.layers", "class_name": rnn_class(b.rnn), "registered_name": null,
                    "config": {"name": format!("forward_{name}"), "units": b.units,
                               "return_sequences": b.return_sequences, "dtype": "float32"}});
                if b.rnn == RnnKind::Gru {
                    inner["config"]["reset_after"] = Value::from(true);
                }
                let dir = |prefix: &str| -> Result<Vec<Weight>> {
                    ["kernel", "recurrent_kernel", "bias"].iter().map(|n| value(l, &format!("{prefix}{n}"))).collect()
                };
                (
                    "Bidirectional",
                    json!({"layer": inner, "merge_mode": "concat"}),
                    vec![
                        ("forward_layer/cell".to_string(), dir("forward_")?),
                        ("backward_layer/cell".to_string(), dir("backward_")?),
                    ],
                )
            }
            other => {
                return Err(Error::Config(format!(
                    "layer `{name}` ({}): Keras has no layer like it; export the model to ONNX instead",
                    other.class_name()
                )));
            }
        };
        let base = snake(class);
        let n = counts.entry(base.clone()).or_default();
        let key = if *n == 0 { base.clone() } else { format!("{base}_{n}") };
        *n += 1;
        layers_json.push(layer_json(class, name, config, l.input_shape()));
        out.push(KerasLayer { key, name: name.to_string(), vars });
    }
    let input: Vec<Value> =
        std::iter::once(Value::Null).chain(net.inputs[0].shape.iter().map(|&d| Value::from(d))).collect();
    let config = json!({
        "module": "keras", "class_name": "Sequential", "registered_name": null,
        "config": {"name": model.name, "trainable": true, "dtype": "float32", "layers": layers_json},
        "build_config": {"input_shape": input},
    });
    Ok(KerasExport { config, layers: out })
}

fn padding_name(p: PaddingConfig) -> &'static str {
    match p {
        PaddingConfig::Valid => "valid",
        PaddingConfig::Same => "same",
    }
}

type LayerJson = (&'static str, Value, Vec<(String, Vec<Weight>)>);

fn rnn_json(
    kind: RnnKind,
    units: usize,
    seq: bool,
    l: &crate::nn::Layer,
    value: &dyn Fn(&crate::nn::Layer, &str) -> Result<Weight>,
) -> Result<LayerJson> {
    let mut config = serde_json::json!({"units": units, "return_sequences": seq});
    if kind == RnnKind::Gru {
        config["reset_after"] = Value::from(true);
    }
    let w = ["kernel", "recurrent_kernel", "bias"].iter().map(|n| value(l, n)).collect::<Result<_>>()?;
    Ok((rnn_class(kind), config, vec![("cell".to_string(), w)]))
}
