//! Recurrent layers: LSTM, GRU and SimpleRNN over a sequence, and Bidirectional (one of them run both
//! ways). Each runs as one op of the engine over the whole sequence (`Graph::rnn`, forward and backward
//! through time fused); a padding mask makes a padded step keep the state.

use crate::nn::Initializer;
use crate::nn::Layer;
use crate::nn::spec::{BuildCx, Fwd, LayerSpec};
use crate::onnx::proto::INT32;
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

/// The parameter names of a recurrent cell: alone, and as a Bidirectional's forward and backward halves.
/// The layer as ONNX's LSTM, GRU or RNN op, one direction per entry of `names` (forward, then backward):
/// kernels transposed to [gates·units, in] and the gates reordered to ONNX's (LSTM: i, o, f, c for kiln's
/// i, f, g, o; GRU: z, r, h in both, with `linear_before_reset`, Keras's reset_after). A padding mask
/// becomes `sequence_lens` (the count of real steps): the same last state for texts padded at the end, as
/// kiln pads them; with `return_sequences`, the outputs at padded steps are 0 where kiln repeats the state.
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
    let xt = o.transpose(x, &[1, 0, 2]);
    let lens = match o.mask.clone() {
        Some(m) => {
            let n = o.sum(&m, 1, false);
            o.op("Cast", &[&n], vec![Attr::i("to", INT32 as i64)])
        }
        None => String::new(),
    };
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
    Ok(if seq {
        // Y [steps, d, batch, u] -> [batch, steps, d·u] (forward then backward, as kiln concatenates).
        let y = o.transpose(&outs[0], &[2, 0, 1, 3]);
        o.reshape(&y, &[steps, d * u])
    } else {
        // Y_h [d, batch, u] -> [batch, d·u].
        let y = o.transpose(&outs[1], &[1, 0, 2]);
        o.reshape(&y, &[d * u])
    })
}

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
