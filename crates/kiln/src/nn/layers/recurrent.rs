//! Recurrent layers: LSTM, GRU and SimpleRNN over a sequence, and Bidirectional (one of them run both
//! ways). Each runs as one op of the engine over the whole sequence (`Graph::rnn`, forward and backward
//! through time fused); a padding mask makes a padded step keep the state.

use crate::nn::Initializer;
use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec};
use crate::onnx::proto::{INT32, INT64};
use crate::onnx::{Attr, OnnxGraph};
use kiln_core::ops::RnnCell;
use kiln_core::{Graph, ParamId, Result, Var};
use serde::{Deserialize, Serialize};

/// Long short-term memory over a sequence (Keras's LSTM, gates in Keras's and PyTorch's order i, f, c, o;
/// tanh and sigmoid; one bias, the forget gate's starting at 1 as Keras's unit_forget_bias): input (steps,
/// features), output the last state (units,), or with `return_sequences` the state after every step (steps,
/// units). Steps masked by a preceding `Embedding(mask_zero)` keep the state unchanged, so padding does not
/// change the result (a masked step's output repeats the state, as Keras's does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lstm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub units: usize,
    /// Output the state after every step, (steps, units), instead of the last one (see `Lstm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_sequences: bool,
}

/// Gated recurrent unit over a sequence (Keras's GRU with reset_after = true, the same equations as
/// PyTorch's GRU): kernel [features, 3·units] and recurrent kernel [units, 3·units] with gates in Keras's order
/// z, r, h; bias [2, 3·units] (input and recurrent). Output the last state; masked steps keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gru {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub units: usize,
    /// Output the state after every step, (steps, units), instead of the last one (see `Lstm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_sequences: bool,
}

/// h = tanh(x·W + h·U + b) over a sequence (Keras's SimpleRNN); output the last state; masked steps keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleRnn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub units: usize,
    /// Output the state after every step, (steps, units), instead of the last one (see `Lstm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_sequences: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RnnKind {
    Lstm,
    Gru,
    SimpleRnn,
}

/// A recurrent layer run forwards and, with weights of its own, backwards over the sequence (Keras's
/// Bidirectional, merge_mode "concat"): output the two last states side by side (2·units,). With a mask, the
/// backward pass reads the real steps from last to first, as PyTorch's packed bidirectional RNNs do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bidirectional {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub rnn: RnnKind,
    pub units: usize,
    /// Output both directions' states at every step, (steps, 2·units).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_sequences: bool,
}

macro_rules! rnn_builders {
    ($($t:ident => $kind:ident),*) => {$(
        impl $t {
            pub fn new(units: usize) -> Self {
                $t { name: None, units, return_sequences: false }
            }
            pub fn return_sequences(mut self, yes: bool) -> Self {
                self.return_sequences = yes;
                self
            }
        }

        impl LayerSpec for $t {
            fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
                one_way(cx, RnnKind::$kind, self.units, self.return_sequences)
            }

            fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
                let p = l.rnn_params(RNN_NAMES[0]);
                recurrent(RnnKind::$kind, f.g, xs[0], p, f.mask, false, self.return_sequences)
            }

            fn returns_sequences(&self) -> bool {
                self.return_sequences
            }

            fn reads_mask(&self) -> bool {
                true
            }

            fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
                rnn_onnx(o, l, &xs[0], RnnKind::$kind, &[RNN_NAMES[0]], self.return_sequences)
            }
        }
    )*};
}
rnn_builders!(Lstm => Lstm, Gru => Gru, SimpleRnn => SimpleRnn);

impl Bidirectional {
    pub fn new(rnn: RnnKind, units: usize) -> Self {
        Bidirectional { name: None, rnn, units, return_sequences: false }
    }
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }
}

impl LayerSpec for Bidirectional {
    fn onnx(&self, l: &Layer, o: &mut OnnxGraph, xs: &[String]) -> Result<String> {
        rnn_onnx(o, l, &xs[0], self.rnn, &[RNN_NAMES[1], RNN_NAMES[2]], self.return_sequences)
    }

    fn build(&self, cx: &mut BuildCx) -> Result<Vec<usize>> {
        cx.positive(self.units, "units")?;
        let &[steps, features] = cx.input() else {
            return Err(cx.misfit("a sequence (steps, features)"));
        };
        rnn_params(cx, "forward_", self.rnn, features, self.units)?;
        rnn_params(cx, "backward_", self.rnn, features, self.units)?;
        Ok(if self.return_sequences { vec![steps, 2 * self.units] } else { vec![2 * self.units] })
    }

    fn forward(&self, l: &Layer, f: &mut Fwd, xs: &[Var]) -> Result<Var> {
        let seq = self.return_sequences;
        let (fp, bp) = (l.rnn_params(RNN_NAMES[1]), l.rnn_params(RNN_NAMES[2]));
        let fwd = recurrent(self.rnn, f.g, xs[0], fp, f.mask, false, seq)?;
        let bwd = recurrent(self.rnn, f.g, xs[0], bp, f.mask, true, seq)?;
        f.g.concat(&[fwd, bwd], if seq { 2 } else { 1 })
    }

    fn returns_sequences(&self) -> bool {
        self.return_sequences
    }

    fn reads_mask(&self) -> bool {
        true
    }
}

/// The build of a one-way recurrent layer: its cell's parameters, and its output shape.
fn one_way(cx: &mut BuildCx, kind: RnnKind, units: usize, seq: bool) -> Result<Vec<usize>> {
    cx.positive(units, "units")?;
    let &[steps, features] = cx.input() else {
        return Err(cx.misfit("a sequence (steps, features)"));
    };
    rnn_params(cx, "", kind, features, units)?;
    Ok(if seq { vec![steps, units] } else { vec![units] })
}

/// The layer as ONNX's LSTM, GRU or RNN op, one direction per entry of `names` (forward, then backward):
/// kernels transposed to [gates·units, in] and the gates reordered to ONNX's (LSTM: i, o, f, c for kiln's
/// i, f, g, o; GRU: z, r, h in both, with `linear_before_reset`, Keras's reset_after). Under a padding mask
/// the real steps run compacted (`Compact`), so padding anywhere gives kiln's states.
fn rnn_onnx(o: &mut OnnxGraph, l: &Layer, x: &str, kind: RnnKind, names: &[[&str; 3]], seq: bool) -> Result<String> {
    let (steps, features) = (l.input_shape()[0], l.input_shape()[1]);
    let g = kind.cell().gates();
    let u = o.values(l, names[0][1])?.0[0];
    // ONNX's gate k is kiln's gate order[k].
    let order: &[usize] = match kind {
        RnnKind::Lstm => &[0, 3, 1, 2],
        RnnKind::Gru => &[0, 1, 2],
        RnnKind::SimpleRnn => &[0],
    };
    let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for n in names {
        let (kernel, recurrent, bias) = (o.values(l, n[0])?.1, o.values(l, n[1])?.1, o.values(l, n[2])?.1);
        // [rows, g·u] -> [g·u, rows] with the gates reordered.
        let t = |m: &[f32], rows: usize, out: &mut Vec<f32>| {
            for &k in order {
                for j in 0..u {
                    out.extend((0..rows).map(|i| m[i * g * u + k * u + j]));
                }
            }
        };
        t(kernel, features, &mut w);
        t(recurrent, u, &mut r);
        // Input bias then recurrent bias, each in ONNX's gate order.
        let halves: [&[f32]; 2] = match kind {
            RnnKind::Gru => [&bias[..g * u], &bias[g * u..]],
            _ => [bias, &[]],
        };
        for h in halves {
            for &k in order {
                if h.is_empty() {
                    b.extend(std::iter::repeat_n(0.0, u));
                } else {
                    b.extend_from_slice(&h[k * u..(k + 1) * u]);
                }
            }
        }
    }
    let d = names.len();
    let (w, r, b) = (o.floats(&[d, g * u, features], &w), o.floats(&[d, g * u, u], &r), o.floats(&[d, 2 * g * u], &b));
    // Under a padding mask, each sequence's real steps are first moved to its front, in order, and run
    // with `sequence_lens` = their count; the outputs are then put back at kiln's steps (see `Compact`).
    let compact = o.mask.clone().map(|m| Compact::new(o, &m, steps));
    let xs = match &compact {
        Some(c) => c.gather_front(o, x),
        None => x.to_string(),
    };
    let xt = o.transpose(&xs, &[1, 0, 2]);
    let lens = compact.as_ref().map_or(String::new(), |c| c.lens.clone());
    let mut attrs =
        vec![Attr::i("hidden_size", u as i64), Attr::s("direction", if d == 2 { "bidirectional" } else { "forward" })];
    let op = match kind {
        RnnKind::Lstm => "LSTM",
        RnnKind::Gru => {
            attrs.push(Attr::i("linear_before_reset", 1));
            "GRU"
        }
        RnnKind::SimpleRnn => "RNN",
    };
    let outs = o.op_n(op, &[&xt, &w, &r, &b, &lens], attrs, 2);
    if !seq {
        // Y_h [d, batch, u] -> [batch, d·u]: the state after the last real step (forward) and after the
        // first (backward), as kiln's.
        let y = o.transpose(&outs[1], &[1, 0, 2]);
        return Ok(o.reshape(&y, &[d * u]));
    }
    // Y [steps, d, batch, u] -> [batch, steps, d, u].
    let y = o.transpose(&outs[0], &[2, 0, 1, 3]);
    let Some(c) = compact else {
        // Forward then backward per step, as kiln concatenates.
        return Ok(o.reshape(&y, &[steps, d * u]));
    };
    let mut parts = Vec::new();
    for k in 0..d {
        let i = o.scalar(k as i64);
        let yk = o.op("Gather", &[&y, &i], vec![Attr::i("axis", 2)]);
        parts.push(c.scatter_back(o, &yk, k == 1));
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    Ok(if d == 1 { parts[0].to_string() } else { o.op("Concat", &parts, vec![Attr::i("axis", 2)]) })
}

/// A padding mask [batch, steps] as the index arithmetic that runs a recurrent op on the real steps only, so
/// that the export computes what kiln's cell does wherever the padding is (at the end, at the front, between
/// words): kiln's cell keeps its state over a padded step, ONNX's `sequence_lens` only cuts a tail.
/// With c[t] the real steps up to t (inclusive) and n their count: step t goes to position c[t] − 1 when real,
/// n + (padded steps up to t) − 1 when padded; the forward output at step t is the compacted output at
/// c[t] − 1 (none before the first real step), the backward one at c[t] − m[t] (none after the last).
struct Compact {
    /// The mask as int64 [batch, steps], its running count c, and the count n [batch, 1].
    keep: String,
    count: String,
    total: String,
    /// `sequence_lens`: n as int32 [batch].
    lens: String,
    /// For each position of the compacted sequence, the step it comes from [batch, steps].
    source: String,
}

impl Compact {
    fn new(o: &mut OnnxGraph, mask: &str, steps: usize) -> Compact {
        let keep = o.op("Cast", &[mask], vec![Attr::i("to", INT64 as i64)]);
        let axis = o.scalar(1);
        let count = o.op("CumSum", &[&keep, &axis], vec![]);
        let axes = o.ints(&[1]);
        let total = o.op("ReduceSum", &[&keep, &axes], vec![Attr::i("keepdims", 1)]);
        let flat = o.ints(&[-1]);
        let n = o.op("Reshape", &[&total, &flat], vec![]);
        let lens = o.op("Cast", &[&n], vec![Attr::i("to", INT32 as i64)]);
        // Where each step goes: real ones to c − 1, padded ones after them in order.
        let one = o.ints(&[1]);
        let pad = o.op("Sub", &[&one, &keep], vec![]);
        let pads = o.op("CumSum", &[&pad, &axis], vec![]);
        let real_at = o.op("Sub", &[&count, &one], vec![]);
        let pad_at = o.op("Add", &[&total, &pads], vec![]);
        let pad_at = o.op("Sub", &[&pad_at, &one], vec![]);
        let a = o.op("Mul", &[&keep, &real_at], vec![]);
        let b = o.op("Mul", &[&pad, &pad_at], vec![]);
        let target = o.op("Add", &[&a, &b], vec![]);
        // Its inverse: source[target[t]] = t.
        let ar = o.ints(&(0..steps as i64).collect::<Vec<_>>());
        let zero = o.ints(&[0]);
        let z = o.op("Mul", &[&target, &zero], vec![]);
        let steps_b = o.op("Add", &[&z, &ar], vec![]);
        let source = o.op("ScatterElements", &[&steps_b, &target, &steps_b], vec![Attr::i("axis", 1)]);
        Compact { keep, count, total, lens, source }
    }

    /// x [batch, steps, f] with its real steps first.
    fn gather_front(&self, o: &mut OnnxGraph, x: &str) -> String {
        let idx = expand_like(o, &self.source, x);
        o.op("GatherElements", &[x, &idx], vec![Attr::i("axis", 1)])
    }

    /// The compacted outputs y [batch, steps, u] of one direction at kiln's steps: the state after the real
    /// steps read so far (forward) or still to read (backward), 0 where there is none yet.
    fn scatter_back(&self, o: &mut OnnxGraph, y: &str, backward: bool) -> String {
        let one = o.ints(&[1]);
        let (at, valid) = if backward {
            // c − m: the real steps before t; valid while below n.
            let at = o.op("Sub", &[&self.count, &self.keep], vec![]);
            let valid = o.op("Less", &[&at, &self.total], vec![]);
            let last = o.op("Sub", &[&self.total, &one], vec![]);
            let zero = o.ints(&[0]);
            let last = o.op("Max", &[&last, &zero], vec![]);
            (o.op("Min", &[&at, &last], vec![]), valid)
        } else {
            // c − 1; valid from the first real step on.
            let at = o.op("Sub", &[&self.count, &one], vec![]);
            let zero = o.ints(&[0]);
            let valid = o.op("Greater", &[&self.count, &zero], vec![]);
            (o.op("Max", &[&at, &zero], vec![]), valid)
        };
        let idx = expand_like(o, &at, y);
        let picked = o.op("GatherElements", &[y, &idx], vec![Attr::i("axis", 1)]);
        let valid = o.op("Cast", &[&valid], vec![Attr::i("to", crate::onnx::proto::FLOAT as i64)]);
        let axes = o.ints(&[2]);
        let valid = o.op("Unsqueeze", &[&valid, &axes], vec![]);
        o.op("Mul", &[&picked, &valid], vec![])
    }
}

/// Indices [batch, steps] repeated along the last axis of `like` [batch, steps, f], for GatherElements.
fn expand_like(o: &mut OnnxGraph, idx: &str, like: &str) -> String {
    let axes = o.ints(&[2]);
    let i3 = o.op("Unsqueeze", &[idx, &axes], vec![]);
    let shape = o.op("Shape", &[like], vec![]);
    o.op("Expand", &[&i3, &shape], vec![])
}

/// The parameter names of a recurrent cell: alone, and as a Bidirectional's forward and backward halves.
pub(crate) const RNN_NAMES: [[&str; 3]; 3] = [
    ["kernel", "recurrent_kernel", "bias"],
    ["forward_kernel", "forward_recurrent_kernel", "forward_bias"],
    ["backward_kernel", "backward_recurrent_kernel", "backward_bias"],
];

impl Layer {
    /// The kernel, recurrent kernel and bias of a recurrent cell, by their names (`names`, from RNN_NAMES).
    fn rnn_params(&self, names: [&str; 3]) -> [ParamId; 3] {
        names.map(|n| self.must(n))
    }
}

/// The parameters of one recurrent cell, named `{prefix}kernel`, `{prefix}recurrent_kernel`, `{prefix}bias`,
/// in Keras's layouts: LSTM 4 gates (forget bias 1), GRU 3 gates with a [2, 3·units] bias, SimpleRNN 1.
fn rnn_params(cx: &mut BuildCx, prefix: &str, kind: RnnKind, f: usize, u: usize) -> Result<()> {
    let gates = match kind {
        RnnKind::Lstm => 4,
        RnnKind::Gru => 3,
        RnnKind::SimpleRnn => 1,
    };
    let glorot = Initializer::GlorotUniform;
    let kernel = glorot.fill(&[f, gates * u], cx.rng)?;
    cx.param(&format!("{prefix}kernel"), &[f, gates * u], kernel, true)?;
    let recurrent = glorot.fill(&[u, gates * u], cx.rng)?;
    cx.param(&format!("{prefix}recurrent_kernel"), &[u, gates * u], recurrent, true)?;
    match kind {
        RnnKind::Lstm => {
            let bias: Vec<f32> = (0..4 * u).map(|k| if (u..2 * u).contains(&k) { 1.0 } else { 0.0 }).collect();
            cx.param(&format!("{prefix}bias"), &[4 * u], bias, true)
        }
        RnnKind::Gru => cx.param(&format!("{prefix}bias"), &[2, 3 * u], vec![0.0; 6 * u], true),
        RnnKind::SimpleRnn => cx.param(&format!("{prefix}bias"), &[u], vec![0.0; u], true),
    }
}

impl RnnKind {
    /// The engine's cell for this layer kind.
    fn cell(self) -> RnnCell {
        match self {
            RnnKind::Lstm => RnnCell::Lstm,
            RnnKind::Gru => RnnCell::Gru,
            RnnKind::SimpleRnn => RnnCell::Simple,
        }
    }
}

/// One recurrent layer of `kind` over x [n, steps, features], forwards or (`reverse`) backwards, as the
/// engine's fused op (`Graph::rnn`; `Graph::rnn_unrolled` is the same layer op by op, its tested
/// reference): the last state, or with `seq` the state after every step. A step masked by `mask`
/// ([n, steps], 0 for padding) keeps the state.
fn recurrent(
    kind: RnnKind,
    g: &mut Graph<f32>,
    x: Var,
    params: [ParamId; 3],
    mask: Option<&[f32]>,
    reverse: bool,
    seq: bool,
) -> Result<Var> {
    let (n, steps) = (g.shape(x).dim(0), g.shape(x).dim(1));
    let (w, r, b) = (g.use_param(params[0]), g.use_param(params[1]), g.use_param(params[2]));
    let mask = match mask {
        Some(m) => Some(g.input(&[n, steps], m)?),
        None => None,
    };
    g.rnn(kind.cell(), x, w, r, b, mask, reverse, seq)
}
