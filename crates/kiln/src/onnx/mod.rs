//! ONNX export: a trained model as an ONNX graph (opset 17) that onnxruntime, tract and the other runtimes
//! run, giving kiln's predictions (probabilities) to within float rounding.
//!
//! Each layer type writes its own nodes next to its forward (`LayerSpec::onnx` in its file under
//! nn/layers/), through the builder here (`OnnxGraph`: nodes, weights as initializers, and the pieces several
//! layers share: a dense product, activations, layer normalization, attention). The walk over the model's
//! graph mirrors `Net::forward`, padding masks included; the fused paths (a convolution and its pooling as one
//! op) are written unfused, as the reference forward computes them.
//!
//! Layout: kiln's images are channels-last (NHWC, as Keras), ONNX's Conv and pooling channels-first, so each
//! of those runs between two transposes and every tensor between layers keeps kiln's layout (a Flatten after
//! them flattens in kiln's order). The batch axis is the symbolic "batch"; every other size is fixed.
//!
//! What ONNX does not hold travels beside the graph, in its metadata: the table or text preparation
//! (`kiln.preparation`, kiln's JSON, applied before the graph as `kiln predict` does) and the model's own
//! description (`kiln.model`).

pub(crate) mod proto;

use crate::model::Model;
use crate::nn::spec::MaskRule;
use crate::nn::{Activation, Layer, Src};
use kiln_core::{Error, Graph, Result};
use prost::Message;
use proto::*;
use std::collections::HashMap;
use std::path::Path;

/// The operator set the graphs use (LayerNormalization-free: layer norms are written out, for runtimes that
/// lack the op).
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;

/// One attribute of a node.
pub(crate) struct Attr(AttributeProto);

impl Attr {
    pub fn i(name: &str, v: i64) -> Attr {
        Attr(AttributeProto { name: name.into(), i: v, r#type: ATTR_INT, ..Default::default() })
    }
    pub fn f(name: &str, v: f32) -> Attr {
        Attr(AttributeProto { name: name.into(), f: v, r#type: ATTR_FLOAT, ..Default::default() })
    }
    pub fn ints(name: &str, v: &[i64]) -> Attr {
        Attr(AttributeProto { name: name.into(), ints: v.to_vec(), r#type: ATTR_INTS, ..Default::default() })
    }
    pub fn s(name: &str, v: &str) -> Attr {
        Attr(AttributeProto { name: name.into(), s: v.as_bytes().to_vec(), r#type: ATTR_STRING, ..Default::default() })
    }
}

/// The graph being written: nodes in order, initializers, and the model's parameters to read them from.
pub(crate) struct OnnxGraph<'a> {
    store: &'a Graph<f32>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// Initializers already written, by name (a parameter read twice is stored once).
    written: HashMap<String, ()>,
    /// The layer being written: node and constant names start with it.
    scope: String,
    counter: usize,
    /// The padding mask of the current layer's input ([batch, steps] floats, 1 for a real step), for the
    /// layers that read it.
    pub mask: Option<String>,
}

impl<'a> OnnxGraph<'a> {
    fn new(store: &'a Graph<f32>) -> Self {
        OnnxGraph {
            store,
            nodes: Vec::new(),
            inits: Vec::new(),
            written: HashMap::new(),
            scope: String::new(),
            counter: 0,
            mask: None,
        }
    }

    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{}/{what}_{}", self.scope, self.counter)
    }

    /// Adds a node `op` reading `inputs` ("" for an optional input left out) and returns its output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>) -> String {
        self.op_n(op, inputs, attrs, 1).remove(0)
    }

    /// `op` for nodes with `n` outputs (a recurrent op's sequence and last state).
    pub fn op_n(&mut self, op: &str, inputs: &[&str], attrs: Vec<Attr>, n: usize) -> Vec<String> {
        let name = self.fresh(op);
        let outputs: Vec<String> = (0..n).map(|k| format!("{name}:{k}")).collect();
        // Optional inputs left out at the end are dropped rather than named "".
        let given = inputs.iter().rposition(|s| !s.is_empty()).map_or(0, |i| i + 1);
        self.nodes.push(NodeProto {
            input: inputs[..given].iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            name,
            op_type: op.into(),
            attribute: attrs.into_iter().map(|a| a.0).collect(),
        });
        outputs
    }

    fn tensor(&mut self, name: String, dims: &[usize], data_type: i32, raw: Vec<u8>) -> String {
        if self.written.insert(name.clone(), ()).is_none() {
            let dims = dims.iter().map(|&d| d as i64).collect();
            self.inits.push(TensorProto { dims, data_type, name: name.clone(), raw_data: raw });
        }
        name
    }

    /// A float constant of shape `dims` (an initializer named after the layer).
    pub fn floats(&mut self, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh("const");
        self.tensor(name, dims, FLOAT, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// A 1-D int64 constant (shapes, axes, indices).
    pub fn ints(&mut self, data: &[i64]) -> String {
        let name = self.fresh("ints");
        self.tensor(name, &[data.len()], INT64, data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// A scalar int64 constant (the index of a Gather that drops the axis).
    pub fn scalar(&mut self, v: i64) -> String {
        let name = self.fresh("index");
        self.tensor(name, &[], INT64, v.to_le_bytes().to_vec())
    }

    /// The layer's parameter `name` (`kernel`, `bias`, ...) as it is stored, as an initializer.
    pub fn param(&mut self, l: &Layer, name: &str) -> Result<String> {
        let p = self.store.param(l.must(name));
        if p.quant.is_some() {
            return Err(quantized(&p.name));
        }
        let (full, dims) = (p.name.clone(), p.shape.dims().to_vec());
        let raw = p.value.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self.tensor(full, &dims, FLOAT, raw))
    }

    /// The values and shape of the layer's parameter `name`, for layers that store it rearranged.
    pub fn values(&self, l: &Layer, name: &str) -> Result<(Vec<usize>, &'a [f32])> {
        let p = self.store.param(l.must(name));
        if p.quant.is_some() {
            return Err(quantized(&p.name));
        }
        Ok((p.shape.dims().to_vec(), &p.value))
    }

    /// `x` reshaped to [batch, dims...] (the batch axis inferred).
    pub fn reshape(&mut self, x: &str, dims: &[usize]) -> String {
        let shape: Vec<i64> = std::iter::once(-1).chain(dims.iter().map(|&d| d as i64)).collect();
        let s = self.ints(&shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![Attr::ints("perm", perm)])
    }

    /// An elementwise activation, or a softmax over the last axis.
    pub fn activation(&mut self, x: &str, a: Activation) -> String {
        match a {
            Activation::Linear => x.to_string(),
            Activation::Relu => self.op("Relu", &[x], vec![]),
            Activation::Sigmoid => self.op("Sigmoid", &[x], vec![]),
            Activation::Tanh => self.op("Tanh", &[x], vec![]),
            Activation::Softmax => self.op("Softmax", &[x], vec![Attr::i("axis", -1)]),
            Activation::LeakyRelu => self.op("LeakyRelu", &[x], vec![Attr::f("alpha", 0.2)]),
            // The exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)), as the engine computes it (opset 17 has no Gelu).
            Activation::Gelu => {
                let r = self.floats(&[], &[std::f32::consts::FRAC_1_SQRT_2]);
                let half = self.floats(&[], &[0.5]);
                let one = self.floats(&[], &[1.0]);
                let s = self.op("Mul", &[x, &r], vec![]);
                let e = self.op("Erf", &[&s], vec![]);
                let e1 = self.op("Add", &[&e, &one], vec![]);
                let h = self.op("Mul", &[x, &half], vec![]);
                self.op("Mul", &[&h, &e1], vec![])
            }
        }
    }

    /// x·kernel + bias, then `act`: the layer's parameters `{prefix}kernel` [in, out] and `{prefix}bias`
    /// (when it has one), for any rank of `x` (the product is over its last axis).
    pub fn dense(&mut self, l: &Layer, x: &str, prefix: &str, act: Activation) -> Result<String> {
        let k = self.param(l, &format!("{prefix}kernel"))?;
        let mut y = self.op("MatMul", &[x, &k], vec![]);
        if l.param(&format!("{prefix}bias")).is_some() {
            let b = self.param(l, &format!("{prefix}bias"))?;
            y = self.op("Add", &[&y, &b], vec![]);
        }
        Ok(self.activation(&y, act))
    }

    /// γ·(x − μ)/√(σ² + eps) + β over the last axis, written out (the engine's `layer_norm`).
    pub fn layer_norm(&mut self, x: &str, gamma: &str, beta: &str, eps: f64) -> String {
        let axes = vec![Attr::ints("axes", &[-1]), Attr::i("keepdims", 1)];
        let mean = self.op("ReduceMean", &[x], axes);
        let d = self.op("Sub", &[x, &mean], vec![]);
        let sq = self.op("Mul", &[&d, &d], vec![]);
        let var = self.op("ReduceMean", &[&sq], vec![Attr::ints("axes", &[-1]), Attr::i("keepdims", 1)]);
        let e = self.floats(&[], &[eps as f32]);
        let ve = self.op("Add", &[&var, &e], vec![]);
        let sd = self.op("Sqrt", &[&ve], vec![]);
        let xh = self.op("Div", &[&d, &sd], vec![]);
        let y = self.op("Mul", &[&xh, gamma], vec![]);
        self.op("Add", &[&y, beta], vec![])
    }

    /// Multi-head self-attention over x [batch, t, f] with the layer's query, key, value and output dense
    /// parameters (`{prefix}kernel` and `{prefix}bias` for each of `dense`; `heads` heads of `dh` values): softmax(Q·Kᵀ/√dh + masks)·V, then the output
    /// projection. The padding mask hides padded keys, as the engine's fused op does (`MASKED` added).
    pub fn attention(&mut self, l: &Layer, x: &str, dense: [&str; 4], shape: Attention) -> Result<String> {
        let Attention { t, heads, dh, causal } = shape;
        let q = self.dense(l, x, dense[0], Activation::Linear)?;
        let k = self.dense(l, x, dense[1], Activation::Linear)?;
        let v = self.dense(l, x, dense[2], Activation::Linear)?;
        // [batch, t, heads·dh] -> [batch, heads, t, dh] (keys: [batch, heads, dh, t]).
        let split = |o: &mut Self, y: &str, perm: &[i64]| {
            let r = o.reshape(y, &[t, heads, dh]);
            o.transpose(&r, perm)
        };
        let (q, k, v) =
            (split(self, &q, &[0, 2, 1, 3]), split(self, &k, &[0, 2, 3, 1]), split(self, &v, &[0, 2, 1, 3]));
        let s = self.op("MatMul", &[&q, &k], vec![]);
        let scale = self.floats(&[], &[1.0 / (dh as f32).sqrt()]);
        let mut s = self.op("Mul", &[&s, &scale], vec![]);
        let masked = kiln_core::ops::MASKED as f32;
        if causal {
            let bias: Vec<f32> = (0..t * t).map(|i| if i % t > i / t { masked } else { 0.0 }).collect();
            let c = self.floats(&[t, t], &bias);
            s = self.op("Add", &[&s, &c], vec![]);
        }
        if let Some(m) = self.mask.clone() {
            // (1 − keep)·MASKED as [batch, 1, 1, t].
            let one = self.floats(&[], &[1.0]);
            let big = self.floats(&[], &[masked]);
            let off = self.op("Sub", &[&one, &m], vec![]);
            let bias = self.op("Mul", &[&off, &big], vec![]);
            let bias = self.reshape(&bias, &[1, 1, t]);
            s = self.op("Add", &[&s, &bias], vec![]);
        }
        let p = self.op("Softmax", &[&s], vec![Attr::i("axis", -1)]);
        let o = self.op("MatMul", &[&p, &v], vec![]);
        let o = self.transpose(&o, &[0, 2, 1, 3]);
        let o = self.reshape(&o, &[t, heads * dh]);
        self.dense(l, &o, dense[3], Activation::Linear)
    }

    /// `f` applied to x (kiln's channels-last [batch, h, w, c], or [batch, steps, c]) in the channels-first
    /// layout ONNX's convolution and pooling take, and its result turned back.
    pub fn channels_first(&mut self, x: &str, f: impl FnOnce(&mut Self, &str) -> String, rank: usize) -> String {
        let (into, back): (&[i64], &[i64]) =
            if rank == 4 { (&[0, 3, 1, 2], &[0, 2, 3, 1]) } else { (&[0, 2, 1], &[0, 2, 1]) };
        let t = self.transpose(x, into);
        let y = f(self, &t);
        self.transpose(&y, back)
    }

    /// Sums over `axis` (ReduceSum takes its axes as an input since opset 13).
    pub fn sum(&mut self, x: &str, axis: i64, keepdims: bool) -> String {
        let axes = self.ints(&[axis]);
        self.op("ReduceSum", &[x, &axes], vec![Attr::i("keepdims", keepdims as i64)])
    }

    /// Columns `from..to` of x [batch, width].
    pub fn columns(&mut self, x: &str, from: usize, to: usize) -> String {
        self.slice(x, 1, from, to)
    }

    /// Entries `from..to` of x along `axis`.
    pub fn slice(&mut self, x: &str, axis: i64, from: usize, to: usize) -> String {
        let (s, e, a) = (self.ints(&[from as i64]), self.ints(&[to as i64]), self.ints(&[axis]));
        self.op("Slice", &[x, &s, &e, &a], vec![])
    }

    /// 1 where `ids` is not 0 (a real step), as floats.
    pub fn keep(&mut self, ids: &str) -> String {
        let zero = self.floats(&[], &[0.0]);
        let eq = self.op("Equal", &[ids, &zero], vec![]);
        let ne = self.op("Not", &[&eq], vec![]);
        self.op("Cast", &[&ne], vec![Attr::i("to", FLOAT as i64)])
    }
}

/// ONNX's `pads` (all the leading pads, then all the trailing ones) for a window of `k` with strides `s`
/// over `input`, split as the engine splits "same" padding (`kiln_core::ops::out_size`, TensorFlow's rule).
pub(crate) fn pads(input: &[usize], k: &[usize], s: &[usize], padding: kiln_core::Padding) -> Vec<i64> {
    let (mut begin, mut end) = (Vec::new(), Vec::new());
    for i in 0..k.len() {
        let (out, lead) = kiln_core::ops::out_size(input[i], k[i], s[i], padding).unwrap_or((1, 0));
        let total = ((out - 1) * s[i] + k[i]).saturating_sub(input[i]);
        begin.push(lead as i64);
        end.push(total.saturating_sub(lead) as i64);
    }
    begin.extend(end);
    begin
}

/// The shape of one self-attention: `t` steps, `heads` heads of `dh` values, causal or not.
#[derive(Clone, Copy)]
pub(crate) struct Attention {
    pub t: usize,
    pub heads: usize,
    pub dh: usize,
    pub causal: bool,
}

fn quantized(name: &str) -> Error {
    Error::Invalid(format!(
        "export: `{name}` is quantized; ONNX export needs the f32 weights (export the model before quantizing)"
    ))
}

fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let batch = Dimension { dim_value: None, dim_param: Some("batch".into()) };
    let dims =
        std::iter::once(batch).chain(shape.iter().map(|&d| Dimension { dim_value: Some(d as i64), dim_param: None }));
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim: dims.collect() }),
            }),
        }),
    }
}

impl Model {
    /// The model as an ONNX file's bytes: inputs under the model's input names ([batch, ...] floats, as
    /// `predict` takes them), outputs under the output layers' names (probabilities, as `predict` gives
    /// them). The preparation of a table or text model goes into the metadata (`kiln.preparation`).
    pub fn to_onnx(&self) -> Result<Vec<u8>> {
        let net = &self.net;
        if net.layers.is_empty() {
            return Err(Error::Config("export: the model has no layers".into()));
        }
        let mut o = OnnxGraph::new(&self.graph);
        let base = net.inputs.len();
        // Every node's value (model inputs, then layers) and the ids its padding mask comes from.
        let mut outs: Vec<(String, Option<String>)> = net.inputs.iter().map(|i| (i.name.clone(), None)).collect();
        let at = |s: Src| match s {
            Src::Input(i) => i,
            Src::Layer(j) => base + j,
        };
        for layer in &net.layers {
            o.scope = layer.name().to_string();
            let xs: Vec<String> = layer.inputs().iter().map(|&s| outs[at(s)].0.clone()).collect();
            let mask_ids = outs[at(layer.inputs()[0])].1.clone();
            o.mask = match (&mask_ids, layer.reads_mask()) {
                (Some(ids), true) => Some(o.keep(ids)),
                _ => None,
            };
            let y = layer.config().spec().onnx(layer, &mut o, &xs).map_err(|e| match e {
                Error::Config(m) | Error::Invalid(m) if !m.contains(&format!("`{}`", layer.name())) => {
                    Error::Invalid(format!("export: layer `{}` ({}): {m}", layer.name(), layer.config().class_name()))
                }
                e => e,
            })?;
            let mask_ids = match layer.mask_rule() {
                MaskRule::Starts => Some(xs[0].clone()),
                MaskRule::Keeps => mask_ids,
                MaskRule::Drops => None,
            };
            outs.push((y, mask_ids));
        }
        // Each output under its layer's name, which must not be a weight's or an input's too.
        let mut outputs = Vec::new();
        for &k in &net.outputs {
            let layer = &net.layers[k];
            if o.written.contains_key(layer.name()) || net.inputs.iter().any(|i| i.name == layer.name()) {
                return Err(Error::Invalid(format!(
                    "export: output layer `{}` has the name of a weight or an input of the model; rename the layer",
                    layer.name()
                )));
            }
            o.scope = layer.name().to_string();
            let name = layer.name().to_string();
            o.nodes.push(NodeProto {
                input: vec![outs[base + k].0.clone()],
                output: vec![name.clone()],
                name: format!("{name}/output"),
                op_type: "Identity".into(),
                attribute: vec![],
            });
            outputs.push(value_info(&name, layer.output_shape()));
        }
        let (inputs, nodes) = self.spec();
        let spec = serde_json::json!({ "name": self.name, "inputs": inputs, "nodes": nodes });
        let mut metadata_props = vec![StringStringEntryProto { key: "kiln.model".into(), value: spec.to_string() }];
        if let Some(p) = &self.preparation {
            let prep = serde_json::to_string(p)
                .map_err(|e| Error::Invalid(format!("export: cannot describe the preparation: {e}")))?;
            metadata_props.push(StringStringEntryProto { key: "kiln.preparation".into(), value: prep });
        }
        let graph = GraphProto {
            node: o.nodes,
            name: self.name.clone(),
            initializer: o.inits,
            input: net.inputs.iter().map(|i| value_info(&i.name, &i.shape)).collect(),
            output: outputs,
        };
        let model = ModelProto {
            ir_version: IR_VERSION,
            producer_name: "kiln".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: String::new(),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            metadata_props,
        };
        Ok(model.encode_to_vec())
    }

    /// Writes `to_onnx` to `path` (atomically: a file already there is replaced only by a whole one).
    pub fn save_onnx(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_atomic(path.as_ref(), &self.to_onnx()?)
    }
}
